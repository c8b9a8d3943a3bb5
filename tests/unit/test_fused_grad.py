"""The fused backward (``fused_grad``): its gradients against autograd of the eager kernel, the reference.

Expected values: the gradients of the same loss through the eager kernel (``kernel="torch"``), whose own
derivatives are checked against finite differences and gradcheck in test_gradients.py. Every case
differentiates several parameters at once, so each render exercises the chain to the orientations, the panel
vectors, the solid angle, the polarization, N, the F table and the scale together.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import nanobrag_torch as nb
from nanobrag_torch.errors import UsageError
from tests.helpers.expt import write_expt

pytest.importorskip("numba")

F64 = torch.float64
# triclinic cell, misset, Kahn polarization, 2 phi steps x 3 mosaic domains, two sources, a rotated detector
CASE = ("-cell 20 22 24 88 91 93 -default_F 10 -N 4 -lambda 1 -distance 60 -pixel 0.6 -detpixels 32 "
        "-oversample 1 -misset 3 5 7 -polar 0.3 -phi 1 -osc 0.5 -phisteps 2 -mosaic 0.3 -mosaic_domains 3 "
        "-twotheta 2 -detector_rotx 1 -sourcefile two.txt")
CRYSTAL = ["crystal__cell", "crystal__misset", "crystal__mosaic_spread", "crystal__phi0", "crystal__phistep",
           "crystal__scale"]
DETECTOR = ["detector__distance", "detector__beam_center", "detector__rotations", "detector__twotheta",
            "detector__pixel_size"]
EVERY = CRYSTAL + DETECTOR + ["crystal__N", "beam__fluence", "structure_factors__default_F"]


def model_of(argv: str, tmp_path) -> nb.Model:
    (tmp_path / "two.txt").write_text("-10 0 0 1 1e-10\n-10 0.01 0.003 1\n")
    return nb.load_model(nb.config_from_argv(argv.split()), workdir=tmp_path)


def _field(m: nb.Model, key: str):
    part, name = key.split("__")
    return getattr(getattr(m, part), name)


def gradients(m: nb.Model, keys, kernel: str, dtype=F64):
    """(render result, {key: d sum(W image)/d key}) with fixed random weights W."""
    xs = {k: torch.as_tensor(_field(m, k), dtype=F64).clone().requires_grad_(True) for k in keys}
    r = nb.render_details(m.replace(**xs).to(dtype=dtype), kernel=kernel)
    W = torch.rand(r.image.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    gs = torch.autograd.grad((r.image.to(F64) * W).sum(), list(xs.values()))
    return r, dict(zip(keys, gs))


def assert_fused_equals_eager(m: nb.Model, keys, rel: float = 1e-11, dtype=F64):
    fused, gf = gradients(m, keys, "auto", dtype)
    eager, ge = gradients(m, keys, "torch", F64)
    assert fused.kernel == "numba" and eager.kernel == "torch"
    image = eager.image.detach()
    assert float(image.max()) > 10 * float(image.mean()), "the case must have spots"
    tol = 1e-12 if dtype == F64 else 1e-4
    assert float((fused.image.detach().to(F64) - image).abs().max()) <= tol * float(image.abs().max())
    for k in keys:
        size = float(ge[k].abs().max())
        assert size > 0, f"{k}: the image does not depend on it in this case"
        err = float((gf[k] - ge[k]).abs().max()) / size
        assert err <= rel, f"{k}: fused backward differs from autograd by {err:.3g} of its largest component"


@pytest.mark.parametrize("extra, keys", [
    ("", EVERY),
    ("", ["crystal__misset", "detector__distance"]),  # neither N nor F: their accumulations are skipped
    ("-Nb 1", ["crystal__N", "crystal__cell"]),  # d/dN of an axis C skips (N = 1)
    ("-oversample 2 -nopolar -water 0.001", ["crystal__cell", "detector__distance", "detector__pixel_size",
                                               "beam__water_size"]),
    ("-point_pixel -dmin 5", ["crystal__misset", "detector__beam_center", "detector__rotations"]),
    ("-polar 0", ["detector__twotheta", "crystal__cell"]),
    ("-roi 3 28 4 20", ["crystal__cell", "detector__beam_center"]),
    ("-interpolate", ["crystal__cell", "detector__distance"]),  # no table: nothing to interpolate, default_F
    # a sensor: layers at depth t thickstep along odet, C's capture fraction of the last layer's first sub-pixel
    ("-detector_thick 100 -thicksteps 2 -detector_abs 300", DETECTOR + ["crystal__misset"]),
    ("-detector_thick 50 -detector_abs 200 -oversample 2", ["detector__rotations", "detector__distance"]),
    ("-detector_thick 100 -thicksteps 3 -detector_abs 300 -dmin 5 -point_pixel", ["detector__twotheta",
                                                                                 "crystal__cell"]),
])
def test_fused_backward_equals_autograd(tmp_path, extra, keys):
    assert_fused_equals_eager(model_of(CASE + " " + extra, tmp_path), keys)


def test_structure_factor_table_gradient(tmp_path):
    rows = [f"{h} {k} {l_} {5 + (h * 7 + k * 3 + l_) % 11}" for h in range(-2, 3) for k in range(-2, 3)
            for l_ in range(-2, 3)]
    (tmp_path / "t.hkl").write_text("\n".join(rows) + "\n")
    m = model_of(CASE.replace("-default_F 10", "-hkl t.hkl -default_F 3") + " -nointerpolate", tmp_path)
    assert_fused_equals_eager(m, ["structure_factors__table", "structure_factors__default_F", "crystal__cell"])


@pytest.mark.parametrize("sensor", [{}, {"thickness": 0.32, "mu": 3.0}])
def test_panel_vectors(tmp_path, sensor):
    # panels of 30 x 20 pixels: 600 each, so tiles of 64 pixels cross panel boundaries; with and without a sensor
    path = tmp_path / "tilt.expt"
    write_expt(path, "tilt", size=(30, 20), **sensor)
    m = nb.load_model(nb.config_from_argv(["-expt", str(path), "-cell", "40", "40", "40", "90", "90", "90",
                                           "-misset", "10", "20", "30", "-N", "5", "-default_F", "100"]))
    P = m.detector.panels
    m = replace(m, detector=replace(m.detector, offset=torch.full((P, 3), 2e-5, dtype=F64),
                                    rotation=torch.full((P, 3), 1e-3, dtype=F64)))
    assert_fused_equals_eager(m, ["detector__origin", "detector__offset", "detector__rotation", "crystal__misset"])


def test_table_covering_every_lookup_gives_default_F_exactly_zero(tmp_path):
    # default_F's gradient is the table border's sum, taken on its own: exactly 0 when no lookup leaves the table
    rows = [f"{h} {k} {l_} {5 + (h * 7 + k * 3 + l_) % 11}" for h in range(-6, 7) for k in range(-6, 7)
            for l_ in range(-6, 7)]
    (tmp_path / "t.hkl").write_text("\n".join(rows) + "\n")
    m = model_of(CASE.replace("-default_F 10", "-hkl t.hkl -default_F 3") + " -nointerpolate", tmp_path)
    keys = ["structure_factors__table", "structure_factors__default_F"]
    (fused, gf), (_, ge) = gradients(m, keys, "auto"), gradients(m, keys, "torch")
    assert fused.kernel == "numba"
    assert float(ge["structure_factors__default_F"]) == 0.0 == float(gf["structure_factors__default_F"])
    assert float((gf[keys[0]] - ge[keys[0]]).abs().max()) <= 1e-11 * float(ge[keys[0]].abs().max())


def test_mask(tmp_path):
    m = model_of(CASE, tmp_path)
    mask = torch.ones(32, 32, dtype=torch.bool)
    mask[5:20, 8:12] = False
    mask[::3, 20:] = False
    assert_fused_equals_eager(replace(m, detector=replace(m.detector, mask=mask)),
                              ["crystal__misset", "detector__beam_center"])


def test_thread_count_changes_only_the_summation_order(tmp_path):
    m = model_of(CASE, tmp_path)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one = gradients(m, EVERY, "numba")
        torch.set_num_threads(2)
        _, two = gradients(m, EVERY, "numba")
    finally:
        torch.set_num_threads(old)
    for k in EVERY:
        assert float((one[k] - two[k]).abs().max()) <= 1e-13 * float(one[k].abs().max()), k


def test_float32_gradients_are_close_to_float64(tmp_path):
    # the float32 backward accumulates in double: its gradient is the float64 one to about float32 resolution
    assert_fused_equals_eager(model_of(CASE, tmp_path), ["crystal__misset", "detector__distance"], rel=1e-4,
                              dtype=torch.float32)


@pytest.mark.parametrize("extra, key, reason", [
    ("-round_xtal", "crystal__cell", "a crystal shape other than square with gradients"),
    ("", "beam__wavelength", "gradients w.r.t. wavelengths"),
    ("-detector_thick 100 -thicksteps 2", "detector__thickness", "gradients w.r.t. thick_mu"),
    ("-oversample 2 -oversample_omega", "crystal__cell", "-oversample_thick/-polar/-omega flags with gradients"),
])
def test_what_it_does_not_cover_renders_eagerly(tmp_path, extra, key, reason):
    m = model_of(CASE + " " + extra, tmp_path)
    r, g = gradients(m, [key], "auto")
    assert r.kernel == "torch" and float(g[key].abs().max()) > 0
    with pytest.raises(UsageError, match=reason):
        gradients(m, [key], "numba")
