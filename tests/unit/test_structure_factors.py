"""Structure factors from a structure (issue 23): a model through gemmi (-pdb), MTZ data (-mtz), the P1
expansion with both Friedel mates, the resolution a run's table reaches, and -hklout's round trip through the
C program. The structures are written by the tests (tests/helpers/structures.py); |F| is checked against an
independent numpy direct sum over every symmetry mate with hand-typed P 2_1 2_1 2_1 operators.
"""
from __future__ import annotations

import math
import subprocess
import time

import gemmi
import numpy as np
import pytest
import torch

import nanobrag_torch as nb
from nanobrag_torch.errors import InputError, UsageError
from nanobrag_torch.cmdline.flags import help_text
from nanobrag_torch.io import structure
from nanobrag_torch.io.hkl import read_hkl
from nanobrag_torch.io.p1 import expand_to_p1, symmetry_rotations
from nanobrag_torch.structure_factors import detector_reach
from tests.helpers.cli import run_inproc
from tests.helpers.structures import (CELL, direct_sum, few_atoms, inverse_d2_orthorhombic, listed, sphere,
                                      write_model)
from tools.cbin import resolve_c_binary
from tools.metrics import read_float_image

ZN_EDGE_SIDE = 1.28  # A: just below the Zn K edge (1.2837 A), where f'' of Zn is large (about 3.9 e)


@pytest.fixture(scope="module")
def light_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("sf") / "light.pdb"
    atoms = few_atoms()
    write_model(path, atoms)
    return path, atoms


@pytest.fixture(scope="module")
def zinc_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("sf") / "zinc.cif"  # mmCIF this time
    atoms = few_atoms(zinc=True)
    write_model(path, atoms)
    return path, atoms


def _compare(sf, atoms, hkl, **kw):
    table = listed(sf)
    ours = np.array([table[tuple(int(v) for v in h)] for h in hkl])
    ref = np.abs(direct_sum(hkl, atoms, **kw))
    return ours, ref


# ----------------------------------------------------------------------------------------------- from a model
def test_model_acceptance_every_reflection_to_2A_and_its_mate_and_F_of_the_direct_sum(light_model):
    # Acceptance: P 2_1 2_1 2_1, d_min 2 A: the listed reflections are exactly every index (and so its Friedel
    # mate) with d >= 2 A except 000, nothing beyond; |F| within 0.1 % (median) of the direct sum with the same
    # form factors. gemmi's FFT at our sampling is within about 1e-5 (float32 grid), so 1e-4 has margin.
    path, atoms = light_model
    sf = nb.structure_factors_from_model(path, d_min=2.0)
    table = listed(sf)
    expected = sphere(2.0)
    assert set(table) == {tuple(int(v) for v in h) for h in expected}
    assert all((-h, -k, -l) in table for h, k, l in table)
    ours, ref = _compare(sf, atoms, expected)
    present = ref > 1e-6 * ref.max()  # not a systematic absence
    rel = np.abs(ours[present] - ref[present]) / ref[present]
    assert np.median(rel) < 1e-4 and np.percentile(rel, 99) < 1e-2
    # systematic absences of P 2_1 2_1 2_1 (h00, 0k0, 00l with odd index) are listed with F = 0
    for hkl in ((1, 0, 0), (0, 3, 0), (0, 0, -5)):
        assert table[hkl] == 0.0
    assert abs(direct_sum([[1, 0, 0]], atoms)[0]) < 1e-9  # and the direct sum agrees they vanish


def test_large_grids_fall_back_to_gemmis_default_sampling_and_still_meet_the_acceptance(light_model, monkeypatch):
    # The grid spacing is d_min / (2 rate): a 52x61x73 A cell at 2 A has 2.3e5 A^3 * (5/2)^3 = 3.6e6 points at
    # rate 2.5 (kept); a 400 A cube at 2 A would have 1e9 (> 2^27): rate 1.5. At 1.5 the median error is
    # about 1e-5 still (1e-4 in the worst reflections), inside the acceptance's 0.1 %.
    assert structure.fft_rate(gemmi.UnitCell(52, 61, 73, 90, 90, 90), 2.0) == 2.5
    assert structure.fft_rate(gemmi.UnitCell(400, 400, 400, 90, 90, 90), 2.0) == 1.5
    monkeypatch.setattr(structure, "FFT_MAX_POINTS", 0)
    path, atoms = light_model
    hkl = sphere(2.0)
    ours, ref = _compare(nb.structure_factors_from_model(path, d_min=2.0), atoms, hkl)
    present = ref > 1e-6 * ref.max()
    assert np.median(np.abs(ours[present] - ref[present]) / ref[present]) < 1e-3


