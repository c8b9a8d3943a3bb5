"""The fused CPU render path (nanobrag_torch.fused) against the eager torch kernel, branch by branch.

The eager kernel is the reference: same formulas, same evaluation order, same C quirks. In float64 the two
differ only by rounding (another summation order, the polynomial sin(pi x) instead of the library's), so
every pixel agrees to a relative 1e-9 and NaN/zero pixels coincide; in float32 the fused image stays within
1e-4 of the float64 reference's maximum (the float32 parity gate allows 1e-2).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nanobrag_torch import config_from_argv, fused, fused_grad, load_model, render_details, stats
from nanobrag_torch.errors import UsageError
from nanobrag_torch.io.smv import write_smv
from nanobrag_torch.renderer import _fused_module, prepare

CUBIC = "-cell 100 100 100 90 90 90 -lambda 1 -distance 100 -pixel 0.1 -detpixels 24 -N 3 -default_F 10 -oversample 1"
# tricubic on (N=2), a -4..4 table, the beam near pixel (0,0): |h| grows along the raster past the range
SHUTOFF = ("-cell 100 100 100 90 90 90 -lambda 1 -distance 100 -pixel 0.1 -detpixels 32 -N 2 -Xbeam 0.3 "
           "-Ybeam 0.3 -hkl t.hkl -default_F 3 -oversample 1")

# One entry per settings branch of the kernel.
BRANCHES = {
    "square": "",
    "square_Nabc": "-Na 1 -Nb 4 -Nc 7",
    "round": "-round_xtal -fudge 0.8",
    "gauss": "-gauss_xtal",
    "tophat": "-tophat_spots -fudge 1.5",
    "hkl_nearest_border": "-hkl t.hkl -nointerpolate",
    "tricubic_in_range": "-hkl t.hkl -interpolate -detpixels 12 -Xbeam 0.6 -Ybeam 0.6",
    "dmin": "-dmin 20",
    "dmin_water": "-dmin 80 -water 0.1",  # corners (d < 80 A) culled
    "water": "-water 0.1",
    "water_tophat": "-water 0.1 -tophat_spots",
    "thickness": "-detector_thick 450 -detector_abs 320 -thicksteps 3",
    "oversample_thick": "-detector_thick 450 -detector_abs 320 -thicksteps 2 -oversample_thick",
    "oversample_polar_omega": "-oversample 2 -oversample_polar -oversample_omega -phi 3 -osc 1 -phisteps 3",
    "point_pixel_nopolar": "-point_pixel -nopolar",
    "kahn_polar": "-polar 0.5 -polar_vector 0 1 0",
    "curved": "-curved_det",
    "sources_mosaic": "-divergence 0.5 -divsteps 3 -dispersion 1 -dispsteps 3 -mosaic 1 -mosaic_domains 4",
    "roi": "-roi 2 10 3 20",
    # a zero wavelength: NaN Miller indices, an all-NaN image (as C). Refused by validate.py since issue 12;
    # rendered here with the checks switched off, to keep both kernels' NaN paths the same.
    "nan_source": "-sourcefile zero.txt",
}


def _inputs(tmp_path: Path) -> Path:
    rows = [f"{h} {k} {l_} {10 + h + 2 * k + 3 * l_ % 7}" for h in range(-4, 5) for k in range(-4, 5)
            for l_ in range(-4, 5)]
    (tmp_path / "t.hkl").write_text("\n".join(rows) + "\n")
    (tmp_path / "zero.txt").write_text("0 0 10 1 1e-10\n0 0 10 1 0\n")
    return tmp_path


def _render(argv: str, tmp_path: Path, dtype: str, kernel: str):
    """(flat image, the RenderResult) of ``argv`` on ``kernel``."""
    cfg = config_from_argv(argv.split()).with_engine(dtype=dtype)
    res = render_details(load_model(cfg, workdir=tmp_path), kernel=kernel, progress=False)
    assert res.kernel == kernel
    return res.image.reshape(-1), res


def _assert_same_float64(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.equal(torch.isnan(got), torch.isnan(ref))
    assert torch.equal(got == 0, ref == 0)
    ok = torch.isfinite(ref) & (ref != 0)
    rel = (got[ok] - ref[ok]).abs() / ref[ok].abs()
    assert float(rel.max()) < 1e-9 if rel.numel() else True


def _branch(tmp_path: Path, branch: str, dtype: str):
    """(fused image in ``dtype``, its result, eager float64 image, its result) for one branch."""
    argv = f"{CUBIC} {BRANCHES[branch]}"
    _inputs(tmp_path)
    return (*_render(argv, tmp_path, dtype, "numba"), *_render(argv, tmp_path, "float64", "torch"))


@pytest.mark.parametrize("branch", list(BRANCHES))
def test_fused_equals_eager_float64(tmp_path, branch, monkeypatch):
    if branch == "nan_source":
        for module in ("load", "renderer"):
            monkeypatch.setattr(f"nanobrag_torch.{module}.validate_model", lambda model: None)
    got, sim_f, ref, sim_e = _branch(tmp_path, branch, "float64")
    assert got.dtype == torch.float64
    _assert_same_float64(got, ref)
    assert sim_f.omega_sum == pytest.approx(sim_e.omega_sum, rel=1e-12)
    assert bool(sim_f.interpolation_disabled) == bool(sim_e.interpolation_disabled)
    if branch == "nan_source":
        assert torch.isnan(ref).all(), "a zero-wavelength source makes every pixel NaN"
    else:
        assert (ref > 0).any()
    if branch == "dmin_water":
        assert ref.reshape(24, 24)[0, 0] == 0, "every source culled: polar stays 0, so 0 even with water (C 6.4)"
        assert ref.reshape(24, 24)[12, 12] > 0


@pytest.mark.parametrize("branch", [b for b in BRANCHES if b != "nan_source"])
def test_fused_float32_within_float32_parity(tmp_path, branch):
    got, _, ref, _ = _branch(tmp_path, branch, "float32")
    assert got.dtype == torch.float32
    scale = float(ref.abs().max())
    assert float((got.double() - ref).abs().max()) <= 1e-4 * scale


def test_interpolation_shutoff_matches_the_eager_raster_order(tmp_path):
    # C switches tricubic off globally at the first out-of-range lookup in raster order. The fused path
    # renders tiles in parallel and redoes the pixels after the first such lookup: the image must be the
    # eager kernel's (which follows the raster order exactly), for 1 and 2 threads alike.
    _inputs(tmp_path)
    ref, sim_e = _render(SHUTOFF, tmp_path, "float64", "torch")
    near, _ = _render(SHUTOFF + " -nointerpolate", tmp_path, "float64", "torch")
    assert (ref != near).any() and (ref[-32:] == near[-32:]).all(), "the case interpolates, then shuts off"
    for threads in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            got, sim_f = _render(SHUTOFF, tmp_path, "float64", "numba")
        finally:
            torch.set_num_threads(old)
        _assert_same_float64(got, ref)
        assert bool(sim_f.interpolation_disabled)


def test_shutoff_second_pass_redoes_the_interpolated_pixels_after_the_first_out_of_range_one(tmp_path,
                                                                                             monkeypatch):
    # One thread: tiles after the known first out-of-range pixel use nearest F at once, but the pixels after
    # it in its own tile interpolated and must be redone with nearest F by the second pass.
    _inputs(tmp_path)
    ref, sim = _render(SHUTOFF, tmp_path, "float64", "torch")
    passes = []
    run_tiles = fused._run_tiles
    monkeypatch.setattr(fused, "_run_tiles", lambda pix, *a, **k: (passes.append(pix.size or k["npix"]),
                                                                         run_tiles(pix, *a, **k)))
    monkeypatch.setattr(fused, "num_threads", lambda: 1)
    got, _ = _render(SHUTOFF, tmp_path, "float64", "numba")
    _assert_same_float64(got, ref)
    assert len(passes) == 2 and passes[0] == 32 * 32 and 0 < passes[1] < fused.TILE


def test_thread_count_and_chunking_do_not_change_the_image(tmp_path, monkeypatch):
    argv = f"{CUBIC} -hkl t.hkl -nointerpolate -mosaic 1 -mosaic_domains 3 -oversample 2"
    _inputs(tmp_path)
    base, _ = _render(argv, tmp_path, "float32", "numba")
    monkeypatch.setattr(fused, "_CHUNKS_PER_THREAD", 1000)  # one tile per work item
    monkeypatch.setattr(fused, "num_threads", lambda: 2)
    many, _ = _render(argv, tmp_path, "float32", "numba")
    monkeypatch.setattr(fused, "num_threads", lambda: 1)
    one, _ = _render(argv, tmp_path, "float32", "numba")
    assert torch.equal(base, many) and torch.equal(base, one)


def test_mask_and_roi(tmp_path):
    # Masked pixels and pixels outside the ROI are not rendered (0) on both paths.
    _inputs(tmp_path)
    m = np.ones((24, 24), dtype=np.uint16)
    m[5:9, 3:20] = 0
    write_smv(tmp_path / "mask.img", m, [("SIZE1", "24"), ("SIZE2", "24"), ("PIXEL_SIZE", "0.1")])
    argv = f"{CUBIC} -mask mask.img -roi 1 22 2 21"
    got, _ = _render(argv, tmp_path, "float64", "numba")
    ref, _ = _render(argv, tmp_path, "float64", "torch")
    _assert_same_float64(got, ref)
    img = got.reshape(24, 24).numpy()
    assert (img[5:9, 3:20] == 0).all() and (img[:2] == 0).all() and (img[:, 23] == 0).all()
    assert (img[10:20, 2:20] > 0).all()


def test_sinpi_polynomial_is_accurate():
    # sin(pi x) on |x| <= 1/2 against the long-double library sine: within 2 ulp in each dtype.
    x = np.linspace(-0.5, 0.5, 200001)
    pi = np.longdouble("3.14159265358979323846264338327950288")
    for dt, ulp in ((np.float64, 2.0 ** -52), (np.float32, 2.0 ** -23)):
        xs = x.astype(dt)
        ref = np.sin(pi * xs.astype(np.longdouble))
        got = fused.sinpi_small_array(xs).astype(np.longdouble)
        nz = ref != 0
        assert float(np.max(np.abs(got[nz] - ref[nz]) / np.abs(ref[nz]))) <= 2 * ulp
        assert got[~nz].size == 0 or (got[~nz] == 0).all()


def test_sincg_reduced_matches_the_grating_function():
    # sin(N pi h)/sin(pi h) evaluated on the fractional part: N (-1)^(h (N-1)) at integer h (no 0/0),
    # and the long-double direct formula elsewhere.
    for n in (2, 5, 10, 37):
        ints = np.arange(-7, 8, dtype=np.float64)
        assert (fused.sincg_array(ints, n) == n * (-1.0) ** (ints * (n - 1))).all()
        h = np.linspace(-6.3, 6.3, 20001)
        h = h[h != np.round(h)]
        hl = h.astype(np.longdouble)
        pi = np.longdouble("3.14159265358979323846264338327950288")
        ref = np.sin(n * pi * hl) / np.sin(pi * hl)
        got = fused.sincg_array(h, n)
        assert float(np.max(np.abs(got - ref))) <= 1e-12 * n


def test_kernel_flag_and_automatic_selection(tmp_path):
    assert config_from_argv(CUBIC.split()).engine.kernel == "auto"
    assert config_from_argv((CUBIC + " -kernel torch").split()).engine.kernel == "torch"
    with pytest.raises(UsageError, match="-kernel"):
        config_from_argv((CUBIC + " -kernel fast").split())
    model = load_model(config_from_argv(CUBIC.split()), workdir=tmp_path)
    prep = prepare(model)
    assert _fused_module("auto", model, prep, False) is fused
    assert _fused_module("torch", model, prep, False) is None
    assert _fused_module("auto", model, prep, True) is fused_grad  # gradients: the fused backward
    rnd = load_model(config_from_argv((CUBIC + " -round_xtal").split()), workdir=tmp_path)
    assert _fused_module("auto", rnd, prepare(rnd), True) is None  # one it does not cover: eager autograd
    with pytest.raises(UsageError, match="-kernel numba: .* other than square with gradients"):
        _fused_module("numba", rnd, prepare(rnd), True)
    batch = model.replace(crystal__misset=torch.zeros(2, 3, dtype=torch.float64))
    assert _fused_module("auto", batch, prepare(batch), False) is None  # a batch of crystals: eager
    assert render_details(model).kernel == "numba" and render_details(model, kernel="torch").kernel == "torch"


def test_threads_follow_torch():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert fused.num_threads() == 1
        torch.set_num_threads(2)
        assert fused.num_threads() == 2
    finally:
        torch.set_num_threads(old)


def test_compiled_statistics_and_pixels_equal_the_numpy_block_loops(monkeypatch):
    # stats.py uses the fused module's compiled loops when numba imports; its numpy block loops are the
    # reference: same integer/PGM pixels exactly, the same sums up to summation order.
    rng = np.random.default_rng(3)
    img = (rng.standard_normal((300, 257)) * 50).astype(np.float32)
    img[5, 7], img[9, 10], img[11, 12], img[12, 13] = np.nan, np.inf, -np.inf, 1e9
    rendered = rng.random(img.shape) > 0.2
    roi = stats.roi_mask(img.shape, (3, 250, 2, 290))
    fast = (stats.summarize(img, rendered, roi, 1e-4, 2), stats.int_image(img, roi, 37.5, 40.0),
            stats.pgm_image(img, roi, 1.7))
    monkeypatch.setattr(stats, "_compiled", lambda *a: None)
    ref = (stats.summarize(img, rendered, roi, 1e-4, 2), stats.int_image(img, roi, 37.5, 40.0),
           stats.pgm_image(img, roi, 1.7))
    assert np.array_equal(fast[1], ref[1]) and np.array_equal(fast[2], ref[2])
    assert fast[1][9, 10] == 65535 and fast[1][5, 7] == 0 and fast[2][9, 10] == 255 and fast[2][11, 12] == 0
    a, b = fast[0], ref[0]
    assert (a.n, a.max_I, a.max_I_x, a.max_I_y) == (b.n, b.max_I, b.max_I_x, b.max_I_y)
    for x, y in ((a.mean, b.mean), (a.rms, b.rms), (a.rmsd, b.rmsd)):
        assert x == pytest.approx(y, rel=1e-12, nan_ok=True)
    finite = img.copy()
    finite[~np.isfinite(finite)] = 0
    s = stats.summarize(finite, rendered, roi, 1e-4, 2)
    vals = finite[rendered].astype(np.float64)
    assert s.mean == pytest.approx(vals.mean(), rel=1e-12)
    assert s.rmsd == pytest.approx(np.sqrt(((finite[roi] - vals.mean()) ** 2).sum() / (roi.sum() - 1)), rel=1e-9)


@pytest.mark.parametrize("kernel", ["torch", "numba"])
def test_the_progress_bar_counts_pixels_on_both_kernels(tmp_path, monkeypatch, kernel):
    # Issue 21: the bar's unit is what it counts. Both paths advance it by pixels, ending at the pixel count
    # (here with -roi: only the rendered window), so its rate reads pixels per second.
    import nanobrag_torch.renderer as renderer

    bars = []
    real = renderer._progress
    monkeypatch.setattr(renderer, "_progress", lambda total, progress: bars.append(real(total, True)) or bars[-1])
    cfg = config_from_argv((CUBIC + " -roi 2 10 3 20").split())
    render_details(load_model(cfg, workdir=tmp_path), kernel=kernel, progress=True)
    (bar,) = bars
    assert bar.unit == "pixel" and bar.total == bar.n == 9 * 18
