"""Where are the C programs? The one resolver used by the pipeline, its tests and the parity tools.

The C suite has several programs (``PROGRAMS``: nanoBragg, nonBragg, ...); each has an environment variable
naming its binary and the argv prefix that selects the same program in ours (a subcommand). For a program,
the order is: an explicit path (``--c-bin``), then its variable (``$NB_C_BIN`` for nanoBragg), then its name
on ``$PATH``. A candidate that does not exist or is not executable is reported, never silently replaced by
the next one. Adding a program of the suite is one entry in ``PROGRAMS``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Program:
    """A program of the C suite: its executable's name, the variable naming its binary, the argv prefix that
    runs the same program in ours (``python -m nanobrag_torch <prefix> <argv>``), and quirks of its output
    files that a comparison must allow (see ``tools.corpus``)."""

    name: str
    env_var: str
    subcommand: tuple[str, ...] = ()
    quirks: frozenset[str] = frozenset()

    @property
    def how_to(self) -> str:
        return (f"point {self.env_var} at a C {self.name} executable (export {self.env_var}=/path/to/{self.name}, "
                f"or pass --c-bin): the upstream program bl831/nanoBragg, built outside this repository")


PROGRAMS: dict[str, Program] = {
    "nanoBragg": Program("nanoBragg", "NB_C_BIN"),
    # nonBragg writes its PGM with two bytes per pixel: whatever follows its buffer trails the image (§11.6)
    "nonBragg": Program("nonBragg", "NB_NONBRAGG_BIN", ("nonbragg",), frozenset({"pgm_trailing_bytes"})),
}
DEFAULT_PROGRAM = "nanoBragg"
ENV_VAR = PROGRAMS[DEFAULT_PROGRAM].env_var
PROGRAM = DEFAULT_PROGRAM
HOW_TO = PROGRAMS[DEFAULT_PROGRAM].how_to


def program(name: str) -> Program:
    """The ``PROGRAMS`` entry called ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROGRAMS[name]
    except KeyError:
        raise ValueError(f"unknown program {name!r}; expected one of {', '.join(PROGRAMS)}") from None


@dataclass(frozen=True)
class CBinary:
    path: Path | None  # absolute path when usable, else None
    source: str  # "--c-bin", "$NB_C_BIN", "PATH" or "none"
    problem: str | None = None  # why it is unusable (None when usable)

    @property
    def ok(self) -> bool:
        return self.path is not None and self.problem is None


def _check(candidate: str, source: str, how_to: str = HOW_TO) -> CBinary:
    p = Path(candidate).expanduser()
    if not p.exists():
        return CBinary(None, source, f"C binary {candidate!r} (from {source}) does not exist; {how_to}")
    if not p.is_file() or not os.access(p, os.X_OK):
        return CBinary(None, source, f"C binary {candidate!r} (from {source}) is not an executable file; {how_to}")
    return CBinary(p.resolve(), source)


def resolve_c_binary(explicit: str | os.PathLike | None = None, env: dict | None = None,
                     name: str = DEFAULT_PROGRAM) -> CBinary:
    """Find the binary of the C program ``name`` (see module doc). Never raises; check ``.ok`` / ``.problem``."""
    env = os.environ if env is None else env
    prog = program(name)
    if explicit:
        return _check(str(explicit), "--c-bin", prog.how_to)
    if env.get(prog.env_var):
        return _check(env[prog.env_var], f"${prog.env_var}", prog.how_to)
    found = shutil.which(prog.name, path=env.get("PATH"))
    if found:
        return _check(found, "PATH", prog.how_to)
    return CBinary(None, "none", f"no C binary: {prog.env_var} is not set and {prog.name} is not on PATH; "
                                 f"{prog.how_to}")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