def test_friedel_mates_equal_without_anomalous(light_model):
    # No anomalous terms: |F(h)| = |F(-h)| exactly (the mate gets the conjugate of the same complex F).
    sf = nb.structure_factors_from_model(light_model[0], d_min=3.0)
    table = listed(sf)
    assert all(table[(-h, -k, -l)] == F for (h, k, l), F in table.items())
    assert sf.table.dtype == torch.float64 and sf.default_F == 0.0


def test_anomalous_bijvoet_differences_follow_the_direct_sum(zinc_model):
    # With f'/f'' of gemmi's Cromer-Liberman at 1.28 A, F(h) != F(-h) for acentric reflections, and the sign
    # of |F(h)| - |F(-h)| is that of the direct sum with the same f'/f''; centric zones (h k 0, h 0 l, 0 k l
    # in P 2_1 2_1 2_1) keep Friedel's law.
    path, atoms = zinc_model
    sf = nb.structure_factors_from_model(path, d_min=2.5, wavelength=ZN_EDGE_SIDE, anomalous=True)
    terms = {el: gemmi.cromer_liberman(z=gemmi.Element(el).atomic_number, energy=gemmi.hc / ZN_EDGE_SIDE)
             for el in {a.element for a in atoms}}
    assert terms["Zn"][1] > 3.0  # the wavelength is where the zinc signal is large
    hkl = sphere(2.5)
    table = listed(sf)
    plus = np.array([table[tuple(int(v) for v in h)] for h in hkl])
    minus = np.array([table[tuple(int(-v) for v in h)] for h in hkl])
    ref_plus = np.abs(direct_sum(hkl, atoms, anomalous=terms))
    ref_minus = np.abs(direct_sum(-hkl, atoms, anomalous=terms))
    centric = (hkl == 0).any(axis=1)
    assert np.array_equal(plus[centric], minus[centric])
    strong = ~centric & (np.abs(ref_plus - ref_minus) > 0.02 * ref_plus)
    assert strong.sum() > 100
    assert np.all(np.sign(plus - minus)[strong] == np.sign(ref_plus - ref_minus)[strong])
    assert np.median(np.abs(plus - ref_plus)[~centric] / ref_plus[~centric]) < 1e-4
    # without -anomalous the same model obeys Friedel's law
    plain = listed(nb.structure_factors_from_model(path, d_min=2.5))
    assert all(plain[(-h, -k, -l)] == F for (h, k, l), F in plain.items())


def test_b_factor_override(light_model):
    # -bfactor 35: every atom's B is 35 A^2 -> the direct sum with B = 35 for all atoms.
    path, atoms = light_model
    sf = nb.structure_factors_from_model(path, d_min=3.0, b_factor=35.0)
    hkl = sphere(3.0)
    ours, ref = _compare(sf, atoms, hkl, b_override=35.0)
    present = ref > 1e-6 * ref.max()
    assert np.median(np.abs(ours[present] - ref[present]) / ref[present]) < 1e-4


def test_bulk_solvent_changes_low_resolution_only(light_model):
    # F = F_model + k_sol exp(-B_sol s^2/4) F_mask: k_sol = 0 is the plain model; with the default k_sol the
    # change is large at low resolution and damped by exp(-46 s^2/4) at high resolution.
    path, _ = light_model
    plain = listed(nb.structure_factors_from_model(path, d_min=2.5))
    zero = listed(nb.structure_factors_from_model(path, d_min=2.5, bulk_solvent=True, k_sol=0.0))
    solvent = listed(nb.structure_factors_from_model(path, d_min=2.5, bulk_solvent=True))
    assert set(solvent) == set(plain)
    keys = np.array(sorted(plain))
    p = np.array([plain[tuple(k)] for k in keys])
    z = np.array([zero[tuple(k)] for k in keys])
    s = np.array([solvent[tuple(k)] for k in keys])
    np.testing.assert_allclose(z, p, rtol=1e-5, atol=1e-6 * p.max())
    d = 1 / np.sqrt(inverse_d2_orthorhombic(keys))
    change = np.abs(s - p) / np.maximum(p, 1e-3 * p.max())
    assert np.median(change[d > 8]) > 10 * np.median(change[d < 3])


