"""Tests of the comparison pictures (tools.compare_images)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tools.compare_images import profile_pixel, write_compare_png, write_profile_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _spots(shape=(40, 60)) -> np.ndarray:
    s, f = np.mgrid[0 : shape[0], 0 : shape[1]]
    return 1e-3 + 100.0 * np.exp(-((s - 20.0) ** 2 + (f - 30.0) ** 2) / 8.0)


def test_compare_png_is_a_three_panel_png(tmp_path):
    # Three panels side by side at figsize 13.5x4.6 in and 80 dpi: a PNG 1080 px wide, 368 px high.
    c = _spots()
    out = write_compare_png(c, c * 1.01, tmp_path / "sub" / "case.png", title="case")
    assert out == tmp_path / "sub" / "case.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert Image.open(out).size == (1080, 368)


@pytest.mark.parametrize(
    "c, py",
    [
        (np.zeros((8, 8)), np.zeros((8, 8))),  # all-zero images: no log scale possible
        (np.full((8, 8), np.nan), np.ones((8, 8))),  # all-NaN reference (C's NaN records)
        (np.ones((8, 8)), np.ones((4, 8))),  # shape mismatch: drawn without a difference panel
    ],
)
def test_compare_png_degenerate_images_still_draw(tmp_path, c, py):
    # A broken PyTorch image must still give a picture (the matrix draws every failed case).
    out = write_compare_png(c, py, tmp_path / "d.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_compare_png_rejects_non_2d(tmp_path):
    # Images are [slow][fast]; a flat float file must be reshaped by the caller first.
    with pytest.raises(ValueError, match="2-D"):
        write_compare_png(np.zeros(16), np.zeros(16), tmp_path / "x.png")


def test_profile_pixel_is_largest_difference_else_brightest():
    # The only differing pixel is (3, 7), so the profiles must go through it; with equal images they go
    # through the brightest C pixel (20, 30), the spot centre of _spots().
    c = _spots()
    py = c.copy()
    py[3, 7] += 5.0
    assert profile_pixel(c, py) == (3, 7)
    assert profile_pixel(c, c) == (20, 30)


def test_profile_png_written_and_shape_checked(tmp_path):
    # Two profile panels at 12x3.8 in, 80 dpi: 960x304 px; mismatched shapes cannot be profiled.
    c = _spots()
    out = write_profile_png(c, c, tmp_path / "p.png", title="p")
    assert Image.open(out).size == (960, 304)
    with pytest.raises(ValueError, match="one shape"):
        write_profile_png(c, c[:10], tmp_path / "q.png")
