"""Datasets (issue 13): a rotation series or stills in one run, on a dask cluster, as NXmx and miniCBF.

* Frame i of ``-frames`` is byte for byte the single run with ``-phi phi+i*osc -seed seed+i`` (float, SMV and
  noise files); stills are the runs with ``-misset random -misset_seed S+i`` or the file's ``-misset``.
* Four frames on an embedded two-worker cluster equal four single renders; a worker killed in the middle of
  a frame loses and duplicates nothing.
* The NXmx file has every field the NXmx application definition requires (transcribed below), its geometry
  puts the direct beam where the command line put it, and its stack reads back (h5py, fabio) as the noise
  images; the miniCBFs read back with fabio to the same pixels and the header values of the command line.
* A series killed mid-run and resumed with ``-resume`` gives the same files as an uninterrupted one.
* Frame by frame against the C program (skips without NB_C_BIN).

Images are 48x48 (64x64 for the killed run, whose frames must take long enough to be caught mid-series).
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nanobrag_torch as nb
from nanobrag_torch.io.outputs import noise_image, roi_of
from nanobrag_torch.io.smv import read_smv
from nanobrag_torch.series import render_frame, render_series
from tests.test_cli import ENV, run_inproc
from tools.cbin import resolve_c_binary
from tools.metrics import compare_images, read_float_image, verdict
from tools.thresholds import tolerances

h5py = pytest.importorskip("h5py")
pytest.importorskip("hdf5plugin")
fabio = pytest.importorskip("fabio")

BASE = ("-cell 70 80 90 90 90 90 -default_F 100 -N 5 -detpixels 48 -pixel 0.2 -distance 80 -osc 0.7 -phisteps 2 "
        "-oversample 1 -mosaic 0.3 -mosaic_domains 3 -nopgm").split()
PHI, OSC, SEED = 5.0, 0.7, 3


def phi_arg(i: int) -> str:
    """The -phi of frame i's single run: phi + i*osc in double, printed so that it reads back exactly."""
    return repr(PHI + i * OSC)


def files_of(d: Path, pattern: str) -> list[Path]:
    return sorted(d.glob(pattern))


# ------------------------------------------------------------------ frames = single runs (serial engine)
@pytest.fixture(scope="module")
def series_and_singles(tmp_path_factory):
    d = tmp_path_factory.mktemp("series")
    run = run_inproc([*BASE, "-phi", str(PHI), "-seed", str(SEED), "-frames", "3", "-workers", "0",
                      "-floatfile", "f_##.bin", "-intfile", "i_##.img", "-noisefile", "n_##.img",
                      "-nexus", "s.h5", "-cbf", "c_###.cbf"], d)
    for i in range(3):
        r = run_inproc([*BASE, "-phi", phi_arg(i), "-seed", str(SEED + i), "-floatfile", f"single{i}.bin",
                        "-intfile", f"single{i}.img", "-noisefile", f"single{i}_noise.img"], d)
        assert r.returncode == 0, r.stderr
    return d, run


def test_series_frames_are_the_single_runs_byte_for_byte(series_and_singles):
    d, run = series_and_singles
    assert run.returncode == 0, run.stderr
    assert "3 frames: 3 rendered" in run.stdout
    for i in range(3):
        assert (d / f"f_{i + 1:02d}.bin").read_bytes() == (d / f"single{i}.bin").read_bytes()
        assert (d / f"i_{i + 1:02d}.img").read_bytes() == (d / f"single{i}.img").read_bytes()
        assert (d / f"n_{i + 1:02d}.img").read_bytes() == (d / f"single{i}_noise.img").read_bytes()
    # frames differ from each other (the spindle moved), so the equality above is not vacuous
    assert (d / "f_01.bin").read_bytes() != (d / "f_02.bin").read_bytes()
    assert not list(d.glob("*.part*")) and not (d / "s.h5.frames").exists()


