"""Metrics and the Phase D gate on synthetic images with known correlation and ratios.

tools.metrics is the one metric implementation; these tests pin the numbers the pipeline reports and the
gate it applies (configs/phase_d_source_weights.toml [gate]: r >= 0.99, |sum_ratio - 1| <= 5e-3).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tools.evidence.case import load_case
from tools.evidence.steps import image_facts
from tools.metrics import compare_images, verdict

GATE = load_case().gate


def _pair(r: float, shape=(32, 32), seed=0):
    """Images c, py with Pearson correlation exactly ``r``: py = m + r*x + sqrt(1-r^2)*y with x, y zero-mean,
    orthogonal and of equal norm, c = m + x."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape[0] * shape[1])
    y = rng.standard_normal(x.size)
    x -= x.mean()
    y -= y.mean()
    y -= x * (x @ y) / (x @ x)  # orthogonal to x, still zero-mean
    y *= np.linalg.norm(x) / np.linalg.norm(y)
    m = 10.0
    c = m + x
    py = m + r * x + math.sqrt(1 - r * r) * y
    return c.reshape(shape), py.reshape(shape)


@pytest.mark.parametrize("r", [0.5, 0.98, 0.995])
def test_correlation_is_the_constructed_value(r):
    c, py = _pair(r)
    m = compare_images(c, py)
    assert m["correlation"] == pytest.approx(r, abs=1e-12)
    assert m["sum_ratio"] == pytest.approx(1.0, abs=1e-12)  # both have mean m: sums equal


def test_gate_on_correlation():
    # r = 0.98 fails the 0.99 gate, r = 0.995 passes it (sums equal in both).
    assert verdict(compare_images(*_pair(0.98)), GATE)[0] is False
    assert verdict(compare_images(*_pair(0.995)), GATE) == (True, [])


@pytest.mark.parametrize("scale, passes", [(1.004, True), (0.996, True), (1.006, False), (0.5, False)])
def test_gate_on_sum_ratio(scale, passes):
    # py = scale * c: r = 1 exactly, sum_ratio = scale; the gate allows |scale - 1| <= 5e-3.
    c = _pair(0.5)[0]
    m = compare_images(c, scale * c)
    assert m["sum_ratio"] == pytest.approx(scale, rel=1e-12) and m["correlation"] == pytest.approx(1.0)
    ok, reasons = verdict(m, GATE)
    assert ok is passes
    assert passes or "sum_ratio" in reasons[0]


def test_totals_maxima_rmse_and_worst_pixel():
    c = np.ones((8, 8))
    py = c.copy()
    py[3, 5] += 0.8  # one pixel off by 0.8
    m = compare_images(c, py)
    assert (m["sum_c"], m["sum_py"]) == (64.0, pytest.approx(64.8))
    assert (m["max_c"], m["max_py"]) == (1.0, pytest.approx(1.8))
    assert m["max_abs_diff"] == pytest.approx(0.8) and m["max_abs_diff_pixel"] == [3, 5]
    assert m["rmse"] == pytest.approx(0.8 / 8)  # sqrt(0.64 / 64)
    assert m["shape"] == [8, 8]


def test_nan_pixels_are_counted_and_fail_the_gate():
    c = _pair(0.999)[0]
    py = c.copy()
    py[0, :2] = np.nan
    m = compare_images(c, py)
    assert (m["nan_c"], m["nan_py"]) == (0, 2)
    ok, reasons = verdict(m, GATE)
    assert not ok and "NaN" in reasons[0]


def test_stdlib_image_facts_agree_with_numpy(tmp_path):
    # The C CLI step checks its image without numpy (it may run on a bare interpreter).
    img = _pair(0.7, (4, 6))[0].astype("<f4")
    img[1, 2] = np.nan
    img[2, 3] = np.inf
    p = tmp_path / "x.bin"
    img.tofile(p)
    facts = image_facts(p, (4, 6))
    finite = img[np.isfinite(img)].astype(np.float64)
    assert (facts["nan"], facts["inf"], facts["all_zero"]) == (1, 1, False)
    assert facts["sum"] == pytest.approx(finite.sum(), rel=1e-12) and facts["max"] == pytest.approx(finite.max())
    np.zeros((4, 6), "<f4").tofile(p)
    assert image_facts(p, (4, 6))["all_zero"] is True
    assert image_facts(p, (5, 6)) == {"bytes": 96, "expected_bytes": 120}  # wrong size: nothing else read
