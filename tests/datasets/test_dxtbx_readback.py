"""dxtbx (DIALS's file layer) reads our NXmx, CBF and SMV files and our truth (-exptout) as we mean them
(issue 22). One subprocess of DIALS's Python (tools/interop/readback.py) reads every file written below.

* For each detector set-up (every convention, two-theta, -detector_rotx, a tilted spindle, the sample pivot)
  the NXmx and CBF files give dxtbx the panel of the truth file to 1e-9 mm at every corner, the truth's
  rotation axis, scan, wavelength and beam, and numbers worked out by hand from the C program's conventions
  (``EXPECTED``; docs/c-behaviour.md §3; imgCIF = DIALS's frame: spindle +x, beam travelling along -z).
* The pixels dxtbx reads are the photons of C's noise image (its SMV file less C's default offset 40).
* The truth file loads with its images (check_format=True): 2 frames of a rotation, one per still.
* SMV: dxtbx reads C's header (``FormatSMVJHSim``); with -adc_header it takes the pedestal (40), without it
  assumes 1. Its beam centre comes from C's BEAM_CENTER_X/Y keys read ADXV-style (fast = X + px,
  slow = height - Y + px), which for MOSFLM's keys is not where the beam is: the reason the README points
  DIALS users at NXmx/CBF for exact geometry.

Without DIALS these tests skip, saying so; ``nox -s interop`` sets NB_REQUIRE_DIALS=1, which turns the skip
into a failure (never a silent pass there).
"""
from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from nanobrag_torch.io.smv import read_smv
from tests.helpers.cli import run_inproc
from tests.helpers.dials import dxtbx_readback, require_dials
from tools.interop.run import dials_python

pytestmark = pytest.mark.dials

BASE = ("-cell 40 50 60 90 90 90 -default_F 100 -N 3 -detpixels_f 32 -detpixels_s 24 -pixel 0.2 -distance 80 "
        "-oversample 1 -phi 3 -osc 1 -workers 0 -seed 9").split()
S20, C20 = math.sin(math.radians(20)), math.cos(math.radians(20))
S5, C5 = math.sin(math.radians(5)), math.cos(math.radians(5))
SETUPS = {
    "mosflm": [], "twotheta": ["-twotheta", "20"], "rotx": ["-detector_rotx", "5"], "xds": ["-xds"],
    "dials": ["-dials"], "adxv": ["-adxv"], "denzo": ["-denzo"], "spindle": ["-spindle_axis", "0", "1", "1"],
    "xds_twotheta": ["-xds", "-twotheta", "15"],
    "custom_sample_pivot": ["-fdet_vector", "0", "0", "1", "-sdet_vector", "0", "-1", "0", "-odet_vector", "1",
                            "0", "0", "-beam_vector", "1", "0", "0", "-pivot", "sample", "-twotheta", "15"],
}
# By hand (32 x 24 pixels of 0.2 mm, 80 mm). MOSFLM: beam centre Fbeam 3.4, Sbeam 2.6 mm (test_interop's
# module doc), panel origin (-3.4, 2.6, -80). DENZO: Fbeam = Ybeam = 3.3, Sbeam = Xbeam = 2.5. XDS: the near
# point at the detector's centre (3.2, 2.4) mm, its lab (x, y, z) in imgCIF (x, -y, -z). DIALS: spindle lab y
# (the detector's slow axis) -> imgCIF +x, lab x -> +y. ADXV: Fbeam = Xbeam = 3.3, Sbeam = Ds - Ybeam = 2.5,
# slow axis lab -y, which is imgCIF +y (a mirror of MOSFLM's image). -detector_rotx 5: about MOSFLM's beam
# (lab +x, imgCIF -z): fast (cos 5, -sin 5, 0), the beam still hits (3.4, 2.6) mm. -twotheta 20 (MOSFLM, axis
# lab -z): the normal turns 20 degrees away from the beam, the fast axis (the spindle) stays, the beam spot
# stays at (3.4, 2.6). -spindle_axis 0 1 1: perpendicular to the beam, so it is imgCIF +x, at 45 degrees to
# the fast axis (lab z).
EXPECTED = {
    "mosflm": {"origin": [-3.4, 2.6, -80], "fast": [1, 0, 0], "slow": [0, -1, 0], "beam_centre_mm": [3.4, 2.6]},
    "denzo": {"origin": [-3.3, 2.5, -80], "fast": [1, 0, 0], "slow": [0, -1, 0]},
    "xds": {"origin": [-3.2, 2.4, -80], "fast": [1, 0, 0], "slow": [0, -1, 0], "beam_centre_mm": [3.2, 2.4]},
    "dials": {"origin": [-2.4, -3.2, -80], "fast": [0, 1, 0], "slow": [1, 0, 0]},
    "adxv": {"origin": [-3.3, -2.5, -80], "fast": [1, 0, 0], "slow": [0, 1, 0]},
    "rotx": {"fast": [C5, -S5, 0], "slow": [-S5, -C5, 0], "beam_centre_mm": [3.4, 2.6], "distance": 80},
    "twotheta": {"fast": [1, 0, 0], "normal_to_beam_deg": 20, "beam_centre_mm": [3.4, 2.6]},
    "xds_twotheta": {"normal_to_beam_deg": 15},
    "custom_sample_pivot": {"normal_to_beam_deg": 15},
    "spindle": {"fast_to_axis_deg": 45},
}


