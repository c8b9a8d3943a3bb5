"""End-of-run statistics and the integer/PGM conversions, computed from the stored float32 image (§8)."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np


@dataclass
class ImageStats:
    """C's printed statistics: max_I with its position (m), mean, rms, rmsd."""

    max_I: float
    max_I_x: float
    max_I_y: float
    mean: float
    rms: float
    rmsd: float
    n: int

    def lines(self) -> list[str]:
        return [
            f"max_I = {self.max_I:g}  at {self.max_I_x:g} {self.max_I_y:g}",
            f"mean= {_g(self.mean)} rms= {_g(self.rms)} rmsd= {_g(self.rmsd)}",
        ]


def _g(x: float) -> str:
    return "-nan" if math.isnan(x) else f"{x:g}"


def roi_mask(shape: tuple[int, int], roi: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean [slow][fast] mask of the inclusive ROI window."""
    spixels, fpixels = shape
    xmin, xmax, ymin, ymax = roi
    f = np.arange(fpixels)[None, :]
    s = np.arange(spixels)[:, None]
    return (f >= xmin) & (f <= xmax) & (s >= ymin) & (s <= ymax)


_BLOCK = 1 << 20  # pixels per block: double temporaries of a few MB instead of full-image copies
_EVERY = np.empty(0, dtype=np.bool_)  # the compiled loops' "every pixel" mask
# From this many pixels the compiled loops pay for numba's start (~0.6 s of import and first call) when no
# render has loaded it already; the numpy block loops take ~30 ns per pixel.
_COMPILE_FROM = 1 << 24


def _blocks(n: int):
    return (slice(i, min(i + _BLOCK, n)) for i in range(0, n, _BLOCK))


def _double_sums(flat32: np.ndarray, mask: np.ndarray | None, shift: float | None = None
                 ) -> tuple[int, float, float]:
    """(n, sum x, sum x^2) in double over the pixels where ``mask`` (None: every pixel) -- with ``shift``,
    sum (x - shift)^2."""
    n, total, sq = 0, 0.0, 0.0
    every = mask is None or bool(mask.all())
    with np.errstate(invalid="ignore"):
        for b in _blocks(flat32.size):
            x = flat32[b].astype(np.float64)
            if not every:
                x = x[mask[b]]
            if shift is not None:
                x -= shift
            n += x.size
            total += float(x.sum())
            sq += float(np.dot(x, x))
    return n, total, sq


def _compiled(pixels: int = 0):
    """The fused module's compiled loops (numba), or None: the block loops below then do the same work.
    Compiled when numba is already loaded (a fused render) or the image has ``_COMPILE_FROM`` pixels."""
    if "numba" not in sys.modules and pixels < _COMPILE_FROM:
        return None
    try:
        from . import fused
    except ImportError:  # pragma: no cover - numba missing
        return None
    return fused


def _flat(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None else mask.reshape(-1)


def summarize(image32: np.ndarray, rendered: np.ndarray | None, in_roi: np.ndarray | None, pixel_size: float,
              oversample: int, *, rmsd_offset: int = 0, count: int | None = None) -> ImageStats:
    """Statistics as C computes them: mean/rms over rendered pixels, rmsd over all ROI pixels (double sums).
    ``rendered``/``in_roi`` None: every pixel.

    nonBragg's variants (§12.5): ``rmsd_offset`` 1 takes each ROI pixel's deviation at the next pixel index
    (a zero past the last pixel); ``count`` replaces the number of pixels that divides the mean and rms.
    """
    flat = image32.reshape(-1)
    fz = _compiled(flat.size)

    def sums(mask, shift=None, values=flat):
        if fz is not None:
            return fz.masked_sums(values, _EVERY if mask is None else mask, math.nan if shift is None else shift)
        return _double_sums(values, mask, shift)

    rendered = _flat(rendered)
    n, total, sumsqr = sums(rendered)
    if count is not None:
        n = count
    mean = total / (n if n > 0 else 1)
    rms = math.sqrt(sumsqr / ((n if n > 1 else 2) - 1)) if not math.isnan(sumsqr) else math.nan
    shifted = flat if rmsd_offset == 0 else np.concatenate((flat[rmsd_offset:], np.zeros(rmsd_offset, flat.dtype)))
    nr, _, dev = sums(_flat(in_roi), mean, shifted)
    rmsd = math.sqrt(dev / ((nr if nr > 1 else 2) - 1)) if not math.isnan(dev) else math.nan
    # max_I: strict '>' from 0 in raster order over rendered pixels; NaN never wins
    if (rendered is None or rendered.all()) and not np.isnan(total):
        candidates = flat
    else:
        keep = ~np.isnan(flat) if rendered is None else rendered & ~np.isnan(flat)
        candidates = np.where(keep, flat, -np.inf)
    imax = int(np.argmax(candidates)) if candidates.size else 0
    max_I, mx, my = 0.0, 0.0, 0.0
    if candidates.size and candidates[imax] > 0:
        max_I = float(candidates[imax])
        s, f = divmod(imax, image32.shape[1])
        sub = pixel_size / oversample
        mx = sub * (f * oversample + oversample - 1) + sub / 2.0
        my = sub * (s * oversample + oversample - 1) + sub / 2.0
    return ImageStats(max_I, mx, my, mean, rms, rmsd, n)


def _int_pixels(fz, src, roi, scale: float, adc: float, dst) -> None:
    """One block of ``int_image`` (``roi`` None: every pixel), compiled (``fz``) or with numpy."""
    if fz is not None:
        fz.int_pixels(src, _EVERY if roi is None else roi, float(scale), float(adc), dst)
        return
    t = src.astype(np.float64) * scale + adc
    np.clip(t, 0.0, 65535.0, out=t)
    r = np.floor((t + 0.5).astype(np.float32))
    dst[:] = np.where(np.isnan(r) if roi is None else np.isnan(r) | ~roi, 0, r)


def _pgm_pixels(fz, src, roi, scale: float, dst) -> None:
    """One block of ``pgm_image`` (``roi`` None: every pixel), compiled (``fz``) or with numpy."""
    if fz is not None:
        fz.pgm_pixels(src, _EVERY if roi is None else roi, float(scale), dst)
        return
    t = np.minimum(src.astype(np.float64) * scale, 255.0)
    bad = np.isnan(t) | (t < 0)
    dst[:] = np.where(bad if roi is None else bad | ~roi, 0.0, np.trunc(t))


def _converted(convert, image32: np.ndarray, in_roi, dtype, args):
    """``convert(fz, src, roi, *args, dst)`` over raster-order blocks of the image: yields (block slice, its
    pixels), the pixels in one reused buffer (no whole-image temporary)."""
    src, roi = image32.reshape(-1), _flat(in_roi)
    fz = _compiled(src.size)
    buf = np.empty(min(_BLOCK, src.size), dtype=dtype)
    for b in _blocks(src.size):
        dst = buf[:b.stop - b.start]
        convert(fz, src[b], None if roi is None else roi[b], *args, dst)
        yield b, dst


def _whole(blocks, shape, dtype) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    for b, pixels in blocks:
        flat[b] = pixels
    return out


def int_image(image32: np.ndarray, in_roi: np.ndarray | None, scale: float, adc: float) -> np.ndarray:
    """SMV pixels: floor(float32(v*scale + adc + 0.5)) clipped to 0..65535 in the ROI (None: every pixel),
    0 outside; NaN -> 0."""
    return _whole(_converted(_int_pixels, image32, in_roi, np.uint16, (scale, adc)), image32.shape, np.uint16)


def int_image_blocks(image32: np.ndarray, in_roi: np.ndarray | None, scale: float, adc: float):
    """``int_image`` as raster-order blocks of one reused buffer (to write without a whole-image copy)."""
    return (pixels for _, pixels in _converted(_int_pixels, image32, in_roi, np.uint16, (scale, adc)))


def int_scale(user_scale: float, max_I: float) -> float:
    """-scale if > 0, else 55000/max_I if max_I > 0, else 1 (C)."""
    if user_scale > 0:
        return user_scale
    return 55000.0 / max_I if max_I > 0 else 1.0


def pgm_scale(user_scale: float, rmsd: float, intfile_scale: float) -> float:
    """-pgmscale if > 0, else 250/(5 rmsd) if rmsd > 0, else the int-image scale (C)."""
    if user_scale > 0:
        return user_scale
    return 250.0 / (5.0 * rmsd) if rmsd > 0 else intfile_scale


def pgm_image(image32: np.ndarray, in_roi: np.ndarray | None, scale: float) -> np.ndarray:
    """PGM bytes: min(v*scale, 255) truncated in the ROI (None: every pixel), 0 outside (negatives, NaN -> 0)."""
    return _whole(_converted(_pgm_pixels, image32, in_roi, np.uint8, (scale,)), image32.shape, np.uint8)


def pgm_image_blocks(image32: np.ndarray, in_roi: np.ndarray | None, scale: float):
    """``pgm_image`` as raster-order blocks of one reused buffer (to write without a whole-image copy)."""
    return (pixels for _, pixels in _converted(_pgm_pixels, image32, in_roi, np.uint8, (scale,)))
