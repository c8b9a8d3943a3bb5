"""The detector response of C's noisify: a photons/pixel image -> the detector's integer images (§11).

Each step is a function named after the C behaviour it mirrors, numpy in and out (a torch tensor is taken as
well), in the order C applies them (§11.2):

1. :func:`photons_per_pixel` -- ``-scale``/``-fluence``: the image on the photon scale, stored as float32;
2. :func:`photon_noise` -- ``-flicker``, ``-calibration`` and Poisson photon counting, interleaved per pixel
   on C's random streams (``-seed``, ``-calib_seed``);
3. :func:`apply_psf` -- ``-psf gauss|fiber``, ``-psf_fwhm``, ``-psf_radius``: the point-spread function
   (:func:`psf_kernel` is its kernel), on the photon counts, or on the noiseless image when noise is off;
4. :func:`adc_image` -- ``-gain``, ``-adc``, ``-readout``, ``-bits``: pixel units, read-out noise, clipping.

:func:`apply_detector_response` runs them all as noisify does and returns every image; :class:`DetectorResponse`
holds noisify's parameters with its defaults. The noise draws are C's generators in C's order (bit-identical
to C's images); the per-pixel loops are compiled with numba (:mod:`.kernels`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..constants import R_E_SQR
from ..crandom.streams import CRandom, Seed, compiled_with_generators

__all__ = ["C_FLUENCE", "DEFAULT_CALIB_SEED", "PSF_KINDS", "AdcImage", "DetectorImages", "DetectorResponse",
           "PsfResult", "adc_image", "apply_detector_response", "apply_psf", "photon_noise", "photons_per_pixel",
           "psf_kernel"]

C_FLUENCE = 125932015286227086360700780544.0  # C's default fluence: r_e^2 * fluence ~ 1 photon per unit
DEFAULT_CALIB_SEED = -123456789  # the flag value that gives C's initial calibration seed 123456789 (§11.5)
PSF_KINDS = ("gauss", "fiber")

_KERNELS = None


def _kernels():
    """The compiled per-pixel loops (numba; made on first use, cached on disk)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = compiled_with_generators("nanobrag_torch.response.kernels")
    return _KERNELS


def _as_float32(image) -> np.ndarray:
    """``image`` (ndarray or torch tensor) as a 2-D float32 array, as C's float arrays hold it (no copy when it
    is one already: the steps only read their input)."""
    if hasattr(image, "detach"):
        image = image.detach().to("cpu").numpy()
    arr = np.ascontiguousarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image (slow, fast), got shape {arr.shape}")
    return arr


def _seed(value) -> Seed:
    """A C seed variable: a :class:`Seed` continues its stream; an int is the flag value (C stores -N)."""
    return value if isinstance(value, Seed) else Seed(-int(value))


# --------------------------------------------------------------------------------------------- steps
def photons_per_pixel(image, scale: float = 1.0, fluence: float = C_FLUENCE) -> np.ndarray:
    """C's photon scale: ``float32((fluence*r_e^2)*scale*I)`` per pixel (1 photon per unit by default, §11.3)."""
    factor = (fluence * R_E_SQR) * scale
    img = _as_float32(image)
    out = np.empty(img.shape, dtype=np.float32)
    src, dst = img.reshape(-1), out.reshape(-1)
    block = 1 << 20  # double temporaries of 8 MB instead of the whole image's
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, src.size, block):
            dst[i:i + block] = factor * src[i:i + block].astype(np.float64)
    return out


def psf_kernel(kind: str, fwhm_pixels: float, radius: int) -> np.ndarray:
    """C's PSF kernel: (2r+1, 2r+1) float64, the ``kind`` PSF of FWHM ``fwhm_pixels`` integrated over each pixel
    within ``radius`` of the centre (row dy, column dx; the rest 0). It sums to 1 less the spill (§11.4)."""
    code = _psf_code(kind)
    if radius < 0:
        raise ValueError(f"psf radius must be >= 0, got {radius}")
    out = np.zeros((2 * radius + 1) ** 2, dtype=np.float64)
    k = _kernels()
    k.psf_kernel_table(code, float(fwhm_pixels), float(fwhm_pixels) * k.FIBER_G_PER_FWHM, int(radius), out)
    return out.reshape(2 * radius + 1, 2 * radius + 1)


def _psf_code(kind: str) -> int:
    if kind not in PSF_KINDS:
        raise ValueError(f"psf kind must be one of {PSF_KINDS}, got {kind!r}")
    return 1 if kind == "gauss" else 2


