"""Files for the processing programs (issue 22), checked without DIALS: the truth as a DIALS experiment list
(-exptout, ``write_experiments``), the counts NXmx and CBF hold (photons unless -adc is given), the full imgCIF
header for geometry a miniCBF cannot say, and SMV's -adc_header. tests/datasets/test_dxtbx_readback.py reads the same
files with dxtbx itself.

Expected numbers are worked out by hand from the C program's conventions (docs/c-behaviour.md §3): on the
32 x 24 pixel, 0.2 mm MOSFLM detector at 80 mm used here, C's default beam centre is Xbeam = (Ds + px)/2 =
2.5 mm (slow), Ybeam = (Df + px)/2 = 3.3 mm (fast); Fbeam = Ybeam + px/2 = 3.4 mm, Sbeam = Xbeam + px/2 =
2.6 mm; pix0 = -Fbeam f - Sbeam s + D b = (80, 2.6, -3.4) mm in MOSFLM's lab frame (beam +x, spindle +z). The
imgCIF (DIALS) frame has the spindle along +x and the beam travelling along -z, so a MOSFLM lab vector
(x, y, z) is (z, y, -x) there, and the panel origin is (-3.4, 2.6, -80).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nanobrag_torch.io.smv import read_smv
from tests.helpers.cli import run_inproc

h5py = pytest.importorskip("h5py")
pytest.importorskip("hdf5plugin")
fabio = pytest.importorskip("fabio")

BASE = ("-cell 40 50 60 90 90 90 -default_F 100 -N 3 -detpixels_f 32 -detpixels_s 24 -pixel 0.2 -distance 80 "
        "-oversample 1 -nopgm").split()
ORIGIN = [-3.4, 2.6, -80.0]  # module doc


def expt(path) -> dict:
    return json.loads(path.read_text())


def test_single_run_truth_is_the_experiment_in_dials_frame(tmp_path):
    r = run_inproc([*BASE, "-phi", "10", "-osc", "1", "-exptout", "t.expt", "-nonoise"], tmp_path)
    assert r.returncode == 0, r.stderr
    e = expt(tmp_path / "t.expt")
    assert e["__id__"] == "ExperimentList" and len(e["experiment"]) == 1
    panel = e["detector"][0]["panels"][0]
    assert panel["origin"] == pytest.approx(ORIGIN, abs=1e-12)
    assert panel["fast_axis"] == pytest.approx([1, 0, 0], abs=1e-15)  # MOSFLM fast = lab z = spindle
    assert panel["slow_axis"] == pytest.approx([0, -1, 0], abs=1e-15)  # MOSFLM slow = lab -y
    assert panel["image_size"] == [32, 24] and panel["pixel_size"] == [0.2, 0.2]
    assert panel["thickness"] == 0 and panel["px_mm_strategy"]["type"] == "SimplePxMmStrategy"  # no sensor
    beam = e["beam"][0]
    assert beam["direction"] == [0, 0, 1] and beam["wavelength"] == 1.0
    # C's default -polar 0 (Kahn factor 0): unpolarized, half the intensity in any plane; E-vector along the
    # spindle (MOSFLM's polar vector is lab z), so the plane's normal is imgCIF y
    assert beam["polarization_fraction"] == 0.5 and beam["polarization_normal"] == pytest.approx([0, 1, 0])
    assert e["goniometer"][0]["rotation_axis"] == pytest.approx([1, 0, 0])
    scan = e["scan"][0]
    assert scan["image_range"] == [1, 1] and scan["oscillation"] == pytest.approx([10.0, 1.0])
    # -cell with no misset: a along the beam (lab x), b along lab y, c along lab z; imgCIF (z, y, -x); the
    # crystal at spindle angle 0 (DIALS' datum), whatever -phi the scan starts at
    c = e["crystal"][0]
    assert c["real_space_a"] == pytest.approx([0, 0, -40], abs=1e-9)
    assert c["real_space_b"] == pytest.approx([0, 50, 0], abs=1e-9)
    assert c["real_space_c"] == pytest.approx([60, 0, 0], abs=1e-9)
    assert "imageset" not in e["experiment"][0]  # a single run names no image set


def test_a_still_has_no_goniometer_and_its_crystal_at_phi(tmp_path):
    r = run_inproc([*BASE, "-phi", "10", "-exptout", "t.expt", "-nonoise"], tmp_path)  # -osc 0: a still
    assert r.returncode == 0, r.stderr
    e = expt(tmp_path / "t.expt")
    assert e["goniometer"] == [] and e["scan"] == [] and "goniometer" not in e["experiment"][0]
    # b (lab y) turned right-handedly by 10 degrees about the spindle (imgCIF +x): (0, 50 cos 10, 50 sin 10)
    s, c = math.sin(math.radians(10)), math.cos(math.radians(10))
    assert e["crystal"][0]["real_space_b"] == pytest.approx([0, 50 * c, 50 * s], abs=1e-9)


def test_write_experiments_python_api_writes_the_cli_truth(tmp_path):
    import nanobrag_torch as nb
    from nanobrag_torch.io.experiments import write_experiments

    argv = [*BASE, "-phi", "10", "-osc", "1"]
    write_experiments(nb.load_model(nb.config_from_argv(argv)), tmp_path / "api.expt")
    r = run_inproc([*argv, "-exptout", "cli.expt", "-nonoise"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert expt(tmp_path / "api.expt") == expt(tmp_path / "cli.expt")


def test_dataset_truth_names_its_frames_and_stills_are_the_single_runs(tmp_path):
    rot = run_inproc([*BASE, "-phi", "3", "-osc", "0.5", "-frames", "3", "-workers", "0", "-seed", "2",
                      "-cbf", "c_###.cbf", "-nexus", "s.h5", "-exptout", "rot.expt"], tmp_path / "rot")
    assert rot.returncode == 0, rot.stderr
    e = expt(tmp_path / "rot" / "rot.expt")
    assert e["scan"][0]["image_range"] == [1, 3] and e["scan"][0]["oscillation"] == pytest.approx([3.0, 0.5])
    assert e["imageset"] == [{**e["imageset"][0], "__id__": "ImageSequence", "template": "c_###.cbf"}]
    still = run_inproc([*BASE, "-stills", "2", "-misset_seed", "7", "-workers", "0", "-nexus", "s.h5",
                        "-exptout", "st.expt", "-nonoise"], tmp_path / "st")
    assert still.returncode == 0, still.stderr
    e = expt(tmp_path / "st" / "st.expt")
    assert len(e["experiment"]) == 2 and [x["crystal"] for x in e["experiment"]] == [0, 1]
    assert [s["single_file_indices"] for s in e["imageset"]] == [[0], [1]]  # one frame of s.h5 each
    for i in range(2):  # still i is the single run with -misset random -misset_seed 7+i: the same crystal
        one = run_inproc([*BASE, "-misset", "random", "-misset_seed", str(7 + i), "-exptout", "one.expt",
                          "-nonoise"], tmp_path / f"one{i}")
        assert one.returncode == 0, one.stderr
        assert expt(tmp_path / f"one{i}" / "one.expt")["crystal"][0] == e["crystal"][i]


def test_nexus_and_cbf_counts_are_photons_unless_adc_is_given(tmp_path):
    args = [*BASE, "-osc", "1", "-frames", "2", "-workers", "0", "-seed", "5", "-nexus", "s.h5",
            "-cbf", "c_#.cbf", "-noisefile", "n_#.img"]
    plain = run_inproc(args, tmp_path / "plain")
    given = run_inproc([*args, "-adc", "10"], tmp_path / "given")
    zero = run_inproc([*args, "-adc", "0"], tmp_path / "zero")
    assert plain.returncode == given.returncode == zero.returncode == 0
    assert "-adc" not in plain.stderr and "-adc" not in zero.stderr  # photons: nothing to warn about
    assert "WARNING: -adc 10: the NeXus/CBF counts carry this offset" in given.stderr
    for name, offset in (("plain", 0), ("given", 10), ("zero", 0)):
        d = tmp_path / name
        with h5py.File(d / "s.h5", "r") as f:
            stack = f["/entry/data/data"][()]
            assert f["/entry/instrument/detector/simulation/adc_offset"][()] == offset
        for i in range(2):
            # the SMV noise image keeps C's offset (default 40); the same Poisson draws, the other offset
            smv = read_smv(d / f"n_{i + 1}.img", "n")[1].astype(np.int64) - (10 if name == "given" else
                                                                             0 if name == "zero" else 40)
            assert np.array_equal(stack[i], smv + offset), name
            assert np.array_equal(fabio.open(str(d / f"c_{i + 1}.cbf")).data, smv + offset), name


def test_sensor_fields_follow_the_detector_thickness(tmp_path):
    from nanobrag_torch.io.nexus import NO_SENSOR_THICKNESS_MM

    for name, extra, mm in (("none", [], NO_SENSOR_THICKNESS_MM), ("thick", ["-detector_thick", "450"], 0.45)):
        r = run_inproc([*BASE, "-osc", "1", "-frames", "1", "-workers", "0", "-nonoise", "-nexus", "s.h5",
                        "-cbf", "c_#.cbf", *extra], tmp_path / name)
        assert r.returncode == 0, r.stderr
        with h5py.File(tmp_path / name / "s.h5", "r") as f:
            det = f["/entry/instrument/detector"]
            assert det["sensor_thickness"][()] == pytest.approx(mm) and det["sensor_material"][()] == b"Si"
        header = fabio.open(str(tmp_path / name / "c_1.cbf")).header["_array_data.header_contents"]
        assert ("# Silicon sensor, thickness 0.000450 m" in header) == (name == "thick")
        assert ("Silicon" in header) == (name == "thick")


def test_geometry_a_minicbf_cannot_say_gets_imgcif_axes(tmp_path):
    from nanobrag_torch.io.cbf import read_cbf

    r = run_inproc([*BASE, "-twotheta", "20", "-osc", "1", "-frames", "1", "-workers", "0", "-seed", "1",
                    "-cbf", "c_#.cbf", "-noisefile", "n_#.img"], tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "c_1.cbf").read_bytes().split(b"--CIF-BINARY-FORMAT-SECTION--")[0].decode()
    assert "header_convention" not in text and "_diffrn.id DS1" in text
    axes = {ln.split()[0]: [float(x) for x in ln.split()[4:10]] for ln in text.splitlines()
            if ln.split()[:1] and ln.split()[0] in ("GONIOMETER_PHI", "DETECTOR_Z", "ELEMENT_X", "ELEMENT_Y")
            and len(ln.split()) == 10}
    # MOSFLM's two-theta axis is lab -z (minus the spindle): the detector normal (lab x) turns by 20 degrees
    # to (cos 20, -sin 20, 0) in the lab, (0, -sin 20, -cos 20) in imgCIF; the fast axis (the spindle) stays
    s, c = math.sin(math.radians(20)), math.cos(math.radians(20))
    assert axes["GONIOMETER_PHI"][:3] == pytest.approx([1, 0, 0])
    assert axes["DETECTOR_Z"][:3] == pytest.approx([0, -s, -c], abs=1e-12)
    assert axes["ELEMENT_X"][:3] == pytest.approx([1, 0, 0], abs=1e-12)
    assert axes["ELEMENT_Y"][:3] == pytest.approx([0, -c, s], abs=1e-12)  # slow (lab -y) turned the same way
    _, pixels = read_cbf(tmp_path / "c_1.cbf")  # fabio reads the imgCIF binary section
    assert np.array_equal(pixels, read_smv(tmp_path / "n_1.img", "n")[1].astype(np.int64) - 40)


def test_adc_header_adds_only_the_pedestal_key(tmp_path):
    args = [*BASE, "-seed", "3", "-intfile", "i.img", "-noisefile", "n.img"]
    plain = run_inproc(args, tmp_path / "plain")
    keyed = run_inproc([*args, "-adc_header"], tmp_path / "keyed")
    assert plain.returncode == keyed.returncode == 0
    for name in ("i.img", "n.img"):
        h0, px0 = read_smv(tmp_path / "plain" / name, "x")
        h1, px1 = read_smv(tmp_path / "keyed" / name, "x")
        assert "ADC_OFFSET" not in h0 and h1["ADC_OFFSET"] == "40"  # C's default -adc, as dxtbx reads it
        assert {k: v for k, v in h1.items() if k not in ("ADC_OFFSET", "__text__")} == \
            {k: v for k, v in h0.items() if k != "__text__"}
        assert np.array_equal(px0, px1)


@pytest.mark.parametrize("flags", [["-frames", "2", "-workers", "0", "-nexus", "s.h5"], []])
def test_an_unwritable_exptout_is_one_line_and_writes_nothing(tmp_path, flags):
    r = run_inproc([*BASE, "-osc", "1", "-nonoise", "-exptout", "missing/t.expt", *flags], tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "t.expt" in r.stderr
    assert r.files == []
