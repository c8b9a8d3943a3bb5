"""A detector of P panels (issue 24): the model, the -expt reader, parity with the C program per panel, the
outputs and the gradients of the panel geometry."""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nanobrag_torch import config_from_argv, load_model, render
from nanobrag_torch.programs.nanobragg import main
from nanobrag_torch.errors import InputError, UsageError
from nanobrag_torch.io.expt import c_flags, read_expt
from nanobrag_torch.panels import (Panels, panel_as_detector, panel_axes, panels_from_detector, place_panels,
                                   rotation_matrix)
from tests.helpers.expt import rot, experiment_list, write_expt
from tools.cbin import resolve_c_binary
from tools.thresholds import for_dtype

XTAL = "-cell 40 40 40 90 90 90 -misset 10 20 30 -N 5 -default_F 100 -oversample 1".split()
C_RUNS = ("-cell 70 80 90 90 90 90 -lambda 1.2 -distance 80 -pixel 0.1 -detpixels 40 -N 4 -default_F 10 "
          "-misset 5 2 3 -detector_rotx 3 -twotheta 10 -detector_thick 100 -detector_thicksteps 2 "
          "-detector_abs 300 -oversample 2 -roi 3 30 5 25")


def _expt_model(tmp_path: Path, layout: str, *extra: str, **kw):
    path = tmp_path / f"{layout}.expt"
    write_expt(path, layout, **kw)
    return load_model(config_from_argv(["-expt", str(path), *XTAL, *extra])), path


# ------------------------------------------------------------------------------------------------ model
def test_rotation_matrix_is_a_rotation():
    # 90 deg about z takes x to y (right-handed); any rotation vector gives an orthonormal matrix with det 1,
    # the identity at 0 (with a finite gradient there: the series branch).
    r = rotation_matrix(torch.tensor([0.0, 0.0, np.pi / 2], dtype=torch.float64))
    assert torch.allclose(r @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-15)
    v = torch.tensor([[0.3, -1.2, 2.0], [1e-6, 0, 0], [0, 0, 0]], dtype=torch.float64, requires_grad=True)
    m = rotation_matrix(v)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(m @ m.transpose(-1, -2), eye.expand(3, 3, 3), atol=1e-14)
    assert torch.allclose(torch.linalg.det(m), torch.ones(3, dtype=torch.float64), atol=1e-14)
    assert torch.equal(m[2], eye)
    m.sum().backward()
    assert bool(torch.isfinite(v.grad).all())


def test_c_single_panel_as_one_panel_renders_the_same(tmp_path):
    # P = 1 built from C's placement (convention, rotations, two-theta, pivot) uses the same doubles in the
    # same order, so both kernels give the single-panel image bit for bit (ROI, layers and oversampling on).
    m = load_model(config_from_argv(C_RUNS.split()), workdir=tmp_path)
    pm = replace(m, detector=panels_from_detector(m.detector, m.beam.beam_vector))
    for kernel in ("torch", "numba"):
        one = render(m, kernel=kernel)
        many = render(pm, kernel=kernel)
        assert many.shape == (1, 40, 40) and one.shape == (40, 40)
        assert torch.equal(one, many[0]), kernel


