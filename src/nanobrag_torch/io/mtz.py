"""Structure factors from merged MTZ data through gemmi (issue 23): amplitudes (F), intensities (I -> sqrt I)
or anomalous pairs (F(+)/F(-), I(+)/I(-)), expanded to P1 with both mates (``io.p1.expand_to_p1``).

``labels`` names the columns as on a CCP4 command line, comma-separated: ``F,SIGF``, ``I,SIGI``,
``F(+),SIGF(+),F(-),SIGF(-)`` or just ``F(+),F(-)``. Sigma columns (types Q, L, M) are accepted and not used;
what remains must be one amplitude (type F) or intensity (J) column, or a pair of anomalous amplitudes (G) or
intensities (K), the (+) column first. Without labels the first F column is taken, else the first J column,
else the first pair of G, else of K columns. A negative intensity becomes F = 0; a missing value (NaN) lists
nothing (the run's default_F fills it).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..checks import check_readable_file
from ..errors import InputError
from .p1 import Reflections, expand_to_p1, symmetry_rotations

if TYPE_CHECKING:  # gemmi is imported where a file is read: runs without -mtz/-pdb do not load it
    import gemmi

SIGMA_TYPES = "QLM"
VALUE_KINDS = {"F": 1, "J": 1, "G": 2, "K": 2}  # column type -> columns it takes (G, K: the (+) and (-) pair)


def _check_header_position(p: Path, path, flag: str) -> None:
    """An MTZ file starts with 'MTZ ' and the (1-based, 4-byte word) position of its text header, which must lie
    inside the file; gemmi spends seconds on a file whose position points far beyond its end."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(12)
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    if len(head) < 12 or head[:4] != b"MTZ ":
        raise InputError(f"{flag}: {path}: not a readable MTZ file (it does not start with 'MTZ ')")
    little = head[8] & 0xF0 == 0x40  # the machine stamp: 0x4? little-endian IEEE, 0x1? big-endian
    position = int.from_bytes(head[4:8], "little" if little else "big", signed=True)
    if not 0 < (position - 1) * 4 < size:
        raise InputError(f"{flag}: {path}: not a readable MTZ file (its header position {position} lies outside "
                         f"the {size}-byte file)")


def _open(path: str | Path, flag: str) -> gemmi.Mtz:
    import gemmi

    p = check_readable_file(flag, str(path))
    _check_header_position(p, path, flag)
    try:
        mtz = gemmi.read_mtz_file(str(p))
    except (RuntimeError, ValueError, OSError, IndexError) as exc:
        text = str(exc).strip().splitlines()
        raise InputError(f"{flag}: {path}: not a readable MTZ file ({text[0] if text else 'unknown error'})") \
            from None
    if mtz.spacegroup is None:
        raise InputError(f"{flag}: {path}: no space group in the file")
    if len(mtz.batches) > 0:
        raise InputError(f"{flag}: {path}: unmerged data ({len(mtz.batches)} batches); give merged data")
    if mtz.nreflections == 0:
        raise InputError(f"{flag}: {path}: no reflections in the file")
    return mtz


def _choose_columns(mtz: gemmi.Mtz, labels: str | None, path, flag: str) -> list:
    """The value columns (one F or J, or a G or K pair) the labels name, or the first such by default."""
    listing = ", ".join(f"{c.label}({c.type})" for c in mtz.columns if c.type not in "HI")
    if labels is None:
        for kind, count in VALUE_KINDS.items():
            cols = mtz.columns_with_type(kind)
            if len(cols) >= count:
                return list(cols)[:count]
        raise InputError(f"{flag}: {path}: no amplitude or intensity column (columns: {listing}); "
                         "name them with -mtz_labels")
    names = [x.strip() for x in labels.split(",") if x.strip()]
    cols = []
    for name in names:
        col = mtz.column_with_label(name)
        if col is None:
            raise InputError(f"-mtz_labels: {path} has no column {name!r} (columns: {listing})")
        if col.type in SIGMA_TYPES:
            continue
        if col.type not in VALUE_KINDS:
            raise InputError(f"-mtz_labels: column {name!r} of {path} is of type {col.type}, not an amplitude (F), "
                             "intensity (J) or anomalous pair (G, K)")
        cols.append(col)
    types = "".join(c.type for c in cols)
    if types not in ("F", "J", "GG", "KK"):
        raise InputError(f"-mtz_labels: {labels!r} names {len(cols)} value columns of types {types or 'none'} in "
                         f"{path}; expected F,SIGF or I,SIGI or F(+),F(-) (I(+),I(-))")
    return cols


def read_mtz(path: str | Path, labels: str | None = None, flag: str = "-mtz", warn=None) -> Reflections:
    """The P1 amplitudes of a merged MTZ file (see the module doc), in the cell of the chosen columns' dataset
    (the file's cell where that has none); InputError naming the flag and file for a bad file or labels."""
    warn = warn or (lambda msg: None)
    mtz = _open(path, flag)
    cols = _choose_columns(mtz, labels, path, flag)
    values = [np.array(c.array, dtype=np.float64) for c in cols]
    if cols[0].type in "JK":
        negative = int(sum(np.count_nonzero(v < 0) for v in values))
        if negative:
            warn(f"{path}: {negative} negative intensities in {', '.join(c.label for c in cols)} taken as F = 0")
        values = [np.sqrt(np.maximum(v, 0.0)) for v in values]  # NaN stays NaN
    f_plus = values[0]
    f_minus = values[1] if len(values) == 2 else values[0]
    cell = cols[0].dataset.cell if cols[0].dataset.cell.is_crystal() else mtz.cell
    hkl, F = expand_to_p1(mtz.make_miller_array(), f_plus, f_minus, symmetry_rotations(mtz.spacegroup))
    if len(F) == 0:
        raise InputError(f"{flag}: {path}: no values in {', '.join(c.label for c in cols)}")
    return Reflections(hkl, F, (cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma), mtz.spacegroup.hm,
                       f"{flag}: {path}")
