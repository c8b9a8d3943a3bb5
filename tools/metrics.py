"""Image-comparison metrics: the one implementation used by tests, the pipeline and the parity matrix."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tools.thresholds import Thresholds


def read_float_image(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a raw little-endian float32 image (C nanoBragg -floatfile layout)."""
    data = np.fromfile(path, dtype="<f4")
    if shape is not None:
        if data.size != shape[0] * shape[1]:
            raise ValueError(f"{path}: {data.size} floats, expected {shape[0]}x{shape[1]}")
        data = data.reshape(shape)
    return data


def compare_images(c: np.ndarray, py: np.ndarray) -> dict:
    """Metrics of ``py`` against the reference ``c`` (same shape): totals, r, ratios, errors, NaNs."""
    c = np.asarray(c, dtype=np.float64)
    py = np.asarray(py, dtype=np.float64)
    if c.shape != py.shape:
        raise ValueError(f"shape mismatch: C {c.shape} vs PyTorch {py.shape}")
    nan_c = int(np.isnan(c).sum())
    nan_py = int(np.isnan(py).sum())
    finite = np.isfinite(c) & np.isfinite(py)
    cf, pf = c[finite], py[finite]
    sum_c, sum_py = float(cf.sum()), float(pf.sum())
    if sum_c != 0.0:
        sum_ratio = sum_py / sum_c
    else:
        sum_ratio = 1.0 if sum_py == 0.0 else math.inf
    if cf.size > 1 and cf.std() > 0 and pf.std() > 0:
        corr = float(np.corrcoef(cf, pf)[0, 1])
    elif np.array_equal(cf, pf) and np.array_equal(np.isnan(c), np.isnan(py)):
        corr = 1.0  # identical constant (or identically all-NaN) images: perfectly correlated by definition
    else:
        corr = float("nan")
    diff = np.abs(py - c)
    diff[~finite] = 0.0
    imax = int(np.argmax(diff)) if diff.size else 0
    max_c = float(np.abs(cf).max()) if cf.size else 0.0
    max_abs = float(diff.flat[imax]) if diff.size else 0.0
    return {
        "shape": list(c.shape),
        "sum_c": sum_c,
        "sum_py": sum_py,
        "max_c": float(cf.max()) if cf.size else float("nan"),
        "max_py": float(pf.max()) if pf.size else float("nan"),
        "sum_ratio": sum_ratio,
        "correlation": corr,
        "rmse": float(np.sqrt(np.mean((pf - cf) ** 2))) if cf.size else float("nan"),
        "max_abs_diff": max_abs,
        "max_abs_diff_rel": (max_abs / max_c) if max_c > 0 else (0.0 if max_abs == 0 else math.inf),
        "max_abs_diff_pixel": [int(i) for i in np.unravel_index(imax, c.shape)] if diff.size else [],
        "nan_c": nan_c,
        "nan_py": nan_py,
    }


def verdict(metrics: dict, thresholds: Thresholds) -> tuple[bool, list[str]]:
    """Apply ``thresholds`` to ``metrics``; return (passed, reasons for failure)."""
    reasons = []
    if metrics["nan_c"] or metrics["nan_py"]:
        if metrics["nan_c"] != metrics["nan_py"]:
            reasons.append(f"NaN pixels differ: C {metrics['nan_c']}, PyTorch {metrics['nan_py']}")
    r = metrics["correlation"]
    if not (r >= thresholds.min_correlation):
        reasons.append(f"correlation {r:.9g} < {thresholds.min_correlation}")
    dev = abs(metrics["sum_ratio"] - 1.0)
    if not (dev <= thresholds.max_sum_ratio_dev):
        reasons.append(f"|sum_ratio-1| {dev:.3g} > {thresholds.max_sum_ratio_dev}")
    if thresholds.max_abs_diff_rel is not None:
        rel = metrics["max_abs_diff_rel"]
        if not (rel <= thresholds.max_abs_diff_rel):
            reasons.append(
                f"max|d|/max(C) {rel:.3g} > {thresholds.max_abs_diff_rel} at pixel {metrics['max_abs_diff_pixel']}"
            )
    return (not reasons), reasons
