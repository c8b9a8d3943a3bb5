"""noisify's per-pixel loops, in C's order and with C's mix of float32 and double, as plain functions.

Written in the subset of Python that numba compiles and used only compiled:
:func:`..crandom.streams.compiled_with_generators` makes a copy of this module whose ``gaussdev``/``poidev``
are the compiled generators of :mod:`.generators` (one C random state per run) and whose ``KERNELS`` are numba
dispatchers. The public, documented wrappers are in :mod:`nanobrag_torch.response.detector`; "§11.N" cites
docs/c-behaviour.md.

Arrays: images are flat float32 in raster order (fast index fastest); values are carried as float64, and a
store into a float32 array rounds to nearest, as C's ``float`` assignment does.
"""

from __future__ import annotations

import math

import numpy as np

from ..crandom.generators import f32, gaussdev, poidev

KERNELS = ("c_int", "c_uint16", "c_uint32", "gauss_integral", "gauss_pixel", "fiber_integral", "fiber_pixel",
           "psf_kernel_table", "psf_auto_radius", "psf_lost_photons", "psf_scatter", "add_back",
           "photon_noise_pixels", "adc_pixels")
INLINE = ("c_int", "c_uint16", "c_uint32", "gauss_integral", "fiber_integral", "psf_lost_photons")

GAUSS = 1
FIBER = 2
INT_MIN = -2147483648
LOG4 = math.log(4.0)
LOG16 = math.log(16.0)
SQRT_LOG2 = math.sqrt(math.log(2.0))
SQRT_LOG16 = math.sqrt(math.log(16.0))
SQRT_LOG16_LOG2 = math.sqrt(math.log(16.0) / math.log(2.0))
FIBER_G_PER_FWHM = 0.652383013252053  # the fiber PSF's g per pixel of FWHM (§11.4)
PHOTON_LOSS_FACTOR = 10.0  # auto radius: stop where the lost photons are a tenth of the photon noise


# ------------------------------------------------------------------------------------- C conversions
def c_int(x):
    """C's double -> int as x86 does it (``cvttsd2si``): truncation; NaN or out of range -> INT_MIN."""
    if not (-2147483648.0 <= x < 2147483648.0):
        return INT_MIN
    return int(x)


def c_uint16(x):
    """C's double -> unsigned short on x86: through a 32-bit int, so a negative value wraps modulo 65536
    and NaN gives 0 (§11.6)."""
    return c_int(x) & 0xFFFF


def c_uint32(x):
    """C's double -> unsigned int on x86-64 in noisify's noise loop: through a 64-bit int, so a negative value
    wraps modulo 2**32 and NaN gives 0 (§11.6). (Its noiseless loop converts through a 32-bit int instead:
    ``c_int(x) & 0xFFFFFFFF``.)"""
    if not (-9.223372036854775808e18 <= x < 9.223372036854775808e18):
        return 0
    return int(x) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------------- PSF (§11.4)
def gauss_integral(x, y):
    """C's ngauss2D_integ: volume of the unit-FWHM, unit-volume 2D Gaussian over [0, x] x [0, y]."""
    return 0.125 * (math.erf(2 * x * SQRT_LOG2) * math.erf(y * SQRT_LOG16) * SQRT_LOG16_LOG2)


def gauss_pixel(dx, dy, fwhm):
    """C's integrate_gauss_over_pixel: the Gaussian PSF of FWHM ``fwhm`` pixels integrated over the pixel at
    offset (dx, dy), by the four corners in C's order."""
    x = dx / fwhm
    y = dy / fwhm
    h = (1.0 / fwhm) / 2.0
    return (gauss_integral(x + h, y + h) - gauss_integral(x + h, y - h) - gauss_integral(x - h, y + h)
            + gauss_integral(x - h, y - h))


def fiber_integral(x, y, g):
    """C's fiber2D_integ: volume of g/(2 pi) (g^2 + r^2)^(-3/2) over [0, x] x [0, y]."""
    return math.atan((x * y) / (g * math.sqrt(g * g + x * x + y * y))) / 2.0 / math.pi


def fiber_pixel(dx, dy, g):
    """C's integrate_fiber_over_pixel: the fiber PSF integrated over the pixel at offset (dx, dy)."""
    x = dx * 1.0
    y = dy * 1.0
    return (fiber_integral(x + 0.5, y + 0.5, g) - fiber_integral(x + 0.5, y - 0.5, g)
            - fiber_integral(x - 0.5, y + 0.5, g) + fiber_integral(x - 0.5, y - 0.5, g))


def psf_kernel_table(kind, fwhm, g, radius, out):
    """C's cached PSF kernel: ``out`` ((2r+1)^2 float64 zeros, row dy, column dx) gets the pixel integrals
    of every offset with dx^2 + dy^2 <= r^2; the corners stay 0."""
    size = 2 * radius + 1
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy > radius * radius:
                continue
            k = size * (radius + dy) + radius + dx
            if kind == GAUSS:
                out[k] = gauss_pixel(dx, dy, fwhm)
            else:
                out[k] = fiber_pixel(dx, dy, g)


