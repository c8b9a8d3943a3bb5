"""The one entry point of every program: run it on argv, turning bad input into one line on stderr and an exit
code (2 for usage, 1 for input), Ctrl-C into exit 130 and SIGTERM into exit 143, with nothing half-written."""
from __future__ import annotations

import contextlib
import signal
import sys

from ..errors import NanoBraggError
from ..heap import steady_heap


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same clean-up runs (no partial output)."""


def _on_sigterm(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _sigterm_raises():
    """Inside: SIGTERM raises ``Terminated`` (main thread only; the previous handler is restored after)."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_program(runner, argv: list[str], prog: str) -> int:
    """``runner(argv)`` (a program's ``run``) with the programs' error handling; ``prog`` names it in messages.
    Ctrl-C exits 130 and SIGTERM 143 (128 + the signal), with one line and no output file (outputs are renamed
    into place only when all of them were written). The heap is held steady (``heap.steady_heap``)."""
    steady_heap()
    try:
        with _sigterm_raises():
            code = runner(argv)
    except NanoBraggError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        code = 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (SIGINT)", file=sys.stderr)
        code = 128 + signal.SIGINT
    sys.stdout.flush()
    return code
