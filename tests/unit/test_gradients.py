"""Differentiable parameters: autograd against finite differences, gradcheck, the singular points, batches.

Expected values: the derivative of the same render computed by central finite differences with Richardson
extrapolation (error O(h^4), independent of autograd), torch.autograd.gradcheck, and closed-form
derivatives of the grating and sphere functions at their singular points.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import nanobrag_torch as nb
from nanobrag_torch import physics as P
from nanobrag_torch.errors import UsageError

F64 = torch.float64
# 64 x 64 with spots: triclinic cell, misset, polarization, 2 phi steps x 3 mosaic domains, 2 sensor layers,
# a rotated detector; default_F so that F has no nearest-neighbour steps.
SPOTS = ("-cell 20 22 24 88 91 93 -default_F 10 -N 4 -lambda 1 -distance 60 -pixel 0.6 -detpixels 64 "
         "-oversample 1 -misset 3 5 7 -polar 0.3 -phi 1 -osc 0.5 -phisteps 2 -mosaic 0.3 -mosaic_domains 3 "
         "-detector_thick 100 -thicksteps 2 -twotheta 2 -detector_rotx 1 -sourcefile two.txt")
TINY = SPOTS.replace("-detpixels 64", "-detpixels 6 -Xbeam 20 -Ybeam 20").replace("-sourcefile two.txt", "")


def model_of(argv: str, tmp_path) -> nb.Model:
    (tmp_path / "two.txt").write_text("-10 0 0 1 1e-10\n-10 0.01 0.003 1\n")  # 2nd: wavelength = lambda0
    return nb.load_model(nb.config_from_argv(argv.split()), workdir=tmp_path)


def part_field(m: nb.Model, key: str):
    part, name = key.split("__")
    return getattr(getattr(m, part), name)


def loss_fn(m: nb.Model, key: str):
    """v -> sum(W * image(model with key = v)) with fixed random weights W."""
    g = torch.Generator().manual_seed(1)
    W = torch.rand(m.detector.spixels, m.detector.fpixels, dtype=F64, generator=g)
    return lambda v: (nb.render(m.replace(**{key: v}), kernel="torch") * W).sum()


def richardson(f, x0: torch.Tensor, d: torch.Tensor, h: float) -> float:
    """Directional derivative of f at x0 along d by central differences with one Richardson step."""
    with torch.no_grad():
        D = lambda s: float((f(x0 + s * d) - f(x0 - s * d)) / (2 * s))  # noqa: E731
        return (4 * D(h / 2) - D(h)) / 3


# Steps for parameters the loss is linear in and whose effect is small: rounding, not truncation, limits them.
LINEAR_STEP = {"beam__kahn": 0.05, "beam__source_weights": 0.05}


def check_against_fd(m: nb.Model, key: str, rel: float = 1e-6, h_rel: float = 3e-6) -> None:
    x0 = torch.as_tensor(part_field(m, key), dtype=F64).clone()
    f = loss_fn(m, key)
    x = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    assert torch.isfinite(g).all()
    d = torch.randn(x0.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    size = float(x0.abs().max())
    h = LINEAR_STEP.get(key, h_rel * (size if size > 0 else 1e-2))  # zero-valued angles: 1e-2 rad
    fd = richardson(f, x0, d, h)
    ad = float((g * d).sum())
    assert fd != 0.0, f"{key}: the image does not depend on it in this case"
    assert abs(ad - fd) <= rel * abs(fd), f"{key}: autograd {ad:.12g} vs finite differences {fd:.12g}"


EVERY_PARAMETER = [
    "crystal__cell", "crystal__misset", "crystal__N", "crystal__mosaic_spread", "crystal__phi0",
    "crystal__phistep", "crystal__scale", "detector__distance", "detector__beam_center", "detector__rotations",
    "detector__twotheta", "detector__pixel_size", "detector__thickness", "detector__mu", "beam__wavelength",
    "beam__fluence", "beam__kahn", "beam__source_directions", "beam__source_weights",
    "structure_factors__default_F",
]


@pytest.fixture(scope="module")
def spots(tmp_path_factory):
    m = model_of(SPOTS, tmp_path_factory.mktemp("spots"))
    assert float(nb.render(m).max()) > 20 * float(nb.render(m).mean()), "the case must have spots"
    return m


@pytest.mark.parametrize("key", EVERY_PARAMETER)
def test_autograd_matches_finite_differences(spots, key):
    check_against_fd(spots, key)


@pytest.mark.parametrize("argv, keys, h_rel", [
    # ellipsoidal spots: fudge and N enter sinc3 (the series in x^2 near the spot centres); round/gauss
    # spots have kinks at half-integer h (d = h - nearest h): a small step keeps the differences off them
    ("-round_xtal -fudge 0.9", ["crystal__fudge", "crystal__N", "crystal__cell"], 1e-8),
    ("-gauss_xtal -fudge 1.1", ["crystal__fudge", "crystal__N", "crystal__misset"], 1e-8),
    # sample pivot (XDS): the near point and the perpendicular distance place the detector
    ("-xds -ORGX 30 -ORGY 28", ["detector__near_point", "detector__distance"], 3e-6),
    ("-close_distance 55 -pivot sample -fdet_vector 0 0 1 -sdet_vector 0 -1 0 -odet_vector 1 0 0 -beam_vector 1 0 0",
     ["detector__close_distance", "detector__beam_center"], 3e-6),
    # sub-pixels, curved detector, water background, the per-term factor quirks
    ("-oversample 2 -curved_det -water 0.001", ["detector__distance", "beam__water_size", "crystal__cell"], 3e-6),
    ("-oversample 2 -oversample_omega -oversample_polar", ["detector__pixel_size", "beam__kahn"], 3e-6),
])
def test_other_code_paths_match_finite_differences(tmp_path, argv, keys, h_rel):
    m = model_of(SPOTS.replace("-detpixels 64", "-detpixels 32") + " " + argv, tmp_path)
    for key in keys:
        check_against_fd(m, key, h_rel=h_rel)


def test_structure_factor_table_gradient_with_interpolation(tmp_path):
    # dI/dF(hkl) through tricubic interpolation: I is quadratic in the table values, so finite differences
    # are exact up to rounding. The table covers every pixel (no shut-off).
    rows = [f"{h} {k} {l_} {5 + (h * 7 + k * 3 + l_) % 11}" for h in range(-9, 10) for k in range(-9, 10)
            for l_ in range(-9, 10)]
    (tmp_path / "t.hkl").write_text("\n".join(rows) + "\n")
    m = model_of(SPOTS.replace("-detpixels 64", "-detpixels 24").replace("-default_F 10", "-hkl t.hkl")
                 + " -interpolate", tmp_path)
    assert m.structure_factors.interpolate
    r = nb.render_details(m.replace(structure_factors__table=m.structure_factors.table.clone().requires_grad_()))
    assert not bool(r.interpolation_disabled), "every lookup must stay inside the table"
    check_against_fd(m, "structure_factors__table", h_rel=1e-3)


@pytest.mark.parametrize("keys", [
    ["crystal__cell", "crystal__misset", "crystal__N", "crystal__mosaic_spread", "crystal__phi0"],
    ["detector__distance", "detector__beam_center", "detector__rotations", "detector__twotheta",
     "detector__pixel_size", "detector__thickness", "detector__mu"],
    ["beam__wavelength", "beam__source_directions", "beam__kahn", "beam__fluence"],
    ["structure_factors__default_F", "crystal__scale", "crystal__fudge"],
])
def test_gradcheck_per_parameter_group(tmp_path, keys):
    # Each parameter in units of its own size, so that gradcheck's step means the same for all of them.
    m = model_of(TINY + " -round_xtal", tmp_path)
    values = [torch.as_tensor(part_field(m, k), dtype=F64) for k in keys]
    units = [float(v.abs().max()) or 1.0 for v in values]
    x0 = [(v / u).clone().requires_grad_(True) for v, u in zip(values, units)]

    def f(*xs):
        return nb.render(m.replace(**{k: x * u for k, x, u in zip(keys, xs, units)}), kernel="torch")

    assert torch.autograd.gradcheck(f, x0, eps=1e-7, atol=1e-6, rtol=1e-5, fast_mode=True)


# ----------------------------------------------------------------------------------- singular points
@pytest.mark.parametrize("N", [2, 5, 10])
def test_grating_derivative_at_and_near_integer_h(N):
    # d/dh sin(N pi h)/sin(pi h) is 0 at integer h and -pi^2 N (N^2 - 1) d / 3 (1 + O(d^2)) at h = k + d.
    # C's quotient gives a relative error of 0.36 at d = 1e-6; ours is exact to rounding.
    for k in (0.0, 1.0, -2.0):
        for d in (0.0, 1e-8, 1e-6, -1e-5):
            h = torch.tensor([[k + d, 0.3, 0.1]], dtype=F64, requires_grad=True)
            F = P.lattice_factor_square(h, (N, 1, 1))
            (g,) = torch.autograd.grad(F.sum(), h)
            dh = (h.detach()[0, 0] - k).item()
            sign = (-1.0) ** (k * (N - 1))
            expected = sign * -math.pi ** 2 * N * (N * N - 1) * dh / 3
            assert math.isfinite(g[0, 0].item())
            assert g[0, 0].item() == pytest.approx(expected, rel=1e-6, abs=1e-300)


def test_grating_value_is_still_c_form_bit_for_bit():
    # The value keeps C's sin(N x)/sin(x) arithmetic even when a gradient is requested.
    h = torch.tensor([[1.0 + 1e-7, 0.25, -0.4], [0.5, 2.0, 3.1]], dtype=F64)
    plain = P.lattice_factor_square(h, (5, 3, 4))
    c_form = P.sincg(math.pi * h, torch.tensor([5.0, 3.0, 4.0], dtype=F64)).prod(-1)
    with_grad = P.lattice_factor_square(h.clone().requires_grad_(True), (5, 3, 4))
    assert torch.equal(plain, c_form) and torch.equal(with_grad.detach(), c_form)


# The square lattice factor's backward is written by hand (physics._Grating, physics.grating_derivatives):
# gradcheck on the smooth form (finite differences of the forward itself), and for C's evaluation (whose
# quotient loses accuracy near integer h, so finite differences of it are not a reference there) agreement
# with plain autograd through grating_smooth's own formula. Points: integer h (0 included: sin(pi h) = 0),
# within the series region |N pi d| < 1e-2, on both sides of its edge, half-integers, near the zeros of
# sin(N pi h) (the smallest factors, which the backward divides by), and generic values.
def _grating_points(N):
    d_edge = 1e-2 / (math.pi * max(N))
    per_axis = [0.0, 1e-12, -1e-9, 1e-6, -3e-4, d_edge * (1 - 1e-6), -d_edge * (1 + 1e-6), 0.5, -1.5, 1.0,
                1.0 + 1e-9, 2.0 - 3e-7, -3.0 + 1e-5, 0.25, 0.37, 4.5, 10.02, -7.3, 1.0 / N[0] + 1e-13, 0.2]
    g = torch.Generator().manual_seed(3)
    cols = [torch.tensor(per_axis, dtype=F64)[torch.randperm(len(per_axis), generator=g)] for _ in range(3)]
    return torch.stack(cols, dim=-1)


def _reference_grads(h, N):
    """Autograd through grating_smooth's torch formula: (dF/dh, dF/dN) of F = prod_i grating_smooth(h_i, N_i)."""
    h = h.detach().clone().requires_grad_(True)
    N = N.detach().clone().requires_grad_(True)
    return torch.autograd.grad(P.grating_smooth(h, N).prod(-1), (h, N), torch.ones(h.shape[:-1], dtype=F64))