def psf_auto_radius(kind, photons, fwhm, g, whole_image):
    """C's automatic PSF radius for a pixel of ``photons`` (or, ``whole_image``, the kernel's radius from the
    image maximum): 1 + ceil of the radius beyond which the spill is a tenth of sqrt(photons); as a C int
    (INT_MIN where the formula gives NaN: Gaussian PSF below 0.01 photons)."""
    lost = math.sqrt(photons) / PHOTON_LOSS_FACTOR
    if kind == GAUSS:
        if whole_image:
            r = 1.0 + np.ceil(math.sqrt(-math.log(lost / photons) / LOG4 / 2) * fwhm)
        else:
            r = 1.0 + np.ceil(math.sqrt(-math.log(lost / photons) / LOG16) * fwhm)
    else:
        r = 1.0 + np.ceil(g * (photons / lost))
    return c_int(r)


def psf_lost_photons(kind, photons, radius, fwhm, g):
    """C's estimate of the photons of one pixel that fall beyond ``radius``: Gaussian
    ``I exp(-ln16 (r/fwhm)^2)``; fiber ``I g / sqrt(g^2 + r^2)`` with r^2 as a C int (wrapping)."""
    if kind == GAUSS:
        rsq = radius / fwhm
        rsq = rsq * rsq
        return photons * math.exp(-LOG16 * rsq)
    rr = ((radius * radius + 2147483648) % 4294967296) - 2147483648
    return photons * g / math.sqrt(g * g + rr)


def psf_scatter(image, xpixels, ypixels, kind, fwhm, g, user_radius, kernel, kradius, out):
    """C's PSF loop: every pixel with photons > 0, in raster order, adds photons x kernel to its
    neighbourhood (dx outer, dy inner) into float32 ``out``; returns the sum of the lost photons (double).

    Per pixel the radius is ``user_radius``, or with 0 the automatic one of that pixel, at least 1 and at most
    the larger image side. C's bounds let a column ``x == xpixels`` through, which lands on column 0 of the
    next row (the last row's goes past the image and is dropped). A pixel whose automatic radius is INT_MIN
    spreads nothing (what C's loop does); a radius beyond the kernel's (only for an infinite maximum) is cut
    to the kernel's, where C reads outside its table.
    """
    pixels = xpixels * ypixels
    maxwidth = max(xpixels, ypixels)
    size = 2 * kradius + 1
    total_lost = 0.0
    for i in range(pixels):
        v = np.float64(image[i])
        if v <= 0.0:
            continue
        x0 = i % xpixels
        y0 = i // xpixels
        r = user_radius if user_radius != 0 else psf_auto_radius(kind, v, fwhm, g, False)
        if r == 0:
            r = 1
        if r > maxwidth:
            r = maxwidth
        total_lost += psf_lost_photons(kind, v, r, fwhm, g)
        if r > kradius:
            r = kradius
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                kv = kernel[size * (kradius + dy) + kradius + dx]
                if kv == 0.0 or dx * dx + dy * dy > r * r:
                    continue
                x = x0 + dx
                y = y0 + dy
                if x < 0 or x > xpixels or y < 0 or y > ypixels:
                    continue
                j = y * xpixels + x
                if j < 0 or j >= pixels:
                    continue
                out[j] = f32(np.float64(out[j]) + v * kv)
    return total_lost


def add_back(out, per_pixel):
    """C's last PSF step: ``per_pixel`` (double) added to every float32 pixel."""
    for i in range(out.size):
        out[i] = f32(np.float64(out[i]) + per_pixel)


# ---------------------------------------------------------------------------------------- noise (§11.5)
def photon_noise_pixels(photons, flicker, calibration, seed, calib_seed, table, cache, out):
    """C's noise loop, pixel by pixel in raster order: flicker ``p *= 1 + flicker * gaussdev(&seed)``,
    calibration ``p *= 1 + calibration * gaussdev(&calib_seed)`` (each only when > 0, in double), then
    ``poidev(float(p), &seed)`` into float32 ``out``; returns the photon sum (double, in order)."""
    total = 0.0
    for i in range(photons.size):
        p = np.float64(photons[i])
        if flicker > 0.0:
            p *= 1.0 + flicker * gaussdev(seed, table, cache)
        if calibration > 0.0:
            p *= 1.0 + calibration * gaussdev(calib_seed, table, cache)
        n = poidev(f32(p), seed, table, cache)
        out[i] = n
        total += n
    return total


def adc_pixels(photons, gain, adc, readout, noiseless, bits, seed, table, cache, out16, out32):
    """C's conversion to pixel units (§11.6), pixel by pixel: ``adu = p*gain + adc``, plus
    ``readout * gaussdev(&seed)`` when readout > 0; capped at 2147483647 (an overload for 32 bits) before the
    uint32 store, then at 65535 (an overload for 16 bits) before the uint16 store. C's ``noiseless`` image caps
    at 65535 before the uint32 store too, and there its compiled conversion goes through a 32-bit int (NaN and
    values below -2**31 give 2**31). ``out32`` may be empty (16-bit runs). Returns (photon sum in double,
    overloads)."""
    total = 0.0
    overloads = 0
    wide = out32.size > 0
    for i in range(photons.size):
        p = np.float64(photons[i])
        total += p
        adu = p * gain + adc
        if readout > 0.0:
            adu += readout * gaussdev(seed, table, cache)
        if adu > 2147483647.0:
            adu = 2147483647.0
            if bits == 32:
                overloads += 1
        if noiseless:
            if adu > 65535.0:
                adu = 65535.0
            if wide:
                out32[i] = c_int(adu) & 0xFFFFFFFF
        elif wide:
            out32[i] = c_uint32(adu)
        if adu > 65535.0:
            adu = 65535.0
            if bits == 16:
                overloads += 1
        out16[i] = c_uint16(adu)
    return total, overloads