def test_python_api_frames_equal_single_renders():
    config = nb.config_from_argv([*BASE, "-phi", str(PHI)])
    model = nb.load_model(config)
    frames = list(render_series(model, frames=2, phi=PHI, osc=OSC, seed=SEED))
    assert [f.index for f in frames] == [0, 1]
    for f in frames:
        single = nb.load_model(nb.config_from_argv([*BASE, "-phi", phi_arg(f.index)]))
        image = nb.render(single).numpy().astype(np.float32)
        assert np.array_equal(f.image, image)
        noise = noise_image(image, roi_of(single.detector), SEED + f.index, 40.0, single.info.rng)[0]
        assert np.array_equal(f.noise, noise)
        assert f.phi_deg == PHI + f.index * OSC


def test_stills_are_the_single_runs(tmp_path):
    (tmp_path / "orient.txt").write_text("# rx ry rz\n10 -20 30\n\n1 0 0 0 0 -1 0 1 0\n")
    runs = {
        "random": [*BASE, "-stills", "2", "-misset_seed", "11", "-floatfile", "r_#.bin", "-nonoise"],
        "file": [*BASE, "-stills_file", "orient.txt", "-floatfile", "o_#.bin", "-nonoise"],
        "single0": [*BASE, "-misset", "random", "-misset_seed", "11", "-floatfile", "r0.bin", "-nonoise"],
        "single1": [*BASE, "-misset", "random", "-misset_seed", "12", "-floatfile", "r1.bin", "-nonoise"],
        "fixed": [*BASE, "-misset", "10", "-20", "30", "-floatfile", "o0.bin", "-nonoise"],
        "xrot": [*BASE, "-misset", "90", "0", "0", "-floatfile", "o1.bin", "-nonoise"],
    }
    for name, argv in runs.items():
        r = run_inproc([*argv, "-workers", "0"], tmp_path)
        assert r.returncode == 0, (name, r.stderr)
    assert (tmp_path / "r_1.bin").read_bytes() == (tmp_path / "r0.bin").read_bytes()
    assert (tmp_path / "r_2.bin").read_bytes() == (tmp_path / "r1.bin").read_bytes()
    assert (tmp_path / "o_1.bin").read_bytes() == (tmp_path / "o0.bin").read_bytes()
    # the matrix line is a 90 degree rotation about x: the same orientation as -misset 90 0 0 (to rounding)
    a, b = (read_float_image(tmp_path / n) for n in ("o_2.bin", "o1.bin"))
    assert verdict(compare_images(b, a), tolerances("float64").float_image)[0]
    assert (tmp_path / "r_1.bin").read_bytes() != (tmp_path / "r_2.bin").read_bytes()


# ----------------------------------------------------------------------------- the dask engine
@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    from nanobrag_torch.cluster import open_client

    handle = open_client(workers=2, threads=1)
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def reference_frames():
    """Four single renders (float image, noise image) with -phi phi+i*osc and -seed seed+i."""
    out = []
    for i in range(4):
        m = nb.load_model(nb.config_from_argv([*BASE, "-phi", phi_arg(i)]))
        image = nb.render(m).numpy().astype(np.float32)
        out.append((image, noise_image(image, roi_of(m.detector), SEED + i, 40.0, m.info.rng)[0]))
    return out


def _die_once(marker: str, model, plan, i, kernel, max_memory_gb):
    """render_frame, except that the first worker to start frame 1 kills its own process (SIGKILL)."""
    if i == 1 and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return render_frame(model, plan, i, kernel, max_memory_gb)


def _series_on(cluster, frame_fn=None):
    model = nb.load_model(nb.config_from_argv([*BASE, "-phi", str(PHI)]))
    return list(render_series(model, frames=4, phi=PHI, osc=OSC, seed=SEED, client=cluster, frame_fn=frame_fn))


def test_four_frames_on_two_workers_equal_four_single_renders(cluster, reference_frames):
    assert cluster.workers == 2
    frames = _series_on(cluster)
    assert sorted(f.index for f in frames) == [0, 1, 2, 3]
    assert all(f.worker for f in frames)  # rendered by cluster workers, not here
    for f in frames:
        image, noise = reference_frames[f.index]
        assert np.array_equal(f.image, image) and np.array_equal(f.noise, noise)


