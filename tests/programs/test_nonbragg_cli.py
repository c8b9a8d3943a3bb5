"""The nonbragg and add subcommands without the C program: files, end-of-run lines, refusals (§12).

Refusals: one line on stderr naming the flag or file, exit 2 (usage) or 1 (input file), no file written.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from nanobrag_torch.programs import nonbragg
from nanobrag_torch.programs.nanobragg import SUBCOMMANDS, main
from nanobrag_torch.config import AVOGADRO, DEFAULT_FLUENCE, R_E_SQR

FLAT = "0 2\n0.5 2\n1 2\n"


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """Run ``main([...])`` in a fresh directory holding t.stol; returns (code, stdout, stderr, files)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.stol").write_text(FLAT)

    def go(*argv):
        before = set(os.listdir(tmp_path))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err, sorted(set(os.listdir(tmp_path)) - before)
    return go


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_subcommands_are_registered():
    assert SUBCOMMANDS["nonbragg"] == ".nonbragg:run" and SUBCOMMANDS["add"] == ".add:run"


def test_default_outputs_and_end_of_run_lines(run, tmp_path):
    code, out, err, files = run("nonbragg", "-stol", "t.stol", "-detpixels", "3", "-nopolar", "-seed", "1")
    assert code == 0, err
    assert files == ["floatimage.bin", "image.pgm", "intimage.img", "noiseimage.img"]
    img = np.fromfile(tmp_path / "floatimage.bin", dtype=np.float32).reshape(3, 3)
    # the flat table's centre pixel (see test_amorphous): F^2 omega r_e^2 fluence molecules
    pos = np.array([0.1, 5e-5, 5e-5])
    R = np.sqrt(pos @ pos)
    expect = 4 * (1e-8 / R / R * 0.1 / R) * R_E_SQR * DEFAULT_FLUENCE * (1e-6 * AVOGADRO / 18)
    assert img[1, 1] == pytest.approx(expect, rel=1e-6)
    mx = float(img.max())
    lines = out.splitlines()
    assert any(ln.startswith("solid angle subtended by detector = ") for ln in lines)
    assert f"max_I = {mx:g}" in out and f"intfile_scale = {55000 / mx:g}" in out
    # the default fluence puts ~1e11 photons in a pixel: every one of the 9 pixels overloads the noise image
    assert "photons on noise image (9 overloads)" in out
    hdr = (tmp_path / "intimage.img").read_bytes()[:512].decode()
    for key in ("SIZE1=3;", "PIXEL_SIZE=0.1;", "DISTANCE=100;", "WAVELENGTH=1;", "BEAM_CENTER_X=0.1;",
                "BEAM_CENTER_Y=0.1;", "ORGX=1;", "ORGY=2;", "CLOSE_DISTANCE=100;", "OSC_RANGE=0;", "BEAMLINE=fake;"):
        assert key in hdr, key


def test_nopgm_and_nonoise_are_honoured(run):
    code, out, err, files = run("nonbragg", "-stol", "t.stol", "-detpixels", "2", "-nopgm", "-nonoise",
                                "-floatfile", "a.bin", "-intfile", "a.img")
    assert code == 0 and files == ["a.bin", "a.img"] and "pgm_scale" not in out


def test_img_analysis_recovers_the_table(run, tmp_path):
    # A noiseless "measurement" made from our own render (counts = adc + photons) must bin back to the table's
    # F: the -img analysis inverts the render with each pixel's polarization and solid angle (§12.7).
    table = "0 2\n0.02 2.2\n0.04 2.5\n0.06 2.6\n0.08 2.4\n0.1 2.2\n0.3 2\n1 2\n"
    (tmp_path / "r.stol").write_text(table)
    base = ["-stol", "r.stol", "-detpixels", "120", "-distance", "30", "-fluence", "2e21", "-nonoise", "-nopgm"]
    assert run("nonbragg", *base, "-floatfile", "m.bin", "-intfile", "m.img", "-scale", "1", "-adc", "40")[0] == 0
    code, out, err, files = run("nonbragg", *base, "-img", "m.img", "-stolout", "prof.stol", "-floatfile", "b.bin",
                                "-intfile", "b.img")
    assert code == 0, err
    assert "prof.stol" in files and np.fromfile(tmp_path / "m.img", np.uint16)[256:].max() < 65535
    rows = [ln.split() for ln in (tmp_path / "prof.stol").read_text().splitlines()]
    assert len(rows) >= 3 and f"wrote prof.stol as {len(rows)} lines of text" in out
    F_at = dict((float(a), float(b)) for a, b in (ln.split() for ln in table.splitlines()))
    for stol, mean, rmsd, median, mad, n in rows:
        assert int(n) > 100 and float(mean) == pytest.approx(F_at[float(stol)], rel=0.03)
        assert float(rmsd) >= 0 and float(mad) >= 0 and math.isfinite(float(median))


