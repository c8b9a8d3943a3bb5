"""Datasets (issue 13): a rotation series or stills in one run, on a dask cluster, as NXmx and miniCBF.

* Frame i of ``-frames`` is byte for byte the single run with ``-phi phi+i*osc -seed seed+i`` (float, SMV and
  noise files); stills are the runs with ``-misset random -misset_seed S+i`` or the file's ``-misset``.
* Four frames on an embedded two-worker cluster equal four single renders; a worker killed in the middle of
  a frame loses and duplicates nothing.
* The NXmx file has every field the NXmx application definition requires (transcribed below), its geometry
  puts the direct beam where the command line put it, and its stack reads back (h5py, fabio) as the noise
  images' photon counts (no -adc given: no offset, issue 22); the miniCBFs read back with fabio to the same
  pixels and the header values of the command line.
* A series killed mid-run and resumed with ``-resume`` gives the same files as an uninterrupted one; ``-resume``
  refuses other flags or an input file changed since (sha256 in the run record).
* Refusals (bad engine flags, an unreachable scheduler, unwritable output names, a stills matrix that is not
  a rotation) are one line and leave the folder exactly as it was, an earlier dataset included.
* Frame angles are the typed degrees converted as a single run converts them (phi0 equal to the bit).
* Frame by frame against the C program, float images byte for byte (skips without NB_C_BIN).

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
from nanobrag_torch.datasets.series import render_frame, render_series
from tests.programs.test_cli import ENV, run_inproc
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
    from nanobrag_torch.datasets.cluster import open_client

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
        # the stack: bitshuffle + LZ4, one frame per chunk, the noise images' photon counts (issue 22)
        data = f["/entry/data/data"]
        assert data.chunks == (1, 48, 48)
        assert data._filters["32008"][-1] == 2  # HDF5 filter 32008 is bitshuffle; its last option 2 is LZ4
        stack = data[()]
        assert f["/entry/instrument/detector/simulation/adc_offset"][()] == 0.0
    # no -adc given: the NXmx counts are photons, C's SMV noise images carry its default offset of 40 (no pixel
    # here is near saturation, so photons = SMV counts - 40 exactly)
    photons = [read_smv(d / f"n_{i + 1:02d}.img", "n")[1].astype(np.int64) - 40 for i in range(3)]
    assert stack.dtype == np.uint16
    assert min(int(p.min()) for p in photons) >= 0 and max(int(p.max()) for p in photons) < 65000
    assert all(np.array_equal(stack[i], photons[i]) for i in range(3))
    eiger = fabio.open(str(d / "s.h5"))
    assert eiger.nframes == 3
    assert all(np.array_equal(eiger.getframe(i).data, photons[i]) for i in range(3))


def test_cbf_reads_back_with_fabio(series_and_singles):
    from nanobrag_torch.io.cbf import read_cbf

    d, _ = series_and_singles
    for i in range(3):
        img = fabio.open(str(d / f"c_{i + 1:03d}.cbf"))
        photons = read_smv(d / f"n_{i + 1:02d}.img", "n")[1].astype(np.int64) - 40  # as in the NXmx test above
        assert np.array_equal(img.data, photons)
        # dxtbx's convention for simulated pixel-array data of any size (a Pilatus one makes it infer module gaps)
        assert img.header["_array_data.header_convention"] == "GENERIC_MINI"
        assert "Silicon" not in img.header["_array_data.header_contents"]  # no sensor: -detector_thick 0
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
    import nanobrag_torch.datasets.series as series

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
    assert r.files == []  # no frame, and no run record either


def test_resume_refuses_frames_made_with_other_flags(tmp_path):
    first = run_inproc([*BASE, "-frames", "2", "-floatfile", "f_#.bin", "-nonoise", "-workers", "0"], tmp_path)
    assert first.returncode == 0, first.stderr
    other = run_inproc([*BASE, "-N", "6", "-frames", "2", "-floatfile", "f_#.bin", "-nonoise", "-resume"], tmp_path)
    assert other.returncode == 2 and "made with different flags" in other.stderr


TINY = ("-cell 100 100 100 90 90 90 -default_F 100 -N 2 -detpixels 16 -oversample 1 -osc 1 -quiet -noprogress "
        "-workers 0").split()


def snapshot(d: Path) -> dict[str, bytes | None]:
    """Every entry of a folder: a file's bytes, None for a folder."""
    return {p.name: p.read_bytes() if p.is_file() else None for p in sorted(d.iterdir())}


