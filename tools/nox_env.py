"""The shared nox environment (``.nox/project``): when it is ready, and preparing it once under a lock.

nox creates the environment in the ``project`` session (noxfile.py) and every session that needs torch runs in
it. Two runs started together in a fresh clone must not both create or refresh it while the other already uses
it, so a chain (``invoke phase-d``) first calls :func:`prepare` — under an exclusive lock, run ``nox -s project``
unless the environment is already ready — and then runs each session with ``nox -R`` (reuse the environment,
install nothing). "Ready" is a stamp the ``project`` session writes last: the torch pin and the hash of
pyproject.toml it installed, so an edit of the dependencies prepares it again.

Only the standard library is imported here: the noxfile and invoke use it from any interpreter.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from tools import REPO
from tools.files import atomic_write

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None

TORCH_SPEC = os.environ.get("NB_TORCH_SPEC", "torch==2.13.0")  # the pin (NB_TORCH_SPEC overrides it)
ENV_DIR = Path(".nox", "project")  # nox's location for the `project` session, relative to the repository root
STAMP = ".nb-ready"  # written into ENV_DIR by the project session after a complete install
PREPARE_COMMAND = ("nox", "-s", "project")


def fingerprint(torch_spec: str, root=REPO) -> str:
    """What a ready environment was built from: the torch pin and the sha256 of pyproject.toml."""
    digest = hashlib.sha256(Path(root, "pyproject.toml").read_bytes()).hexdigest()
    return f"{torch_spec} pyproject.toml:{digest}"


def stamp_path(root=REPO) -> Path:
    return Path(root) / ENV_DIR / STAMP


def mark_ready(torch_spec: str, root=REPO) -> None:
    """Called by the project session after its installs and checks succeeded."""
    atomic_write(stamp_path(root), fingerprint(torch_spec, root) + "\n")


def is_ready(torch_spec: str, root=REPO) -> bool:
    """True when the environment was completely built from the current torch pin and pyproject.toml."""
    try:
        return stamp_path(root).read_text(encoding="utf-8").strip() == fingerprint(torch_spec, root)
    except OSError:
        return False


@contextlib.contextmanager
def lock(name: str, root=REPO):
    """Exclusive advisory lock on ``.nox/<name>`` (blocks until the other holder is done)."""
    path = Path(root, ".nox", name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def prepare(run, torch_spec: str, root=REPO) -> int | None:
    """Make the environment ready once: under the ``prepare.lock``, run ``run(PREPARE_COMMAND)`` (which returns
    an exit code) unless it is ready already. Returns that exit code, or None when nothing had to run.

    The ``project`` session itself takes another lock (``project.lock``) around pip, so a session started by hand
    meanwhile never runs pip in the environment at the same time; this lock is a different file so that the
    session nox starts here does not wait for the lock its parent holds."""
    with lock("prepare.lock", root):
        if is_ready(torch_spec, root):
            return None
        return run(list(PREPARE_COMMAND))


if __name__ == "__main__":  # python -m tools.nox_env mark-ready TORCH_SPEC (the project session's last step)
    import sys

    if sys.argv[1:2] != ["mark-ready"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m tools.nox_env mark-ready TORCH_SPEC")
    mark_ready(sys.argv[2])