@pytest.mark.parametrize("argv, code, needle", [
    (["-distance", "100"], 2, "no structure-factor table: give -stol"),
    (["-stol", "t.stol", "-bogus"], 2, "unknown flag -bogus"),
    (["-stol", "t.stol", "-distance", "far"], 2, "-distance: expected a number"),
    (["-stol", "t.stol", "-hkl", "P1.hkl"], 2, "unknown flag -hkl"),
    (["-stol", "t.stol", "-pixel", "0"], 2, "-pixel: must be positive"),
    (["-stol", "t.stol", "-dtype", "float16"], 2, "-dtype"),
    (["-stol", "t.stol", "-device", "tpu9"], 2, "-device"),
    (["-stol", "t.stol", "-MW", "0"], 2, "-MW"),
    (["-stol", "t.stol", "-thick", "0"], 2, "sample volume"),
    (["-stol", "t.stol", "-lambda", "0"], 2, "-lambda"),
    (["-stol", "t.stol", "-ignore", "70000"], 2, "-ignore"),
    (["-stol", "missing.stol"], 1, "-stol: file not found: missing.stol"),
    (["-4stol", "bad.stol"], 1, "-4stol: bad.stol line 2: not a number"),
    (["-stol", "t.stol", "-sourcefile", "nosrc.txt"], 1, "-sourcefile: file not found"),
    (["-stol", "t.stol", "-img", "nope.img"], 1, "-img: file not found"),
    # meaningless sample and detector values (C renders negative or zero images): the shared validation
    (["-stol", "t.stol", "-molecules", "-5"], 2, "-molecules: must not be negative, got -5"),
    (["-stol", "t.stol", "-density", "0"], 2, "-density: must be positive, got 0 g/cm^3"),
    (["-stol", "t.stol", "-roi", "100", "200", "100", "200"], 2, "-roi: the window x 100..200, y 100..200 does not"),
    (["-stol", "t.stol", "-distance", "0"], 2, "-distance: must be positive, got 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, argv, code, needle):
    (tmp_path / "bad.stol").write_text("0 1\n0.1 x\n")
    got, out, err, files = run("nonbragg", *argv, "-detpixels", "4")
    line = _one_line(err)
    assert got == code and needle in line and line.startswith("nonbragg: error: ")
    assert "Traceback" not in err and files == []


def test_img_of_another_size_is_refused(run, tmp_path):
    assert run("nonbragg", "-stol", "t.stol", "-detpixels", "4", "-intfile", "four.img", "-nonoise")[0] == 0
    code, _, err, files = run("nonbragg", "-stol", "t.stol", "-img", "four.img", "-detpixels", "5")
    assert code == 1 and "-img: four.img: 4x4 pixels, detector is 5x5" in _one_line(err) and files == []


def test_help_and_no_arguments(run):
    code, out, _, _ = run("nonbragg", "-h")
    assert code == 0 and "-stol" in out and "-Fmap" in out and "Sample:" in out
    code, out, _, _ = run("nonbragg")
    assert code == 2 and "usage: nonbragg-torch" in out


def test_upstream_non_flags_are_skipped_with_a_warning(run):
    code, _, err, _ = run("nonbragg", "-stol", "t.stol", "-detpixels", "2", "-hdiv", "0.28", "-dispstep", "3",
                          "-nonoise")
    assert code == 0 and "-hdiv is not a flag of the C program" in err and "-dispstep" in err


def test_console_script_entry_point(run):
    # nonbragg-torch = nanobrag_torch.programs.nonbragg:main, the CLI's error handling with "nonbragg" prepended
    assert nonbragg.main(["-stol", "t.stol", "-detpixels", "2", "-nonoise", "-quiet"]) == 0
    assert nonbragg.main(["-stol"]) == 2


def test_module_entry_runs_the_subcommand(tmp_path):
    (tmp_path / "t.stol").write_text(FLAT)
    r = subprocess.run([sys.executable, "-m", "nanobrag_torch", "nonbragg", "-stol", "t.stol", "-detpixels", "2",
                        "-nonoise", "-quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "floatimage.bin").stat().st_size == 16


# ----------------------------------------------------------------------------------------------- add
def _floats(path, values):
    np.asarray(values, dtype=np.float32).tofile(path)


def test_add_sums_images_pixel_by_pixel(run, tmp_path):
    _floats(tmp_path / "a.bin", [1.0, 2.5, -3.0, 1e30])
    _floats(tmp_path / "b.bin", [0.5, 0.25, 3.0, 1e30])
    _floats(tmp_path / "c.bin", [1.0, 1.0, 1.0, 1.0])
    code, out, err, files = run("add", "a.bin", "b.bin", "c.bin", "-o", "sum.bin")
    assert code == 0 and files == ["sum.bin"] and "the sum of 3 images" in out
    assert np.fromfile(tmp_path / "sum.bin", dtype=np.float32).tolist() == [2.5, 3.75, 1.0, np.float32(2e30)]


def test_add_of_a_nonbragg_and_itself_doubles_it(run, tmp_path):
    assert run("nonbragg", "-stol", "t.stol", "-detpixels", "3", "-nonoise", "-floatfile", "w.bin")[0] == 0
    assert run("add", "w.bin", "w.bin", "-o", "ww.bin")[0] == 0
    w = np.fromfile(tmp_path / "w.bin", dtype=np.float32)
    assert np.array_equal(np.fromfile(tmp_path / "ww.bin", dtype=np.float32), 2 * w)


@pytest.mark.parametrize("argv, code, needle", [
    (["a.bin", "short.bin", "-o", "s.bin"], 1, "short.bin: 2 floats, but a.bin has 4"),
    (["a.bin", "ragged.bin", "-o", "s.bin"], 1, "ragged.bin: 5 bytes is not a whole number"),
    (["a.bin", "gone.bin", "-o", "s.bin"], 1, "file not found: gone.bin"),
    (["a.bin", "a.bin"], 2, "no output file"),
    (["a.bin", "-o", "s.bin"], 2, "at least two images"),
    (["a.bin", "a.bin", "-o"], 2, "-o: expects a file name"),
    (["a.bin", "a.bin", "-x", "-o", "s.bin"], 2, "unknown flag -x"),
])
def test_add_refuses_with_one_line(run, tmp_path, argv, code, needle):
    _floats(tmp_path / "a.bin", [1, 2, 3, 4])
    _floats(tmp_path / "short.bin", [1, 2])
    (tmp_path / "ragged.bin").write_bytes(b"12345")
    got, _, err, files = run("add", *argv)
    line = _one_line(err)
    assert got == code and needle in line and line.startswith("add: error: ") and files == []
    assert not line.startswith("add: error: add:")  # the program is named once


def test_add_help(run):
    code, out, _, _ = run("add", "--help")
    assert code == 0 and "-o, -outfile FILE" in out


def test_help_and_usage_errors_import_no_torch():
    # -h and a bad command line answer before torch (about 2 s to import) is loaded, as for nanoBragg and noisify
    code = ("import sys\nfrom nanobrag_torch.programs.nanobragg import main\n"
            "assert main(['nonbragg', '-h']) == 0 and main(['nonbragg', '-stol', 'x.stol', '-bogus']) == 2\n"
            "assert main(['add', 'a.bin']) == 2\nassert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