def test_a_killed_worker_loses_and_duplicates_no_frame(cluster, reference_frames, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import this test module
    marker = tmp_path / "killed"
    frames = _series_on(cluster, functools.partial(_die_once, str(marker)))
    assert marker.exists()  # a worker did die in the middle of frame 1
    assert sorted(f.index for f in frames) == [0, 1, 2, 3]
    for f in frames:
        image, noise = reference_frames[f.index]
        assert np.array_equal(f.image, image) and np.array_equal(f.noise, noise)


def test_scheduler_flag_attaches_to_a_running_cluster(cluster, series_and_singles, tmp_path):
    address = cluster.client.scheduler.address
    r = run_inproc([*BASE, "-phi", str(PHI), "-seed", str(SEED), "-frames", "3", "-floatfile", "f_##.bin",
                    "-scheduler", address], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"dask: cluster at {address}, " in r.stderr  # (a worker killed above may still be restarting)
    d, _ = series_and_singles
    for i in range(3):
        assert (tmp_path / f"f_{i + 1:02d}.bin").read_bytes() == (d / f"f_{i + 1:02d}.bin").read_bytes()
    assert cluster.client.status == "running" and cluster.workers >= 1  # the CLI's client left, the cluster stays


# --------------------------------------------------------------------------------------- NXmx
# The NXmx application definition (NeXus definitions, applications/NXmx.nxdl.xml): the groups and fields it
# requires (no minOccurs="0", not optional/recommended), with the units category where it names one; and
# the attributes it requires on the module's transformations.
NXMX_REQUIRED = {
    "/entry": ("NXentry", {"start_time": None, "end_time_estimated": None, "definition": None}),
    "/entry/data": ("NXdata", {}),
    "/entry/sample": ("NXsample", {"name": None, "depends_on": None}),
    "/entry/instrument": ("NXinstrument", {"name": None}),
    "/entry/instrument/detector": ("NXdetector", {"sensor_material": None, "sensor_thickness": "length"}),
    "/entry/instrument/detector/module": ("NXdetector_module", {
        "data_origin": None, "data_size": None, "fast_pixel_direction": "length",
        "slow_pixel_direction": "length"}),
    "/entry/instrument/beam": ("NXbeam", {"incident_wavelength": "wavelength"}),
    "/entry/source": ("NXsource", {"name": None}),
}
TRANSFORMATION_ATTRS = ("transformation_type", "vector", "offset", "depends_on")
UNITS = {"length": {"mm", "m"}, "wavelength": {"angstrom"}}


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _chain(f, path: str) -> list[str]:
    """The depends_on chain from ``path`` (a transformation) down to '.'."""
    out = []
    while path != ".":
        out.append(path)
        path = _text(f[path].attrs["depends_on"])
        assert len(out) < 10
    return out


def _position(f, path: str) -> np.ndarray:
    """Where a chain of translations puts the origin (mm)."""
    return sum(float(f[p][()]) * np.asarray(f[p].attrs["vector"]) for p in _chain(f, path))


def test_nxmx_has_every_required_field(series_and_singles):
    d, _ = series_and_singles
    with h5py.File(d / "s.h5", "r") as f:
        for group, (nx_class, fields) in NXMX_REQUIRED.items():
            assert _text(f[group].attrs["NX_class"]) == nx_class, group
            for name, units in fields.items():
                assert name in f[group], f"{group}/{name}"
                if units is not None:
                    assert _text(f[group][name].attrs["units"]) in UNITS[units], f"{group}/{name}"
        assert _text(f["/entry/definition"][()]) == "NXmx"
        for t in ("start_time", "end_time_estimated"):
            assert time.strptime(_text(f["/entry"][t][()]), "%Y-%m-%dT%H:%M:%S.%fZ")
        for name in ("module_offset", "fast_pixel_direction", "slow_pixel_direction"):
            ds = f["/entry/instrument/detector/module"][name]
            assert all(a in ds.attrs for a in TRANSFORMATION_ATTRS), name
            assert _text(ds.attrs["transformation_type"]) == "translation"
        # every path the writer documents is there
        from nanobrag_torch.io.nexus import FIELDS, NOISE_FIELDS, ROTATION_FIELDS

        for p in (*FIELDS, *ROTATION_FIELDS, *NOISE_FIELDS):
            assert p in f, p


def test_nxmx_values_and_geometry(series_and_singles):
    d, _ = series_and_singles
    with h5py.File(d / "s.h5", "r") as f:
        assert f["/entry/instrument/beam/incident_wavelength"][()] == 1.0  # C's default -lambda 1
        assert f["/entry/instrument/detector/count_time"][()] == 1.0
        det = f["/entry/instrument/detector"]
        assert det["distance"][()] == pytest.approx(80.0)
        mod = det["module"]
        assert mod["fast_pixel_direction"][()] == pytest.approx(0.2) == mod["slow_pixel_direction"][()]
        assert list(mod["data_size"][()]) == [48, 48]
        # goniometer: one start angle per frame, phi + i*osc, about one axis
        omega = f["/entry/sample/transformations/omega"]
        assert _text(f["/entry/sample/depends_on"][()]) == "/entry/sample/transformations/omega"
        assert list(omega[()]) == [PHI + i * OSC for i in range(3)]
        assert _text(omega.attrs["transformation_type"]) == "rotation" and _text(omega.attrs["units"]) == "deg"
        axis = np.asarray(omega.attrs["vector"])
        # detector chain: fast/slow -> module_offset -> det_z -> "."
        fast_path = "/entry/instrument/detector/module/fast_pixel_direction"
        assert [p.rsplit("/", 1)[1] for p in _chain(f, fast_path)] == ["fast_pixel_direction", "module_offset",
                                                                         "det_z"]
        assert _text(det["depends_on"][()]) == "/entry/instrument/detector/transformations/det_z"
        origin = _position(f, "/entry/instrument/detector/module/module_offset")
        fast = np.asarray(mod["fast_pixel_direction"].attrs["vector"])
        slow = np.asarray(mod["slow_pixel_direction"].attrs["vector"])
        # the direct beam (McStas +z) hits the detector where the command line put it: MOSFLM's default beam
        # centre, 5.0 mm (25 pixels) along fast and slow from the outer corner of the first pixel
        normal = np.cross(fast, slow)
        t = np.dot(origin, normal) / normal[2]
        uv = np.linalg.lstsq(np.stack((fast, slow), axis=1), np.array([0.0, 0.0, t]) - origin, rcond=None)[0]
        assert uv / 0.2 == pytest.approx([25.0, 25.0])
        assert t == pytest.approx(80.0)
        assert det["beam_center_x"][()] == pytest.approx(25.0) == det["beam_center_y"][()]
        # MOSFLM: the spindle is the detector's fast axis, which is what DIALS expects of a Pilatus-like set-up
        assert axis == pytest.approx(fast)
        # the stack: bitshuffle + LZ4, one frame per chunk, the noise images
        data = f["/entry/data/data"]
        assert data.chunks == (1, 48, 48)
        assert data._filters["32008"][-1] == 2  # HDF5 filter 32008 is bitshuffle; its last option 2 is LZ4
        stack = data[()]
    noise = [read_smv(d / f"n_{i + 1:02d}.img", "n")[1] for i in range(3)]
    assert stack.dtype == np.uint16
    assert all(np.array_equal(stack[i], noise[i]) for i in range(3))
    eiger = fabio.open(str(d / "s.h5"))
    assert eiger.nframes == 3
    assert all(np.array_equal(eiger.getframe(i).data, noise[i]) for i in range(3))


def test_cbf_reads_back_with_fabio(series_and_singles):
    from nanobrag_torch.io.cbf import read_cbf

    d, _ = series_and_singles
    for i in range(3):
        img = fabio.open(str(d / f"c_{i + 1:03d}.cbf"))
        noise = read_smv(d / f"n_{i + 1:02d}.img", "n")[1]
        assert np.array_equal(img.data, noise)
        assert img.header["_array_data.header_convention"] == "PILATUS_1.2"
        h, _ = read_cbf(d / f"c_{i + 1:03d}.cbf")
        assert float(h["Wavelength"].split()[0]) == 1.0
        assert float(h["Detector_distance"].split()[0]) == pytest.approx(0.080)
        assert h["Pixel_size"] == "0.0002 m x 0.0002 m"
        assert h["Beam_xy"] == "(25.00, 25.00) pixels"
        assert float(h["Start_angle"].split()[0]) == pytest.approx(PHI + i * OSC, abs=1e-6)
        assert float(h["Angle_increment"].split()[0]) == pytest.approx(OSC)
        assert float(h["Exposure_time"].split()[0]) == 1.0
        assert h["Count_cutoff"] == "65535 counts"


# ------------------------------------------------------------------------------------- resume
SLOW = ("-cell 70 80 90 90 90 90 -default_F 100 -N 5 -detpixels 64 -pixel 0.2 -distance 80 -phi 5 -osc 1 "
        "-phisteps 8 -oversample 3 -mosaic 0.5 -mosaic_domains 40 -seed 9 -frames 5 -workers 0 -quiet "
        "-noprogress -nexus s.h5 -cbf s_####.cbf -noisefile n_####.img").split()


def test_resume_after_a_kill_gives_the_files_of_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    env = {**ENV, "SOURCE_DATE_EPOCH": "1700000000"}
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    cut.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "nanobrag_torch", *SLOW], cwd=cut, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (cut / "s_0002.cbf").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    # a frame is complete when all its files are there: its CBF, its noise image and its NeXus spool frame
    # (written in that order, each atomically, so the kill can fall between them)
    done = [i for i in range(1, 6) if (cut / f"s_{i:04d}.cbf").exists() and (cut / f"n_{i:04d}.img").exists()
            and (cut / "s.h5.frames" / f"frame_{i:07d}.npy").exists()]
    assert done == list(range(1, len(done) + 1)) and len(done) < 5 and not (cut / "s.h5").exists()
    assert (cut / "s_0002.cbf").exists()  # killed mid-series, before the NeXus file

    again = run_inproc([*SLOW, "-resume"], cut)
    assert again.returncode == 0, again.stderr
    assert f"{5 - len(done)} rendered, {len(done)} already complete" in again.stdout
    ref = run_inproc(SLOW, whole)
    assert ref.returncode == 0, ref.stderr

    names = [p.name for p in files_of(whole, "*") if p.is_file()]
    assert sorted(names) == sorted(p.name for p in files_of(cut, "*") if p.is_file())
    for name in names:  # the run records differ in their (unused, time-based) misset seed only
        if name not in ("s.h5", "s.h5.series.json"):
            assert (cut / name).read_bytes() == (whole / name).read_bytes(), name
    with h5py.File(cut / "s.h5", "r") as a, h5py.File(whole / "s.h5", "r") as b:
        items = []
        a.visititems(lambda n, o: items.append(n))
        for n in items:
            assert dict(a[n].attrs).keys() == dict(b[n].attrs).keys(), n
            if isinstance(a[n], h5py.Dataset):
                assert np.array_equal(a[n][()], b[n][()]), n
    # a resumed run of a complete dataset checks every frame and renders nothing
    third = run_inproc([*SLOW, "-resume"], cut)
    assert third.returncode == 0 and "0 rendered, 5 already complete" in third.stdout


def test_a_fresh_run_leaves_no_frame_of_an_earlier_run_to_resume(tmp_path, monkeypatch):
    # Run A completes 2 frames; run B (other flags, same names) is interrupted after its first frame. Resuming
    # B must not take A's second frame for B's: B started over, so A's files were gone before B rendered.
    import nanobrag_torch.series as series

    out = ["-frames", "2", "-floatfile", "f_#.bin", "-nonoise", "-workers", "0"]
    assert run_inproc([*BASE, *out], tmp_path).returncode == 0
    real = series.render_frame

    def interrupted(model, plan, i, *args):
        if i == 1:
            raise KeyboardInterrupt
        return real(model, plan, i, *args)

    monkeypatch.setattr(series, "render_frame", interrupted)
    assert run_inproc([*BASE, "-N", "6", *out], tmp_path).returncode == 130
    assert not (tmp_path / "f_2.bin").exists()
    monkeypatch.setattr(series, "render_frame", real)
    again = run_inproc([*BASE, "-N", "6", *out, "-resume"], tmp_path)
    assert again.returncode == 0 and "1 rendered, 1 already complete" in again.stdout
    single = run_inproc([*BASE, "-N", "6", "-phi", repr(0.0 + 1 * OSC),
                         "-floatfile", "single.bin", "-nonoise"], tmp_path)
    assert single.returncode == 0
    assert (tmp_path / "f_2.bin").read_bytes() == (tmp_path / "single.bin").read_bytes()


# -------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("extra, message", [
    (["-frames", "2", "-stills", "2", "-floatfile", "f_#.bin"], "rotation series or stills"),
    (["-frames", "2"], "nothing to write"),
    (["-frames", "2", "-floatfile", "f.bin"], "-floatfile: a per-frame name needs ####"),
    (["-frames", "2", "-cbf", "c.cbf"], "-cbf: a per-frame name needs ####"),
    (["-stills", "2", "-misset", "1", "2", "3", "-floatfile", "f_#.bin"], "fixed -misset"),
    (["-frames", "2", "-floatfile", "f_#.bin", "-workers", "-1"], "-workers: must be 0 or more"),
])
def test_bad_dataset_flags_exit_2_and_write_nothing(tmp_path, extra, message):
    r = run_inproc([*BASE, *extra], tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".bin", ".cbf", ".h5", ".img")]