def _one_line(r, code: int, *words: str) -> None:
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), r.stderr


@pytest.mark.parametrize("extra, code, words", [
    (["-workers", "-1"], 2, ["-workers", "-1"]),
    (["-scheduler", "garbage"], 2, ["-scheduler", "garbage"]),
    (["-hkl", "missing.hkl"], 1, ["-hkl", "missing.hkl"]),
    (["-N", "3", "-resume"], 2, ["-resume", "different flags"]),
])
def test_a_refused_rerun_leaves_the_earlier_dataset_as_it_was(tmp_path, extra, code, words):
    if "-scheduler" in extra:
        pytest.importorskip("distributed")
    base = [*TINY, "-frames", "3", "-nexus", "x.h5", "-cbf", "c_#.cbf", "-seed", "1"]
    first = run_inproc(base, tmp_path)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path)
    assert {"x.h5", "x.h5.series.json", "c_1.cbf", "c_3.cbf"} <= before.keys()
    _one_line(run_inproc([*base, *extra], tmp_path), code, *words)
    assert snapshot(tmp_path) == before


def _mkdir(name):
    return lambda d: (d / name).mkdir()


def _touch(name):
    return lambda d: (d / name).touch()


@pytest.mark.parametrize("setup, flags, words", [
    (_mkdir("x.h5"), ["-nexus", "x.h5"], ["-nexus", "x.h5", "directory"]),
    (_mkdir("f_1.bin"), ["-floatfile", "f_#.bin"], ["-floatfile", "f_1.bin", "directory"]),
    (_mkdir("c_2.cbf"), ["-cbf", "c_#.cbf"], ["-cbf", "c_2.cbf", "directory"]),
    (_touch("x.h5.frames"), ["-nexus", "x.h5"], ["-nexus", "x.h5.frames", "not a folder"]),
    (_mkdir("x.h5.series.json"), ["-nexus", "x.h5"], ["-nexus", "x.h5.series.json", "directory"]),
    (lambda d: None, ["-floatfile", "nowhere/f_#.bin"], ["-floatfile", "cannot write nowhere/", "no folder nowhere"]),
])
def test_an_unwritable_output_name_is_one_line_and_touches_nothing(tmp_path, setup, flags, words):
    setup(tmp_path)
    before = snapshot(tmp_path)
    _one_line(run_inproc([*TINY, "-frames", "2", "-nonoise", *flags], tmp_path), 1, *words)
    assert snapshot(tmp_path) == before


def test_frame_angles_are_the_typed_degrees_converted_as_a_single_run_converts_them():
    # Frame i of -phi P -osc O is the run with -phi (P + i*O): its phi0 must be that run's, to the bit. The
    # command line converts degrees as C does (value / RTD); value * (1/RTD) differs for 1.5 and 1 value in 8.
    from nanobrag_torch.datasets.series import SeriesPlan, frame_model, misset_radians

    for phi, osc in (("0", "1.5"), ("0.3", "1.83"), ("-7.1", "0.35")):
        config = nb.config_from_argv([*TINY, "-phi", phi, "-osc", osc, "-frames", "2"])
        assert config.dataset.osc_deg == float(osc) and config.dataset.phi_deg == float(phi)  # as typed
        model = nb.load_model(config)
        plan = SeriesPlan(frames=40, phi=config.dataset.phi_deg, osc=config.dataset.osc_deg)
        for i in range(40):
            single = nb.config_from_argv([*TINY, "-phi", repr(plan.phi_deg(i)), "-osc", osc])
            assert float(frame_model(model, plan, i).crystal.phi0) == single.crystal.phi0, (phi, osc, i)
    for angles in ((1.5, 10, -20), (33.3, 0.7, 1.83)):
        single = nb.config_from_argv([*TINY, "-misset", *map(repr, angles)])
        assert misset_radians(angles) == single.crystal.misset


