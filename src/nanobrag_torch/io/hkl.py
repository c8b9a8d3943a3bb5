"""Structure factors: HKL text files and the C program's Fdump.bin cache."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_readable_file
from ..errors import InputError
from ..errors import warn as default_warn
from ._text import WS, parse_number, read_lines, show

_COLUMNS = re.compile(r"[ \t\r\f\v,]+")
_INT_BYTES = re.compile(rb"[+-]?[0-9]+")
MAX_INDEX = 2**31 - 1  # C stores indices in int
MAX_CELLS = 1 << 28  # 2 GiB of float64: far beyond any real reflection file, short of exhausting memory


@dataclass
class HKLTable:
    """F on an integer grid; ``grid`` has shape (h_range+1, k_range+1, l_range+1) incl. C's zero padding."""

    grid: np.ndarray
    h_min: int
    h_max: int
    k_min: int
    k_max: int
    l_min: int
    l_max: int
    count: int  # C's "hkls": reflections read (or h_range*k_range*l_range from a dump)
    missing: np.ndarray | None = None  # in-range cells the file did not list (they hold default_F); None: unknown

    @property
    def mins(self) -> tuple[int, int, int]:
        return self.h_min, self.k_min, self.l_min

    @property
    def maxs(self) -> tuple[int, int, int]:
        return self.h_max, self.k_max, self.l_max


def read_hkl(path: str | Path, default_F: float = 0.0, warn=None) -> HKLTable:
    """Read 'h k l F' lines (§4.5). Unlike C: '#' comments and blank lines are skipped, columns beyond
    the fourth are ignored with one warning, and non-integer indices, NaN/Inf/overflowing numbers and index
    ranges whose grid would exceed ``MAX_CELLS`` are errors (InputError naming the file and line).
    Columns are split at ASCII white space and commas; a UTF-8 byte-order mark and CRLF line ends are read
    as nothing and LF."""
    warn = warn or default_warn
    p = check_readable_file("-hkl", str(path))
    rows = []
    extra_cols = 0
    for lineno, raw in enumerate(read_lines("-hkl", p), start=1):
        line = raw.split("#", 1)[0].strip(WS)
        if not line:
            continue
        parts = _COLUMNS.split(line)
        if len(parts) < 4:
            raise InputError(f"-hkl: {path} line {lineno}: expected 'h k l F', got {show(raw.strip(WS))}")
        if len(parts) > 4:
            extra_cols += 1
        vals = [parse_number(x) for x in parts[:4]]
        if any(v is None for v in vals):
            raise InputError(f"-hkl: {path} line {lineno}: not a number (finite, decimal) in {show(raw.strip(WS))}")
        hkl, F = vals[:3], vals[3]
        if any(not v.is_integer() for v in hkl):
            raise InputError(f"-hkl: {path} line {lineno}: Miller indices must be integers, "
                             f"got {show(raw.strip(WS))}")
        if any(abs(v) > MAX_INDEX for v in hkl):
            raise InputError(f"-hkl: {path} line {lineno}: Miller index beyond +-{MAX_INDEX} "
                             f"in {show(raw.strip(WS))}")
        rows.append((int(hkl[0]), int(hkl[1]), int(hkl[2]), F))
    if extra_cols:
        warn(f"{path}: {extra_cols} lines have more than 4 columns; only h k l F are used")
    if not rows:
        raise InputError(f"-hkl: {path}: no reflections found")
    arr = np.array(rows, dtype=np.float64)
    return table_from_reflections(arr[:, :3].astype(np.int64), arr[:, 3], default_F, f"-hkl: {path}")