def test_eager_chunks_inside_a_panel_and_across_panels_render_alike(tmp_path, monkeypatch):
    # The eager kernel takes a chunk inside one panel with that panel's vectors, a chunk of whole panels with
    # their vectors broadcast over their pixels, and (when a mask leaves pixels out) a chunk across parts of
    # panels with each pixel's gathered vectors. Chunks aiming at 2000 pixels (two whole panels of 768 each,
    # within the budget's limit) and at 100 (each panel in 8 parts of 96) give one image, bit for bit; with one
    # pixel masked, chunks of 100 run across panels and the other pixels stay the same.
    import nanobrag_torch.budget as budget
    from nanobrag_torch.renderer import _chunk_bounds

    assert _chunk_bounds(3072, 2000, 768) == [(0, 1536), (1536, 3072)]  # the limit: at most the chunk
    assert _chunk_bounds(3072, 2000, 768, 4000) == [(0, 1536), (1536, 3072)]  # 3 nearest 2000: 2 + 2 panels
    assert _chunk_bounds(4608, 2000, 768, 4000) == [(0, 2304), (2304, 4608)]  # 6 panels: 3 + 3
    assert _chunk_bounds(3072, 100, 768)[6:9] == [(576, 672), (672, 768), (768, 864)]  # 8 equal parts
    assert _chunk_bounds(3072, 700, 768, 4000) == [(0, 768), (768, 1536), (1536, 2304), (2304, 3072)]
    assert _chunk_bounds(3071, 100, 0)[-2:] == [(2873, 2972), (2972, 3071)]  # 31 parts of 99-100
    assert _chunk_bounds(1000, 300, 0, 400) == [(0, 334), (334, 667), (667, 1000)]  # no chunk of 100 at the end
    assert _chunk_bounds(1000, 300, 0, 300) == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert _chunk_bounds(16, 3, 0) == [(0, 3), (3, 6), (6, 9), (9, 12), (12, 14), (14, 16)]
    assert _chunk_bounds(8, 2, 4, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)]
    assert _chunk_bounds(0, 5, 0) == []
    with pytest.raises(ValueError, match="whole number of panels"):
        _chunk_bounds(10, 4, 4)
    model, _ = _expt_model(tmp_path, "tilt")
    ref = render(model, kernel="torch")
    mask = torch.ones(model.detector.shape, dtype=torch.bool)
    mask[1, 3, 5] = False
    masked = replace(model, detector=replace(model.detector, mask=mask))
    for evals in (2000, 100):
        monkeypatch.setattr(budget, "_CPU_CHUNK_EVALS", evals)
        assert budget.chunk_pixels(model, 2.0, False)[0] == evals
        assert torch.equal(render(model, kernel="torch"), ref), evals
    img = render(masked, kernel="torch")
    assert img[1, 3, 5] == 0 and torch.equal(img[mask], ref[mask])


def test_group_moves_are_rigid():
    # A group's offset moves its panels' origins by exactly that vector and leaves the others; a group's
    # rotation keeps the distances between its panels' origins and turns their axes by the same matrix.
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    base = Panels(origin=t([[0, 0, -0.1], [0.01, 0, -0.1], [0.03, 0, -0.1]]), fast=t([[1, 0, 0]] * 3),
                  slow=t([[0, -1, 0]] * 3), fpixels=20, spixels=10, pixel_size=t(1e-4), groups=((0, 1),),
                  group_offset=t([[1e-3, 2e-3, 0]]), group_rotation=t([[0.0, 0.0, 0.0]]))
    o = panel_axes(base)[0]
    assert torch.allclose(o - base.origin, t([[1e-3, 2e-3, 0], [1e-3, 2e-3, 0], [0, 0, 0]]), atol=1e-18)
    turned = replace(base, group_offset=None, group_rotation=t([[0.1, 0.2, 0.3]]))
    o2, f2, s2, n2 = panel_axes(turned)
    assert torch.allclose((o2[0] - o2[1]).norm(), (base.origin[0] - base.origin[1]).norm(), rtol=1e-14)
    r = rotation_matrix(t([0.1, 0.2, 0.3]))
    assert torch.allclose(f2[:2], (r @ base.fast[0]).expand(2, 3), atol=1e-15)
    assert torch.equal(o2[2], base.origin[2]) and torch.equal(f2[2], base.fast[2])
    # the panel normal follows fast x slow
    assert torch.allclose(n2, torch.linalg.cross(f2, s2), atol=1e-15)


# ------------------------------------------------------------------------------------------------ reader
def test_reader_composes_the_hierarchy(tmp_path):
    # dxtbx stores frames relative to the parent group: the lab origin of a panel at local (1, 2, 3) in a
    # group with fast (0,1,0), slow (-1,0,0), at (10, 20, 0) under a root at (0, 0, -100) is
    # (10, 20, -100) + 1 (0,1,0) + 2 (-1,0,0) + 3 (0,0,1) = (8, 21, -97); its fast axis is (0, 1, 0).
    doc = experiment_list("turn")
    root = doc["detector"][0]["hierarchy"]
    root.update(fast_axis=[1, 0, 0], slow_axis=[0, 1, 0], origin=[0, 0, -100])
    group = root["children"][0]
    group.update(fast_axis=[0, 1, 0], slow_axis=[-1, 0, 0], origin=[10, 20, 0])
    doc["detector"][0]["panels"][0].update(fast_axis=[1, 0, 0], slow_axis=[0, 1, 0], origin=[1, 2, 3])
    path = tmp_path / "h.expt"
    path.write_text(json.dumps(doc))
    exp = read_expt(path)
    assert np.allclose(exp.panels[0].origin, (8, 21, -97)) and np.allclose(exp.panels[0].fast, (0, 1, 0))
    assert exp.groups == ((0, 1), (2, 3), (0, 1, 2, 3))