@pytest.fixture(scope="module")
def dxtbx_read(tmp_path_factory):
    """Write every set-up's dataset (NXmx, CBF, SMV noise images, truth) and stills, then read them all in one
    run of DIALS's Python: {(setup, kind): what dxtbx read}."""
    require_dials()
    root = tmp_path_factory.mktemp("dxtbx")
    files = {}
    for name, extra in SETUPS.items():
        d = root / name
        r = run_inproc([*BASE, *extra, "-frames", "2", "-nexus", "s.h5", "-cbf", "c_#.cbf", "-noisefile", "n_#.img",
                        "-exptout", "t.expt"], d)
        assert r.returncode == 0, r.stderr
        files.update({(name, "nxmx"): d / "s.h5", (name, "cbf"): d / "c_1.cbf", (name, "truth"): d / "t.expt"})
    d = root / "smv"
    for key, extra in (("smv_keyed", ["-adc_header"]), ("smv_plain", [])):
        r = run_inproc([*BASE, "-frames", "1", "-noisefile", f"{key}_#.img", *extra], d)
        assert r.returncode == 0, r.stderr
        files[("mosflm", key)] = d / f"{key}_1.img"
    for name, extra in (("stills", []), ("stills_twotheta", ["-twotheta", "10"])):  # miniCBF, full imgCIF
        d = root / name
        r = run_inproc([*BASE, *extra, "-stills", "2", "-misset_seed", "4", "-nexus", "s.h5", "-cbf", "c_#.cbf",
                        "-exptout", "t.expt", "-noisefile", "n_#.img"], d)
        assert r.returncode == 0, r.stderr
        files.update({(name, "nxmx"): d / "s.h5", (name, "cbf"): d / "c_1.cbf", (name, "truth"): d / "t.expt"})
    return dxtbx_readback(files), root


def _corners(p: dict) -> np.ndarray:
    o, f, s = (np.asarray(p[k]) for k in ("origin", "fast", "slow"))
    (nf, ns), (pf, ps) = p["image_size"], p["pixel_size"]
    return np.array([o, o + nf * pf * f, o + ns * ps * s, o + nf * pf * f + ns * ps * s])


def _angle(u, v) -> float:
    u, v = np.asarray(u, float), np.asarray(v, float)
    return math.degrees(math.acos(max(-1.0, min(1.0, np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)))))


@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("fmt", ["nxmx", "cbf"])
def test_dxtbx_reads_the_simulated_geometry(dxtbx_read, setup, fmt):
    got, _ = dxtbx_read
    img, truth = got[(setup, fmt)], got[(setup, "truth")]
    assert "error" not in img, img.get("error")
    assert "error" not in truth, truth.get("error")
    p, t = img["panel"], truth["panel"]
    assert np.abs(_corners(p) - _corners(t)).max() < 1e-9
    assert p["image_size"] == [32, 24] and p["pixel_size"] == pytest.approx([0.2, 0.2])
    assert img["s0"] == pytest.approx([0, 0, -1]) and img["wavelength"] == pytest.approx(1.0)
    assert img["axis"] == pytest.approx(truth["axis"], abs=1e-12)
    assert img["scan"]["oscillation"] == pytest.approx([3.0, 1.0]) == truth["scan"]["oscillation"]
    assert truth["scan"]["image_range"] == [1, 2]
    for key, want in EXPECTED.get(setup, {}).items():
        if key == "normal_to_beam_deg":
            assert _angle(p["normal"], [0, 0, -1]) == pytest.approx(want, abs=1e-9)
        elif key == "fast_to_axis_deg":
            assert img["axis"] == pytest.approx([1, 0, 0], abs=1e-12)
            assert _angle(p["fast"], img["axis"]) == pytest.approx(want, abs=1e-9)
        else:
            assert p[key] == pytest.approx(want, abs=1e-9), key
    if fmt == "cbf":  # which reader: a miniCBF where its header says it all, a full imgCIF otherwise
        mini = setup in ("mosflm", "denzo", "xds")
        assert img["format"] == "FormatCBFMini" if mini else img["format"].startswith("FormatCBFFull")


@pytest.mark.parametrize("setup", ["mosflm", "twotheta", "adxv", "dials"])
@pytest.mark.parametrize("fmt", ["nxmx", "cbf"])
def test_dxtbx_reads_the_photon_counts(dxtbx_read, setup, fmt):
    got, root = dxtbx_read
    photons = read_smv(root / setup / "n_1.img", "n")[1].astype(np.int64) - 40  # C's SMV: default -adc 40
    assert np.array_equal(np.asarray(got[(setup, fmt)]["pixels"]), photons)


