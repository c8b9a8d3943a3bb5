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
    """A flag value that must be an integer within C's 64-bit long (C truncates with atoi; we refuse
    fractions and values that do not fit)."""
    try:
        value = int(token)
    except ValueError:
        try:
            number = float(token)
        except ValueError:
            raise UsageError(f"{flag}: expected an integer, got {token!r}") from None
        if not number.is_integer():
            raise UsageError(f"{flag}: expected an integer, got {token!r}") from None
        value = int(number)
    if not -(2**63) <= value < 2**63:
        raise UsageError(f"{flag}: {token} does not fit in a 64-bit integer")
    return value


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


# ------------------------------------------------------------------------- physical domains of typed values
# Flag keys (flags.FLAGS) by the physical domain of the value typed (issue 12; the model's own checks, on
# whatever the values became, are in validate.py). Where the C program gives 0 a documented meaning (-N 0: one
# unit cell; -exposure 0: no flux rule; -detector_abs 0: no sensor absorption; -mosaic 0: no mosaicity) 0
# stays allowed; negative values, which C reads as "unset", are refused.
POSITIVE = ("distance", "close_distance", "pixel", "detsize", "detsize_f", "detsize_s", "lambda", "energy",
            "fluence", "fudge", "max_memory_gb")
NON_NEGATIVE = ("N", "Na", "Nb", "Nc", "xtal_size", "xtal_x", "xtal_y", "xtal_z", "mosaic", "dispersion",
                "divergence", "hdivrange", "vdivrange", "hdivstep", "vdivstep", "water", "detector_thick",
                "detector_abs", "dmin", "osc", "phistep", "flux", "exposure", "bfactor", "k_sol", "B_sol")
AT_LEAST_ONE = ("detpixels", "detpixels_f", "detpixels_s", "frames", "stills")
# Counts C chooses itself when they are left out (or typed <= 0): refused below 1, with that hint.
AUTO_COUNTS = ("oversample", "phisteps", "mosaic_domains", "thicksteps", "dispsteps", "hdivsteps", "vdivsteps",
               "divsteps")
NON_ZERO_VECTORS = ("beam_vector", "polar_vector", "fdet_vector", "sdet_vector", "odet_vector", "spindle_axis",
                    "twotheta_axis")
CELL_NAMES = ("a", "b", "c", "alpha", "beta", "gamma")


def _g(x) -> str:
    return " ".join(f"{float(v):g}" for v in x) if isinstance(x, (tuple, list)) else f"{x:g}"


def check_flag_value(key: str, flag: str, value) -> None:
    """Refuse a typed value outside its physical domain (UsageError naming ``flag`` as typed and the value)."""
    if key in POSITIVE and not value > 0:
        raise UsageError(f"{flag}: must be positive, got {_g(value)}")
    if key in NON_NEGATIVE and isinstance(value, (int, float)) and value < 0:
        raise UsageError(f"{flag}: must not be negative, got {_g(value)}")
    if key in AT_LEAST_ONE and value < 1:
        raise UsageError(f"{flag}: must be at least 1, got {value}")
    if key in AUTO_COUNTS and value < 1:
        raise UsageError(f"{flag}: must be at least 1, got {value} (leave the flag out for the automatic choice)")
    if key in NON_ZERO_VECTORS and not any(v != 0 for v in value):
        raise UsageError(f"{flag}: must be a non-zero vector, got {_g(value)}")
    if key == "polar" and not -1.0 <= value <= 1.0:
        raise UsageError(f"{flag}: the Kahn polarization factor must lie in [-1, 1], got {_g(value)}")
    if key == "beamsize" and value == 0:
        raise UsageError(f"{flag}: must not be 0 (negative switches the crystal-size clipping off, as in C)")
    if key == "cell":
        _check_cell_flag(flag, value)


def _check_cell_flag(flag: str, cell) -> None:
    """-cell a [b c alpha beta gamma]: a > 0; b, c >= 0 and angles 0 or in (0, 180) degrees (0 takes C's default)."""
    if not cell[0] > 0:
        raise UsageError(f"{flag}: the length a must be positive, got {_g(cell[0])}")
    for name, v in zip(CELL_NAMES[1:3], cell[1:3]):
        if v < 0:
            raise UsageError(f"{flag}: the length {name} must be positive (0 takes a, as in C), got {_g(v)}")
    for name, v in zip(CELL_NAMES[3:], cell[3:]):
        if not 0 <= v < 180:
            raise UsageError(f"{flag}: the angle {name} must lie between 0 and 180 degrees (0 takes 90, as in C), "
                             f"got {_g(v)}")
