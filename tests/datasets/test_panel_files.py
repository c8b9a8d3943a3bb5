"""Multi-panel files (issue 24) without DIALS: the NXmx file of a P-panel series holds one NXdetector_module per
panel whose chain of translations (module offset, then each hierarchy group up to the detector) ends at the
panel's origin, and the truth experiment list (-exptout) reads back through our -expt reader
(``io.expt.read_expt``, which composes the hierarchy's local frames itself) as the panels and groups we wrote.
dxtbx's own reading of both files is in test_dxtbx_panels.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nanobrag_torch import config_from_argv, load_model
from nanobrag_torch.errors import InputError
from nanobrag_torch.io.expt import read_expt
from nanobrag_torch.io.lab_frame import MCSTAS_TO_IMGCIF, imgcif_setup
from nanobrag_torch.programs.nanobragg import main
from tests.helpers.expt import write_expt

XTAL = "-cell 40 40 40 90 90 90 -misset 10 20 30 -N 3 -default_F 100 -oversample 1 -workers 0 -quiet".split()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A 2-frame series on the tilted 4-panel layout: NXmx (float frames), the float files and the truth."""
    d = tmp_path_factory.mktemp("panelfiles")
    write_expt(d / "in.expt", "tilt", scan=(0.0, 0.5))  # its goniometer: spindle +x, the frame we write in
    argv = ["-expt", str(d / "in.expt"), *XTAL, "-osc", "0.5", "-nonoise"]
    assert main([*argv, "-frames", "2", "-nexus", str(d / "s.h5"), "-floatfile", str(d / "f_#.bin"),
                 "-exptout", str(d / "t.expt")]) == 0
    return d, load_model(config_from_argv(argv))


def _chain(f, path: str) -> np.ndarray:
    """The sum of the translations along a depends_on chain (mm, McStas), checking each one's attributes."""
    total = np.zeros(3)
    while path != ".":
        t = f[path]
        assert t.attrs["transformation_type"] == "translation" and t.attrs["units"] == "mm"
        assert np.linalg.norm(t.attrs["vector"]) == pytest.approx(1.0, abs=1e-12)
        total += float(t[()]) * np.asarray(t.attrs["vector"])
        path = t.attrs["depends_on"]
        path = path.decode() if isinstance(path, bytes) else path
    return total


def test_nxmx_holds_one_module_per_panel(written):
    import h5py
    import hdf5plugin  # noqa: F401

    d, model = written
    det = model.detector
    st = imgcif_setup(model)
    P, S, F = det.shape
    frames = np.fromfile(d / "f_2.bin", dtype=np.float32).reshape(P * S, F)
    with h5py.File(d / "s.h5", "r") as f:
        assert f["/entry/data/data"].shape == (2, P * S, F)
        assert np.array_equal(f["/entry/data/data"][1], frames)  # frame 2: the panels one under another
        nx = f["/entry/instrument/detector"]
        mods = [k for k in nx if nx[k].attrs.get("NX_class") == "NXdetector_module"]
        assert sorted(mods) == [f"module_{p}" for p in range(P)]
        for p in range(P):
            m = nx[f"module_{p}"]
            assert list(m["data_origin"][()]) == [p * S, 0] and list(m["data_size"][()]) == [S, F]
            fast, slow = m["fast_pixel_direction"], m["slow_pixel_direction"]
            assert float(fast[()]) == pytest.approx(0.172) and float(slow[()]) == pytest.approx(0.172)
            # McStas -> imgCIF: the same origin and axes as the truth's frame (imgcif_setup) to rounding
            origin = MCSTAS_TO_IMGCIF @ _chain(f, "/entry/instrument/detector/module_%d/module_offset" % p)
            assert np.abs(origin - st.origin[p]).max() < 1e-9
            assert np.abs(MCSTAS_TO_IMGCIF @ fast.attrs["vector"] - st.fast[p]).max() < 1e-12
            assert np.abs(MCSTAS_TO_IMGCIF @ slow.attrs["vector"] - st.slow[p]).max() < 1e-12
        assert nx["pixel_mask"].shape == (P * S, F)