def test_reader_refuses_bad_files_in_one_line(tmp_path):
    bad = tmp_path / "bad.expt"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a JSON experiment list"):
        read_expt(bad)
    doc = experiment_list("turn")
    doc["detector"][0]["panels"][1]["image_size"] = [16, 24]
    mixed = tmp_path / "mixed.expt"
    mixed.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="panel 1 has image_size"):
        load_model(config_from_argv(["-expt", str(mixed), *XTAL]))


def test_crystal_from_the_file_is_the_crystal_of_cell_and_misset(tmp_path):
    # The file's real-space vectors of the crystal -cell/-misset builds give the same orientation matrix,
    # so the same image (to rounding: the matrix goes through an inverse).
    ref, path = _expt_model(tmp_path, "turn")
    from nanobrag_torch.crystal import crystal_geometry

    cr = crystal_geometry(ref)
    vectors = [list(map(float, v * 1e10)) for v in (cr.a0, cr.b0, cr.c0)]
    write_expt(tmp_path / "x.expt", "turn", crystal=vectors)
    other = load_model(config_from_argv(["-expt", str(tmp_path / "x.expt"), "-N", "5", "-default_F", "100",
                                         "-oversample", "1"]))
    a, b = render(ref), render(other)
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9 * float(a.max()))


# A crystal (real space, A) in a general orientation and dxtbx-style goniometer matrices (row-major).
GONIO_XTAL = ((30.0, 4.0, -3.0), (-2.0, 35.0, 5.0), (6.0, -4.0, 38.0))
SETTING = rot((0.0, 1.0, 1.0), 30.0)
FIXED = rot((1.0, 2.0, 0.0), 20.0)


def _gonio_expt(path: Path, axis, setting, fixed, crystal) -> Path:
    doc = experiment_list("turn", crystal=crystal, scan=(12.0, 0.5))
    doc["goniometer"][0].update(rotation_axis=list(map(float, axis)), setting_rotation=list(setting.ravel()),
                                fixed_rotation=list(fixed.ravel()))
    doc["scan"][0].update(exposure_time=[0.1], epochs=[0.0])  # what dxtbx needs besides
    path.write_text(json.dumps(doc))
    return path


def test_goniometer_setting_and_fixed_rotations(tmp_path):
    # dxtbx turns x at phi to S R(e, phi) F x = R(S e, phi) (S F x): the file with S and F renders the image of
    # the file without them whose axis is S e and whose crystal is S F x (at the scan's start, phi = 12 deg).
    e = np.array([1.0, 0.0, 0.0])
    with_sf = _gonio_expt(tmp_path / "sf.expt", e, SETTING, FIXED, GONIO_XTAL)
    turned = [list(SETTING @ FIXED @ np.array(v)) for v in GONIO_XTAL]
    plain = _gonio_expt(tmp_path / "plain.expt", SETTING @ e, np.eye(3), np.eye(3), turned)
    ignored = _gonio_expt(tmp_path / "ignored.expt", e, np.eye(3), np.eye(3), GONIO_XTAL)
    flags = ["-N", "5", "-default_F", "100", "-oversample", "1"]
    a, b, c = (render(load_model(config_from_argv(["-expt", str(p), *flags]))) for p in (with_sf, plain, ignored))
    assert a.max() > 0 and torch.allclose(a, b, rtol=1e-9, atol=1e-9 * float(a.max()))
    assert not torch.allclose(a, c, rtol=1e-3, atol=1e-3 * float(a.max())), "S and F must change the image"
    exp = read_expt(with_sf)
    assert np.allclose(exp.spindle_axis, SETTING @ e) and np.allclose(exp.crystal, turned)


