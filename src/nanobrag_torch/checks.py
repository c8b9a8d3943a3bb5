"""Named input checks: every user-facing validation lives here and raises one clear line."""
from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import InputError, UsageError


def check_float(flag: str, token: str) -> float:
    """A flag value that must be a number."""
    try:
        value = float(token)
    except ValueError:
        raise UsageError(f"{flag}: expected a number, got {token!r}") from None
    if math.isnan(value):
        raise UsageError(f"{flag}: expected a number, got {token!r}")
    if math.isinf(value):
        raise UsageError(f"{flag}: expected a finite number, got {token!r}")
    return value


def check_int(flag: str, token: str) -> int:
    """A flag value that must be an integer (C truncates with atoi; we refuse fractions)."""
    try:
        return int(token)
    except ValueError:
        pass
    try:
        value = float(token)
    except ValueError:
        raise UsageError(f"{flag}: expected an integer, got {token!r}") from None
    if not value.is_integer():
        raise UsageError(f"{flag}: expected an integer, got {token!r}")
    return int(value)


def check_readable_file(flag: str, path: str) -> Path:
    """An input file named by ``flag`` that must exist and be readable."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{flag}: file not found: {path}")
    if not p.is_file():
        raise InputError(f"{flag}: not a regular file: {path}")
    if not os.access(p, os.R_OK):
        raise InputError(f"{flag}: file is not readable: {path}")
    return p


def check_positive(flag: str, value: float) -> float:
    """A quantity that must be > 0."""
    if not value > 0:
        raise UsageError(f"{flag}: must be positive, got {value:g}")
    return value


def check_choice(flag: str, token: str, choices: tuple[str, ...]) -> str:
    """A token that must be one of ``choices``."""
    if token not in choices:
        raise UsageError(f"{flag}: expected one of {', '.join(choices)}, got {token!r}")
    return token


def check_device(flag: str, name: str) -> str:
    """A torch device name that this installation can use (cpu, cuda, cuda:N)."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"{flag}: expected cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag}: {name}: no CUDA device is available to torch here")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"{flag}: expected cpu, cuda or cuda:N, got {name!r}")
    return name
