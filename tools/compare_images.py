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
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

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


def diff_label(diff: np.ndarray, kind: str = "linear") -> str:
    """Title of the difference panel in words: identical, or the largest |PyTorch - C|, where, and how many differ."""
    finite = np.isfinite(diff)
    n, nz = diff.size, int((finite & (diff != 0)).sum())
    bad = n - int(finite.sum())
    extra = f"; {bad} pixels NaN/Inf in one image" if bad else ""
    if nz == 0:
        return f"PyTorch - C\nidentical: all {n} pixels equal{extra}"
    d = np.where(finite, np.abs(diff), 0.0)
    s, f = np.unravel_index(int(np.argmax(d)), diff.shape)
    return f"PyTorch - C ({kind})\nmax |diff| {d[s, f]:.3g} at [{s}, {f}]; {nz} of {n} pixels differ{extra}"


def _image_row(fig, axes, c, py):
    """C, PyTorch (one shared colour scale) and their signed difference, as images."""
    both = np.concatenate([c[np.isfinite(c)], py[np.isfinite(py)]])
    norm, norm_kind = _intensity_norm(both if both.size else np.zeros(1))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.6")
    for ax, img, name in ((axes[0], c, "C"), (axes[1], py, "PyTorch")):
        im = ax.imshow(_masked(img), cmap=cmap, norm=norm, origin="upper", interpolation="nearest")
        ax.set_title(f"{name} ({norm_kind})  max {np.nanmax(img) if np.isfinite(img).any() else float('nan'):.4g}")
        ax.set_xlabel("fast pixel")
        ax.set_ylabel("slow pixel")
        fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[2]
    if c.shape != py.shape:
        ax.text(0.5, 0.5, f"shape mismatch\nC {c.shape}\nPyTorch {py.shape}", ha="center", va="center",
                transform=ax.transAxes, fontsize=12)
        ax.set_axis_off()
        return
    diff = py - c
    dnorm, dkind = _diff_norm(diff)
    im = ax.imshow(_masked(diff), cmap=plt.get_cmap("RdBu_r").with_extremes(bad="0.6"), norm=dnorm, origin="upper",
                   interpolation="nearest")
    ax.set_title(diff_label(diff, dkind), fontsize=10)
    nz = np.argwhere(np.isfinite(diff) & (diff != 0))
    if 0 < len(nz) <= SPARSE_MARKERS:  # a few differing pixels vanish when drawn small: circle them
        ax.scatter(nz[:, 1], nz[:, 0], s=60, facecolors="none", edgecolors="k", linewidths=0.8)
        ax.set_xlim(-0.5, diff.shape[1] - 0.5)
        ax.set_ylim(diff.shape[0] - 0.5, -0.5)
    ax.set_xlabel("fast pixel")
    ax.set_ylabel("slow pixel")
    fig.colorbar(im, ax=ax, shrink=0.8)


def _plain_numbers(ax) -> None:
    """Tick labels that are the numbers themselves (4 significant digits): no '1e-3' multiplier or
    '+2.7e-3' offset printed at the axis end that a reader must apply by hand."""
    for axis, bins in ((ax.xaxis, 4), (ax.yaxis, 6)):
        axis.set_major_locator(MaxNLocator(bins))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.4g}"))


def _profile_rows(axes, c, py):
    """Line profiles through ``profile_pixel`` and value histograms: of both images (row 2) and of
    PyTorch - C (row 3), every axis with its numbers, so even a flat image says something checkable."""
    s, f = profile_pixel(c, py)
    diff = py - c
    for col, (sl, label) in enumerate(((np.s_[s, :], f"row slow={s}, along fast"),
                                       (np.s_[:, f], f"column fast={f}, along slow"))):
        ax = axes[0][col]
        ax.plot(c[sl], color="k", lw=1.6, label="C")
        ax.plot(py[sl], color="tab:orange", lw=1.0, ls="--", label="PyTorch")
        ax.set(title=f"intensity, {label}", xlabel="pixel", ylabel="intensity")
        ax.legend(loc="best", fontsize=8)
        ax = axes[1][col]
        ax.plot(diff[sl], color="tab:red", lw=1.0)
        ax.set(title=f"PyTorch - C, {label}", xlabel="pixel", ylabel="PyTorch - C")
    for ax, data, what in ((axes[0][2], (c, py), "intensity"), (axes[1][2], (diff,), "PyTorch - C")):
        vals = [d[np.isfinite(d)].ravel() for d in data]
        for v, name, color in zip(vals, ("C", "PyTorch") if len(vals) == 2 else ("PyTorch - C",),
                                  ("k", "tab:orange") if len(vals) == 2 else ("tab:red",)):
            ax.hist(v, bins=50, histtype="step", color=color, label=f"{name} ({v.size} px)")
        ax.set(title=f"histogram of {what}", xlabel=what, ylabel="pixels")
        ax.legend(loc="best", fontsize=8)
    for ax in (*axes[0], *axes[1]):
        _plain_numbers(ax)


def compare_figure(c_img: np.ndarray, py_img: np.ndarray, title: str | None = None, with_profiles: bool = False):
    """The comparison figure: C / PyTorch / signed difference (PyTorch - C) side by side, and with
    ``with_profiles`` two more rows of line profiles and histograms (same shape only).

    Intensity panels share one colour scale (log when the dynamic range exceeds ``LOG_DYNAMIC_RANGE``);
    the difference uses a diverging map, symmetric about zero (symlog when it spans a wide range).
    NaN pixels are drawn grey. Images of different shapes are drawn without a difference panel.
    """
    c = np.asarray(c_img, dtype=np.float64)
    py = np.asarray(py_img, dtype=np.float64)
    if c.ndim != 2 or py.ndim != 2:
        raise ValueError(f"expected 2-D images, got C {c.shape} and PyTorch {py.shape}")
    rows = 3 if with_profiles and c.shape == py.shape else 1
    fig, axes = plt.subplots(rows, 3, figsize=(13.5, 4.6 * rows), constrained_layout=True, squeeze=False)
    _image_row(fig, axes[0], c, py)
    if rows == 3:
        _profile_rows(axes[1:], c, py)
    if title:
        fig.suptitle(title)
    return fig


def write_compare_png(c_img: np.ndarray, py_img: np.ndarray, path, title: str | None = None,
                      with_profiles: bool = False) -> Path:
    """Write :func:`compare_figure` as a PNG (80 dpi); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = compare_figure(c_img, py_img, title, with_profiles)
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
