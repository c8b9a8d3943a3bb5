"""MOSFLM orientation matrix (-mat)."""
from __future__ import annotations

import re
from pathlib import Path

from ..checks import check_readable_file
from ..errors import InputError
from ._text import WS, parse_number, read_lines, show

_WS = re.compile(f"[{WS}]+")


def read_mat(path: str | Path) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """The first nine numbers as rows x,y,z with columns a*,b*,c* (§4.1); returns (a*, b*, c*) unscaled.
    Numbers are split at ASCII white space (a UTF-8 byte-order mark is dropped); anything that is not a
    finite decimal number among the first nine is an InputError; what follows the ninth is ignored."""
    p = check_readable_file("-mat", str(path))
    values: list[float] = []
    tokens = (t for line in read_lines("-mat", p) for t in _WS.split(line) if t)
    for token in tokens:
        if len(values) == 9:
            break
        v = parse_number(token)
        if v is None:
            raise InputError(f"-mat: {path}: expected 9 numbers (finite, decimal), "
                             f"found {show(token)} after {len(values)}")
        values.append(v)
    if len(values) < 9:
        raise InputError(f"-mat: {path}: expected 9 numbers, found {len(values)}")
    n = values
    return (n[0], n[3], n[6]), (n[1], n[4], n[7]), (n[2], n[5], n[8])


def format_mat(a_star, b_star, c_star, decimals: int = 8) -> str:
    """A MOSFLM-style matrix as text: three lines, the x, y and z components of a*, b*, c*."""
    rows = [[a_star[i], b_star[i], c_star[i]] for i in range(3)]
    return "".join(" ".join(f"{float(v):.{decimals}f}" for v in row) + "\n" for row in rows)


def write_mat(path: str | Path, a_star, b_star, c_star) -> Path:
    """Write a MOSFLM-style matrix file (see ``format_mat``)."""
    path = Path(path)
    path.write_text(format_mat(a_star, b_star, c_star), encoding="ascii")
    return path