def test_resume_refuses_frames_made_with_other_flags(tmp_path):
    first = run_inproc([*BASE, "-frames", "2", "-floatfile", "f_#.bin", "-nonoise", "-workers", "0"], tmp_path)
    assert first.returncode == 0, first.stderr
    other = run_inproc([*BASE, "-N", "6", "-frames", "2", "-floatfile", "f_#.bin", "-nonoise", "-resume"], tmp_path)
    assert other.returncode == 2 and "made with different flags" in other.stderr


# ------------------------------------------------------------------------------ against the C program
C = resolve_c_binary()


@pytest.mark.skipif(not C.ok, reason=f"needs the C program: {C.problem}")
def test_series_matches_c_frame_by_frame(tmp_path):
    argv = [*BASE, "-nonoise", "-phi", str(PHI)]
    r = run_inproc([*argv, "-frames", "3", "-floatfile", "py_#.bin", "-workers", "0"], tmp_path)
    assert r.returncode == 0, r.stderr
    for i in range(3):
        c_dir = tmp_path / f"c{i}"
        c_dir.mkdir()
        c_argv = [a if a != str(PHI) else phi_arg(i) for a in argv]
        subprocess.run([str(C.path), *c_argv, "-floatfile", "c.bin"], cwd=c_dir, check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
        ours = read_float_image(tmp_path / f"py_{i + 1}.bin", (48, 48))
        theirs = read_float_image(c_dir / "c.bin", (48, 48))
        ok, why = verdict(compare_images(theirs, ours), tolerances("float64").float_image)
        assert ok, (i, why)


@pytest.mark.parametrize("missing, flags", [("fabio", ["-cbf", "s_####.cbf"]), ("h5py", ["-nexus", "s.h5"])])
def test_a_missing_writer_package_is_one_line_before_rendering(tmp_path, monkeypatch, missing, flags):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if the package were not installed
    argv = "-cell 70 80 90 90 90 90 -default_F 100 -N 5 -detpixels 16 -frames 2 -osc 1 -nonoise".split()
    r = run_inproc([*argv, *flags], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"nanobrag-torch: error: {flags[0]} needs the Python package {missing}: "
                                             f"pip install {missing}"]
    assert r.files == []
