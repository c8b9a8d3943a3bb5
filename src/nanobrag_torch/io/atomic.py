"""Files written all-or-nothing: temporary names next to the targets, renamed only when every file was written,
removed on any failure or interruption (Ctrl-C, SIGTERM, a full disk); the one place output files are written."""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import InputError, UsageError

_TMP_SUFFIX = ".part"


def temporary_name(name) -> str:
    """The temporary name ``write_atomically`` writes ``name`` under: ``name.part<pid>``."""
    return f"{name}{_TMP_SUFFIX}{os.getpid()}"


def remove_stale_temporaries(name) -> None:
    """Delete temporaries of ``name`` (``name.part<pid>``, any pid) that a killed process left behind."""
    p = Path(name)
    for tmp in p.parent.glob(glob.escape(p.name) + _TMP_SUFFIX + "*"):
        if tmp.name[len(p.name) + len(_TMP_SUFFIX):].isdigit():
            tmp.unlink(missing_ok=True)


def check_output_path(flag: str, name: str | Path) -> None:
    """``name`` can be written: not a directory, and its folder exists (else InputError naming flag and file)."""
    p = Path(name)
    if p.is_dir():
        raise InputError(f"{flag}: cannot write {name}: it is a directory")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{flag}: cannot write {name}: {parent} is not a folder")
    if not parent.is_dir():
        raise InputError(f"{flag}: cannot write {name}: no folder {parent}")


def write_atomically(files: list[tuple[str | Path, bytes | None, object]]) -> None:
    """Write ``(path, bytes, None)`` or ``(path, None, writer(tmp_path))`` entries: every file under a
    temporary name next to its target first, then all renamed; on any failure (a full disk, an unwritable or
    missing directory, a target that is a directory) or interruption (Ctrl-C, SIGTERM) the temporaries are
    removed and no target is touched. An OSError becomes one ``InputError`` line naming the target file.
    The renames run with SIGINT and SIGTERM deferred, so an interruption lands before or after all of them.
    (``atomic_files`` is the same with the files written in background threads as they are added.)"""
    targets = [os.path.normpath(os.path.abspath(name)) for name, _, _ in files]
    if len(set(targets)) != len(targets):
        dup = next(str(files[i][0]) for i, t in enumerate(targets) if targets.index(t) != i)
        raise UsageError(f"two outputs name the same file {dup}: give each output its own name")
    with atomic_files(threads=0) as out:
        for entry in files:
            out.add(*entry)


class AtomicFiles:
    """The files of one all-or-nothing write (see ``atomic_files``): ``add`` writes one under its temporary
    name, at once (``threads`` 0) or in one of ``threads`` background threads."""

    def __init__(self, threads: int):
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="nb-write") if threads > 0 else None
        self._jobs: list[tuple[str, str, object]] = []  # (temporary name, target, future or None)
        self._targets: set[str] = set()

    def add(self, name: str | Path, data: bytes | None, writer=None) -> None:
        """Write ``data`` (or call ``writer(temporary path)``) under ``name``'s temporary name."""
        target = os.path.normpath(os.path.abspath(name))
        if target in self._targets:
            raise UsageError(f"two outputs name the same file {name}: give each output its own name")
        self._targets.add(target)
        if os.path.isdir(name):
            raise _cannot_write(name, None, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(name)))
        tmp = temporary_name(name)

        def job():
            if data is not None:
                with open(tmp, "wb") as fh:
                    fh.write(data)
            else:
                writer(tmp)

        if self._pool is None:
            self._jobs.append((tmp, str(name), None))
            try:
                job()
            except OSError as exc:
                raise _cannot_write(name, tmp, exc) from None
        else:
            self._jobs.append((tmp, str(name), self._pool.submit(job)))

    def _wait(self) -> None:
        """Every background write finished; the first failure raised (an OSError as one InputError line)."""
        for tmp, name, future in self._jobs:
            exc = future.exception() if future is not None else None
            if isinstance(exc, OSError):
                raise _cannot_write(name, tmp, exc) from None
            if exc is not None:
                raise exc

    def _commit(self) -> None:
        with _signals_deferred():
            for i, (tmp, target, _) in enumerate(self._jobs):
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    _remove(t for t, _, _ in self._jobs[i:])
                    raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None

    def _abort(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # a running writer finishes first
        _remove(tmp for tmp, _, _ in self._jobs)


@contextlib.contextmanager
def atomic_files(threads: int = 2):
    """All-or-nothing output files: ``with atomic_files() as out: out.add(path, bytes, None)`` or
    ``out.add(path, None, writer)``; each file is written under a temporary name as soon as it is added (in
    one of ``threads`` background threads, so that writing overlaps the work between the adds), and when
    the block ends every file is renamed into place, with the guarantees of ``write_atomically``."""
    files = AtomicFiles(threads)
    try:
        yield files
        files._wait()
    except BaseException:
        files._abort()
        raise
    try:
        files._commit()
    finally:
        if files._pool is not None:
            files._pool.shutdown(wait=False)


def _cannot_write(name, tmp, exc: OSError) -> InputError:
    """One line naming the target of a failed write (not its temporary name)."""
    where = name if exc.filename in (None, tmp) else exc.filename
    return InputError(f"cannot write {where}: {exc.strerror or exc}")


def _remove(paths) -> None:
    """Remove temporaries that may not exist (or whose directory does not)."""
    for p in paths:
        with contextlib.suppress(OSError):
            Path(p).unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM that arrive inside are acted on (by the handler they had) when it ends.

    Python runs signal handlers in the main thread whichever thread the signal reached, so swapping the
    handlers defers them for the whole process; outside the main thread this is a no-op."""
    caught: list[int] = []
    try:
        old = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
               for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in caught[:1]:
            handler = old[s]
            if callable(handler):
                handler(s, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(s)