@pytest.mark.parametrize("N", [(10.0, 4.0, 7.0), (2.0, 5.0, 3.0)])
def test_grating_backward_matches_autograd_of_the_smooth_form(N):
    h = _grating_points(N)
    n = torch.tensor(N, dtype=F64)
    ref_h, ref_n = _reference_grads(h, n)
    for c_form in (True, False):
        hh, nn = h.clone().requires_grad_(True), n.clone().requires_grad_(True)
        F = P.lattice_factor_square(hh, nn, (0, 1, 2), c_form)
        gh, gn = torch.autograd.grad(F, (hh, nn), torch.ones_like(F), retain_graph=True)
        # the backward works in place on buffers of its own: a second backward of the same graph agrees
        again = torch.autograd.grad(F, (hh, nn), torch.ones_like(F))
        assert torch.equal(again[0], gh) and torch.equal(again[1], gn)
        assert torch.isfinite(gh).all() and torch.isfinite(gn).all()
        # C's quotient differs from the smooth value by its own rounding (~1e-8 relative at d = 1e-9); the
        # smooth form's own backward agrees to rounding, amplified by the closed form's cancellation next to
        # the series edge (~1e-16 / (N pi d)^2 = 1e-12)
        rtol = 1e-6 if c_form else 1e-10
        torch.testing.assert_close(gh, ref_h, rtol=rtol, atol=rtol * 1e-6 * float(ref_h.abs().max()))
        torch.testing.assert_close(gn, ref_n, rtol=rtol, atol=0)
        # the h gradient alone (N constant) is the same numbers
        hh = h.clone().requires_grad_(True)
        (gh_only,) = torch.autograd.grad(P.lattice_factor_square(hh, n, (0, 1, 2), c_form).sum(), hh)
        assert torch.equal(gh_only, gh)