def test_model_cell_and_wavelength_errors(tmp_path, light_model):
    with pytest.raises(UsageError, match="anomalous scattering needs the wavelength"):
        nb.structure_factors_from_model(light_model[0], d_min=3.0, anomalous=True)
    bad = tmp_path / "bad.pdb"
    bad.write_text("this is not a coordinate file\n")
    with pytest.raises(InputError, match=r"^-pdb: .*bad.pdb: no atoms"):
        nb.structure_factors_from_model(bad, d_min=3.0)
    nocell = tmp_path / "nocell.pdb"
    nocell.write_text("ATOM      1  C   LIG A   1       1.000   2.000   3.000  1.00 20.00           C\nEND\n")
    with pytest.raises(InputError, match="no crystal unit cell"):
        nb.structure_factors_from_model(nocell, d_min=3.0)
    with pytest.raises(InputError, match="file not found"):
        nb.structure_factors_from_model(tmp_path / "missing.cif", d_min=3.0)


# ------------------------------------------------------------------------------------------------ P1 expansion
def test_expansion_by_hand_with_bijvoet_pairs():
    # P 2_1 2_1 2_1's rotations are the identity and the three 2-folds. An anomalous pair F(+)=10 at (1,2,3),
    # F(-)=20 at (-1,-2,-3): the 2-fold along z takes (1,2,3) to (-1,-2,3) (F(+)) and the Bijvoet mate
    # (-1,-2,-3) to (1,2,-3) (F(-)); 8 indices in all, 4 with each value.
    hkl, F = expand_to_p1([[1, 2, 3]], [10.0], [20.0], symmetry_rotations(gemmi.SpaceGroup("P 21 21 21")))
    got = {tuple(h): f for h, f in zip(hkl.tolist(), F.tolist())}
    assert got == {(1, 2, 3): 10, (-1, -2, 3): 10, (-1, 2, -3): 10, (1, -2, -3): 10,
                   (-1, -2, -3): 20, (1, 2, -3): 20, (1, -2, 3): 20, (-1, 2, 3): 20}
    # a missing F(-) lists nothing for the mates; a centric reflection keeps its F(+) for both
    hkl, F = expand_to_p1([[1, 2, 0]], [5.0], [np.nan], symmetry_rotations(gemmi.SpaceGroup("P 21 21 21")))
    assert sorted(map(tuple, hkl.tolist())) == [(-1, -2, 0), (-1, 2, 0), (1, -2, 0), (1, 2, 0)]


