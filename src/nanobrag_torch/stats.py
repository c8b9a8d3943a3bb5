"""End-of-run statistics and the integer/PGM conversions, computed from the stored float32 image (C §8)."""
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


def _select(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """a[mask] as a flat array, without a copy when the mask selects everything."""
    return a.reshape(-1) if mask.all() else a[mask]


def summarize(image32: np.ndarray, rendered: np.ndarray, in_roi: np.ndarray, pixel_size: float,
              oversample: int) -> ImageStats:
    """Statistics as C computes them: mean/rms over rendered pixels, rmsd over all ROI pixels (double sums)."""
    vals = _select(image32, rendered).astype(np.float64)
    n = int(vals.size)
    with np.errstate(invalid="ignore"):
        total, sumsqr = float(vals.sum()), float(np.dot(vals, vals))
    mean = total / (n if n > 0 else 1)
    rms = math.sqrt(sumsqr / ((n if n > 1 else 2) - 1)) if not math.isnan(sumsqr) else math.nan
    with np.errstate(invalid="ignore"):
        dev_v = _select(image32, in_roi).astype(np.float64) - mean
        dev = float(np.dot(dev_v, dev_v))
    nr = int(dev_v.size)
    rmsd = math.sqrt(dev / ((nr if nr > 1 else 2) - 1)) if not math.isnan(dev) else math.nan
    # max_I: strict '>' from 0 in raster order over rendered pixels; NaN never wins
    flat = image32.reshape(-1)
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
    t = image32.astype(np.float64) * scale + adc
    t = np.clip(t, 0.0, 65535.0)
    r = np.floor((t + 0.5).astype(np.float32))
    r = np.where(np.isnan(r), 0, r)
    return np.where(in_roi, r, 0).astype(np.uint16)


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
    t = np.minimum(image32.astype(np.float64) * scale, 255.0)
    t = np.where(np.isnan(t) | (t < 0), 0.0, t)
    return np.where(in_roi, np.trunc(t), 0).astype(np.uint8)
