"""The one subprocess runner of the tools, the command log it writes, and the UTC stamp; and the in-process
runner of our own CLI (:func:`run_in_process`) that the test suite uses where a process start is not the point.

Every command a tool runs goes through :func:`run`, which returns one :class:`RunResult` and, given a log,
appends exactly one line to it (a bundle's ``commands.txt``)::

    <UTC start time, ISO 8601 with Z>\t<exit code>\t<command as a reproducible shell line>

The command line is written so that it can be pasted into a shell at the repository root: a working
directory other than the root becomes ``cd <dir> &&``, environment overrides are written as ``VAR=value``
prefixes, and an absolute path inside the repository is written relative to where the command runs, so a
log names no machine-specific checkout. Exit codes: the process status; 124 for a timeout (like coreutils
``timeout``); 127 when the program could not be started (missing binary, like the shell).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

EXIT_TIMEOUT = 124
EXIT_NOT_FOUND = 127
TAIL_LINES = 40
TAIL_CHARS = 2000  # of stdout/stderr kept in a JSON summary of a run


def utc_now() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_stamp(now: datetime | None = None) -> str:
    """UTC time as a bundle stamp ``YYYYMMDDTHHMMSSZ`` (same as ``date -u +%Y%m%dT%H%M%SZ``)."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def _portable(arg: str, base: Path, root: Path) -> str:
    """An absolute path inside ``root`` written relative to ``base`` (where the command runs); else as is."""
    if not arg.startswith("/"):
        return arg
    p = os.path.abspath(arg)  # not resolve(): a venv's bin/python is a symlink to outside the repository
    if not Path(p).is_relative_to(root):
        return arg
    return os.path.relpath(p, base)


def format_command(argv, cwd=None, env=None, root=None) -> str:
    """One shell line reproducing ``argv`` run in ``cwd`` with extra ``env``, from the repository ``root``."""
    parts = []
    root_p = Path(os.path.abspath(root)) if root is not None else None
    base = Path(os.path.abspath(cwd)) if cwd is not None else root_p
    if cwd is not None:
        shown = Path(cwd)
        if root_p is not None and base.is_relative_to(root_p):
            shown = base.relative_to(root_p)
        if str(shown) not in ("", "."):
            parts.append(f"cd {shlex.quote(str(shown))} &&")
    args = [str(a) for a in argv]
    if root_p is not None:
        args = [_portable(a, base, root_p) for a in args]
    for key, value in (env or {}).items():
        parts.append(f"{key}={shlex.quote(str(value))}")
    parts.append(shlex.join(args))
    # A command log line must stay one line: newlines and tabs inside arguments are escaped by shlex
    # quoting only partially, so replace them visibly.
    return " ".join(parts).replace("\t", "\\t").replace("\n", "\\n")


def log_command(log_path, exit_code: int, command: str, started: str | None = None) -> str:
    """Append one ``time<TAB>exit<TAB>command`` line to ``log_path``; return the line (without newline)."""
    if "\n" in command or "\t" in command:
        raise ValueError("a logged command must be a single line without tabs (use format_command)")
    line = f"{started or utc_now()}\t{int(exit_code)}\t{command}"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as fh:  # one short write in append mode: lines never interleave
        fh.write(line + "\n")
    return line


@dataclass(frozen=True)
class LoggedCommand:
    started: str
    exit_code: int
    command: str


def read_commands(log_path) -> list[LoggedCommand]:
    """Parse ``commands.txt``; a malformed line raises ValueError naming its line number."""
    out = []
    path = Path(log_path)
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{n}: expected 3 tab-separated fields, got {len(fields)}")
        out.append(LoggedCommand(fields[0], int(fields[1]), fields[2]))
    return out


def tail_text(text: str, lines: int = TAIL_LINES) -> str:
    """Last ``lines`` lines of ``text`` without C progress lines (``NN% done``)."""
    kept = [ln for ln in text.splitlines() if not ln.strip().endswith("% done")]
    return "\n".join(kept[-lines:])


@dataclass
class RunResult:
    """One finished command: what ran, where, how it ended, what it printed and which files it created."""

    argv: list[str]
    command: str  # the reproducible shell line (format_command)
    cwd: str | None
    exit_code: int  # EXIT_TIMEOUT after a timeout, EXIT_NOT_FOUND when it could not start
    stdout: str  # stdout, with stderr merged in unless the run kept them apart
    stderr: str
    wall_s: float
    timed_out: bool = False
    new_files: list[str] = field(default_factory=list)  # files in cwd afterwards that were not there before

    @property
    def tail(self) -> str:
        return tail_text(self.stdout + self.stderr)

    def summary(self) -> dict:
        """A JSON-able record with the output cut to its last TAIL_CHARS characters."""
        d = asdict(self)
        d["stdout"], d["stderr"] = self.stdout[-TAIL_CHARS:], self.stderr[-TAIL_CHARS:]
        return d