@dataclass
class PsfResult:
    """:func:`apply_psf`'s output: the blurred float32 image and what C reports about it."""

    image: np.ndarray
    radius: int  # the kernel's radius (pixels): the user's, or the automatic one
    auto_radius: bool
    max_photons: float  # the image maximum the automatic radius came from (0 when not computed)
    lost_photons: float | None  # photons beyond each pixel's radius, spread evenly; None: nothing blurred


def apply_psf(photons, kind: str, fwhm_pixels: float, radius: int = 0) -> PsfResult:
    """C's apply_psf: spread every pixel with photons > 0 over its neighbours with the ``kind`` PSF (§11.4).

    ``radius`` 0 chooses it from the image maximum for the kernel and per pixel from its own photons;
    the photons each pixel loses beyond its radius are added back evenly to every pixel. Sums in float32 in
    C's order. With the automatic radius and no positive pixel, the result is all zeros (as in C).
    """
    img = _as_float32(photons)
    ypixels, xpixels = img.shape
    code = _psf_code(kind)
    fwhm = float(fwhm_pixels)
    if not fwhm > 0:
        raise ValueError(f"psf FWHM must be > 0 pixels, got {fwhm_pixels}")
    if radius < 0:
        raise ValueError(f"psf radius must be >= 0, got {radius}")
    k = _kernels()
    g = fwhm * k.FIBER_G_PER_FWHM
    flat = img.reshape(-1)
    out = np.zeros_like(flat)
    max_photons = 0.0
    kradius = int(radius)
    if radius == 0:
        max_photons = float(np.max(flat, initial=0.0, where=flat > 0))  # C: max from 0, NaN never wins
        if not max_photons > 0.0:
            return PsfResult(out.reshape(img.shape), 0, True, max_photons, None)
        kradius = k.psf_auto_radius(code, max_photons, fwhm, g, True)
        kradius = 1 if kradius == 0 else kradius
    kradius = min(kradius, max(xpixels, ypixels))
    table = psf_kernel(kind, fwhm, max(kradius, 0)).reshape(-1)
    lost = k.psf_scatter(flat, xpixels, ypixels, code, fwhm, g, int(radius), table, max(kradius, 0), out)
    k.add_back(out, lost / flat.size)
    return PsfResult(out.reshape(img.shape), kradius, radius == 0, max_photons, float(lost))


def photon_noise(photons, flicker: float = 0.0, calibration: float = 0.0, seed=1,
                 calib_seed=DEFAULT_CALIB_SEED, rng: CRandom | None = None) -> tuple[np.ndarray, float]:
    """C's noise loop (§11.5): per pixel in raster order, source flicker (``p *= 1 + flicker*N(0,1)`` from
    ``seed``), calibration error (``p *= 1 + calibration*N(0,1)`` from ``calib_seed``), then a Poisson count
    from ``seed``. Returns (float32 counts, their sum).

    Seeds: an int is the flag value (``-seed N`` stores -N, which starts a fresh stream); a :class:`Seed`
    continues its stream. ``rng`` is C's shared generator state (a fresh one by default): pass the same one
    to :func:`adc_image` to continue C's order.
    """
    img = _as_float32(photons)
    rng = CRandom() if rng is None else rng
    out = np.empty(img.size, dtype=np.float32)
    total = _kernels().photon_noise_pixels(img.reshape(-1), float(flicker), float(calibration), _seed(seed).cell,
                                           _seed(calib_seed).cell, rng.table, rng.cache, out)
    return out.reshape(img.shape), float(total)


@dataclass
class AdcImage:
    """:func:`adc_image`'s output: the pixels in the chosen width, the photons they came from, the overloads."""

    pixels: np.ndarray  # uint16 (bits 16) or uint32 (bits 32), (slow, fast)
    pixels16: np.ndarray  # the 16-bit image in any case (C's PGM is made from it)
    photons: float  # sum of the input photons (double, in order)
    overloads: int  # pixels clipped at the top of the chosen width


def adc_image(photons, gain: float = 1.0, adc: float = 40.0, readout: float = 0.0, bits: int = 16, seed=1,
              rng: CRandom | None = None, noiseless: bool = False) -> AdcImage:
    """C's conversion to pixel units (§11.6): ``p*gain + adc``, plus ``readout``·N(0,1) from ``seed`` when
    readout > 0, clipped at 2**31-1 and 65535 and stored by truncation (a negative value wraps as on x86).
    ``noiseless``: C's noiseless image (no read-out noise), whose 32-bit pixels are clipped at 65535 too and
    converted as C's compiled loop does (NaN and values below -2**31 give 2**31 there, 0 in the noise image)."""
    if bits not in (16, 32):
        raise ValueError(f"bits must be 16 or 32, got {bits}")
    img = _as_float32(photons)
    flat = img.reshape(-1)
    out16 = np.empty(flat.size, dtype=np.uint16)
    out32 = np.empty(flat.size if bits == 32 else 0, dtype=np.uint32)  # the 16-bit run keeps none
    rng = CRandom() if rng is None else rng
    s = _seed(seed)
    total, overloads = _kernels().adc_pixels(
        flat, float(gain), float(adc), 0.0 if noiseless else float(readout), bool(noiseless), int(bits), s.cell,
        rng.table, rng.cache, out16, out32)
    out16 = out16.reshape(img.shape)
    return AdcImage(out16 if bits == 16 else out32.reshape(img.shape), out16, float(total), int(overloads))


