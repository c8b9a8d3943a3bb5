"""Amorphous scattering (amorphous.py, docs/c-behaviour.md §12.2-§12.4): each physics function against a hand
computation, and the render against the formula for a flat table on hand-placed pixels."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nanobrag_torch as nb
from nanobrag_torch import amorphous as am
from nanobrag_torch.programs import nonbragg
from nanobrag_torch.config import AVOGADRO, DEFAULT_FLUENCE, R_E_SQR

F64 = torch.float64


def t(x):
    return torch.as_tensor(x, dtype=F64)


# ------------------------------------------------------------------------------------------- the table
def test_stol_table_pads_like_c():
    # §12.2: x scaled to 1/m, missing F -> 0, two nodes below/above repeating the first/last F GIVEN.
    xa, ya = am.stol_table(t([0.0, 0.1, 0.2, 0.3]), t([math.nan, 2.0, 3.0, math.nan]), 1e10)
    assert xa.tolist() == [-1e99, -1e98, 0.0, 0.1e10, 0.2e10, 0.3e10, 1e98, 1e99]
    assert ya.tolist() == [2.0, 2.0, 0.0, 2.0, 3.0, 0.0, 3.0, 3.0]


def test_units_of_the_first_column():
    # -stol: sin(theta)/lambda in 1/A; -4stol: four times that; -Q: 4 pi times that (§12.2).
    assert am.STOL_UNITS["stol"] == 1e10
    assert am.STOL_UNITS["4stol"] * 4 == 1e10
    assert am.STOL_UNITS["Q"] == pytest.approx(1e10 / (4 * math.pi), rel=1e-15)


def test_polint4_is_exact_for_a_cubic_and_hits_its_nodes():
    p = lambda x: 1 + 2 * x - x * x + 0.5 * x ** 3  # noqa: E731
    xa = t([0.0, 1.0, 2.0, 4.0])
    ya = t([p(v) for v in xa.tolist()])
    assert float(am.polint4(xa, ya, t(3.0))) == pytest.approx(p(3.0), rel=1e-13)
    for k in range(4):
        assert float(am.polint4(xa, ya, xa[k])) == pytest.approx(float(ya[k]), rel=1e-15)


def test_polint4_with_precomputed_denominators_is_bitwise_the_same():
    g = torch.Generator().manual_seed(0)
    xa = torch.sort(torch.rand(100, 4, generator=g, dtype=F64), dim=-1).values
    ya, x = torch.rand(100, 4, generator=g, dtype=F64), torch.rand(100, generator=g, dtype=F64)
    assert torch.equal(am.polint4(xa, ya, x), am.polint4(xa, ya, x, am.node_denominators(xa)))


def test_stol_walk_follows_c_on_a_table_that_steps_back():
    # Nodes 0.1, 0.2, 0.18, 0.3 (indices 3..6): from index 0, stol 0.19 climbs to 0.2 and steps back to 0.1
    # (index 3); 0.25 stops below 0.3 and steps back to 0.18 (index 5); 0.19 then stays at 0.18 (index 5).
    xa = np.array([-1e99, -1e98, 0.0, 0.1, 0.2, 0.18, 0.3, 1e98, 1e99])
    idx, end = am.stol_walk(xa, np.array([0.19, 0.25, 0.19]), 0)
    assert idx.tolist() == [3, 5, 5] and end == 5


def test_stol_walk_equals_the_binary_search_on_an_increasing_table():
    g = np.random.default_rng(1)
    xa = np.concatenate(([-1e99, -1e98], np.sort(g.uniform(0, 1, 50)), [1e98, 1e99]))
    stols = g.uniform(0, 1.2, 2000)
    idx, _ = am.stol_walk(xa, stols, 0)
    assert idx.tolist() == am.stol_index(t(stols), t(xa)).tolist()


# ------------------------------------------------------------------------------------------ physics
def test_scattering_stol_is_sin_theta_over_lambda():
    two_theta = 0.3
    d = t([math.cos(two_theta), math.sin(two_theta), 0.0])
    i = t([1.0, 0.0, 0.0])
    lam = t(1.5e-10)
    assert float(am.scattering_stol(d, i, lam)) == pytest.approx(math.sin(two_theta / 2) / 1.5e-10, rel=1e-14)


def test_pixel_solid_angle_and_point_pixel():
    R, px, close = t(0.2), 1e-4, t(0.1)
    assert float(am.pixel_solid_angle(R, px, close, False)) == pytest.approx(px * px / 0.04 * 0.1 / 0.2, rel=1e-15)
    assert float(am.pixel_solid_angle(R, px, close, True)) == pytest.approx(1 / 0.04, rel=1e-15)


def test_signed_intensity_keeps_the_sign_of_F():
    assert am.signed_intensity(t([-3.0, 0.0, 2.0])).tolist() == [-9.0, 0.0, 4.0]


def test_scatterer_count_of_a_water_cube():
    # 0.1 mm cube of 1 g/cm^3, 18 g/mol: 1e-12 m^3 x 1e6 g/m^3 x N_A / 18 (C prints 3.34563e+16)
    n = am.scatterer_count(1e-12, 1e6, 18.0)
    assert n == pytest.approx(1e-6 * 6.02214179e23 / 18, rel=1e-15) and f"{n:g}" == "3.34563e+16"
    assert am.density_from_molecules(n, 1e-12, 18.0) == pytest.approx(1e6, rel=1e-15)


def test_unitize_c_keeps_zero_and_matches_the_norm():
    u, n = am.unitize_c(t([[3.0, 4.0, 12.0], [0.0, 0.0, 0.0]]))
    assert n.tolist() == [13.0, 0.0] and u[0].tolist() == [3 / 13, 4 / 13, 12 / 13] and u[1].tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------------------ render
def _run_model(tmp_path, table: str, *flags):
    (tmp_path / "t.stol").write_text(table)
    cfg = nonbragg.build_config(nonbragg.parse(["-stol", str(tmp_path / "t.stol"), *flags]))
    det, beam, sample = nonbragg.build_model(cfg, nonbragg.read_inputs(cfg, warn=lambda m: None))
    return cfg, det, beam, sample


def _centre_pixel_expectation(F, polar: bool):
    """3x3 detector, 0.1 mm pixels at 100 mm: nonBragg's default beam centre is (0.1, 0.2) mm, so pixel (1, 1)
    sits at (0.1, 5e-5, 5e-5) m in the lab (beam along x, fast = z, slow = -y)."""
    pos = np.array([0.1, 0.2e-3 - 1.5e-4, -0.1e-3 + 1.5e-4])
    R = np.sqrt(pos @ pos)
    omega = 1e-4 * 1e-4 / R / R * 0.1 / R
    cos2t = pos[0] / R
    pol = 0.5 * (1 + cos2t * cos2t) if polar else 1.0
    molecules = 1e-12 * 1e6 * AVOGADRO / 18.0
    return F * F * pol * omega * R_E_SQR * DEFAULT_FLUENCE * molecules


@pytest.mark.parametrize("polar", [False, True])
def test_flat_table_pixel_is_F2_omega_polar_scale(tmp_path, polar):
    flags = ["-detpixels", "3"] + ([] if polar else ["-nopolar"])
    _, det, beam, sample = _run_model(tmp_path, "0 2\n0.5 2\n1 2\n", *flags)
    img = am.render_amorphous(det, beam, sample).image
    assert float(img[1, 1]) == pytest.approx(_centre_pixel_expectation(2.0, polar), rel=1e-12)


def test_a_pixel_on_a_table_node_gets_that_nodes_F(tmp_path):
    # The central pixel's stol is computed by hand; a table with a node exactly there returns its F.
    pos = np.array([0.1, 5e-5, 5e-5])
    s = 0.5 * np.linalg.norm(pos / np.linalg.norm(pos) - [1, 0, 0]) / 1e-10 / 1e10  # in 1/A
    table = f"0 1\n{float(s) / 2!r} 1.5\n{float(s)!r} 7\n{2 * float(s)!r} 2\n1 1\n"
    _, det, beam, sample = _run_model(tmp_path, table, "-detpixels", "3", "-Fmap")
    assert float(am.render_amorphous(det, beam, sample, fmap=True).image[1, 1]) == pytest.approx(7.0, rel=1e-12)


def test_negative_F_gives_negative_intensity(tmp_path):
    _, det, beam, sample = _run_model(tmp_path, "0 -2\n0.5 -2\n1 -2\n", "-detpixels", "3", "-nopolar")
    img = am.render_amorphous(det, beam, sample).image
    assert float(img[1, 1]) == pytest.approx(-_centre_pixel_expectation(2.0, False), rel=1e-12)


def test_oversample_and_sources_normalise_by_steps(tmp_path):
    # Two identical sources and 2x2 sub-pixels: steps = 8, so the flat-table image barely changes (only the
    # sub-pixels' geometry moves it, by much less than 1e-3 at 100 mm).
    _, det, beam, sample = _run_model(tmp_path, "0 2\n1 2\n", "-detpixels", "3", "-nopolar")
    one = am.render_amorphous(det, beam, sample).image
    beam2 = beam.__class__(**{**vars(beam), "source_directions": beam.source_directions.repeat(2, 1),
                              "dispersion_factors": beam.dispersion_factors.repeat(2),
                              "source_weights": beam.source_weights.repeat(2)})
    res = am.render_amorphous(det, beam2, sample, 2)
    assert res.steps == 8
    assert torch.allclose(res.image, one, rtol=1e-6)


def test_gradients_reach_the_table_and_the_distance(tmp_path):
    _, det, beam, sample = _run_model(tmp_path, "0 2\n0.5 2\n1 2\n", "-detpixels", "4", "-nopolar")
    F = sample.F.clone().requires_grad_(True)
    img = am.render_amorphous(det, beam, am.AmorphousSample(sample.stol, F, sample.molecules)).image
    img.sum().backward()
    # image ~ F^2 for a flat table: the gradient summed over the table's F is 2 sum / F = sum(image)
    assert float(F.grad.sum()) == pytest.approx(float(img.detach().sum()), rel=1e-9)
    d = det.distance.clone().requires_grad_(True)
    det2 = det.__class__(**{**vars(det), "distance": d})
    am.render_amorphous(det2, beam, sample).image.sum().backward()
    h = 1e-7

    def total(dist):
        return float(am.render_amorphous(det.__class__(**{**vars(det), "distance": t(dist)}), beam,
                                         sample).image.sum())
    d0 = float(d.detach())
    fd = (total(d0 + h) - total(d0 - h)) / (2 * h)
    assert math.isfinite(float(d.grad)) and float(d.grad) == pytest.approx(fd, rel=1e-5)


def test_float32_render_is_close_to_float64(tmp_path):
    _, det, beam, sample = _run_model(tmp_path, "0 2.6\n0.1 3\n0.2 5\n0.3 4\n0.5 3\n1 2\n", "-detpixels", "8",
                                      "-distance", "5", "-polar", "0.5")
    a = am.render_amorphous(det, beam, sample, dtype=torch.float64).image
    b = am.render_amorphous(det, beam, sample, dtype=torch.float32).image
    assert b.dtype == torch.float32
    assert torch.allclose(b.double(), a, rtol=tolerances32().tensor_rtol * 10)


def tolerances32():
    from tools.thresholds import tolerances

    return tolerances("float32")


def test_background_on_a_bragg_model_adds_to_the_bragg_image(tmp_path):
    (tmp_path / "w.stol").write_text("0 2.57\n0.2 3\n0.4 3.5\n1 2\n")
    model = nb.load_model(nb.config_from_argv("-cell 50 50 50 90 90 90 -default_F 10 -N 3 -detpixels 16 "
                                              "-distance 50 -oversample 1".split()))
    water = nb.amorphous_sample(tmp_path / "w.stol", thickness=1e-5, width=1e-5, height=1e-5)
    bg = nb.render_background(model, water)
    direct = am.render_amorphous(model.detector, model.beam, water, model.sampling.oversample).image
    assert bg.shape == (16, 16) and torch.equal(bg, direct)
    assert bool((bg > 0).all())
    total = nb.render(model) + bg
    assert torch.equal(total - nb.render(model), bg) or torch.allclose(total - nb.render(model), bg, rtol=1e-12)
    # the sample's count: 1e-15 m^3 of 1 g/cm^3 at 18 g/mol
    assert float(water.molecules) == pytest.approx(1e-15 * 1e6 * AVOGADRO / 18, rel=1e-15)
