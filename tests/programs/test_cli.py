"""The command line end to end: `python -m nanobrag_torch` in fresh temporary directories.

Error handling (issue 2, "Command line"): bad input gives ONE stderr line naming the flag or file, exit 2
(usage) or 1 (input), and writes nothing. Rendering: the default output files, bit-identical repeat runs,
-nonoise/-nopgm, -dtype float32, the Python API, C's reading of a stale Fdump.bin, and the float image of a
tiny render against the nanoBragg sum written out with numpy in this file.

Torch start-up (~2 s of CPU) dominates a 32x32 render, so only the runs that must be separate processes
(exit status and stderr of the real interpreter, bit-identical repeat across processes) go through
`python -m nanobrag_torch`, launched concurrently once per module; the other cases call the same entry point
(`nanobrag_torch.programs.nanobragg.main(argv)`) in-process in their own working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import nanobrag_torch
from nanobrag_torch.config import DEFAULT_FLUENCE, R_E_SQR
from nanobrag_torch.io.hkl import read_fdump, read_hkl
from tests.helpers.cli import run_inproc

REPO = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
}
CELL = ["-cell", "100", "100", "100", "90", "90", "90"]
RENDER = ["-detpixels", "32", *CELL, "-default_F", "100", "-N", "3", "-seed", "5"]
DEFAULT_FILES = {"floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img"}


def run_cli(args, cwd: Path) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "nanobrag_torch", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_all(jobs: dict[str, tuple[list[str], Path]], subprocesses: set[str]) -> dict[str, object]:
    """Run the named jobs as subprocesses (concurrently) and the others in-process."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {k: pool.submit(run_cli, *jobs[k]) for k in jobs if k in subprocesses}
        done = {k: run_inproc(*jobs[k]) for k in jobs if k not in subprocesses}
        done.update({k: f.result() for k, f in futures.items()})
    return done


def floats(path: Path, n=32) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(n, n)


# ---------------------------------------------------------------------------------------- errors
def _bad_hkl(d: Path) -> None:
    (d / "bad.hkl").write_text("0 0 0 10\n1.5 0 0 10\n")


def _bad_mat(d: Path) -> None:
    (d / "bad.mat").write_text("0.01 0 0\n0 0.01\n")


