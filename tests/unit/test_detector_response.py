"""The detector response of noisify (issue 14): PSF kernels, each noise model's statistics, the ADC, the API.

Expected values come from independent reasoning (closed forms, numerical integration, the distributions'
moments), never from our own output. Statistical bounds are 5 sigma of the estimator on a fixed seed.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nanobrag_torch.response import detector as dr

N = 200  # images of N x N pixels for the statistics


def _pixel_integral(density, dx, dy, steps=400):
    """Midpoint rule of a 2-D density over the unit pixel centred at (dx, dy)."""
    t = (np.arange(steps) + 0.5) / steps - 0.5
    x, y = np.meshgrid(dx + t, dy + t)
    return float(density(x, y).mean())


# ------------------------------------------------------------------------------------------------ PSF
def test_gauss_kernel_is_the_product_of_two_1d_pixel_integrals():
    # A 2-D Gaussian separates: its pixel integral is P(dx) P(dy) with P(d) = (erf(k (d+1/2)) - erf(k (d-1/2)))/2,
    # k = 2 sqrt(ln 2)/fwhm (the unit-FWHM Gaussian's 1-D CDF). Outside the disc dx^2 + dy^2 <= r^2: zero.
    fwhm, r = 1.7, 4
    ker = dr.psf_kernel("gauss", fwhm, r)
    k = 2 * math.sqrt(math.log(2)) / fwhm
    p = {d: 0.5 * (math.erf(k * (d + 0.5)) - math.erf(k * (d - 0.5))) for d in range(-r, r + 1)}
    assert ker.shape == (2 * r + 1, 2 * r + 1)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            want = p[dx] * p[dy] if dx * dx + dy * dy <= r * r else 0.0
            # C's corner differences cancel in the far pixels: agreement to ~1e-10 relative there
            assert ker[r + dy, r + dx] == pytest.approx(want, rel=1e-8, abs=1e-17)


def test_gauss_kernel_is_normalised():
    # A radius of several FWHM holds all of the unit volume.
    assert dr.psf_kernel("gauss", 2.0, 12).sum() == pytest.approx(1.0, abs=1e-12)


def test_fiber_kernel_matches_numerical_integration_and_its_spill():
    # The fiber PSF g/(2 pi) (g^2 + r^2)^(-3/2) integrated over pixels by the midpoint rule; its volume beyond
    # radius R is g/sqrt(g^2 + R^2), so a kernel of radius R holds about 1 - g/sqrt(g^2 + R^2).
    fwhm = 2.0
    g = fwhm * 0.652383013252053
    density = lambda x, y: g / (2 * math.pi) * (g * g + x * x + y * y) ** -1.5  # noqa: E731
    ker = dr.psf_kernel("fiber", fwhm, 30)
    for dx, dy in [(0, 0), (1, 0), (2, -3), (-5, 4)]:
        assert ker[30 + dy, 30 + dx] == pytest.approx(_pixel_integral(density, dx, dy), rel=2e-5)
    assert ker.sum() == pytest.approx(1 - g / math.hypot(g, 30.0), abs=2e-3)
    assert ker[0, 0] == 0.0 and ker[30, 0] > 0.0  # the corner is outside the disc, the edge midpoint inside


@pytest.mark.parametrize("kind", dr.PSF_KINDS)
def test_kernel_radius_and_symmetry(kind):
    r = 5
    ker = dr.psf_kernel(kind, 1.5, r)
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = dx * dx + dy * dy <= r * r
    assert np.all(ker[~inside] == 0.0) and np.all(ker[inside] > 0.0)
    for flipped in (ker.T, ker[::-1, :], ker[:, ::-1]):  # equal up to the order of C's floating-point terms
        assert np.allclose(flipped, ker, rtol=1e-12, atol=0.0)


def test_auto_radius_for_one_bright_pixel():
    # The automatic radius is where the Gaussian's spill I exp(-ln16 r^2/fwhm^2) falls to a tenth of the photon
    # noise sqrt(I): r = sqrt(ln(10 sqrt(I))/ln 16) fwhm, rounded up, plus one.
    photons, fwhm = 900.0, 2.5
    img = np.zeros((41, 41), dtype=np.float32)
    img[20, 20] = photons
    res = dr.apply_psf(img, "gauss", fwhm)
    assert res.auto_radius and res.max_photons == photons
    assert res.radius == 1 + math.ceil(math.sqrt(math.log(10 * math.sqrt(photons)) / math.log(16)) * fwhm)


def test_psf_spreads_the_kernel_and_adds_the_spill_back_evenly():
    # One pixel of I photons, fixed radius: out = I * kernel around it + the spill I exp(-ln16 (r/fwhm)^2)
    # spread over every pixel; the total is (nearly) conserved.
    photons, fwhm, r = 1000.0, 2.0, 3
    img = np.zeros((30, 30), dtype=np.float32)
    img[10, 12] = photons
    res = dr.apply_psf(img, "gauss", fwhm, r)
    spill = photons * math.exp(-math.log(16) * (r / fwhm) ** 2)
    assert res.lost_photons == pytest.approx(spill, rel=1e-12)
    want = np.full(img.shape, spill / img.size)
    want[10 - r:10 + r + 1, 12 - r:12 + r + 1] += photons * dr.psf_kernel("gauss", fwhm, r)
    assert np.allclose(res.image, want, rtol=1e-6, atol=1e-6)
    assert res.image.sum(dtype=np.float64) == pytest.approx(photons, rel=2e-3)


def test_psf_right_edge_wraps_into_column_zero_of_the_next_row():
    # C lets x == xpixels through its bounds test: that column is pixel 0 of the next row (§11.4).
    fwhm, r = 1.0, 1
    img = np.zeros((5, 6), dtype=np.float32)
    img[2, 5] = 100.0
    out = dr.apply_psf(img, "gauss", fwhm, r).image
    ker = dr.psf_kernel("gauss", fwhm, r)
    floor = out[0, 2]  # a pixel nothing reaches: the spill added back
    assert out[3, 0] == pytest.approx(floor + 100.0 * ker[1, 2], rel=1e-6)  # (dx, dy) = (1, 0) -> row 3, x 0
    assert out[2, 0] == pytest.approx(floor + 100.0 * ker[0, 2], rel=1e-6)  # (1, -1) -> row 2, x 0
    assert out[4, 0] == pytest.approx(floor, rel=1e-6)  # (1, 1) is outside the r = 1 disc


def test_psf_with_no_photons_is_all_zero():
    # Automatic radius and nothing positive: C returns a zero image (negative pixels are lost too).
    res = dr.apply_psf(np.full((4, 4), -3.0, dtype=np.float32), "fiber", 1.0)
    assert res.lost_photons is None and not res.image.any()


# ---------------------------------------------------------------------------------------------- noise
def _moments(x):
    x = np.asarray(x, dtype=np.float64).ravel()
    return x.mean(), x.var(ddof=1), x.size


@pytest.mark.parametrize("mean", [0.7, 4.0, 50.0, 2.0e6])  # every poidev branch: < 12, rejection, Gaussian
def test_poisson_counts_have_variance_equal_to_mean(mean):
    counts, total = dr.photon_noise(np.full((N, N), mean, dtype=np.float32), seed=11)
    m, v, n = _moments(counts)
    assert total == pytest.approx(counts.sum(dtype=np.float64), rel=1e-12)
    assert abs(m - mean) < 5 * math.sqrt(mean / n)
    # sd of the sample variance of a Poisson(mu) sample: sqrt((mu + 2 mu^2)/n)
    assert abs(v - mean) < 5 * math.sqrt((mean + 2 * mean * mean) / n)
    if mean < 1e6:
        assert np.all(counts == np.round(counts))


@pytest.mark.parametrize("which", ["flicker", "calibration"])
def test_flicker_and_calibration_add_relative_variance(which):
    # Counts of mean m scaled by (1 + f N(0,1)): mean m, variance m + (f m)^2.
    mean, f = 1.0e4, 0.05
    kw = {which: f}
    counts, _ = dr.photon_noise(np.full((N, N), mean, dtype=np.float32), seed=3, calib_seed=17, **kw)
    m, v, n = _moments(counts)
    want = mean + (f * mean) ** 2
    assert abs(m - mean) < 5 * math.sqrt(want / n)
    assert abs(v / want - 1) < 5 * math.sqrt(2 / n)


def test_readout_noise_is_gaussian_with_the_given_sigma():
    # No photons: pixels are trunc(adc + sigma N(0,1)); with sigma >> 1 the truncation of a positive value
    # lowers the mean by 1/2 and adds 1/12 to the variance.
    sigma, adc = 20.0, 1000.0
    img = dr.adc_image(np.zeros((N, N), dtype=np.float32), adc=adc, readout=sigma, seed=5).pixels
    m, v, n = _moments(img)
    assert img.dtype == np.uint16
    assert abs(m - (adc - 0.5)) < 5 * sigma / math.sqrt(n)
    assert abs(v / (sigma ** 2 + 1 / 12) - 1) < 5 * math.sqrt(2 / n)
    z = (img.astype(np.float64) + 0.5 - adc) / sigma
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.01  # the Gaussian's one-sigma fraction


def test_adc_gain_offset_truncation_and_clipping():
    p = np.array([[0.0, 1.5, 10.0, 30000.0, 1.0e5, 3.0e9]], dtype=np.float32)
    a16 = dr.adc_image(p, gain=2.0, adc=40.7)
    assert a16.pixels.tolist() == [[40, 43, 60, 60040, 65535, 65535]] and a16.overloads == 2
    a32 = dr.adc_image(p, gain=2.0, adc=40.7, bits=32)
    assert a32.pixels.dtype == np.uint32 and a32.overloads == 1
    assert a32.pixels.tolist() == [[40, 43, 60, 60040, 200040, 2147483647]]
    assert a32.pixels16.tolist() == a16.pixels.tolist()
    # C's noiseless 32-bit image is clipped at 65535 as well
    assert dr.adc_image(p, gain=2.0, adc=40.7, bits=32, noiseless=True).pixels.max() == 65535


def test_negative_and_nan_pixels_convert_as_on_x86():
    # -1.5 truncates to -1, which wraps; NaN becomes 0 (noise image) in both widths.
    p = np.array([[-1.5 - 40.0, np.nan]], dtype=np.float32)
    assert dr.adc_image(p).pixels.tolist() == [[65535, 0]]
    assert dr.adc_image(p, bits=32).pixels.tolist() == [[2**32 - 1, 0]]
    assert dr.adc_image(p, bits=32, noiseless=True).pixels.tolist() == [[2**32 - 1, 2**31]]


# ------------------------------------------------------------------------------------------------ chain
def test_photon_scale_default_is_one_photon_per_unit():
    img = np.array([[1.0, 2.5]], dtype=np.float32)
    assert np.allclose(dr.photons_per_pixel(img), img, rtol=1e-6)
    assert np.allclose(dr.photons_per_pixel(img, scale=3.0, fluence=2 * dr.C_FLUENCE), 6 * img, rtol=1e-6)


def test_detector_response_is_reproducible_and_takes_tensors():
    # Same seed, same images (C's streams); another seed, other noise; a torch tensor works as an array does.
    img = torch.full((16, 16), 30.0, dtype=torch.float64)
    resp = dr.DetectorResponse(seed=4, readout=2.0, psf="gauss", psf_fwhm=150e-6)
    a, b = dr.apply_detector_response(img, resp), dr.apply_detector_response(img.numpy(), resp)
    c = dr.apply_detector_response(img, dr.DetectorResponse(seed=5, readout=2.0, psf="gauss", psf_fwhm=150e-6))
    assert np.array_equal(a.noiseimage.pixels, b.noiseimage.pixels)
    assert not np.array_equal(a.noiseimage.pixels, c.noiseimage.pixels)
    assert a.intimage.pixels.tolist() == [[70] * 16] * 16  # noiseless: 30 photons + adc 40
    assert a.psf is not None and a.psf.auto_radius and a.psf.radius > 1
    # the PSF spills photons off the borders of this small image: fewer photons after it than before
    assert a.noiseimage.photons < a.photons_before_psf


def test_nonoise_blurs_the_noiseless_image():
    img = np.zeros((21, 21), dtype=np.float32)
    img[10, 10] = 5000.0
    res = dr.apply_detector_response(img, dr.DetectorResponse(noise=False, psf="fiber", psf_fwhm=200e-6, adc=0))
    assert res.noiseimage is None and res.psf is not None
    assert res.intimage.pixels[10, 10] < 5000 and res.intimage.pixels[10, 11] > 0
    assert np.array_equal(res.pgm, np.minimum(res.intimage.pixels, 255))
