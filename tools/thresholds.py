"""Parity thresholds: the one place that says how close our image must be to the C image.

Used by the golden-corpus tests, the Phase D pipeline and the parity matrix.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria for one float-image comparison (C is the reference)."""

    min_correlation: float
    max_sum_ratio_dev: float  # |sum(py)/sum(c) - 1|
    max_abs_diff_rel: float | None = None  # max|py - c| / max(c); None = not checked

    def as_dict(self) -> dict:
        return asdict(self)


# Golden-corpus / parity-matrix thresholds, per dtype of our render.
FLOAT_IMAGE = {
    "float64": Thresholds(min_correlation=0.999999, max_sum_ratio_dev=1e-5, max_abs_diff_rel=1e-4),
    "float32": Thresholds(min_correlation=0.9999, max_sum_ratio_dev=1e-3, max_abs_diff_rel=1e-2),
}

# SMV integer images (intfile): every pixel within this many counts; header keys/values equal except dates.
SMV_MAX_PIXEL_DIFF = 1
# PGM images: every byte within this many grey levels (truncation of values near an integer).
PGM_MAX_PIXEL_DIFF = 1

# The limits above are the float64 acceptance gate. A float32 render may move the float image by up to
# FLOAT_IMAGE["float32"].max_abs_diff_rel of max(C); the intfile autoscale maps max(C) to INTFILE_AUTOSCALE_MAX
# counts, so the float32 SMV gate allows what that float gate allows (plus the rounding count), no more.
INTFILE_AUTOSCALE_MAX = 55000  # C: intfile scale = 55000 / max_I when -scale is not given
SMV_MAX_PIXEL_DIFF_BY_DTYPE = {
    "float64": SMV_MAX_PIXEL_DIFF,
    "float32": SMV_MAX_PIXEL_DIFF + math.ceil(FLOAT_IMAGE["float32"].max_abs_diff_rel * INTFILE_AUTOSCALE_MAX),
}
PGM_MAX_PIXEL_DIFF_BY_DTYPE = {"float64": PGM_MAX_PIXEL_DIFF, "float32": 2}
# "# pixels scaled by <s>" in a PGM header: C prints ~6 significant digits; float32 statistics drift more.
PGM_SCALE_RTOL_BY_DTYPE = {"float64": 1e-5, "float32": 1e-3}
# SMV header values that differ as text are compared as numbers (comma lists too) within this tolerance;
# C prints them with 6 significant digits, and a float32 geometry moves the last one.
SMV_HEADER_RTOL_BY_DTYPE = {"float64": 1e-6, "float32": 1e-5}

# Default gate of the Phase D evidence pipeline (a case config may override it).
PHASE_D_GATE = Thresholds(min_correlation=0.99, max_sum_ratio_dev=5e-3, max_abs_diff_rel=None)


def for_dtype(dtype: str) -> Thresholds:
    """Thresholds for a render done in ``dtype`` ('float32' or 'float64')."""
    try:
        return FLOAT_IMAGE[dtype]
    except KeyError:
        raise ValueError(f"no parity thresholds for dtype {dtype!r}; expected one of {sorted(FLOAT_IMAGE)}") from None


def _per_dtype(table: dict, dtype: str, what: str):
    try:
        return table[dtype]
    except KeyError:
        raise ValueError(f"no {what} for dtype {dtype!r}; expected one of {sorted(table)}") from None


def smv_max_pixel_diff(dtype: str) -> int:
    """Largest allowed |pixel difference| of an SMV (intfile/noisefile) image for a render in ``dtype``."""
    return _per_dtype(SMV_MAX_PIXEL_DIFF_BY_DTYPE, dtype, "SMV pixel tolerance")


def pgm_max_pixel_diff(dtype: str) -> int:
    """Largest allowed |grey-level difference| of a PGM image for a render in ``dtype``."""
    return _per_dtype(PGM_MAX_PIXEL_DIFF_BY_DTYPE, dtype, "PGM pixel tolerance")


def pgm_scale_rtol(dtype: str) -> float:
    """Relative tolerance on the PGM header's "pixels scaled by" value for a render in ``dtype``."""
    return _per_dtype(PGM_SCALE_RTOL_BY_DTYPE, dtype, "PGM scale tolerance")


def smv_header_rtol(dtype: str) -> float:
    """Relative tolerance on numeric SMV header values for a render in ``dtype``."""
    return _per_dtype(SMV_HEADER_RTOL_BY_DTYPE, dtype, "SMV header tolerance")