# dxtbx's multi-axis goniometer (innermost first): phi, kappa (50 deg off omega), omega scanned.
KAPPA = {"axes": [[1.0, 0.0, 0.0], [0.643, 0.0, 0.766], [1.0, 0.0, 0.0]], "angles": [15.0, 40.0, 0.0],
         "names": ["phi", "kappa", "omega"], "scan_axis": 2}


def test_multi_axis_goniometer_is_its_fixed_rotation(tmp_path):
    # Scanning omega (the outermost axis) of phi 15, kappa 40: F = R(kappa) R(phi), S = 1, the axis omega's.
    path = _gonio_expt(tmp_path / "k.expt", (1, 0, 0), np.eye(3), np.eye(3), GONIO_XTAL)
    doc = json.loads(path.read_text())
    doc["goniometer"] = [KAPPA]
    path.write_text(json.dumps(doc))
    exp = read_expt(path)
    kappa = np.array(KAPPA["axes"][1]) / np.linalg.norm(KAPPA["axes"][1])
    fixed = rot(kappa, 40.0) @ rot((1, 0, 0), 15.0)
    assert np.allclose(exp.spindle_axis, (1, 0, 0)) and np.allclose(exp.crystal, [fixed @ v for v in GONIO_XTAL])


def test_goniometer_matrix_that_is_not_a_rotation_is_refused(tmp_path):
    path = _gonio_expt(tmp_path / "bad.expt", (1, 0, 0), np.eye(3), np.diag([1.0, 1.0, 2.0]), GONIO_XTAL)
    with pytest.raises(InputError, match="goniometer: 'fixed_rotation' is not a rotation matrix"):
        read_expt(path)


def test_flags_given_too_override_the_file(tmp_path):
    model, path = _expt_model(tmp_path, "turn", "-lambda", "1.3")
    assert float(model.beam.wavelength) == pytest.approx(1.3e-10)
    with pytest.raises(UsageError, match="-distance: the -expt file places its 4 panels"):
        load_model(config_from_argv(["-expt", str(path), *XTAL, "-distance", "90"]))


# ------------------------------------------------------------------------------------------------ parity
def _c_panel(c_bin, exp, i, argv, workdir: Path, shape) -> np.ndarray:
    out = workdir / f"c{i}.bin"
    subprocess.run([str(c_bin), *c_flags(exp, i), *argv, "-floatfile", str(out), "-nopgm", "-nonoise",
                    "-intfile", str(workdir / "c.img")], check=True, capture_output=True, cwd=workdir)
    return np.fromfile(out, dtype=np.float32).reshape(shape)


@pytest.mark.parametrize("layout,extra", [("turn", {}), ("tilt", {"thickness": 0.32, "mu": 3.0})])
def test_each_panel_matches_c_with_custom_vectors(tmp_path, layout, extra):
    # Each panel of a P-panel render is the C program's single-panel render with the CUSTOM vectors of that
    # panel (io.expt.c_flags), on both kernels: the float64 gate, and the raw float file's rounding (~6e-8).
    c_bin = resolve_c_binary()
    if not c_bin.ok:
        pytest.skip(c_bin.problem)
    model, path = _expt_model(tmp_path, layout, **extra)
    exp = read_expt(path)
    gate = for_dtype(torch.float64)
    images = {k: render(model, kernel=k).numpy() for k in ("torch", "numba")}
    for i in range(len(exp.panels)):
        c = _c_panel(c_bin.path, exp, i, XTAL, tmp_path, images["torch"].shape[1:]).astype(np.float64)
        assert c.max() > 10 * c.mean(), "the panel must hold a spot for the comparison to mean something"
        for kernel, img in images.items():
            r = np.corrcoef(img[i].ravel(), c.ravel())[0, 1]
            assert r >= gate.min_correlation, (kernel, i, r)
            assert np.abs(img[i] - c).max() <= 1e-5 * c.max(), (kernel, i)