def test_truth_reads_back_as_the_panels_and_groups(written, tmp_path):
    d, model = written
    source, truth = read_expt(str(d / "in.expt")), read_expt(str(d / "t.expt"))
    assert len(truth.panels) == 4 and truth.groups == source.groups == ((0, 1), (2, 3), (0, 1, 2, 3))
    for a, b in zip(source.panels, truth.panels):  # the input file's geometry comes back (mm)
        for key in ("origin", "fast", "slow"):
            assert np.abs(np.subtract(getattr(a, key), getattr(b, key))).max() < 1e-9, key
        assert b.image_size == (32, 24) and tuple(b.pixel_size) == pytest.approx((0.172, 0.172))
    # ... and renders as the same detector: the truth file is a valid -expt input
    again = load_model(config_from_argv(["-expt", str(d / "t.expt"), *XTAL]))
    assert np.abs(again.detector.origin.numpy() - model.detector.origin.numpy()).max() < 1e-12


def test_our_multi_module_nxmx_is_an_expt_input(written):
    # -expt FILE.h5 (io.nxmx_in): the modules come back as the panels, the shared translations as the groups,
    # with the beam, spindle and scan; the render is the original's (the same geometry to rounding)
    d, model = written
    again = load_model(config_from_argv(["-expt", str(d / "s.h5"), *XTAL, "-nonoise"]))
    a, b = model.detector, again.detector
    assert b.groups == a.groups == ((0, 1), (2, 3), (0, 1, 2, 3)) and b.shape == a.shape
    for key in ("origin", "fast", "slow"):
        assert np.abs(getattr(b, key).numpy() - getattr(a, key).numpy()).max() < 1e-15, key
    assert float(again.beam.wavelength) == pytest.approx(1e-10, rel=1e-15)
    assert float(again.beam.kahn) == pytest.approx(float(model.beam.kahn), abs=1e-12)
    assert float(again.crystal.osc) == pytest.approx(float(model.crystal.osc), abs=1e-15)
    assert np.allclose(again.crystal.spindle_axis.numpy(), model.crystal.spindle_axis.numpy(), atol=1e-15)
    from nanobrag_torch import render

    one, two = render(model).numpy(), render(again).numpy()
    assert one.max() > 0 and np.abs(two - one).max() <= 1e-9 * one.max()


@pytest.mark.parametrize("extra", [["-twotheta", "10"], ["-xds", "-detector_rotx", "3"]])
def test_a_single_panel_nxmx_is_an_expt_input(tmp_path, extra):
    # One module whose offset hangs off det_z (the normal): -expt gives C's detector back (imgCIF frame, mm)
    base = "-cell 40 50 60 90 90 90 -N 3 -default_F 100 -detpixels_f 32 -detpixels_s 24 -pixel 0.2 -distance 80 " \
           "-oversample 1 -phi 3 -osc 1 -workers 0 -quiet -nonoise".split()
    assert main([*base, *extra, "-frames", "2", "-nexus", str(tmp_path / "s.h5")]) == 0
    model = load_model(config_from_argv([*base, *extra]))
    again = load_model(config_from_argv(["-expt", str(tmp_path / "s.h5"), "-cell", "40", "50", "60", "90", "90",
                                         "90", "-default_F", "1"]))
    st, st2 = imgcif_setup(model), imgcif_setup(again)
    for key in ("origin", "fast", "slow"):
        assert np.abs(getattr(st2, key) - getattr(st, key)).max() < 1e-9, key
    assert again.detector.fpixels == 32 and again.detector.spixels == 24
    assert float(again.crystal.phi0) == pytest.approx(float(model.crystal.phi0), abs=1e-15)
    assert st2.spindle == pytest.approx(st.spindle, abs=1e-12)


def test_an_hdf5_file_that_is_not_nxmx_is_one_line(tmp_path, capsys):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    assert main(["-expt", str(tmp_path / "x.h5"), *XTAL]) == 1  # bad input: one line, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an NXmx file" in err[0]


def test_the_dataset_writer_refuses_cbf_for_panels(written):
    # A model built in Python (not through the command line's refusal) meets the same one-line refusal
    from types import SimpleNamespace

    from nanobrag_torch.datasets.writer import DatasetFiles, DatasetWriter
    from nanobrag_torch.errors import UsageError

    _, model = written
    with pytest.raises(UsageError, match="-cbf: not written for a detector of 4 panels"):
        DatasetWriter(DatasetFiles(cbf="c_#.cbf"), model, SimpleNamespace(seed=None, rotation=True), None)


