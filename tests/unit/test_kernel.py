"""The render kernel: chunking invariance, the running-sum factors, and differentiability."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nanobrag_torch import config_from_argv, kernel, load_model, render, render_details
from nanobrag_torch import renderer as render_module
from nanobrag_torch.geometry import pixel_positions
from nanobrag_torch.renderer import prepare

CUBIC = "-cell 100 100 100 90 90 90 -lambda 1 -distance 100 -pixel 0.1 -detpixels 24 -N 3"
# N=2 turns tricubic interpolation on (auto rule). With the beam near pixel (0,0), |h| grows along the raster:
# a -4..4 table is interpolable for |h| <= 2, which the far pixels (|h| up to ~3.4) exceed.
SHUTOFF = (CUBIC.replace("-N 3", "-N 2").replace("-detpixels 24", "-detpixels 32")
           + " -Xbeam 0.3 -Ybeam 0.3 -hkl t.hkl -default_F 3 -oversample 1")


def _model(argv: str, tmp_path: Path, **engine):
    cfg = config_from_argv(argv.split())
    if engine:
        cfg = cfg.with_engine(**engine)
    return load_model(cfg, workdir=tmp_path)


def _render(argv: str, tmp_path: Path, **engine) -> torch.Tensor:
    return render(_model(argv, tmp_path, **engine), kernel="torch")


def _small_hkl(path: Path, lo: int, hi: int) -> None:
    rows = [f"{h} {k} {l_} {10 + h + 2 * k + 3 * l_ % 7}" for h in range(lo, hi + 1) for k in range(lo, hi + 1)
            for l_ in range(lo, hi + 1)]
    path.write_text("\n".join(rows) + "\n")


def test_chunk_size_does_not_change_the_image(tmp_path, monkeypatch):
    # Chunks are an implementation detail: 1-pixel chunks and one whole-image chunk must agree exactly,
    # including C's global tricubic shut-off, which must carry from chunk to chunk in raster order.
    _small_hkl(tmp_path / "t.hkl", -4, 4)
    model = _model(SHUTOFF, tmp_path)
    assert model.structure_factors.interpolate, "auto rule: N <= 2 turns tricubic interpolation on"
    whole = render_details(model, kernel="torch")
    monkeypatch.setattr(render_module, "chunk_pixels", lambda *a: (7, 7, False))
    chunked = render_details(model, kernel="torch")
    assert torch.equal(whole.image, chunked.image)
    assert bool(whole.interpolation_disabled) and bool(chunked.interpolation_disabled), \
        "the table is too small for every pixel, so interpolation must switch off"


def test_cpu_chunks_aim_at_their_evaluation_targets_within_the_budget():
    # 512^2 pixels x 10 domains: the forward aims at 2^17 evaluations per chunk, a gradient at 2^19, a gradient
    # whose graph must be recomputed chunk by chunk at the forward's size; a small budget caps them all.
    from nanobrag_torch import budget

    model = load_model(config_from_argv("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 512 "
                                        "-mosaic 0.5 -mosaic_domains 10 -oversample 1".split()))
    assert budget.evaluations_per_pixel(model) == 10
    fwd, grad, recomputed = (budget.chunk_pixels(model, 2.0, False), budget.chunk_pixels(model, 2.0, True),
                             budget.chunk_pixels(model, 0.05, True))
    assert (fwd.pixels, fwd.recompute) == (2**17 // 10, False) and fwd.limit == 512 * 512
    assert (grad.pixels, grad.recompute) == (2**19 // 10, False)
    assert recomputed.recompute and recomputed.pixels == min(recomputed.limit, 2**17 // 10)
    tight = budget.chunk_pixels(model, 0.004, False)
    assert tight.limit < 2**17 // 10 and tight.pixels == tight.limit


def test_interpolation_shutoff_is_in_raster_order(tmp_path):
    # Pixels rendered before the first out-of-range lookup are interpolated, later ones use nearest F.
    # Reference: rendering with interpolation forced off must equal the image from the shut-off point on.
    _small_hkl(tmp_path / "t.hkl", -4, 4)
    base = SHUTOFF
    auto = _render(base, tmp_path).reshape(-1)
    near = _render(base + " -nointerpolate", tmp_path).reshape(-1)
    differ = torch.nonzero(auto != near).reshape(-1)
    assert differ.numel() > 0, "some pixels before the shut-off must be interpolated"
    last_interp = int(differ.max())
    assert last_interp < auto.numel() - 32, "the shut-off must happen before the last row"
    assert torch.equal(auto[last_interp + 1:], near[last_interp + 1:])


def test_oversample_factors_follow_the_running_sum(tmp_path):
    # -oversample_omega/-oversample_polar multiply the RUNNING sum after every term (§6.10):
    # I_n = (I_{n-1} + t_n) * f_n. Check the kernel's closed form against that loop for a few pixels.
    argv = (CUBIC + " -default_F 10 -oversample 2 -phi 3 -osc 1 -phisteps 3"
            " -oversample_omega -oversample_polar -polar 0.5")
    model = _model(argv, tmp_path)
    prep = prepare(model)
    settings, inputs = prep.settings, prep.inputs
    px = float(model.detector.pixel_size)
    idx = torch.tensor([0, 5, 100, 300])
    pos = pixel_positions(prep.detector, idx % 24, idx // 24, px, 2, 0.0, 1, False)
    got, _, _ = kernel.render_chunk(pos, inputs, settings, torch.ones(1, dtype=torch.bool))
    got = got[0]
    from nanobrag_torch import physics

    N = torch.tensor([3.0, 3.0, 3.0], dtype=torch.float64)

    for p in range(pos.shape[0]):
        I = 0.0
        for s in range(pos.shape[2]):
            P = pos[p, 0, s]
            R = torch.linalg.vector_norm(P)
            d = P / R
            omega = px ** 2 / R ** 2 * inputs.close_distance / R
            inc = inputs.incident[0]
            S = (d - inc) / inputs.wavelengths[0]
            polar = physics.polarization_factor(inc, d, inputs.polar_axis, 0.5)
            for k in range(inputs.orientations.shape[1]):
                hkl = inputs.orientations[0, k] @ S
                t = 10.0 ** 2 * physics.lattice_factor_square(hkl[None], N)[0] ** 2
                I = (I + t) * polar * omega
        assert float(got[p]) == pytest.approx(float(inputs.scale * I), rel=1e-12)


@pytest.mark.parametrize("shape", ["square_xtal", "round_xtal", "gauss_xtal"])  # tophat is piecewise constant
def test_render_is_differentiable(tmp_path, shape):
    # Gradients w.r.t. the crystal orientation and the pixel positions exist and are finite for every
    # spot shape (the singular points sincg(0), sinc3(0), sqrt(0) use double-where formulations).
    prep = prepare(_model(CUBIC + f" -default_F 10 -oversample 1 -{shape}", tmp_path))
    settings, inputs = prep.settings, prep.inputs
    idx = torch.arange(24 * 24)
    pos = pixel_positions(prep.detector, idx % 24, idx // 24, 1e-4, 1, 0.0, 1, False)
    pos = pos.clone().requires_grad_(True)
    inputs.orientations = inputs.orientations.clone().requires_grad_(True)
    img, _, _ = kernel.render_chunk(pos, inputs, settings, torch.ones(1, dtype=torch.bool))
    img.sum().backward()
    assert torch.isfinite(inputs.orientations.grad).all()
    assert torch.isfinite(pos.grad).all()
    assert inputs.orientations.grad.abs().sum() > 0, "the image depends on the orientation"


def test_float32_and_float64_share_the_code_path(tmp_path):
    # Same config, two dtypes: the float32 image is within float32 parity of the float64 one and is float32.
    argv = CUBIC + " -default_F 10 -oversample 1"
    img64 = _render(argv, tmp_path)
    img32 = _render(argv, tmp_path, dtype="float32")
    assert img32.dtype == torch.float32 and img64.dtype == torch.float64
    rel = float((img32.double() - img64).abs().max() / img64.abs().max())
    assert rel < 1e-4, rel


def test_rendered_pixels_respect_roi_and_mask(tmp_path):
    # Pixels outside the ROI are 0 and are not rendered (§2.4); the ROI is inclusive on both ends.
    img = _render(CUBIC + " -default_F 10 -oversample 1 -roi 2 5 3 4", tmp_path).numpy()
    inside = np.zeros_like(img, dtype=bool)
    inside[3:5, 2:6] = True
    assert (img[~inside] == 0).all()
    assert (img[inside] > 0).all()


def test_oversample_thick_without_thickness_is_all_zero(tmp_path):
    # C recomputes the capture fraction per term under -oversample_thick even when the sensor has no
    # thickness: exp(0) - exp(0) = 0 multiplies every running sum, so the image is exactly zero (§6.10).
    img = _render(CUBIC + " -default_F 10 -oversample 1 -oversample_thick", tmp_path)
    assert torch.count_nonzero(img) == 0
    plain = _render(CUBIC + " -default_F 10 -oversample 1", tmp_path)
    assert torch.count_nonzero(plain) > 0, "without the flag the same render is not empty"
