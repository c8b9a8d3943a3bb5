"""Amorphous structure-factor tables (nonBragg's -stol/-4stol/-Q): one 'stol F' pair per line (§12.2)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_readable_file
from ..errors import InputError
from ..errors import warn as default_warn
from ._text import parse_number, read_lines, show

# C splits the columns at these characters (its text-file reader's delimiter set).
_DELIMS = re.compile(r"[ \t,;:!]+")
_STRIP = " \t,;:!\r\f\v"
# |x| of a table abscissa: C pads the table with +-1e98 and +-1e99 (in 1/m), so the file's values must stay
# far below those after the unit conversion (x 1e10 at most).
MAX_ABS_X = 1e60
WINDOW = 4  # C interpolates through 4 consecutive table entries


@dataclass
class StolFile:
    """A .stol table as written: abscissa ``x`` (sin(theta)/lambda, 4 sin(theta)/lambda or Q in 1/A, by
    the flag that names the file) and ``F`` (NaN where a line has no second column), in file order."""

    x: np.ndarray
    F: np.ndarray
    path: str = ""

    @property
    def increasing(self) -> bool:
        """True when the abscissae increase strictly in file order (then a binary search finds C's nodes)."""
        return bool(np.all(np.diff(self.x) > 0))


def read_stol(path: str | Path, flag: str = "-stol", warn=None) -> StolFile:
    """Read a .stol table (§12.2): per line the abscissa and F, split at white space or any of ',;:!';
    columns after the second are ignored (as C). A line with one column has no F: C uses 0 there and leaves
    it out of the values it extends the table with; we do the same, with one warning naming the lines.

    Unlike C (which reads every line, a '#' comment as x = 0, and any word as 0): '#' lines and blank lines
    are skipped, a word, NaN or Inf is an error, and so are two equal abscissae within four consecutive lines
    (C's cubic interpolation through them divides by zero) and an empty table. Abscissae that do not increase
    are accepted with a warning: C then walks the table from the previous pixel's position, and so do we.
    Errors are InputError lines naming ``flag``, the file and the line.
    """
    warn = warn or default_warn
    p = check_readable_file(flag, str(path))
    xs: list[float] = []
    Fs: list[float] = []
    linenos: list[int] = []
    no_F: list[int] = []
    for lineno, raw in enumerate(read_lines(flag, p), start=1):
        line = raw.strip(_STRIP)
        if not line or line.startswith("#"):
            continue
        tokens = [t for t in _DELIMS.split(line) if t][:2]
        vals = [parse_number(t) for t in tokens]
        if any(v is None for v in vals):
            raise InputError(f"{flag}: {path} line {lineno}: not a number (finite, decimal) in "
                             f"{show(raw.strip(_STRIP))}")
        if abs(vals[0]) > MAX_ABS_X:
            raise InputError(f"{flag}: {path} line {lineno}: abscissa {tokens[0]} is out of range")
        if len(vals) < 2:
            no_F.append(lineno)
            vals.append(float("nan"))
        xs.append(vals[0])
        Fs.append(vals[1])
        linenos.append(lineno)
    if not xs:
        raise InputError(f"{flag}: {path}: no data (expected lines of 'stol F')")
    if len(no_F) == len(xs):
        raise InputError(f"{flag}: {path}: no F values (every line has one column)")
    for i in range(len(xs)):
        for j in range(i + 1, min(i + WINDOW, len(xs))):
            if xs[i] == xs[j]:
                raise InputError(f"{flag}: {path} lines {linenos[i]} and {linenos[j]}: the abscissa {xs[i]:g} "
                                 "repeats within four lines (the cubic interpolation would divide by zero)")
    if no_F:
        warn(f"{path}: lines {', '.join(map(str, no_F[:10]))}{' ...' if len(no_F) > 10 else ''} have no F "
             "column: F = 0 there (as the C program reads them)")
    table = StolFile(np.array(xs, dtype=np.float64), np.array(Fs, dtype=np.float64), str(path))
    if not table.increasing:
        k = int(np.argmax(np.diff(table.x) <= 0)) + 1
        warn(f"{path} line {linenos[k]}: the abscissae do not increase; F is looked up by the C program's table "
             "walk, which depends on the previous pixel")
    return table
