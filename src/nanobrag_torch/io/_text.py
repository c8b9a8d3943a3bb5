"""Shared pieces of the text-file readers: decoding, line splitting and a strict number parser.

The C program reads these files with scanf/strtod, which know only ASCII digits and ASCII white space;
Python's ``float`` also takes underscores ('1_0'), non-ASCII digits and 'infinity', and ``str.split`` and
``str.splitlines`` also split on non-ASCII spaces and on form feeds, so the readers use these instead.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..errors import InputError

# ASCII white space as C's isspace(); the line structure is given by '\n' alone (a trailing '\r' is dropped).
WS = " \t\r\f\v"
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def read_lines(flag: str, p: Path) -> list[str]:
    """The file as text lines: UTF-8 (undecodable bytes become U+FFFD, so they fail as numbers), a leading
    byte-order mark dropped, split at '\\n' with a trailing '\\r' removed (CRLF files read like LF files)."""
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{flag}: cannot read {p}: {exc.strerror or exc}") from None
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def parse_number(token: str) -> float | None:
    """A finite decimal number as C's strtod reads it (ASCII only), or None: not a number, NaN, Inf or
    out of the double range."""
    if not _NUMBER.fullmatch(token):
        return None
    value = float(token)
    return value if math.isfinite(value) else None


def show(text: str, limit: int = 60) -> str:
    """``text`` for a one-line message: repr (so control characters cannot break the line), shortened."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 3] + "..."