# name: (argv, exit code, words the single stderr line must contain, setup writing input files);
# the two named here run as real subprocesses, the others in-process (same entry point).
ERRORS_VIA_SUBPROCESS = {"unknown_flag", "missing_hkl"}
ERRORS = {
    "unknown_flag": (["-bogus", "3", *CELL, "-default_F", "1"], 2, ["unknown flag", "-bogus"], None),
    "mistyped_flag": ([*CELL, "-default_F", "1", "-distnace", "100"], 2,
                      ["unknown flag -distnace", "did you mean -distance?"], None),
    "missing_value": ([*CELL, "-default_F", "1", "-distance"], 2, ["-distance", "expects 1 value"], None),
    "non_numeric": (
        [*CELL, "-default_F", "1", "-distance", "abc"],
        2,
        ["-distance", "number", "'abc'"],
        None,
    ),
    "missing_hkl": ([*CELL, "-hkl", "nope.hkl"], 1, ["-hkl", "nope.hkl", "not found"], None),
    "malformed_hkl": ([*CELL, "-hkl", "bad.hkl"], 1, ["bad.hkl", "line 2", "integers"], _bad_hkl),
    "malformed_mat": (["-mat", "bad.mat", "-default_F", "1"], 1, ["-mat", "bad.mat", "9 numbers"], _bad_mat),
    "no_structure_factors": (CELL, 2, ["no structure factors", "-hkl", "-default_F"], None),
    "no_crystal": (["-default_F", "1"], 2, ["no crystal", "-mat", "-cell"], None),
    "bad_dtype": ([*CELL, "-default_F", "1", "-dtype", "float16"], 2, ["-dtype", "float16"], None),
    "same_output_twice": ([*CELL, "-default_F", "1", "-detpixels", "8", "-floatfile", "same.img", "-intfile",
                           "same.img", "-nopgm", "-nonoise"], 2, ["-floatfile and -intfile", "same.img"], None),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_errors")
    jobs, inputs = {}, {}
    for name, (argv, _, _, setup) in ERRORS.items():
        d = root / name
        d.mkdir()
        if setup:
            setup(d)
        inputs[name] = set(os.listdir(d))
        jobs[name] = (argv, d)
    return {
        name: (proc, jobs[name][1], inputs[name])
        for name, proc in run_all(jobs, ERRORS_VIA_SUBPROCESS).items()
    }


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_exit_code_one_line_nothing_written(error_runs, name):
    # Unknown/missing/non-numeric flag values and missing inputs are usage errors (2); a missing or malformed
    # input file is an input error (1). Exactly one stderr line that names the culprit; no output file.
    proc, cwd, before = error_runs[name]
    _, code, words, _ = ERRORS[name]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in proc.stderr
    assert set(os.listdir(cwd)) == before, "an output file was written despite the error"


def test_a_missing_output_folder_is_said_before_the_render(tmp_path, monkeypatch):
    # Issue 21: a mistyped folder must not cost a whole render: the model is never loaded.
    import nanobrag_torch.load as load

    monkeypatch.setattr(load, "load_model", lambda *a, **k: pytest.fail("loaded the model before checking outputs"))
    r = run_inproc([*CELL, "-default_F", "1", "-detpixels", "8", "-intfile", "nowhere/i.img"], tmp_path)
    assert (r.returncode, r.stderr.strip()) == (1, "nanobrag-torch: error: -intfile: cannot write nowhere/i.img: "
                                                   "no folder nowhere")
    assert r.files == []


@pytest.fixture(scope="module")
def help_run(tmp_path_factory):
    return run_inproc(["--help"], tmp_path_factory.mktemp("help"))


def test_help_lists_groups(help_run):
    # --help exits 0 and prints our help text grouped by topic (one heading per group of the flag table).
    assert help_run.returncode == 0
    for heading in ("Crystal:", "Beam:", "Detector:", "Rotation:", "Output:", "Engine:"):
        assert f"\n{heading}\n" in help_run.stdout
    assert "-default_F" in help_run.stdout and "-dtype" in help_run.stdout


# ---------------------------------------------------------------------------------------- renders
F_DUMP = 7.0


def _stale_dump(d: Path) -> None:
    """An Fdump.bin with F = 7 for every h, k, l in -5..5 (C layout, written by hand)."""
    grid = np.zeros((12, 12, 12))
    grid[:11, :11, :11] = F_DUMP
    (d / "Fdump.bin").write_bytes(b"-5 5 -5 5 -5 5\n\f" + grid.astype("<f8").tobytes())


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_renders")
    (root / "stale").mkdir()
    _stale_dump(root / "stale")
    (root / "hkl").mkdir()
    (root / "hkl" / "small.hkl").write_text("0 0 0 10\n1 -1 2 20\n")
    jobs = {
        "default": (RENDER, root / "default"),
        "repeat": (RENDER, root / "repeat"),
        "quiet_files": (RENDER + ["-nonoise", "-nopgm"], root / "quiet_files"),
        "float32": (RENDER + ["-dtype", "float32", "-nonoise", "-nopgm"], root / "float32"),
        "stale": (RENDER + ["-nonoise", "-nopgm"], root / "stale"),
        "hkl": (RENDER + ["-hkl", "small.hkl", "-nonoise", "-nopgm"], root / "hkl"),
    }
    # default and repeat are separate processes: bit-identity must hold across interpreter runs
    return {name: (proc, jobs[name][1]) for name, proc in run_all(jobs, {"default", "repeat"}).items()}


def _ok(run):
    proc, cwd = run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return cwd


def test_default_outputs(renders):
    # C's default files: float image (32*32 float32), SMV int image (512-byte header + 32*32 uint16),
    # PGM and the noise image (same SMV layout); no Fdump.bin without -hkl.
    cwd = _ok(renders["default"])
    assert set(os.listdir(cwd)) == DEFAULT_FILES
    assert (cwd / "floatimage.bin").stat().st_size == 32 * 32 * 4
    assert (cwd / "intimage.img").stat().st_size == 512 + 32 * 32 * 2
    assert (cwd / "noiseimage.img").stat().st_size == 512 + 32 * 32 * 2
    assert (cwd / "image.pgm").read_bytes().startswith(b"P5\n32 32\n# pixels scaled by ")
    head = (cwd / "intimage.img").read_bytes()[:512].decode("ascii")
    assert "SIZE1=32;" in head and "SIZE2=32;" in head and "PIXEL_SIZE=0.1;" in head
    # the int image puts the maximum at 55000 + adc 40 (autoscale 55000/max_I, rounding)
    ints = np.frombuffer((cwd / "intimage.img").read_bytes()[512:], dtype="<u2")
    assert int(ints.max()) == 55040


def test_repeat_run_is_bit_identical(renders):
    # Same argv (incl. -seed 5 for the noise image) in another directory: every file byte for byte.
    a, b = _ok(renders["default"]), _ok(renders["repeat"])
    for name in DEFAULT_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_nonoise_nopgm_writes_float_and_int_only(renders):
    cwd = _ok(renders["quiet_files"])
    assert set(os.listdir(cwd)) == {"floatimage.bin", "intimage.img"}
    # and the images themselves do not depend on those flags
    assert (cwd / "floatimage.bin").read_bytes() == (_ok(renders["default"]) / "floatimage.bin").read_bytes()


def test_float32_agrees_with_float64(renders):
    # Same render in float32: within 1e-4 of the image maximum everywhere and 1e-4 relative on the sum.
    a = floats(_ok(renders["default"]) / "floatimage.bin").astype(np.float64)
    b = floats(_ok(renders["float32"]) / "floatimage.bin").astype(np.float64)
    assert np.abs(a - b).max() <= 1e-4 * a.max()
    assert abs(b.sum() / a.sum() - 1) <= 1e-4


def test_stale_fdump_is_read_without_hkl(renders):
    # C reads Fdump.bin from the working directory when no -hkl is given, even with -default_F: every
    # reflection on this detector (|h|, |k|, |l| <= 2) is inside -5..5, so F = 7 instead of 100 and the
    # image scales by (7/100)^2. The dump is read, not rewritten.
    cwd = _ok(renders["stale"])
    proc = renders["stale"][0]
    assert "reading Fs from Fdump.bin" in proc.stdout
    a = floats(_ok(renders["default"]) / "floatimage.bin").astype(np.float64)
    b = floats(cwd / "floatimage.bin").astype(np.float64)
    assert np.allclose(b, a * (F_DUMP / 100) ** 2, rtol=1e-6, atol=0)
    assert (cwd / "Fdump.bin").read_bytes()[:16] == b"-5 5 -5 5 -5 5\n\f"


def test_hkl_run_writes_fdump(renders):
    # With -hkl, C writes the grid to Fdump.bin (default name) next to the images (docs/c-behaviour.md §2.10, §8.7);
    # it holds the table as read, default_F (100) filling the in-range cells the file does not list.
    cwd = _ok(renders["hkl"])
    assert set(os.listdir(cwd)) == {"small.hkl", "floatimage.bin", "intimage.img", "Fdump.bin"}
    dump = read_fdump(cwd / "Fdump.bin")
    assert (dump.mins, dump.maxs) == ((0, -1, 0), (1, 0, 2))
    assert np.array_equal(dump.grid, read_hkl(cwd / "small.hkl", default_F=100.0).grid)
    assert dump.grid[0, 1, 0] == 10.0 and dump.grid[1, 0, 2] == 20.0 and dump.grid[0, 0, 0] == 100.0


def test_python_api_matches_cli(renders, tmp_path):
    # nanobrag_torch.config_from_argv(argv) + load_model + render is what the CLI runs: identical
    # float32 image.
    config = nanobrag_torch.config_from_argv(RENDER)
    image = nanobrag_torch.render(nanobrag_torch.load_model(config, workdir=tmp_path))
    assert tuple(image.shape) == (32, 32)
    cli = floats(_ok(renders["default"]) / "floatimage.bin")
    assert np.array_equal(image.detach().cpu().numpy().astype(np.float32), cli)


def test_render_matches_the_nanobragg_sum(renders):
    # The 32x32 render written out by hand (docs/c-behaviour.md §3.1, §3.6, §6): MOSFLM, beam (1,0,0), f = (0,0,1),
    # s = (0,-1,0), Fbeam = Sbeam = (3.2 + 0.1)/2 + 0.05 = 1.7 mm, pix0 = (0.1, Sbeam, -Fbeam) m; one
    # sub-pixel (the auto rule gives 1 for a 300 A crystal), one source, lambda 1 A, cubic 100 A cell, N = 3.
    # I = F^2 prod(sin(3 pi h)/sin(pi h))^2 * r_e^2 fluence (= 1) * (1 + cos^2 2theta)/2 * px^2/R^2 * close/R.
    px, lam, fb = 1e-4, 1e-10, 1.7e-3
    s, f = np.mgrid[0:32, 0:32].astype(np.float64)
    P = np.stack((np.full_like(f, 0.1), fb - (s + 0.5) * px, -fb + (f + 0.5) * px), axis=-1)
    R = np.linalg.norm(P, axis=-1)
    d = P / R[..., None]
    S = (d - np.array([1.0, 0.0, 0.0])) / lam
    hkl = S * 100e-10  # a = (100 A, 0, 0) etc.
    latt = np.prod(np.sin(3 * np.pi * hkl) / np.sin(np.pi * hkl), axis=-1)
    polar = 0.5 * (1 + d[..., 0] ** 2)
    omega = px * px / R**2 * 0.1 / R
    expected = 100.0**2 * latt**2 * (R_E_SQR * DEFAULT_FLUENCE) * polar * omega
    got = floats(_ok(renders["default"]) / "floatimage.bin").astype(np.float64)
    assert np.allclose(got, expected, rtol=2e-7, atol=0)


def test_oversample_note_says_what_the_rule_compares():
    # README example 1: a 5 x 100 A crystal, lambda 1 A, distance 100 mm, pixel 0.1 mm -> reciprocal pixel
    # size lambda*distance/pixel = 1000 A; C's rule ceil(3 x 500 / 1000) = 2 > the -oversample 1 given.
    lines = []
    config = nanobrag_torch.config_from_argv("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 "
                                             "-distance 100 -pixel 0.1 -detpixels 8 -oversample 1".split())
    nanobrag_torch.load_model(config, log=lines.append)
    note = [ln for ln in lines if ln.startswith("note:")]
    assert note == ["note: -oversample 2 is recommended: C's rule is ceil(3 x crystal size / reciprocal pixel "
                    "size) = ceil(3 x 500 A / 1000 A), where the reciprocal pixel size is wavelength x distance "
                    "/ pixel"]
    # with the recommended value (or more) there is no note
    lines.clear()
    nanobrag_torch.load_model(nanobrag_torch.config_from_argv(
        "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 8 -oversample 2".split()), log=lines.append)
    assert not [ln for ln in lines if ln.startswith("note:")]


def test_a_run_without_structure_files_does_not_load_gemmi(tmp_path):
    # gemmi (~30 ms of import) is loaded where -mtz/-pdb is read, not by every run (issue 25, fixed costs)
    probe = ("import sys; from nanobrag_torch.programs.nanobragg import main; "
             "code = main('-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 8 -nonoise -nopgm'.split()); "
             "print(code, 'gemmi' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "0 False"


def test_help_and_usage_errors_answer_without_importing_torch():
    # --help and a bad flag must come back fast: importing torch alone takes ~2 s (issue 11, lazy imports)
    probe = ("import sys; from nanobrag_torch.programs.nanobragg import main; "
             "codes = (main(['-h']), main(['-bogus'])); "
             "print(codes, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "(0, 2) False"
    assert r.stderr.strip() == "nanobrag-torch: error: unknown flag -bogus (see --help)"