# ------------------------------------------------------------------------------------------- the chain
@dataclass(frozen=True)
class DetectorResponse:
    """noisify's parameters, with its defaults (flag in brackets). Lengths in metres."""

    scale: float = 1.0  # [-scale] multiplies the input
    fluence: float = C_FLUENCE  # [-fluence] photons/m^2: input x fluence x r_e^2 is photons/pixel
    gain: float = 1.0  # [-gain] pixel units per photon
    adc: float = 40.0  # [-adc] offset added to every pixel
    readout: float = 0.0  # [-readout] rms read-out noise, pixel units
    flicker: float = 0.0  # [-flicker] fractional rms source flicker, per pixel
    calibration: float = 0.03  # [-calibration] fractional rms static pixel calibration error
    psf: str | None = None  # [-psf] 'gauss' or 'fiber'; None: no PSF
    psf_fwhm: float = 46e-6  # [-psf_fwhm] in metres (C keeps it as a float32)
    psf_radius: int = 0  # [-psf_radius] pixels; 0: automatic
    pixel_size: float = 1e-4  # [-pixel] metres: converts the PSF width to pixels
    bits: int = 16  # [-bits] 16 or 32
    noise: bool = True  # False: [-nonoise] only the noiseless image (the PSF then applies to it)
    seed: int | None = None  # [-seed] None: the clock, as C (-time())
    calib_seed: int = DEFAULT_CALIB_SEED  # [-calib_seed]

    @property
    def psf_fwhm_pixels(self) -> float:
        """The PSF's FWHM in pixels: C's float32 width divided by the pixel size in double."""
        return float(np.float32(self.psf_fwhm)) / self.pixel_size

    @property
    def applies_psf(self) -> bool:
        """C applies a PSF only for a known kind and a width > 0."""
        return self.psf is not None and float(np.float32(self.psf_fwhm)) > 0.0


@dataclass
class DetectorImages:
    """Everything :func:`apply_detector_response` makes (arrays (slow, fast))."""

    photons: np.ndarray  # float32 photons/pixel after -scale/-fluence (and the PSF when noise is off)
    intimage: AdcImage  # the noiseless image
    noise_photons: np.ndarray | None = None  # float32 counts after noise (and the PSF)
    noiseimage: AdcImage | None = None  # the noise image
    photons_before_psf: float | None = None  # photon count of the noise image before the PSF
    psf: PsfResult | None = None
    seed: int | None = None  # the -seed value used (the clock's when none was given)

    @property
    def pgm(self) -> np.ndarray:
        """C's PGM bytes: the noiseless 16-bit image capped at 255."""
        return np.minimum(self.intimage.pixels16, 255).astype(np.uint8)


def apply_detector_response(image, response: DetectorResponse = DetectorResponse(), rng: CRandom | None = None
                      ) -> DetectorImages:
    """noisify's whole chain on a photons/pixel image (ndarray or tensor, (slow, fast)), in C's order (§11.2):
    photon scale; the noiseless image (after the PSF when noise is off); then flicker, calibration and Poisson
    noise, the PSF on the counts, and read-out noise into the noise image. Same seeds, same images as C."""
    r = response
    photons = photons_per_pixel(image, r.scale, r.fluence)
    psf = None
    if not r.noise and r.applies_psf:
        psf = apply_psf(photons, r.psf, r.psf_fwhm_pixels, r.psf_radius)
        photons = psf.image
    clean = adc_image(photons, r.gain, r.adc, bits=r.bits, noiseless=True)
    seed = r.seed if r.seed is not None else int(time.time())
    if not r.noise:
        return DetectorImages(photons, clean, psf=psf, seed=seed)
    rng = CRandom() if rng is None else rng
    s = _seed(seed)
    counts, before = photon_noise(photons, r.flicker, r.calibration, s, r.calib_seed, rng)
    if r.applies_psf:
        psf = apply_psf(counts, r.psf, r.psf_fwhm_pixels, r.psf_radius)
        counts = psf.image
    noisy = adc_image(counts, r.gain, r.adc, r.readout, r.bits, s, rng)
    return DetectorImages(photons, clean, counts, noisy, before, psf, seed)
