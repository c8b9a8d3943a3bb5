"""Files the tools write: atomically (temp name + rename), under an advisory lock, and named repo-relative.

Every file the pipeline rewrites (the ledger, a plan, a bundle's status and summary, a report index) goes
through :func:`atomic_write`, so a crash or a concurrent run never leaves a torn file; read-modify-write
sequences hold :func:`locked` on the file's directory, so two runs never interleave them.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

from tools import REPO
from tools.cmdlog import utc_stamp

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, writes stay atomic
    fcntl = None


def atomic_write(path, data: str | bytes) -> Path:
    """Replace ``path`` with ``data`` via a temporary file in the same directory (never a torn file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def locked(path):
    """Exclusive advisory lock for a read-modify-write of ``path`` (blocks until the other holder is done).

    The lock is taken on the parent directory: its inode survives ``os.replace`` of the file (a lock on the
    file itself would be on the old inode after the first replace), and no lock file is left behind. The
    lock is not re-entrant: hold it once around the whole transaction.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(Path(path).resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_json(path, default=None):
    """The JSON in ``path``, or ``default`` when the file does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def write_json(path, data) -> None:
    """Write ``data`` as indented JSON, atomically, creating the directory."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")


def rel(path, root=REPO) -> str:
    """``path`` relative to ``root`` when inside it (what bundles and the ledger record), else absolute."""
    p = Path(os.path.abspath(path))  # abspath, not resolve: a venv's bin/python is a symlink out of the repo
    try:
        return str(p.relative_to(os.path.abspath(root)))
    except ValueError:
        return str(p)


def fresh_dir(parent, stamp=None) -> Path:
    """Create and return ``parent/<UTC stamp>``, a directory no other run has: a bundle is never reused.

    Two runs started in the same second race for the stamp; ``mkdir`` lets exactly one win and the other
    waits for the next second's stamp. An explicit ``stamp`` that exists raises FileExistsError.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    if stamp is not None:
        (parent / stamp).mkdir()
        return parent / stamp
    while True:
        path = parent / utc_stamp()
        try:
            path.mkdir()
            return path
        except FileExistsError:
            time.sleep(0.2)