def _stream(argv, cwd, env, echo=None) -> tuple[int, str]:
    """Run with stdout+stderr echoed live to our stdout (the lines ``echo(line)`` accepts, all by default);
    return (exit code, everything it printed)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    chunks = []
    for line in proc.stdout:
        if echo is None or echo(line):
            sys.stdout.write(line)
            sys.stdout.flush()
        chunks.append(line)
    return proc.wait(), "".join(chunks)


def run(argv, *, cwd=None, env=None, timeout_s: float | None = None, merge_stderr: bool = True,
        stream: bool = False, echo=None, log_path=None, output_path=None, root=None) -> RunResult:
    """Run ``argv``; never raises for the command's own failure (see the exit codes in the module doc).

    ``env`` holds overrides on top of the current environment; they are part of the logged command.
    ``stream`` echoes the output live (merged, no timeout; only the lines ``echo(line)`` accepts, when given:
    the result still holds all of them); ``output_path`` receives the merged output;
    ``log_path`` gets the one command-log line; ``root`` makes the logged line repository-relative.
    """
    if stream and (timeout_s is not None or not merge_stderr):
        raise ValueError("a streamed run has merged output and no timeout")
    argv = [str(a) for a in argv]
    started = utc_now()
    command = format_command(argv, cwd=cwd, env=env, root=root)
    full_env = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}}
    track = cwd is not None and Path(cwd).is_dir()
    before = {p.name for p in Path(cwd).iterdir()} if track else set()
    t0 = time.monotonic()
    timed_out, out, err = False, "", ""
    try:
        if stream:
            code, out = _stream(argv, cwd, full_env, echo)
        else:
            proc = subprocess.run(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                  timeout=timeout_s, check=False)
            code = proc.returncode
            out = proc.stdout.decode("utf-8", errors="replace")
            err = (proc.stderr or b"").decode("utf-8", errors="replace")
    except subprocess.TimeoutExpired as exc:
        code, timed_out = EXIT_TIMEOUT, True
        out = (exc.stdout or b"").decode("utf-8", errors="replace")
        err = (exc.stderr or b"").decode("utf-8", errors="replace")
        out += f"\n[tools] killed after {timeout_s} s timeout\n"
    except OSError as exc:  # missing program, not executable, bad cwd
        code = EXIT_NOT_FOUND
        msg = f"[tools] cannot start {argv[0]}: {exc}\n"
        out, err = (msg, "") if merge_stderr else ("", msg)
    wall = time.monotonic() - t0
    new = sorted(p.name for p in Path(cwd).iterdir() if p.name not in before) if track else []
    if output_path is not None:
        output_path = Path(output_path)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.write_text(out + err, encoding="utf-8")
    if log_path is not None:
        log_command(log_path, code, command, started)
    return RunResult(argv, command, None if cwd is None else str(cwd), code, out, err, wall, timed_out, new)


IN_PROCESS = "@in-process"  # argv[0] of a RunResult from run_in_process


def run_in_process(argv: list[str], workdir) -> RunResult:
    """``nanobrag_torch.programs.nanobragg.main(argv)`` called in this process with ``workdir`` as the working
    directory and stdout/stderr captured: what ``python -m nanobrag_torch ARGV`` does there, without starting an
    interpreter and importing torch for every run (~2 s each). The test suite's golden cases use it; the pipeline tools,
    which time whole processes, do not. An exception escaping ``main`` (a bug) is exit 1 with its traceback on
    stderr, as the interpreter would report it. No timeout."""
    import contextlib
    import io
    import signal
    import traceback

    from nanobrag_torch.programs.nanobragg import main

    workdir = Path(workdir)
    before = {p.name for p in workdir.iterdir()}
    out, err = io.StringIO(), io.StringIO()
    cwd, handlers = os.getcwd(), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    try:
        os.chdir(workdir)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except Exception:  # noqa: BLE001 - reported like an uncaught exception in a process
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(cwd)
        for s, h in handlers.items():
            signal.signal(s, h)
    wall = time.monotonic() - t0
    new = sorted(p.name for p in workdir.iterdir() if p.name not in before)
    command = "python -m nanobrag_torch " + shlex.join(argv) + "  # in-process"
    return RunResult([IN_PROCESS, *argv], command, str(workdir), code, out.getvalue(), err.getvalue(), wall,
                     False, new)