def _nx(group, name, nx_class):
    g = group.create_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def _axis(group, name, value, units, kind, vector, depends_on):
    d = group.create_dataset(name, data=value)
    d.attrs.update(units=units, transformation_type=kind, vector=np.asarray(vector, float), depends_on=depends_on)
    return d


def test_the_nxmx_reader_follows_rotations_units_and_masks(tmp_path):
    # A file written by hand: two modules behind a detector turned 90 deg about McStas y (a two-theta arm),
    # det_z 100 mm. A point is moved by its own transformation first, then by the one it depends on:
    # module 0's corner (10, 0, 0) -> det_z (10, 0, 100) -> R_y(90) (100, 0, -10) -> imgCIF (x, z flipped)
    # (-100, 0, 10); its fast (-1, 0, 0) -> (0, 0, 1) -> (0, 0, -1); module 1's corner (0, 5, 0) -> (-100, 5, 0).
    import h5py

    path = tmp_path / "hand.h5"
    with h5py.File(path, "w") as f:
        entry = _nx(f, "entry", "NXentry")
        entry["definition"] = "NXmx"
        inst = _nx(entry, "instrument", "NXinstrument")
        beam = _nx(inst, "beam", "NXbeam")
        beam.create_dataset("incident_wavelength", data=0.09).attrs["units"] = "nm"
        det = _nx(inst, "detector", "NXdetector")
        tr = _nx(det, "transformations", "NXtransformations")
        _axis(tr, "two_theta", 90.0, "deg", "rotation", (0, 1, 0), ".")
        _axis(tr, "det_z", 0.1, "m", "translation", (0, 0, 1), "/entry/instrument/detector/transformations/two_theta")
        det.create_dataset("sensor_thickness", data=450.0).attrs["units"] = "um"
        mask = np.zeros((8, 6), np.int32)
        mask[5, 2:4] = 1
        det["pixel_mask"] = mask
        for i, (vec, start) in enumerate((((1, 0, 0), 0), ((0, 1, 0), 4))):
            m = _nx(det, f"m{i}", "NXdetector_module")
            m["data_origin"], m["data_size"] = np.array([start, 0]), np.array([4, 6])
            _axis(m, "module_offset", 10.0 if i == 0 else 5.0, "mm", "translation", vec,
                  "/entry/instrument/detector/transformations/det_z")
            off = f"/entry/instrument/detector/m{i}/module_offset"
            _axis(m, "fast_pixel_direction", 0.075, "mm", "translation", (-1, 0, 0), off)
            _axis(m, "slow_pixel_direction", 75.0, "um", "translation", (0, -1, 0), off)
        sample = _nx(entry, "sample", "NXsample")
        sample["depends_on"] = "/entry/sample/transformations/omega"
        _axis(_nx(sample, "transformations", "NXtransformations"), "omega", np.array([10.0, 10.2, 10.4]), "deg",
              "rotation", (-1, 0, 0), ".")
    exp = read_expt(path)
    assert exp.wavelength == pytest.approx(0.9, abs=1e-12) and exp.polarization_fraction == 0.5
    assert exp.spindle_axis == pytest.approx((1, 0, 0)) and exp.scan == pytest.approx((10.0, 0.2))
    p0, p1 = exp.panels
    assert p0.origin == pytest.approx((-100, 0, 10), abs=1e-12) and p1.origin == pytest.approx((-100, 5, 0), abs=1e-12)
    for p in (p0, p1):
        assert p.fast == pytest.approx((0, 0, -1), abs=1e-15) and p.slow == pytest.approx((0, -1, 0), abs=1e-15)
        assert p.pixel_size == pytest.approx((0.075, 0.075)) and p.image_size == (6, 4)
        assert p.thickness == pytest.approx(0.45)
    assert p0.mask == () and p1.mask == ((2, 1, 4, 2),)  # row 5 of the stack is module 1's row 1
    assert exp.groups == ((0, 1),)  # two_theta and det_z hold both modules: one group


