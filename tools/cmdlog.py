"""The one command log of an evidence bundle: ``commands.txt``, and the runner that writes it.

Every command a pipeline step runs goes through :func:`run_logged`, which appends exactly one line::

    <UTC start time, ISO 8601 with Z>\t<exit code>\t<command as a reproducible shell line>

The command line is written so that it can be pasted into a shell at the repository root: a working
directory other than the root becomes ``cd <dir> &&``, and environment overrides are written as
``VAR=value`` prefixes. Exit codes: the process status; 124 for a timeout (like coreutils ``timeout``);
127 when the program could not be started (missing binary, like the shell).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

EXIT_TIMEOUT = 124
EXIT_NOT_FOUND = 127
TAIL_LINES = 40


def utc_now() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_stamp() -> str:
    """Current UTC time as a bundle stamp ``YYYYMMDDTHHMMSSZ`` (same as ``date -u +%Y%m%dT%H%M%SZ``)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def format_command(argv, cwd=None, env=None, root=None) -> str:
    """One shell line reproducing ``argv`` run in ``cwd`` with extra ``env``, relative to ``root``."""
    parts = []
    if cwd is not None:
        cwd = Path(cwd)
        if root is not None:
            try:
                cwd = cwd.resolve().relative_to(Path(root).resolve())
            except ValueError:
                pass
        if str(cwd) not in ("", "."):
            parts.append(f"cd {shlex.quote(str(cwd))} &&")
    for key, value in (env or {}).items():
        parts.append(f"{key}={shlex.quote(str(value))}")
    parts.append(shlex.join(str(a) for a in argv))
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
    with open(log_path, "a", encoding="utf-8") as fh:
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


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    command: str
    output_path: Path | None
    tail: str
    wall_s: float


def tail_text(text: str, lines: int = TAIL_LINES) -> str:
    """Last ``lines`` lines of ``text`` without C progress lines (``NN% done``)."""
    kept = [ln for ln in text.splitlines() if not ln.strip().endswith("% done")]
    return "\n".join(kept[-lines:])


def run_logged(argv, log_path, *, cwd=None, env=None, output_path=None, timeout_s: float | None = None,
               root=None) -> RunResult:
    """Run ``argv`` (stdout and stderr merged into ``output_path``), log it, return its exit code and tail.

    ``env`` holds overrides on top of the current environment; they are part of the logged command.
    """
    started = utc_now()
    command = format_command(argv, cwd=cwd, env=env, root=root)
    full_env = dict(os.environ)
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    t0 = time.monotonic()
    text = ""
    try:
        proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        code = proc.returncode
        text = proc.stdout.decode("utf-8", errors="replace")
    except subprocess.TimeoutExpired as exc:
        code = EXIT_TIMEOUT
        text = (exc.stdout or b"").decode("utf-8", errors="replace")
        text += f"\n[pipeline] killed after {timeout_s} s timeout\n"
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        code = EXIT_NOT_FOUND
        text = f"[pipeline] cannot start {argv[0]}: {exc}\n"
    wall = time.monotonic() - t0
    if output_path is not None:
        output_path = Path(output_path)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.write_text(text, encoding="utf-8")
    log_command(log_path, code, command, started)
    return RunResult(code, command, output_path, tail_text(text), wall)