def table_from_reflections(hkl: np.ndarray, F: np.ndarray, default_F: float = 0.0,
                           source: str = "reflections") -> HKLTable:
    """C's grid for listed reflections ``hkl`` (N, 3) int with amplitudes ``F`` (N,): the index ranges are
    the listed extremes, the in-range cells not listed hold ``default_F`` (and are marked ``missing``), the
    extra last slab per axis is 0; duplicates: the last wins, as in C (§4.5). ``source`` starts the error
    line for a grid beyond ``MAX_CELLS``."""
    idx = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    values = np.asarray(F, dtype=np.float64).reshape(-1)
    if len(idx) == 0:
        raise InputError(f"{source}: no reflections found")
    mins = idx.min(axis=0)
    maxs = idx.max(axis=0)
    ranges = maxs - mins + 1
    cells = (int(ranges[0]) + 1) * (int(ranges[1]) + 1) * (int(ranges[2]) + 1)  # Python ints: no overflow
    if cells > MAX_CELLS:
        raise InputError(f"{source}: Miller index ranges h {mins[0]}..{maxs[0]}, k {mins[1]}..{maxs[1]}, "
                         f"l {mins[2]}..{maxs[2]} need a grid of {cells} cells (more than {MAX_CELLS})")
    grid = np.zeros(tuple(int(r) + 1 for r in ranges), dtype=np.float64)
    if default_F != 0.0:
        grid[: ranges[0], : ranges[1], : ranges[2]] = default_F
    rel = idx - mins
    grid[rel[:, 0], rel[:, 1], rel[:, 2]] = values  # duplicates: last wins (numpy assigns in order)
    missing = np.zeros(grid.shape, dtype=bool)
    missing[: ranges[0], : ranges[1], : ranges[2]] = True
    missing[rel[:, 0], rel[:, 1], rel[:, 2]] = False
    return HKLTable(grid, int(mins[0]), int(maxs[0]), int(mins[1]), int(maxs[1]), int(mins[2]), int(maxs[2]),
                    count=len(idx), missing=missing)


def write_hkl(path: str | Path, table: HKLTable) -> None:
    """Write the table as C's HKL text, one 'h k l F' line per listed cell (every in-range cell when the
    table does not know which were listed, e.g. one read from a dump), h then k then l ascending. F is
    written in the shortest form that reads back as the same double (C reads it with %lg), so C's grid
    equals ours: same listed extremes, same values, default_F in the same unlisted cells."""
    ranges = [hi - lo + 1 for lo, hi in zip(table.mins, table.maxs)]
    listed = np.ones(ranges, dtype=bool) if table.missing is None else \
        ~table.missing[: ranges[0], : ranges[1], : ranges[2]]
    rel = np.argwhere(listed)
    values = table.grid[rel[:, 0], rel[:, 1], rel[:, 2]]
    idx = rel + np.array(table.mins, dtype=np.int64)
    lines = [f"{h} {k} {l} {F!r}\n" for (h, k, l), F in zip(idx.tolist(), values.tolist())]
    with open(path, "w", encoding="ascii") as fh:
        fh.writelines(lines)


def write_fdump(path: str | Path, table: HKLTable) -> None:
    """Write C's Fdump.bin: '%d %d %d %d %d %d\\n\\f' header then native float64 grid, l fastest."""
    header = f"{table.h_min} {table.h_max} {table.k_min} {table.k_max} {table.l_min} {table.l_max}\n\f"
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(np.ascontiguousarray(table.grid, dtype="<f8").tobytes())


def read_fdump(path: str | Path) -> HKLTable:
    """Read a C Fdump.bin. The header is parsed up to its form feed (C's scanf may misalign; we do not):
    six ASCII decimal integers; the grid they give must fit ``MAX_CELLS`` and the file must hold it."""
    p = check_readable_file("Fdump", str(path))
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"Fdump: cannot read {path}: {exc.strerror or exc}") from None
    ff = data.find(b"\f")
    if ff < 0:
        raise InputError(f"{path}: not an Fdump file (no header terminator)")
    tokens = data[:ff].split()
    if not all(_INT_BYTES.fullmatch(t) for t in tokens):
        raise InputError(f"{path}: malformed Fdump header")
    vals = [int(t) for t in tokens]
    if len(vals) != 6:
        raise InputError(f"{path}: malformed Fdump header (expected 6 integers)")
    h_min, h_max, k_min, k_max, l_min, l_max = vals
    shape = (h_max - h_min + 2, k_max - k_min + 2, l_max - l_min + 2)
    if min(shape) < 1:
        raise InputError(f"{path}: malformed Fdump header (empty index range)")
    if max(abs(v) for v in vals) > MAX_INDEX or shape[0] * shape[1] * shape[2] > MAX_CELLS:
        raise InputError(f"{path}: malformed Fdump header (index range too large: {' '.join(map(str, vals))})")
    n = shape[0] * shape[1] * shape[2]
    body = data[ff + 1 :]
    if len(body) < 8 * n:
        raise InputError(f"{path}: truncated Fdump file ({len(body)} bytes of data, expected {8 * n})")
    grid = np.frombuffer(body[: 8 * n], dtype="<f8").reshape(shape).copy()
    count = (shape[0] - 1) * (shape[1] - 1) * (shape[2] - 1)
    return HKLTable(grid, h_min, h_max, k_min, k_max, l_min, l_max, count=count)