# ------------------------------------------------------------------------------------------------ outputs
def test_floatfile_holds_the_panels_one_after_another(tmp_path):
    path = tmp_path / "turn.expt"
    write_expt(path, "turn")
    argv = ["-expt", str(path), *XTAL, "-floatfile", str(tmp_path / "f.bin"), "-intfile",
            str(tmp_path / "i.img"), "-nopgm", "-nonoise", "-quiet"]
    assert main(argv) == 0
    img = render(load_model(config_from_argv(argv)))
    raw = np.fromfile(tmp_path / "f.bin", dtype=np.float32)
    assert raw.size == 4 * 24 * 32
    assert np.array_equal(raw.reshape(4, 24, 32), img.numpy().astype(np.float32))
    head = (tmp_path / "i.img").read_bytes()[:512].decode()
    assert "SIZE1=32;" in head and "SIZE2=96;" in head
    # CBF is refused for P > 1 (one line, nothing written): NXmx holds the panels as modules
    assert main(["-expt", str(path), *XTAL, "-frames", "2", "-cbf", str(tmp_path / "c_#.cbf")]) == 2
    assert not list(tmp_path.glob("c_*"))


def test_a_rotation_series_on_panels_writes_each_frame_as_its_single_render(tmp_path):
    # Frame 2 of -frames 2 -osc 0.5 starts at phi 0.5: the same float image as one render at -phi 0.5.
    path = tmp_path / "turn.expt"
    write_expt(path, "turn")
    common = ["-expt", str(path), *XTAL, "-osc", "0.5", "-nopgm", "-nonoise", "-quiet"]
    assert main([*common, "-frames", "2", "-floatfile", str(tmp_path / "f_####.bin"),
                 "-intfile", str(tmp_path / "i_####.img")]) == 0
    assert main([*common, "-phi", "0.5", "-floatfile", str(tmp_path / "one.bin"),
                 "-intfile", str(tmp_path / "one.img")]) == 0
    frame = np.fromfile(tmp_path / "f_0002.bin", dtype=np.float32)
    assert frame.size == 4 * 24 * 32
    assert np.array_equal(frame, np.fromfile(tmp_path / "one.bin", dtype=np.float32))


def test_panel_as_detector_is_the_panel(tmp_path):
    # The single C detector standing for a panel (CUSTOM, beam pivot) places pix0 at the panel's origin.
    model, _ = _expt_model(tmp_path, "tilt")
    g = place_panels(model.detector, model.beam.beam_vector)
    from nanobrag_torch.geometry import place_detector

    for i in range(4):
        one = place_detector(panel_as_detector(model.detector, i, model.beam.beam_vector), model.beam.beam_vector)
        assert torch.allclose(one.pix0, g.pix0[i], atol=1e-15)


# ------------------------------------------------------------------------------------------------ gradients
def test_gradients_of_panel_and_group_moves_match_finite_differences(tmp_path):
    # d(loss)/d(panel origin, offset, rotation, group offset, group rotation) from autograd against central
    # differences (Richardson-extrapolated) along the gradient (float64, eager kernel): within 1e-6
    # relative. Steps: 0.1 um and 10 urad, far below a pixel (172 um at 60 mm: 3 mrad).
    model, _ = _expt_model(tmp_path, "tilt", thickness=0.32, mu=3.0)
    det = model.detector
    P, G = det.panels, len(det.groups)
    gen = torch.Generator().manual_seed(3)
    weights = torch.rand(det.shape, generator=gen, dtype=torch.float64)
    full = lambda n, v: torch.full((n, 3), v, dtype=torch.float64)  # noqa: E731
    start = {"origin": det.origin.clone(), "offset": full(P, 2e-5), "rotation": full(P, 1e-3),
             "group_offset": full(G, 0.0), "group_rotation": full(G, 0.0)}
    steps = {"origin": 1e-7, "offset": 1e-7, "rotation": 1e-5, "group_offset": 1e-7, "group_rotation": 1e-5}

    def loss(**values):
        return (render(replace(model, detector=replace(det, **values)), kernel="torch") * weights).sum()

    for name, x0 in start.items():
        x = x0.clone().requires_grad_(True)
        grad, = torch.autograd.grad(loss(**{**start, name: x}), x)
        v = grad / grad.norm()  # along the gradient: the derivative is |grad|, no cancellation in it
        h = steps[name]
        with torch.no_grad():
            f = lambda t: float(loss(**{**start, name: x0 + t * v}))  # noqa: B023, E731
            d1, d2 = (f(h) - f(-h)) / (2 * h), (f(2 * h) - f(-2 * h)) / (4 * h)
        fd = (4 * d1 - d2) / 3
        exact = float((grad * v).sum())
        assert abs(exact) > 0
        assert abs(fd - exact) <= 1e-6 * abs(exact), (name, fd, exact)
