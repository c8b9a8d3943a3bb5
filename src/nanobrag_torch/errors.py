"""User-facing errors: each carries one line naming the flag or file, and the exit code the CLI uses."""
from __future__ import annotations


class NanoBraggError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(NanoBraggError):
    """Bad command line: unknown flag, missing or non-numeric value, missing required input (exit 2)."""

    exit_code = 2


class InputError(NanoBraggError):
    """A missing, unreadable or malformed input file (exit 1)."""

    exit_code = 1


def warn(message: str) -> None:
    """A warning for the user: one line ``WARNING: message`` on stderr (the one format every program uses)."""
    import sys

    print(f"WARNING: {message}", file=sys.stderr)