@pytest.mark.parametrize("axes", [(0,), (0, 2), (0, 1, 2)])
def test_grating_backward_gradcheck(axes):
    # The smooth form (c_form=False; the definition for non-integer N) at integer N is smooth everywhere, so
    # gradcheck's finite differences hold at integer h and inside the series region (at non-integer N it
    # steps at half-integer h, where round(h) changes). Points within 1e-5 of the series edge (where the
    # series' 1e-10 truncation makes a step) are left to the test above.
    N = (10.0, 4.0, 7.0)
    h = _grating_points(N)
    h = h[(h - torch.round(h)).abs().sub(1e-2 / (math.pi * 10.0)).abs().min(-1).values > 1e-5]
    n = torch.tensor(N, dtype=F64)
    f = lambda hh, nn: P.lattice_factor_square(hh, nn, axes, False)  # noqa: E731
    assert torch.autograd.gradcheck(f, (h.requires_grad_(True), n.requires_grad_(True)), eps=1e-7, atol=1e-6,
                                    rtol=1e-6)
    # a batch of crystals: N (B, 1, 3) against h (P, B, K, 3), the gradient of N summed per crystal
    hb = h[:12].reshape(2, 2, 3, 3).detach().requires_grad_(True)
    nb_ = torch.tensor([[[10.0, 4.0, 7.0]], [[3.0, 6.0, 2.0]]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (hb, nb_), eps=1e-7, atol=1e-6, rtol=1e-6)


def test_sinc3_derivative_at_zero():
    # sinc3(x) = 1 - x^2/10 + ...: d/du sinc3(sqrt(u)) = -1/10 at u = 0; the round lattice factor has a
    # zero, finite gradient at the spot centre (d = 0) in h and in N.
    u = torch.zeros(1, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(P.sinc3_of_square(u).sum(), u)
    assert g.item() == pytest.approx(-0.1, rel=1e-12)
    h = torch.tensor([[1.0, -2.0, 0.0]], dtype=F64, requires_grad=True)
    N = torch.tensor([4.0, 5.0, 6.0], dtype=F64, requires_grad=True)
    gh, gN = torch.autograd.grad(P.lattice_factor_round(h, N, 1.0).sum(), (h, N))
    assert torch.equal(gh, torch.zeros_like(gh))
    # at d = 0, F = 0.7236 Na Nb Nc: dF/dNa = 0.7236 Nb Nc
    assert gN.tolist() == pytest.approx([P.ROUND_XTAL_SCALE * 30, P.ROUND_XTAL_SCALE * 24,
                                         P.ROUND_XTAL_SCALE * 20], rel=1e-12)


def test_on_beam_pixel_phi_zero_and_zero_divergence(tmp_path):
    # A pixel centre exactly on the beam (h = k = l = 0 there), phi = 0, one source along the beam (no
    # divergence) and a Kahn factor (atan2(0, 0) at that pixel): every gradient is finite and matches
    # finite differences.
    argv = ("-cell 30 30 30 90 90 90 -default_F 10 -N 5 -lambda 1 -distance 50 -pixel 0.5 -detpixels 9 "
            "-Xbeam 2 -Ybeam 2 -oversample 1 -polar 0.5 -phi 0 -mosaic 0 -mosaic_domains 1")
    m = model_of(argv, tmp_path)
    img = nb.render(m)
    assert img[4, 4] == img.max(), "the on-beam pixel (4, 4) holds the h = 0 peak"
    for key in ("detector__beam_center", "detector__distance", "crystal__phi0", "crystal__cell",
                "beam__source_directions", "beam__kahn", "crystal__N"):
        check_against_fd(m, key)


# ------------------------------------------------------------------------------------------ batches
def test_batch_of_crystals_equals_single_renders(tmp_path):
    m = model_of(TINY.replace("-detpixels 6", "-detpixels 12"), tmp_path)
    cells = torch.tensor([[20.0, 22, 24, 1.54, 1.59, 1.62], [21.0, 21, 25, 1.57, 1.57, 1.57],
                          [19.0, 23, 24, 1.5, 1.6, 1.65]], dtype=F64)
    missets = torch.tensor([[0.05, 0.08, 0.12], [0.0, 0.0, 0.0], [-0.3, 0.2, 1.0]], dtype=F64)
    Ns = torch.tensor([[4.0, 4, 4], [3, 5, 2], [6, 6, 1]], dtype=F64)
    scales = torch.tensor([1.0, 0.5, 2.0], dtype=F64)
    batch = nb.render(m.replace(crystal__cell=cells, crystal__misset=missets, crystal__N=Ns, crystal__scale=scales))
    assert batch.shape == (3, 12, 12)
    for b in range(3):
        one = nb.render(m.replace(crystal__cell=cells[b], crystal__misset=missets[b], crystal__N=Ns[b],
                                  crystal__scale=scales[b]))
        assert torch.allclose(batch[b], one, rtol=1e-13, atol=1e-13 * float(one.max())), b
        assert float(one.max()) > 0


def test_batch_gradients_are_per_crystal(tmp_path):
    # d(sum of still b)/d(cell of crystal c) is zero for c != b.
    m = model_of(TINY, tmp_path)
    cells = torch.tensor([[20.0, 22, 24, 1.54, 1.59, 1.62]] * 2, dtype=F64, requires_grad=True)
    img = nb.render(m.replace(crystal__cell=cells))
    (g,) = torch.autograd.grad(img[0].sum(), cells)
    assert g[0].abs().sum() > 0 and torch.equal(g[1], torch.zeros(6, dtype=F64))


# ------------------------------------------------------------------------------- memory and refusals
def test_recomputed_backward_gives_the_same_gradient(tmp_path):
    # A tiny memory budget (21 KiB: the 16x16 image's buffers and a few pixels' intermediates) forces chunk
    # recomputation in the backward; the gradient must not change.
    m = model_of(TINY.replace("-detpixels 6", "-detpixels 16"), tmp_path)
    cell = m.crystal.cell.clone().requires_grad_(True)
    grads = []
    for budget in (2.0, 2e-5):
        img = nb.render(m.replace(crystal__cell=cell), kernel="torch", max_memory_gb=budget)
        grads.append(torch.autograd.grad(img.sum(), cell)[0])
    assert torch.allclose(grads[0], grads[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("key, value", [
    ("crystal__phisteps", torch.tensor(2.0, requires_grad=True)),
    ("detector__thicksteps", torch.tensor(2.0, requires_grad=True)),
    ("beam__dmin", torch.tensor(1e-10, requires_grad=True)),
    ("crystal__mosaic_axes", torch.zeros(3, 3, dtype=F64, requires_grad=True)),
])
def test_a_discrete_parameter_with_a_gradient_is_refused(tmp_path, key, value):
    m = model_of(TINY, tmp_path)
    with pytest.raises(UsageError, match="gradient|draws"):
        nb.render(m.replace(**{key: value}))


def test_wavelength_gradient_exists_with_a_matrix(tmp_path):
    # With -mat the model holds the absolute reciprocal matrix (the file divided by -lambda), so the
    # wavelength moves the spots at a fixed cell: a finite gradient that agrees with finite differences
    # (the old path rebuilt sources from floats and gave ~2e14).
    (tmp_path / "A.mat").write_text(" 0.0327 0.0011 0.0017\n-0.0012 0.0301 0.0020\n 0.0015 -0.0009 0.0290\n")
    m = model_of("-mat A.mat -default_F 10 -N 4 -lambda 1 -distance 60 -pixel 0.6 -detpixels 24 -oversample 1",
                 tmp_path)
    check_against_fd(m, "beam__wavelength")


def test_batch_through_n_alone(tmp_path):
    # A batch axis on N only (one cell, one orientation): two stills with different crystal sizes.
    m = model_of(TINY, tmp_path)
    Ns = torch.tensor([[3.0, 3, 3], [5, 5, 5]], dtype=F64)
    batch = nb.render(m.replace(crystal__N=Ns))
    assert batch.shape == (2, 6, 6)
    for b in range(2):
        one = nb.render(m.replace(crystal__N=Ns[b]))
        assert torch.allclose(batch[b], one, rtol=1e-13, atol=1e-13 * float(one.max()))


def test_matrix_and_source_wavelengths_match_finite_differences(tmp_path):
    # the -mat path (the model holds the reciprocal matrix) and per-source wavelengths (a source file line
    # with its own wavelength), the two continuous parameters the 64x64 -cell case above does not exercise
    import shutil

    shutil.copy(Path(__file__).parents[1] / "data" / "live_corpus" / "inputs" / "A.mat", tmp_path / "A.mat")
    argv = SPOTS.replace("-cell 20 22 24 88 91 93", "-mat A.mat").replace("-detpixels 64", "-detpixels 32")
    m = model_of(argv, tmp_path)
    # both sources with a wavelength of their own (the file's second line follows lambda0: NaN in the model)
    m = m.replace(beam__source_wavelengths=torch.tensor([1.0e-10, 1.02e-10], dtype=F64))
    assert float(nb.render(m).max()) > 20 * float(nb.render(m).mean()), "the case must have spots"
    for key in ("crystal__matrix", "beam__source_wavelengths"):
        check_against_fd(m, key)