def test_rotation_frames_with_osc_1_5_are_the_single_runs_and_omega_the_typed_angles(tmp_path):
    r = run_inproc([*TINY, "-phi", "0", "-osc", "1.5", "-frames", "3", "-floatfile", "f_#.bin", "-nonoise",
                    "-nexus", "s.h5"], tmp_path)
    assert r.returncode == 0, r.stderr
    for i in range(3):
        single = run_inproc([*TINY, "-phi", repr(0 + i * 1.5), "-osc", "1.5", "-floatfile", f"single{i}.bin",
                             "-nonoise"], tmp_path)
        assert single.returncode == 0, single.stderr
        assert (tmp_path / f"f_{i + 1}.bin").read_bytes() == (tmp_path / f"single{i}.bin").read_bytes()
    r = run_inproc([*TINY, "-phi", "0.3", "-osc", "1.83", "-frames", "4", "-nonoise", "-nexus", "t.h5"], tmp_path)
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert list(f["/entry/sample/transformations/omega"][()]) == [0.3 + i * 1.83 for i in range(4)]
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert list(f["/entry/sample/transformations/omega"][()]) == [0.0, 1.5, 3.0]


def _mask(d: Path, value: int) -> None:
    from nanobrag_torch.io.smv import write_smv

    pixels = np.ones((16, 16), dtype=np.uint16)
    pixels[3, 4] = value
    write_smv(d / "mask.img", pixels, [("SIZE1", "16"), ("SIZE2", "16")])


# flag(s) reading the input, (writes the file, writes it changed)
INPUTS = {
    "-hkl": (["-hkl", "in.hkl"], lambda d: (d / "in.hkl").write_text("0 0 0 10\n1 -1 2 20\n"),
             lambda d: (d / "in.hkl").write_text("0 0 0 10\n1 -1 2 30\n")),
    "-mat": (["-mat", "A.mat"], lambda d: (d / "A.mat").write_text("0.01 0 0\n0 0.01 0\n0 0 0.01\n"),
             lambda d: (d / "A.mat").write_text("0.01 0 0\n0 0.0101 0\n0 0 0.01\n")),
    "-sourcefile": (["-sourcefile", "src.txt"], lambda d: (d / "src.txt").write_text("-10 0 0 1 1e-10\n"),
                    lambda d: (d / "src.txt").write_text("-10 0.01 0 1 1e-10\n")),
    "-mask": (["-mask", "mask.img"], lambda d: _mask(d, 1), lambda d: _mask(d, 0)),
    "-stills_file": (["-stills_file", "o.txt"], lambda d: (d / "o.txt").write_text("1 2 3\n4 5 6\n"),
                     lambda d: (d / "o.txt").write_text("1 2 3\n4 5 7\n")),
    # a stale Fdump.bin, read in place of -hkl: made by a single -hkl run, then replaced by another one's
    "Fdump.bin": ([], lambda d: _fdump(d, "20"), lambda d: _fdump(d, "30")),
}


def _fdump(d: Path, f: str) -> None:
    (d / "f.hkl").write_text(f"0 0 0 10\n1 -1 2 {f}\n")
    r = run_inproc([*TINY, "-hkl", "f.hkl", "-floatfile", "junk.bin", "-nonoise", "-nopgm", "-intfile", "junk.img"],
                   d)
    assert r.returncode == 0 and (d / "Fdump.bin").is_file(), r.stderr
    for name in ("f.hkl", "junk.bin", "junk.img"):
        (d / name).unlink()


@pytest.mark.parametrize("which", list(INPUTS))
def test_resume_refuses_an_input_file_changed_since_the_interrupted_run(tmp_path, which):
    flags, write, change = INPUTS[which]
    write(tmp_path)
    kind = ["-stills", "2"] if which == "-stills_file" else ["-frames", "2"]
    if which in ("-mat", "-hkl", "Fdump.bin"):  # the matrix replaces -cell; an F table replaces -default_F
        base = [a for a in TINY if a not in ("-cell", "100", "90", "-default_F")]
        base = base if which == "-mat" else [*base, "-cell", "100", "100", "100", "90", "90", "90"]
        base = base if which != "-mat" else [*base, "-default_F", "100"]
    else:
        base = TINY
    argv = [*base, *flags, *kind, "-floatfile", "f_#.bin", "-nonoise"]
    first = run_inproc(argv, tmp_path)
    assert first.returncode == 0, first.stderr
    same = run_inproc([*argv, "-resume"], tmp_path)  # unchanged: resumes (and finds every frame complete)
    assert same.returncode == 0 and "0 rendered, 2 already complete" in same.stdout, same.stderr
    change(tmp_path)
    before = snapshot(tmp_path)
    name = {"-hkl": "in.hkl", "-mat": "A.mat", "-sourcefile": "src.txt", "-mask": "mask.img",
            "-stills_file": "o.txt", "Fdump.bin": "Fdump.bin"}[which]
    _one_line(run_inproc([*argv, "-resume"], tmp_path), 2, "-resume", name, "run without -resume")
    assert snapshot(tmp_path) == before
    again = run_inproc(argv, tmp_path)  # starting over takes the new file
    assert again.returncode == 0 and "2 rendered" in again.stdout, again.stderr


