"""Tests of the comparison pictures (tools.compare_images): what each panel says, not just that a PNG exists."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from tools.compare_images import compare_figure, diff_label, profile_pixel, write_compare_png, write_profile_png


def _spots(shape=(40, 60)) -> np.ndarray:
    s, f = np.mgrid[0 : shape[0], 0 : shape[1]]
    return 1e-3 + 100.0 * np.exp(-((s - 20.0) ** 2 + (f - 30.0) ** 2) / 8.0)


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_compare_png_is_three_panels_at_the_stated_size(tmp_path):
    # Three panels side by side at figsize 13.5x4.6 in and 80 dpi: 1080x368 px; with profiles, three rows.
    c = _spots()
    out = write_compare_png(c, c * 1.01, tmp_path / "sub" / "case.png", title="case")
    assert out == tmp_path / "sub" / "case.png" and Image.open(out).size == (1080, 368)
    out = write_compare_png(c, c * 1.01, tmp_path / "p.png", with_profiles=True)
    assert Image.open(out).size == (1080, 1104)


def test_difference_label_says_identical_or_where_and_how_much():
    # The label reads as a sentence: identical images say so and count the pixels; otherwise the largest
    # |difference|, its [slow, fast] pixel and how many pixels differ (issue 10.9: not "max|d| 0, 0 px").
    c = np.ones((4, 5))
    assert diff_label(c - c) == "PyTorch - C\nidentical: all 20 pixels equal"
    d = c.copy()
    d[2, 3] += 0.25
    d[0, 0] -= 0.125
    assert diff_label(d - c) == "PyTorch - C (linear)\nmax |diff| 0.25 at [2, 3]; 2 of 20 pixels differ"
    d[1, 1] = np.nan
    assert diff_label(d - c).endswith("; 1 pixels NaN/Inf in one image")


def test_a_flat_case_gets_profiles_and_histograms_with_plain_numbers():
    # Issue 10.9: Phase D's case is nearly flat, so the picture adds line profiles and histograms of both
    # images and of the difference, and every axis carries plain numbers (no offset like "+2.7e-3" to add).
    c = np.full((32, 32), 0.0027) + 1e-6 * np.arange(32)[None, :]
    fig = compare_figure(c, c.copy(), with_profiles=True)
    fig.canvas.draw()
    titles = _titles(fig)
    assert "PyTorch - C\nidentical: all 1024 pixels equal" in titles
    for want in ("intensity, row slow=", "intensity, column fast=", "histogram of intensity",
                 "PyTorch - C, row slow=", "PyTorch - C, column fast=", "histogram of PyTorch - C"):
        assert any(t.startswith(want) for t in titles), want
    plots = [ax for ax in fig.axes if ax.get_title().startswith(("intensity", "PyTorch - C,", "histogram"))]
    assert len(plots) == 6
    for ax in plots:
        labels = [t.get_text().replace("\u2212", "-") for t in ax.get_yticklabels() if t.get_text()]
        values = [float(x) for x in labels]  # raises unless every tick label is a plain number
        assert len(values) >= 2 and ax.yaxis.get_offset_text().get_text() == ""
    # The row profile is the image row itself: 0.0027 + 1e-6 * fast, so its y range spans 3.1e-5.
    row = next(ax for ax in plots if ax.get_title().startswith("intensity, row"))
    ydata = row.get_lines()[0].get_ydata()
    assert ydata[0] == pytest.approx(0.0027) and ydata[-1] - ydata[0] == pytest.approx(31e-6)
    plt.close(fig)


@pytest.mark.parametrize(
    "c, py, diff_title",
    [
        (np.zeros((8, 8)), np.zeros((8, 8)), "PyTorch - C\nidentical: all 64 pixels equal"),  # no log scale
        (np.full((8, 8), np.nan), np.ones((8, 8)), "; 64 pixels NaN/Inf in one image"),  # C's NaN records
        (np.ones((8, 8)), np.ones((4, 8)), None),  # shape mismatch: no difference panel, a note instead
    ],
)
def test_degenerate_images_still_draw(c, py, diff_title):
    # A broken PyTorch image must still give a picture (the matrix draws every failed case).
    fig = compare_figure(c, py)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    if diff_title is None:
        assert any(t.startswith("shape mismatch") for t in texts)
    else:
        assert any(t.endswith(diff_title) for t in _titles(fig))
    plt.close(fig)


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