def test_expansion_matches_gemmi_mtz_expansion(tmp_path):
    # An MTZ in P 6_1 2 2 (12 rotations) read by us equals gemmi's own expand_to_p1 plus the Friedel mates.
    mtz = _mtz(tmp_path / "p6122.mtz", "P 61 2 2", (60.0, 60.0, 90.0, 90.0, 90.0, 120.0), d_min=6.0)
    sf = nb.structure_factors_from_mtz(tmp_path / "p6122.mtz", "F,SIGF")
    ref = gemmi.read_mtz_file(str(tmp_path / "p6122.mtz"))
    ref.expand_to_p1()
    hkl = ref.make_miller_array()
    F = ref.column_with_label("F").array
    expected = {tuple(h): f for h, f in zip(hkl.tolist(), F.tolist())}
    expected.update({(-h, -k, -l): f for (h, k, l), f in list(expected.items())})
    got = listed(sf)
    assert len(got) > 12 * len(mtz) and set(got) == set(expected)
    assert all(got[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())


def test_100k_reflection_expansion_takes_seconds():
    # 100,000 unique reflections in P 2_1 2_1 2_1 -> ~770,000 P1 indices; about 0.25 s measured (vectorised).
    # The limit only catches a per-reflection Python loop (minutes).
    h = np.stack(np.meshgrid(*(np.arange(0, 47),) * 3, indexing="ij"), -1).reshape(-1, 3)[1:100_001]
    F = np.linspace(1, 2, len(h))
    t0 = time.perf_counter()
    out, _ = expand_to_p1(h, F, F, symmetry_rotations(gemmi.SpaceGroup("P 21 21 21")))
    assert time.perf_counter() - t0 < 10.0
    assert len(out) > 700_000


# ------------------------------------------------------------------------------------------------------- MTZ
def _mtz(path, spacegroup, cell, d_min, columns=("F", "SIGF"), types=("F", "Q"), values=None):
    """A merged MTZ of the reciprocal ASU to d_min; values: function of hkl (N,3) -> (N, columns)."""
    sg = gemmi.SpaceGroup(spacegroup)
    uc = gemmi.UnitCell(*cell)
    lim = [int(x) for x in uc.get_hkl_limits(d_min)]
    box = np.stack(np.meshgrid(*(np.arange(-m, m + 1) for m in lim), indexing="ij"), -1).reshape(-1, 3)
    asu = gemmi.ReciprocalAsu(sg)
    ops = sg.operations()
    hkl = np.array([h for h in box.tolist() if asu.is_in(h) and any(h) and not ops.is_systematically_absent(h)
                    and uc.calculate_d(h) >= d_min])
    vals = values(hkl) if values else np.stack([100 + hkl[:, 0] * 3.0 + hkl[:, 1] * 0.5 + hkl[:, 2] * 0.25,
                                                np.ones(len(hkl))], axis=1)
    m = gemmi.Mtz(with_base=True)
    m.spacegroup = sg
    m.set_cell_for_all(uc)
    m.add_dataset("sim")
    for label, t in zip(columns, types):
        m.add_column(label, t)
    m.set_data(np.concatenate([hkl, vals], axis=1).astype(np.float32))
    m.write_to_file(str(path))
    return hkl


def test_mtz_intensities_and_anomalous_pairs(tmp_path):
    # I,SIGI -> F = sqrt(I) (a negative I -> 0); F(+),F(-) -> F(h) and F(-h) as given.
    cell = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl = _mtz(tmp_path / "i.mtz", "P 21 21 21", cell, 8.0, ("I", "SIGI"), ("J", "Q"),
               lambda h: np.stack([np.where(h[:, 0] == 1, -4.0, 16.0 + h[:, 2]), np.ones(len(h))], 1))
    sf = listed(nb.structure_factors_from_mtz(tmp_path / "i.mtz", "I,SIGI"))
    for h in hkl.tolist():
        assert sf[tuple(h)] == pytest.approx(0.0 if h[0] == 1 else math.sqrt(16.0 + h[2]), rel=1e-6)
    _mtz(tmp_path / "a.mtz", "P 21 21 21", cell, 8.0, ("F(+)", "SIGF(+)", "F(-)", "SIGF(-)"), ("G", "L", "G", "L"),
         lambda h: np.stack([np.full(len(h), 10.0), np.ones(len(h)), np.full(len(h), 20.0), np.ones(len(h))], 1))
    sf = listed(nb.structure_factors_from_mtz(tmp_path / "a.mtz", "F(+),SIGF(+),F(-),SIGF(-)"))
    assert sf[(1, 2, 3)] == 10 and sf[(-1, -2, -3)] == 20 and sf[(-1, -2, 3)] == 10 and sf[(1, 2, -3)] == 20
    assert sf[(1, 2, 0)] == 10 == sf[(-1, -2, 0)]  # centric: F(+) for both (hkl = 1 2 0 is in the ASU)


def test_mtz_resolution_and_default_labels(tmp_path):
    cell = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    _mtz(tmp_path / "f.mtz", "P 21 21 21", cell, 6.0)
    full = listed(nb.structure_factors_from_mtz(tmp_path / "f.mtz"))  # no labels: the first F column
    cut = listed(nb.structure_factors_from_mtz(tmp_path / "f.mtz", "F,SIGF", d_min=9.5))
    keys = np.array(sorted(full))
    assert set(cut) == {tuple(k) for k in keys[inverse_d2_orthorhombic(keys, cell) <= 1 / 9.5**2]}
    assert 0 < len(cut) < len(full)


def test_mtz_errors_are_one_line(tmp_path):
    _mtz(tmp_path / "f.mtz", "P 21 21 21", (40.0, 50.0, 60.0, 90.0, 90.0, 90.0), 8.0)
    with pytest.raises(InputError, match=r"^-mtz_labels: .* has no column 'FP' \(columns: .*F\(F\)"):
        nb.structure_factors_from_mtz(tmp_path / "f.mtz", "FP,SIGFP")
    with pytest.raises(InputError, match="^-mtz_labels: 'SIGF' names 0 value columns"):
        nb.structure_factors_from_mtz(tmp_path / "f.mtz", "SIGF")
    (tmp_path / "junk.mtz").write_bytes(b"MTZ junk" * 10)
    with pytest.raises(InputError, match=r"^-mtz: .*junk.mtz: not a readable MTZ file"):
        nb.structure_factors_from_mtz(tmp_path / "junk.mtz")


# ------------------------------------------------------------------------------- the run's table and the CLI
def test_detector_reach_by_hand():
    # A 100x100 detector of 0.1 mm pixels 50 mm away, beam through its centre: the corners are
    # sqrt(2) * 5 mm off axis, 2theta = atan(5 sqrt(2) / 50), |s| = 2 sin(theta) / lambda.
    argv = "-cell 40 40 40 90 90 90 -default_F 1 -detpixels 100 -pixel 0.1 -distance 50 -lambda 1.5".split()
    model = nb.load_model(nb.config_from_argv([*argv, "-Xbeam", "4.95", "-Ybeam", "4.95"]))  # MOSFLM: +half px
    two_theta = math.atan(5 * math.sqrt(2) / 50)
    assert detector_reach(model) == pytest.approx(2 * math.sin(two_theta / 2) / 1.5, rel=1e-12)
    # dispersion: the shortest wavelength counts (1.5 * (1 - 0.1/2))
    model = nb.load_model(nb.config_from_argv([*argv, "-Xbeam", "4.95", "-Ybeam", "4.95", "-dispersion", "10",
                                               "-dispsteps", "3"]))
    assert detector_reach(model) == pytest.approx(2 * math.sin(two_theta / 2) / (1.5 * 0.95), rel=1e-12)


def _listed_cells(table):
    ranges = [hi - lo + 1 for lo, hi in zip(table.mins, table.maxs)]
    return {tuple(int(v) for v in i + np.array(table.mins))
            for i in np.argwhere(~table.missing[: ranges[0], : ranges[1], : ranges[2]])}


def test_cli_table_reaches_the_detector_and_cell_comes_from_the_model(light_model, tmp_path):
    # No -cell: the crystal's cell is the model's. The table covers every index whose reciprocal point lies
    # within the detector's reach plus half an index step per axis (nearest lookup), and nothing farther.
    path, _ = light_model
    (tmp_path / "m.pdb").write_bytes(path.read_bytes())
    argv = ["-pdb", "m.pdb", "-N", "5", "-detpixels", "64", "-distance", "60", "-lambda", "1.2", "-nointerpolate"]
    config = nb.config_from_argv(argv)
    model = nb.load_model(config, workdir=tmp_path)
    assert np.allclose(model.crystal.cell.numpy(), [*CELL[:3], *(math.radians(x) for x in CELL[3:])])
    s_max = detector_reach(model) + 0.5 * sum(1 / c for c in CELL[:3])
    cells = _listed_cells(model.info.hkl_table)
    s = np.sqrt(inverse_d2_orthorhombic(np.array(sorted(cells))))
    assert s.max() <= s_max
    assert cells == {tuple(int(v) for v in h) for h in sphere(1 / s_max)}
    # -dmin closer in: the table stops there exactly
    model = nb.load_model(nb.config_from_argv([*argv, "-dmin", "12"]), workdir=tmp_path)  # reach: 9.8 A
    assert _listed_cells(model.info.hkl_table) == {tuple(int(v) for v in h) for h in sphere(12.0)}


C = resolve_c_binary()


def test_hklout_round_trip_and_c_renders_the_same_image(zinc_model, tmp_path):
    # -hklout writes the table the run used; read back as -hkl it is the same grid, double for double; and the
    # C program given that file renders our image bit for bit (same table, same geometry).
    path, _ = zinc_model
    common = ["-N", "5", "-detpixels", "48", "-distance", "60", "-lambda", str(ZN_EDGE_SIDE), "-oversample", "1",
              "-nonoise", "-nopgm", "-floatfile", "f.bin", "-intfile", "i.img"]
    run = tmp_path / "py"
    run.mkdir()
    (run / "zinc.cif").write_bytes(path.read_bytes())
    r = run_inproc(["-pdb", "zinc.cif", "-anomalous", "-hklout", "P1.hkl", *common], run)
    assert r.returncode == 0, r.stderr
    assert "structure factors:" in r.stdout and "anomalous at 1.28 A" in r.stdout
    model = nb.load_model(nb.config_from_argv(["-pdb", "zinc.cif", "-anomalous", *common]), workdir=run)
    back = read_hkl(run / "P1.hkl")
    assert np.array_equal(back.grid, model.info.hkl_table.grid) and back.mins == model.info.hkl_table.mins
    assert np.array_equal(back.missing, model.info.hkl_table.missing)
    ours = read_float_image(run / "f.bin", (48, 48))
    assert ours.max() > 0
    if not C.ok:
        pytest.skip(f"the C half needs the C program: {C.problem}")
    crun = tmp_path / "c"
    crun.mkdir()
    (crun / "P1.hkl").write_bytes((run / "P1.hkl").read_bytes())
    proc = subprocess.run([str(C.path), "-hkl", "P1.hkl", "-cell", *map(str, CELL), *common], cwd=crun,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    np.testing.assert_array_equal(read_float_image(crun / "f.bin", (48, 48)), ours)


def test_cli_errors_and_warnings(light_model, tmp_path):
    path, _ = light_model
    (tmp_path / "m.pdb").write_bytes(path.read_bytes())
    base = ["-N", "2", "-detpixels", "16", "-nonoise", "-nopgm"]
    cases = [
        (["-pdb", "../m.pdb", "-hkl", "x.hkl"], 2, "-hkl and -pdb: give one source of structure factors"),
        (["-cell", "30", "-default_F", "1", "-anomalous"], 2, "-anomalous: only with -pdb FILE"),
        (["-pdb", "../m.pdb", "-mtz_labels", "F,SIGF"], 2, "-mtz_labels: only with -mtz FILE"),
        (["-pdb", "nothere.pdb"], 1, "-pdb: file not found: nothere.pdb"),
        (["-mtz", "../m.pdb"], 1, "-mtz: ../m.pdb: not a readable MTZ file"),
        (["-cell", "30", "-default_F", "1", "-hklout", "t.hkl"], 2, "-hklout: this run has no structure-factor"),
        (["-pdb", "../m.pdb", "-bfactor", "-3"], 2, "-bfactor: must not be negative"),
        (["-pdb", "../m.pdb", "-dmin", "60"], 1, "-pdb: ../m.pdb: no reflection with d >= 60 A"),
    ]
    for i, (argv, code, msg) in enumerate(cases):
        r = run_inproc([*argv, *base], tmp_path / f"run{i}")
        assert r.returncode == code and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (argv, r.stderr)
        assert r.files == [], argv  # nothing written
    r = run_inproc(["-pdb", "../m.pdb", "-cell", "31", "42", "55", "90", "90", "90", *base], tmp_path / "warn")
    assert r.returncode == 0, r.stderr
    assert "WARNING: the crystal's cell (-cell: 31 42 55 90 90 90) differs from the cell of -pdb ../m.pdb " \
           "(31 42 53 90 90 90)" in r.stderr


def test_help_lists_the_new_flags():
    text = help_text()
    for flag in ("-pdb FILE", "-mtz FILE", "-mtz_labels F,SIGF", "-anomalous", "-bfactor X", "-bulk_solvent",
                 "-k_sol X", "-B_sol X", "-hklout FILE"):
        assert f"  {flag}" in text, flag


def test_table_is_differentiable(light_model):
    # The table is a tensor like any parameter: a render's gradient reaches the cells its pixels look up, and
    # equals the central difference (the image is quadratic in each F, so the difference is exact but for
    # rounding).
    path, _ = light_model
    model = nb.load_model(nb.config_from_argv(["-pdb", str(path), "-N", "3", "-detpixels", "32", "-distance",
                                               "40", "-nointerpolate", "-oversample", "1"]))
    table = model.structure_factors.table.clone().requires_grad_(True)
    nb.render(model.replace(structure_factors__table=table)).sum().backward()
    cell = np.unravel_index(int(table.grad.abs().argmax()), table.shape)
    assert int((table.grad != 0).sum()) >= 5
    step = 1e-3 * float(table.detach()[cell])
    sums = []
    for sign in (1, -1):
        moved = table.detach().clone()
        moved[cell] += sign * step
        sums.append(float(nb.render(model.replace(structure_factors__table=moved)).sum()))
    assert float(table.grad[cell]) == pytest.approx((sums[0] - sums[1]) / (2 * step), rel=1e-6)


def test_dataset_builds_the_table_once(light_model, tmp_path, monkeypatch):
    # -frames 3: one model, one table for all frames (not one per frame).
    import nanobrag_torch.load as load

    calls = []
    real = load.model_reflections
    monkeypatch.setattr(load, "model_reflections", lambda *a, **k: calls.append(1) or real(*a, **k))
    (tmp_path / "m.pdb").write_bytes(light_model[0].read_bytes())
    r = run_inproc(["-pdb", "m.pdb", "-N", "2", "-detpixels", "16", "-frames", "3", "-osc", "1", "-workers", "0",
                    "-floatfile", "f_###.bin", "-nonoise", "-nopgm", "-hklout", "P1.hkl", "-quiet"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert calls == [1] and {"f_001.bin", "f_002.bin", "f_003.bin", "P1.hkl"} <= set(r.files)
