"""Source list (-sourcefile): X Y Z weight lambda per line."""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..checks import check_readable_file
from ..errors import InputError
from ..errors import warn as default_warn
from ._text import parse_number, read_lines, show

_DELIMS = re.compile(r"[ \t,;:!]+")
_STRIP = " \t,;:!\r\n"


def read_sourcefile(path: str | Path, warn=None) -> list[tuple[float, float, float, float, float]]:
    """Rows of (X, Y, Z, weight, lambda) with NaN for missing columns (§5.1).

    Differences from C, by design: '#' comment lines and blank lines are skipped (one warning naming the
    lines), CRLF and a missing final newline end a line normally, and a non-numeric token is an error.
    """
    return read_sourcefile_lines(path, warn)[0]


def read_sourcefile_lines(path: str | Path, warn=None) -> tuple[list[tuple[float, float, float, float, float]],
                                                               list[int]]:
    """``read_sourcefile``'s rows and the line number (from 1) of each, for messages naming the line."""
    warn = warn or default_warn
    p = check_readable_file("-sourcefile", str(path))
    rows, linenos = [], []
    comments = []
    for lineno, raw in enumerate(read_lines("-sourcefile", p), start=1):
        line = raw.strip(_STRIP)
        if not line:
            continue
        if line.startswith("#"):
            comments.append(lineno)
            continue
        tokens = [t for t in _DELIMS.split(line) if t]
        vals = []
        for t in tokens[:5]:
            v = parse_number(t)
            if v is None:
                raise InputError(f"-sourcefile: {path} line {lineno}: not a number (finite, decimal): {show(t)}")
            vals.append(v)
        vals += [math.nan] * (5 - len(vals))
        rows.append(tuple(vals))
        linenos.append(lineno)
    if comments:
        warn(f"{path}: skipped comment lines {', '.join(map(str, comments))} "
             "(the C program reads them as extra sources at the origin with zero wavelength)")
    if not rows:
        raise InputError(f"-sourcefile: {path}: no sources found")
    return rows, linenos
