"""How close is close enough: the one table of tolerances, used by the parity checks and the unit tests.

* The golden-corpus tests, the parity matrix and the device check judge our images against C's with
  ``tolerances(dtype)`` (float image, SMV and PGM pixels, header numbers).
* The Phase D evidence gate is ``PHASE_D_GATE`` (a case config may override it).
* Unit tests compare one tensor computation with an independent one (a closed form, the other dtype, the
  other device) to ``tolerances(dtype).tensor_rtol`` (``tests/conftest.py`` exposes it as ``tol``).
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


@dataclass(frozen=True)
class Tolerances:
    """Everything that may differ between two renders of one case when ours runs in one dtype."""

    float_image: Thresholds
    smv_max_pixel_diff: int  # |count difference| of SMV (int and noise) images
    pgm_max_pixel_diff: int  # |grey-level difference| of PGM images (truncation near an integer)
    pgm_scale_rtol: float  # the PGM header's "pixels scaled by" (C prints ~6 significant digits)
    smv_header_rtol: float  # numeric SMV header values (6 significant digits; float32 geometry moves the last)
    tensor_rtol: float  # unit tests: a tensor against an independent computation of it

    def as_dict(self) -> dict:
        return asdict(self)


INTFILE_AUTOSCALE_MAX = 55000  # C: intfile scale = 55000 / max_I when -scale is not given

_FLOAT64 = Thresholds(min_correlation=0.999999, max_sum_ratio_dev=1e-5, max_abs_diff_rel=1e-4)
_FLOAT32 = Thresholds(min_correlation=0.9999, max_sum_ratio_dev=1e-3, max_abs_diff_rel=1e-2)

TOLERANCES = {
    # The float64 limits are the acceptance gate: a count of rounding in the integer images, 1e-6 in headers.
    "float64": Tolerances(_FLOAT64, smv_max_pixel_diff=1, pgm_max_pixel_diff=1, pgm_scale_rtol=1e-5,
                          smv_header_rtol=1e-6, tensor_rtol=1e-12),
    # A float32 render may move the float image by max_abs_diff_rel of max(C); the intfile autoscale maps
    # max(C) to INTFILE_AUTOSCALE_MAX counts, so the SMV gate allows what the float gate allows (plus the
    # rounding count), no more. Tensors: a few float32 ulps.
    "float32": Tolerances(_FLOAT32, smv_max_pixel_diff=1 + math.ceil(_FLOAT32.max_abs_diff_rel * INTFILE_AUTOSCALE_MAX),
                          pgm_max_pixel_diff=2, pgm_scale_rtol=1e-3, smv_header_rtol=1e-5, tensor_rtol=2e-6),
}
DTYPES = tuple(TOLERANCES)

# Default gate of the Phase D evidence pipeline: a smooth, nearly flat image, so r is the sharp test.
PHASE_D_GATE = Thresholds(min_correlation=0.99, max_sum_ratio_dev=5e-3, max_abs_diff_rel=None)


def tolerances(dtype) -> Tolerances:
    """The tolerances for a computation done in ``dtype`` ('float32'/'float64' or a torch dtype)."""
    name = str(dtype).removeprefix("torch.")
    try:
        return TOLERANCES[name]
    except KeyError:
        raise ValueError(f"no tolerances for dtype {dtype!r}; expected one of {list(DTYPES)}") from None


def for_dtype(dtype) -> Thresholds:
    """The float-image parity thresholds for a render done in ``dtype``."""
    return tolerances(dtype).float_image
