"""``python -m nanobrag_torch noisify``: flags, files and refusals (issue 14, item 4).

Bad input gets one line on stderr naming the flag or file, a non-zero exit (2 usage, 1 input file) and no file.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nanobrag_torch.response import detector as dr
from nanobrag_torch.programs.nanobragg import SUBCOMMANDS, main
from nanobrag_torch.cmdline.flags import parse_argv
from nanobrag_torch.programs.noisify import FLAGS, build_config, image_shape


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    img = np.arange(48 * 40, dtype=np.float32).reshape(40, 48) % 37
    img.tofile(tmp_path / "in.bin")
    return tmp_path


def _run(args, capsys):
    code = main(["noisify", *args])
    return code, capsys.readouterr()


def _config(args):
    return build_config(parse_argv(args, FLAGS, positional="floatfile"))


def test_registered_as_a_subcommand():
    assert SUBCOMMANDS["noisify"] == ".noisify:run"


def test_files_headers_and_api_agree(workdir, capsys):
    # The three files, C's header (size, pixel, beam centre with Y from the far edge), the 32-bit TYPE, the PGM,
    # and the same pixels as the Python API on the same input.
    code, out = _run(["-floatfile", "in.bin", "-detpixels_x", "48", "-seed", "3", "-readout", "2", "-pixel", "0.2",
                      "-Ybeam", "1", "-bits", "32"], capsys)
    assert code == 0, out.err
    raw = (workdir / "noiseimage.img").read_bytes()
    header = raw[:512].decode("ascii")
    for line in ("TYPE=long_integer;", "SIZE1=48;", "SIZE2=40;", "PIXEL_SIZE=0.2;", "BEAM_CENTER_X=4.8;",
                 "BEAM_CENTER_Y=7;", "OSC_RANGE=1;"):
        assert line in header
    img = np.fromfile(workdir / "in.bin", dtype=np.float32).reshape(40, 48)
    res = dr.apply_detector_response(img, dr.DetectorResponse(seed=3, readout=2.0, bits=32, pixel_size=2e-4))
    assert np.array_equal(np.frombuffer(raw[512:], dtype=np.uint32).reshape(40, 48), res.noiseimage.pixels)
    assert (workdir / "intimage.img").read_bytes()[512:] == res.intimage.pixels.tobytes()
    pgm = (workdir / "image.pgm").read_bytes()
    assert pgm.startswith(b"P5\n48 40\n# pixels scaled by 1\n255\n") and pgm.endswith(res.pgm.tobytes())
    assert f"{res.noiseimage.photons:.0f} photons on noise image ({res.noiseimage.overloads} overloads)" in out.out


def test_header_file_is_copied_verbatim(workdir, capsys):
    # -header: the outputs start with the file's HEADER_BYTES bytes; its SIZE1/SIZE2 give the image size.
    text = b"{\nHEADER_BYTES=1024;\nDIM=2;\nSIZE1=48;\nSIZE2=40;\nPIXEL_SIZE=0.05;\nBEAMLINE=mine;\n}\f"
    (workdir / "h.img").write_bytes(text + b" " * (1024 - len(text)))
    code, out = _run(["in.bin", "-header", "h.img", "-nonoise", "-nopgm"], capsys)
    assert code == 0, out.err
    data = (workdir / "intimage.img").read_bytes()
    assert data[:1024] == (workdir / "h.img").read_bytes() and len(data) == 1024 + 2 * 48 * 40


def test_image_shape_follows_c():
    # No sizes: the largest divisor of the pixel count not above its square root; one size: the other divides.
    assert image_shape(1920, 0, 0) == (40, 48)
    assert image_shape(4096, 0, 0) == (64, 64)
    assert image_shape(13, 0, 0) == (1, 13)
    assert image_shape(1920, 48, 0) == (48, 40) and image_shape(1920, 0, 40) == (48, 40)


def test_flag_semantics():
    cfg = _config(["x.bin", "-psf", "gaussian", "-psf_fwhm", "120", "-adcoffset", "7", "-readout_noise", "2",
                   "-calib_seed", "5", "-pixel", "0.2", "-nonoise"])
    r = cfg.response
    assert cfg.floatfile == "x.bin" and r.psf == "gauss" and r.psf_fwhm == pytest.approx(120e-6)
    assert r.adc == 7 and r.readout == 2 and r.calib_seed == 5 and not r.noise and cfg.noisefile is None
    assert r.seed is None  # exact matching: -calib_seed does not also set -seed (C's substring match does)
    assert r.psf_fwhm_pixels == pytest.approx(float(np.float32(120e-6)) / 2e-4, rel=1e-15)
    defaults = _config(["x.bin"]).response
    assert (defaults.calibration, defaults.adc, defaults.gain, defaults.calib_seed) == (0.03, 40.0, 1.0, -123456789)


def _refused(capsys, workdir, args, code, *words):
    before = {p.name for p in workdir.iterdir()}
    got, out = _run(args, capsys)
    lines = out.err.strip().splitlines()
    assert got == code and len(lines) == 1, (got, out.err)
    assert lines[0].startswith("noisify: error: ") and all(w in lines[0] for w in words), lines[0]
    assert {p.name for p in workdir.iterdir()} == before  # no file, not even a partial one


@pytest.mark.parametrize("args, code, words", [
    (["-seed", "1"], 2, ["-floatfile"]),
    (["-floatfile", "missing.bin"], 1, ["-floatfile", "missing.bin"]),
    (["-floatfile", "in.bin", "-detpixels_x", "50"], 1, ["in.bin", "50x38"]),
    (["-floatfile", "in.bin", "-detpixels", "40"], 1, ["in.bin", "40x40"]),
    (["-floatfile", "in.bin", "-bits", "8"], 2, ["-bits", "8"]),
    (["-floatfile", "in.bin", "-psf", "lorentz"], 2, ["-psf", "lorentz"]),
    (["-floatfile", "in.bin", "-psf"], 2, ["-psf"]),
    (["-floatfile", "in.bin", "-readout", "-1"], 2, ["-readout"]),
    (["-floatfile", "in.bin", "-psf_radius", "-2"], 2, ["-psf_radius"]),
    (["-floatfile", "in.bin", "-psf_radius", "2.5"], 2, ["-psf_radius", "2.5"]),
    (["-floatfile", "in.bin", "-pixel", "0"], 2, ["-pixel"]),
    (["-floatfile", "in.bin", "-detpixels", "0"], 2, ["-detpixels"]),
    (["-floatfile", "in.bin", "-gain", "two"], 2, ["-gain", "two"]),
    (["-floatfile", "in.bin", "-pgmscale", "3"], 2, ["-pgmscale"]),
    (["-floatfile", "in.bin", "-header", "in.bin"], 1, ["-header", "in.bin", "SMV"]),
    (["-floatfile", "in.bin", "-intfile", "no/such/dir/a.img"], 1, ["no/such/dir/a.img"]),
])
def test_bad_input_is_one_line_and_no_file(workdir, capsys, args, code, words):
    _refused(capsys, workdir, args, code, *words)


def test_malformed_input_files_are_refused(workdir, capsys):
    (workdir / "odd.bin").write_bytes(b"\0" * 1001)
    (workdir / "empty.bin").write_bytes(b"")
    (workdir / "short.img").write_bytes(b"{\nHEADER_BYTES=512;\nSIZE1=48;\nSIZE2=40;\n}")
    _refused(capsys, workdir, ["-floatfile", "odd.bin"], 1, "odd.bin", "1001 bytes")
    _refused(capsys, workdir, ["-floatfile", "empty.bin"], 1, "empty.bin", "0 bytes")
    _refused(capsys, workdir, ["-floatfile", "in.bin", "-header", "short.img"], 1, "short.img", "truncated")


def test_help_and_console_script(workdir):
    # The console script is the subcommand; --help lists every flag group and exits 0; no argument: help, exit 2;
    # a whole run never imports torch (noisify is numpy and numba only).
    probe = ("import sys; from nanobrag_torch.programs.noisify import main; code = main(); "
             "print('torch' in sys.modules, file=sys.stderr); sys.exit(code)")
    run = lambda *a: subprocess.run([sys.executable, "-c", probe, *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=120)
    h = run("--help")
    assert h.returncode == 0 and all(g in h.stdout for g in ("Files:", "Response:", "Header:", "-psf_radius"))
    assert run().returncode == 2
    r = run("in.bin", "-detpixels_x", "48", "-seed", "2", "-psf", "fiber", "-quiet")
    assert r.returncode == 0 and r.stderr.strip() == "False", r.stderr
