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


def _check(candidate: str, source: str) -> CBinary:
    p = Path(candidate).expanduser()
    if not p.exists():
        return CBinary(None, source, f"C binary {candidate!r} (from {source}) does not exist; {HOW_TO}")
    if not p.is_file() or not os.access(p, os.X_OK):
        return CBinary(None, source, f"C binary {candidate!r} (from {source}) is not an executable file; {HOW_TO}")
    return CBinary(p.resolve(), source)


def resolve_c_binary(explicit: str | os.PathLike | None = None, env: dict | None = None) -> CBinary:
    """Find the C binary (see module doc). Never raises; check ``.ok`` / ``.problem``."""
    env = os.environ if env is None else env
    if explicit:
        return _check(str(explicit), "--c-bin")
    if env.get(ENV_VAR):
        return _check(env[ENV_VAR], f"${ENV_VAR}")
    found = shutil.which(PROGRAM, path=env.get("PATH"))
    if found:
        return _check(found, "PATH")
    return CBinary(None, "none", f"no C binary: {ENV_VAR} is not set and {PROGRAM} is not on PATH; {HOW_TO}")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