def _minimal_nxmx(path, sample_axes, module_extra=None):
    """One 4x6 module at det_z 100 mm; ``sample_axes``: (name, values, units, vector) innermost first;
    ``module_extra(module, det_z path)`` may replace the module's pixel directions."""
    import h5py

    with h5py.File(path, "w") as f:
        entry = _nx(f, "entry", "NXentry")
        inst = _nx(entry, "instrument", "NXinstrument")
        _nx(inst, "beam", "NXbeam").create_dataset("incident_wavelength", data=1.0).attrs["units"] = "angstrom"
        det = _nx(inst, "detector", "NXdetector")
        z = _axis(_nx(det, "transformations", "NXtransformations"), "det_z", 100.0, "mm", "translation", (0, 0, 1),
                  ".").name
        m = _nx(det, "m0", "NXdetector_module")
        m["data_origin"], m["data_size"] = np.array([0, 0]), np.array([4, 6])
        if module_extra is None:
            off = _axis(m, "module_offset", 0.0, "mm", "translation", (1, 0, 0), z).name
            _axis(m, "fast_pixel_direction", 0.1, "mm", "translation", (-1, 0, 0), off)
            _axis(m, "slow_pixel_direction", 0.1, "mm", "translation", (0, -1, 0), off)
        else:
            module_extra(m, z)
        sample = _nx(entry, "sample", "NXsample")
        tr = _nx(sample, "transformations", "NXtransformations")
        below = "."
        for name, values, units, vector in reversed(sample_axes):  # outermost first, so each names its parent
            below = _axis(tr, name, np.asarray(values, float), units, "rotation", vector, below).name
        sample["depends_on"] = below


def test_the_nxmx_reader_takes_the_scanned_axis_of_a_multi_axis_goniometer(tmp_path):
    # phi scanned (innermost), chi 90 deg about McStas z, omega 30 deg about McStas -x (outermost): dxtbx's
    # scan axis is phi's turned by the axes outside it, S e = R(omega) R(chi) e_phi, here in imgCIF (x, z
    # flipped): e_phi = (1, 0, 0) -> R(chi: imgCIF -z, 90) -> (0, -1, 0) -> R(omega: imgCIF +x, 30 deg)
    # -> (0, -cos 30, -sin 30).
    path = tmp_path / "kappa.h5"
    _minimal_nxmx(path, [("phi", [5.0, 5.5], "deg", (-1, 0, 0)), ("chi", [90.0], "deg", (0, 0, 1)),
                         ("omega", [math.radians(30.0)], "rad", (-1, 0, 0))])
    exp = read_expt(path)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    assert exp.spindle_axis == pytest.approx((0.0, -c, -s), abs=1e-12) and exp.scan == pytest.approx((5.0, 0.5))
    both = tmp_path / "both.h5"
    _minimal_nxmx(both, [("phi", [5.0, 5.5], "deg", (-1, 0, 0)), ("omega", [1.0, 2.0], "deg", (-1, 0, 0))])
    with pytest.raises(InputError, match="are all scanned; one scan axis is supported"):
        read_expt(both)
    grad = tmp_path / "grad.h5"
    _minimal_nxmx(grad, [("phi", [5.0], "grad", (-1, 0, 0))])
    with pytest.raises(InputError, match="rotation units 'grad' not understood"):
        read_expt(grad)


def test_the_nxmx_reader_reads_older_module_layouts(tmp_path):
    # Pixel directions with depends_on "." take the module_offset's chain (as dxtbx does), and the fast
    # direction's offset (here 2 um along McStas x) moves pixel (0,0): corner (0.002, 0, 100) mm in McStas,
    # (-0.002, 0, -100) in imgCIF; offset units it does not know are one line.
    def older(m, z, units="um"):
        _axis(m, "module_offset", 0.0, "mm", "translation", (1, 0, 0), z)
        fast = _axis(m, "fast_pixel_direction", 0.1, "mm", "translation", (-1, 0, 0), ".")
        fast.attrs.update(offset=np.array([2.0, 0, 0]), offset_units=units)
        _axis(m, "slow_pixel_direction", 0.1, "mm", "translation", (0, -1, 0), ".")

    path = tmp_path / "older.h5"
    _minimal_nxmx(path, [("omega", [0.0, 0.1], "deg", (-1, 0, 0))], older)
    p = read_expt(path).panels[0]
    assert p.origin == pytest.approx((-0.002, 0.0, -100.0), abs=1e-12) and p.fast == pytest.approx((1, 0, 0))
    bad = tmp_path / "bad.h5"
    _minimal_nxmx(bad, [("omega", [0.0, 0.1], "deg", (-1, 0, 0))], lambda m, z: older(m, z, "furlong"))
    with pytest.raises(InputError, match="offset_units 'furlong' not understood"):
        read_expt(bad)
