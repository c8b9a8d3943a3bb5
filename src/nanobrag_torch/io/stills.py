"""Orientations of a set of stills (-stills_file): one per line, misset angles or a rotation matrix."""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..checks import check_readable_file
from ..errors import InputError
from ._text import WS, parse_number, read_lines, show

_WS = re.compile(f"[{WS}]+")


def read_stills(path: str | Path, flag: str = "-stills_file") -> list[tuple[float, float, float]]:
    """Misset angles (rx, ry, rz) in degrees, one still per line. A line holds three numbers (the angles, as
    -misset takes them) or nine (a rotation matrix U by rows, turned into angles the way C turns the matrix of
    -misset random into angles, §7.5). Blank lines and lines starting with '#' are skipped."""
    from ..rng import umat_to_misset_angles

    p = check_readable_file(flag, str(path))
    out: list[tuple[float, float, float]] = []
    for n, line in enumerate(read_lines(flag, p), start=1):
        tokens = [t for t in _WS.split(line) if t]
        if not tokens or tokens[0].startswith("#"):
            continue
        values = [parse_number(t) for t in tokens]
        bad = next((t for t, v in zip(tokens, values) if v is None), None)
        if bad is not None:
            raise InputError(f"{flag}: {path}: line {n}: {show(bad)} is not a finite decimal number")
        if len(values) == 3:
            out.append(tuple(values))
        elif len(values) == 9:
            out.append(tuple(math.degrees(x) for x in umat_to_misset_angles([values[0:3], values[3:6], values[6:9]])))
        else:
            raise InputError(f"{flag}: {path}: line {n}: expected 3 misset angles or 9 matrix elements, "
                             f"found {len(values)} numbers")
    if not out:
        raise InputError(f"{flag}: {path}: no orientations")
    return out
