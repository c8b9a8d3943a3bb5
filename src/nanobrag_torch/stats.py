"""End-of-run statistics and the integer/PGM conversions, computed from the stored float32 image (§8)."""
from __future__ import annotations

import math
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


def _blocks(n: int):
    return (slice(i, min(i + _BLOCK, n)) for i in range(0, n, _BLOCK))


def _double_sums(flat32: np.ndarray, mask: np.ndarray, shift: float | None = None) -> tuple[int, float, float]:
    """(n, sum x, sum x^2) in double over the pixels where ``mask`` -- with ``shift``, sum (x - shift)^2."""
    n, total, sq = 0, 0.0, 0.0
    every = bool(mask.all())
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


def _compiled():
    """The fused module's compiled loops (numba), or None: the block loops below then do the same work."""
    try:
        from . import fused
    except ImportError:  # pragma: no cover - numba missing
        return None
    return fused


def summarize(image32: np.ndarray, rendered: np.ndarray, in_roi: np.ndarray, pixel_size: float,
              oversample: int, *, rmsd_offset: int = 0, count: int | None = None) -> ImageStats:
    """Statistics as C computes them: mean/rms over rendered pixels, rmsd over all ROI pixels (double sums).

    nonBragg's variants (§12.5): ``rmsd_offset`` 1 takes each ROI pixel's deviation at the next pixel index
    (a zero past the last pixel); ``count`` replaces the number of pixels that divides the mean and rms.
    """
    flat = image32.reshape(-1)
    fz = _compiled()

    def sums(mask, shift=None, values=flat):
        if fz is not None:
            return fz.masked_sums(values, mask, math.nan if shift is None else shift)
        return _double_sums(values, mask, shift)

    n, total, sumsqr = sums(rendered.reshape(-1))
    if count is not None:
        n = count
    mean = total / (n if n > 0 else 1)
    rms = math.sqrt(sumsqr / ((n if n > 1 else 2) - 1)) if not math.isnan(sumsqr) else math.nan
    shifted = flat if rmsd_offset == 0 else np.concatenate((flat[rmsd_offset:], np.zeros(rmsd_offset, flat.dtype)))
    nr, _, dev = sums(in_roi.reshape(-1), mean, shifted)
    rmsd = math.sqrt(dev / ((nr if nr > 1 else 2) - 1)) if not math.isnan(dev) else math.nan
    # max_I: strict '>' from 0 in raster order over rendered pixels; NaN never wins
    if rendered.all() and not np.isnan(total):
        candidates = flat
    else:
        candidates = np.where(rendered.reshape(-1) & ~np.isnan(flat), flat, -np.inf)
    imax = int(np.argmax(candidates)) if candidates.size else 0
    max_I, mx, my = 0.0, 0.0, 0.0
    if candidates.size and candidates[imax] > 0:
        max_I = float(candidates[imax])
        s, f = divmod(imax, image32.shape[1])
        sub = pixel_size / oversample
        mx = sub * (f * oversample + oversample - 1) + sub / 2.0
        my = sub * (s * oversample + oversample - 1) + sub / 2.0
    return ImageStats(max_I, mx, my, mean, rms, rmsd, n)


def int_image(image32: np.ndarray, in_roi: np.ndarray, scale: float, adc: float) -> np.ndarray:
    """SMV pixels: floor(float32(v*scale + adc + 0.5)) clipped to 0..65535 in the ROI, 0 outside; NaN -> 0."""
    out = np.empty(image32.shape, dtype=np.uint16)
    src, roi, dst = image32.reshape(-1), in_roi.reshape(-1), out.reshape(-1)
    fz = _compiled()
    if fz is not None:
        fz.int_pixels(src, roi, float(scale), float(adc), dst)
        return out
    for b in _blocks(src.size):
        t = src[b].astype(np.float64) * scale + adc
        np.clip(t, 0.0, 65535.0, out=t)
        r = np.floor((t + 0.5).astype(np.float32))
        dst[b] = np.where(np.isnan(r) | ~roi[b], 0, r)
    return out


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


def pgm_image(image32: np.ndarray, in_roi: np.ndarray, scale: float) -> np.ndarray:
    """PGM bytes: min(v*scale, 255) truncated in the ROI, 0 outside (negatives and NaN -> 0)."""
    out = np.empty(image32.shape, dtype=np.uint8)
    src, roi, dst = image32.reshape(-1), in_roi.reshape(-1), out.reshape(-1)
    fz = _compiled()
    if fz is not None:
        fz.pgm_pixels(src, roi, float(scale), dst)
        return out
    for b in _blocks(src.size):
        t = np.minimum(src[b].astype(np.float64) * scale, 255.0)
        dst[b] = np.where(np.isnan(t) | (t < 0) | ~roi[b], 0.0, np.trunc(t))
    return out
