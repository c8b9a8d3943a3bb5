"""Where is the C nanoBragg binary? The one resolver used by the pipeline, its tests and the parity tools.

Order: an explicit path (``--c-bin``), then ``$NB_C_BIN``, then ``nanoBragg`` on ``$PATH``. A candidate
that does not exist or is not executable is reported, never silently replaced by the next one.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "NB_C_BIN"
PROGRAM = "nanoBragg"

HOW_TO = (
    f"point {ENV_VAR} at a C nanoBragg executable (export {ENV_VAR}=/path/to/nanoBragg, or pass --c-bin): "
    "the upstream program bl831/nanoBragg, built outside this repository"
)


@dataclass(frozen=True)
class CBinary:
    path: Path | None  # absolute path when usable, else None
    source: str  # "--c-bin", "$NB_C_BIN", "PATH" or "none"
    problem: str | None = None  # why it is unusable (None when usable)

    @property
    def ok(self) -> bool:
        return self.path is not None and self.problem is None


def _how_to(env_var: str, program: str) -> str:
    """How to provide the binary of ``program`` (HOW_TO for nanoBragg)."""
    if (env_var, program) == (ENV_VAR, PROGRAM):
        return HOW_TO
    return (f"point {env_var} at a C {program} executable (export {env_var}=/path/to/{program}, or pass --c-bin): "
            "the upstream program of bl831/nanoBragg, built outside this repository")


def _check(candidate: str, source: str, how_to: str = HOW_TO) -> CBinary:
    p = Path(candidate).expanduser()
    if not p.exists():
        return CBinary(None, source, f"C binary {candidate!r} (from {source}) does not exist; {how_to}")
    if not p.is_file() or not os.access(p, os.X_OK):
        return CBinary(None, source, f"C binary {candidate!r} (from {source}) is not an executable file; {how_to}")
    return CBinary(p.resolve(), source)


def resolve_c_binary(explicit: str | os.PathLike | None = None, env: dict | None = None, *,
                     env_var: str = ENV_VAR, program: str = PROGRAM) -> CBinary:
    """Find the C binary (see module doc); ``env_var``/``program`` name another program of the C suite (e.g.
    ``NB_NOISIFY_BIN``/``noisify``). Never raises; check ``.ok`` / ``.problem``."""
    env = os.environ if env is None else env
    how_to = _how_to(env_var, program)
    if explicit:
        return _check(str(explicit), "--c-bin", how_to)
    if env.get(env_var):
        return _check(env[env_var], f"${env_var}", how_to)
    found = shutil.which(program, path=env.get("PATH"))
    if found:
        return _check(found, "PATH", how_to)
    return CBinary(None, "none", f"no C binary: {env_var} is not set and {program} is not on PATH; {how_to}")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