def test_sensor_declared_by_default_is_too_thin_to_matter(dxtbx_read):
    got, _ = dxtbx_read
    nx, cbf = got[("mosflm", "nxmx")]["panel"], got[("mosflm", "cbf")]["panel"]
    assert nx["material"] == "Si" and nx["thickness"] == pytest.approx(1e-6)  # NXmx needs one: 1 nm
    assert cbf["thickness"] == 0 and cbf["px_mm"] == "SimplePxMmStrategy"  # the miniCBF has no sensor line


@pytest.mark.parametrize("stills", ["stills", "stills_twotheta"])
def test_truth_loads_with_its_images(dxtbx_read, stills):
    got, _ = dxtbx_read
    rot, still = got[("mosflm", "truth")], got[(stills, "truth")]
    assert rot["images_checked"] and rot["experiments"] == 1 and rot["imageset_sizes"] == [2]
    assert still["images_checked"] and still["experiments"] == 2 and still["imageset_sizes"] == [1, 1]
    assert still["axis"] is None and still["scan"] is None
    assert still["crystals"][0] != still["crystals"][1]  # -misset_seed 4 and 5: two orientations
    for fmt in ("nxmx", "cbf"):  # the stills' files: the same panel as the truth; no rotation (width 0)
        img = got[(stills, fmt)]
        assert "error" not in img, img.get("error")
        assert np.abs(_corners(img["panel"]) - _corners(still["panel"])).max() < 1e-9
        assert img["scan"] is None or img["scan"]["oscillation"][1] == 0


def test_smv_pedestal_needs_adc_header_and_its_beam_centre_is_read_adxv_style(dxtbx_read):
    got, _ = dxtbx_read
    keyed, plain = got[("mosflm", "smv_keyed")], got[("mosflm", "smv_plain")]
    assert keyed["format"] == plain["format"] == "FormatSMVJHSim"
    assert keyed["panel"]["pedestal"] == 40 and plain["panel"]["pedestal"] == 1  # dxtbx's default: 1
    assert keyed["panel"]["distance"] == pytest.approx(80) and keyed["scan"]["oscillation"] == pytest.approx([3, 1])
    # C writes BEAM_CENTER_X = Xbeam = 2.5 and BEAM_CENTER_Y = Ybeam = 3.3 (MOSFLM's slow, fast); dxtbx takes
    # them as (fast + 0.2, 4.8 - slow + 0.2): (2.7, 1.7) mm, where the beam really is (3.4, 2.6)
    assert keyed["panel"]["beam_centre_mm"] == pytest.approx([2.7, 1.7], abs=1e-9)


GONIO_CHECK = """
import json, sys
from dxtbx.model.experiment_list import ExperimentListFactory
from scitbx import matrix
e = ExperimentListFactory.from_json_file(sys.argv[1], check_format=False)[0]
g = e.goniometer
S, F = matrix.sqr(g.get_setting_rotation()), matrix.sqr(g.get_fixed_rotation())
R = matrix.col(g.get_rotation_axis_datum()).axis_and_angle_as_r3_rotation_matrix(float(sys.argv[2]), deg=True)
print(json.dumps([list(S * R * F * matrix.col(v)) for v in e.crystal.get_real_space_vectors()]))
"""


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_dxtbx_turns_the_crystal_as_our_reader_does(tmp_path, kind):
    # A goniometer with setting and fixed rotations, or a multi-axis one scanning its middle axis: the crystal
    # at phi = 12 deg as dxtbx composes it (S R(e, phi) F x) is the crystal our reader gives turned about its
    # spindle axis by 12 deg.
    from nanobrag_torch.io.expt import read_expt
    from tests.unit.test_panels import FIXED, GONIO_XTAL, KAPPA, SETTING, _gonio_expt
    from tests.helpers.expt import rot

    require_dials()
    path = _gonio_expt(tmp_path / "g.expt", (1.0, 0.0, 0.0), SETTING, FIXED, GONIO_XTAL)
    if kind == "multi":  # kappa scanned, between phi (inside: F) and omega at 25 deg (outside: S)
        doc = json.loads(path.read_text())
        doc["goniometer"] = [dict(KAPPA, angles=[15.0, 0.0, 25.0], scan_axis=1)]
        path.write_text(json.dumps(doc))
    out = subprocess.run([dials_python(), "-c", GONIO_CHECK, str(path), "12"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = np.array(json.loads(out.stdout))
    exp = read_expt(path)
    ours = np.array([rot(exp.spindle_axis, 12.0) @ np.array(v) for v in exp.crystal])
    assert np.allclose(ours, theirs, atol=1e-9)
    assert not np.allclose(np.array(GONIO_XTAL), theirs, atol=1.0), "the goniometer turns the crystal"
