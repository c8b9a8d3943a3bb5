"""Visual C-vs-PyTorch comparisons: side-by-side panels and line profiles (matplotlib, Agg backend).

The one implementation of comparison pictures, used by the Phase D pipeline and the parity matrix.
Numbers (metrics, verdicts) live in ``tools.metrics``; this module only draws.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm, Normalize, SymLogNorm  # noqa: E402

# Use a log colour scale for an intensity panel when its positive values span more than this factor.
LOG_DYNAMIC_RANGE = 100.0
# Circle the differing pixels in the difference panel when there are at most this many.
SPARSE_MARKERS = 200


def _intensity_norm(img: np.ndarray):
    """Colour normalisation for an intensity image: log when positive values span a wide range."""
    finite = img[np.isfinite(img)]
    pos = finite[finite > 0]
    if pos.size and finite.min() >= 0:
        lo, hi = float(pos.min()), float(pos.max())
        # Floor at 1e-6 of the max so a few tiny pixels do not wash the picture out.
        lo = max(lo, hi * 1e-6)
        if hi > lo and hi / lo > LOG_DYNAMIC_RANGE:
            return LogNorm(vmin=lo, vmax=hi, clip=True), "log"
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if hi == lo:
            hi = lo + 1.0
        return Normalize(vmin=lo, vmax=hi), "linear"
    return Normalize(vmin=0.0, vmax=1.0), "linear"


def _diff_norm(diff: np.ndarray):
    """Symmetric colour normalisation for a signed difference; symlog when it spans a wide range."""
    finite = diff[np.isfinite(diff)]
    m = float(np.abs(finite).max()) if finite.size else 0.0
    if m == 0.0:
        return Normalize(vmin=-1.0, vmax=1.0), "linear"
    nz = np.abs(finite[finite != 0])
    small = float(np.percentile(nz, 50)) if nz.size else m
    if m / max(small, m * 1e-9) > LOG_DYNAMIC_RANGE:
        return SymLogNorm(linthresh=max(small, m * 1e-3), vmin=-m, vmax=m, base=10), "symlog"
    return Normalize(vmin=-m, vmax=m), "linear"


def _masked(img: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.masked_invalid(np.asarray(img, dtype=np.float64))


def write_compare_png(c_img: np.ndarray, py_img: np.ndarray, path, title: str | None = None) -> Path:
    """Write a PNG with C / PyTorch / signed difference (PyTorch - C) side by side; return its path.

    Intensity panels share one colour scale (log when the dynamic range exceeds ``LOG_DYNAMIC_RANGE``);
    the difference uses a diverging map, symmetric about zero (symlog when it spans a wide range).
    NaN pixels are drawn grey. Images of different shapes are drawn without a difference panel.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = np.asarray(c_img, dtype=np.float64)
    py = np.asarray(py_img, dtype=np.float64)
    if c.ndim != 2 or py.ndim != 2:
        raise ValueError(f"expected 2-D images, got C {c.shape} and PyTorch {py.shape}")

    both = np.concatenate([c[np.isfinite(c)], py[np.isfinite(py)]])
    norm, norm_kind = _intensity_norm(both if both.size else np.zeros(1))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.6")
    dmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.6")

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6), constrained_layout=True)
    for ax, img, name in ((axes[0], c, "C"), (axes[1], py, "PyTorch")):
        im = ax.imshow(_masked(img), cmap=cmap, norm=norm, origin="upper", interpolation="nearest")
        ax.set_title(f"{name} ({norm_kind})  max {np.nanmax(img) if np.isfinite(img).any() else float('nan'):.4g}")
        ax.set_xlabel("fast")
        ax.set_ylabel("slow")
        fig.colorbar(im, ax=ax, shrink=0.8)

    ax = axes[2]
    if c.shape == py.shape:
        diff = py - c
        dnorm, dkind = _diff_norm(diff)
        im = ax.imshow(_masked(diff), cmap=dmap, norm=dnorm, origin="upper", interpolation="nearest")
        finite = diff[np.isfinite(diff)]
        m = float(np.abs(finite).max()) if finite.size else float("nan")
        nz = np.argwhere(np.isfinite(diff) & (diff != 0))
        ax.set_title(f"PyTorch - C ({dkind})  max|d| {m:.3g}, {len(nz)} px")
        if 0 < len(nz) <= SPARSE_MARKERS:  # a few differing pixels vanish when drawn small: circle them
            ax.scatter(nz[:, 1], nz[:, 0], s=60, facecolors="none", edgecolors="k", linewidths=0.8)
            ax.set_xlim(-0.5, diff.shape[1] - 0.5)
            ax.set_ylim(diff.shape[0] - 0.5, -0.5)
        fig.colorbar(im, ax=ax, shrink=0.8)
    else:
        ax.text(0.5, 0.5, f"shape mismatch\nC {c.shape}\nPyTorch {py.shape}", ha="center", va="center",
                transform=ax.transAxes, fontsize=12)
        ax.set_axis_off()
    ax.set_xlabel("fast")
    ax.set_ylabel("slow")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def profile_pixel(c_img: np.ndarray, py_img: np.ndarray) -> tuple[int, int]:
    """(slow, fast) the profiles go through: the largest |PyTorch - C| if any, else the brightest C pixel."""
    c = np.asarray(c_img, dtype=np.float64)
    py = np.asarray(py_img, dtype=np.float64)
    diff = np.abs(py - c)
    diff[~np.isfinite(diff)] = 0.0
    if diff.max() > 0:
        flat = int(np.argmax(diff))
    else:
        cc = np.where(np.isfinite(c), c, -np.inf)
        flat = int(np.argmax(cc))
    s, f = np.unravel_index(flat, c.shape)
    return int(s), int(f)


def write_profile_png(c_img: np.ndarray, py_img: np.ndarray, path, title: str | None = None) -> Path:
    """Write a PNG with C and PyTorch line profiles along the row and the column through ``profile_pixel``.

    The y axis is logarithmic when the profile's positive values span more than ``LOG_DYNAMIC_RANGE``.
    Both images must have the same shape.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = np.asarray(c_img, dtype=np.float64)
    py = np.asarray(py_img, dtype=np.float64)
    if c.shape != py.shape or c.ndim != 2:
        raise ValueError(f"profiles need two 2-D images of one shape, got C {c.shape} and PyTorch {py.shape}")
    s, f = profile_pixel(c, py)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    for ax, (cl, pl, label) in zip(
        axes, ((c[s, :], py[s, :], f"row slow={s} (along fast)"), (c[:, f], py[:, f], f"column fast={f} (along slow)"))
    ):
        x = np.arange(cl.size)
        ax.plot(x, cl, color="k", lw=1.6, label="C")
        ax.plot(x, pl, color="tab:orange", lw=1.0, ls="--", label="PyTorch")
        vals = np.concatenate([cl, pl])
        pos = vals[np.isfinite(vals) & (vals > 0)]
        if pos.size and np.nanmin(vals) >= 0 and pos.max() / pos.min() > LOG_DYNAMIC_RANGE:
            ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("pixel")
        ax.set_ylabel("intensity")
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