@pytest.mark.parametrize("matrix, words", [
    ("0 0 0 0 0 0 0 0 0", "not orthonormal"),
    ("2 0 0 0 2 0 0 0 2", "not orthonormal"),
    ("1 0 0 0 1 0 0 0 -1", "determinant is -1"),
    ("1 0 0 0.1 1 0 0 0 1", "not orthonormal"),
])
def test_stills_file_refuses_a_matrix_that_is_not_a_rotation(tmp_path, matrix, words):
    from nanobrag_torch.errors import InputError
    from nanobrag_torch.io.stills import read_stills

    (tmp_path / "o.txt").write_text(f"# orientations\n1 0 0 0 0 -1 0 1 0\n{matrix}\n")
    with pytest.raises(InputError, match=words):
        read_stills(tmp_path / "o.txt")
    r = run_inproc([*TINY, "-stills_file", "o.txt", "-floatfile", "f_#.bin", "-nonoise"], tmp_path)
    _one_line(r, 1, "-stills_file", "o.txt", "line 3", words)
    assert r.files == ["o.txt"]


def test_stills_file_takes_a_rotation_given_to_six_decimals(tmp_path):
    c, s = "0.707107", "0.707107"  # 45 degrees about z, as people write it
    (tmp_path / "o.txt").write_text(f"{c} -{s} 0 {s} {c} 0 0 0 1\n")
    from nanobrag_torch.io.stills import read_stills

    (rx, ry, rz), = read_stills(tmp_path / "o.txt")
    assert (rx, ry) == (0.0, 0.0) and rz == pytest.approx(45.0)


# ------------------------------------------------------------------------------ against the C program
C = resolve_c_binary()


@pytest.mark.skipif(not C.ok, reason=f"needs the C program: {C.problem}")
# (1.5, 1.5): angles where v/RTD and v*(1/RTD) differ; not -phi 0, where C reuses a stale rotation (§6.5)
@pytest.mark.parametrize("phi, osc", [(PHI, OSC), (1.5, 1.5)])
def test_series_matches_c_frame_by_frame(tmp_path, phi, osc):
    argv = [a if a != str(OSC) else str(osc) for a in BASE] + ["-nonoise"]
    r = run_inproc([*argv, "-phi", str(phi), "-frames", "3", "-floatfile", "py_#.bin", "-workers", "0"], tmp_path)
    assert r.returncode == 0, r.stderr
    for i in range(3):
        c_dir = tmp_path / f"c{i}"
        c_dir.mkdir()
        subprocess.run([str(C.path), *argv, "-phi", repr(phi + i * osc), "-floatfile", "c.bin"], cwd=c_dir,
                       check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
        # the README promises frames identical to C's single runs: the float images, byte for byte
        assert (tmp_path / f"py_{i + 1}.bin").read_bytes() == (c_dir / "c.bin").read_bytes(), i


@pytest.mark.parametrize("missing, flags", [("fabio", ["-cbf", "s_####.cbf"]), ("h5py", ["-nexus", "s.h5"])])
def test_a_missing_writer_package_is_one_line_before_rendering(tmp_path, monkeypatch, missing, flags):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if the package were not installed
    argv = "-cell 70 80 90 90 90 90 -default_F 100 -N 5 -detpixels 16 -frames 2 -osc 1 -nonoise".split()
    r = run_inproc([*argv, *flags], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"nanobrag-torch: error: {flags[0]} needs the Python package {missing}: "
                                             f"pip install {missing}"]
    assert r.files == []
