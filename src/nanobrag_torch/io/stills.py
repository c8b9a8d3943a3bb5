"""Orientations of a set of stills (-stills_file): one per line, misset angles or a rotation matrix."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..checks import check_readable_file
from ..errors import InputError
from ._text import WS, parse_number, read_lines, show

_WS = re.compile(f"[{WS}]+")
ROTATION_TOLERANCE = 1e-6  # how far a -stills_file matrix may be from a proper rotation (U.U^T = 1, det U = +1)


def rotation_defect(rows) -> str | None:
    """Why a 3x3 matrix (by rows) is not a proper rotation within ``ROTATION_TOLERANCE``, or None if it is."""
    u = np.asarray(rows, dtype=np.float64).reshape(3, 3)
    off = float(np.abs(u @ u.T - np.eye(3)).max())
    if off > ROTATION_TOLERANCE:
        return f"its rows are not orthonormal (U.U^T differs from 1 by {off:.3g})"
    det = float(np.linalg.det(u))
    if abs(det - 1.0) > ROTATION_TOLERANCE:
        return f"its determinant is {det:.6g}, not +1 (a reflection)"
    return None


def read_stills(path: str | Path, flag: str = "-stills_file") -> list[tuple[float, float, float]]:
    """Misset angles (rx, ry, rz) in degrees, one still per line. A line holds three numbers (the angles, as
    -misset takes them) or nine (a rotation matrix U by rows, turned into angles the way C turns the matrix of
    -misset random into angles, §7.5), which must be a proper rotation: orthonormal rows and determinant +1
    within ``ROTATION_TOLERANCE``. Blank lines and lines starting with '#' are skipped."""
    from ..crandom.streams import umat_to_misset_angles

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
            why = rotation_defect(values)
            if why is not None:
                raise InputError(f"{flag}: {path}: line {n}: the 9 numbers are not a rotation matrix: {why}")
            out.append(tuple(math.degrees(x) for x in umat_to_misset_angles([values[0:3], values[3:6], values[6:9]])))
        else:
            raise InputError(f"{flag}: {path}: line {n}: expected 3 misset angles or 9 matrix elements, "
                             f"found {len(values)} numbers")
    if not out:
        raise InputError(f"{flag}: {path}: no orientations")
    return out
