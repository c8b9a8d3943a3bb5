"""Intensity scaling through the command line: [SOURCE-WEIGHT-001] weighted source normalization.

C nanoBragg reads the weight column of a -sourcefile and never uses it: every source counts once and the
image is divided by the number of sources (golden case sourcefile_weights). The
case (argv, fixtures, gate) comes from the Phase D config, $NB_PHASE_D_CONFIG or
configs/phase_d_source_weights.toml, so this test and `invoke phase-d` check the same thing.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from tools import hermetic
from tools.cbin import resolve_c_binary
from tools.evidence.case import load_case
from tools.metrics import compare_images, read_float_image, verdict

CASE = load_case(os.environ.get("NB_PHASE_D_CONFIG") or None)
HAVE_CLI = importlib.util.find_spec("nanobrag_torch.__main__") is not None
PY_ENV = {**os.environ, "KMP_DUPLICATE_LIB_OK": "TRUE"}


def _render(argv, run_dir, floatfile, shape, env=None):
    """Run ``argv`` in ``run_dir``; return (float image, combined output)."""
    proc = subprocess.run(argv, cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=CASE.timeout_s, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{argv[0]} exited {proc.returncode}:\n{out[-3000:]}"
    return read_float_image(run_dir / floatfile, shape), out


class TestSourceWeights:
    def test_weighted_source_matches_c(self, tmp_path):
        """C and PyTorch on the two-source case agree within the Phase D gate of the case config."""
        if os.environ.get("NB_RUN_PARALLEL") != "1":
            pytest.skip("C parity run: set NB_RUN_PARALLEL=1 and NB_C_BIN=/path/to/nanoBragg")
        c_bin = resolve_c_binary()
        if not c_bin.ok:
            pytest.skip(c_bin.problem)
        inputs = [CASE.resolve(p) for p in CASE.inputs]
        hermetic.prepare_run_dir(tmp_path / "c", inputs)
        hermetic.prepare_run_dir(tmp_path / "py", inputs)
        c_img, c_out = _render(CASE.c_argv(c_bin.path), tmp_path / "c", CASE.c_floatfile, CASE.shape)
        py_img, py_out = _render(CASE.py_argv(sys.executable), tmp_path / "py", CASE.py_floatfile, CASE.shape,
                                 env=PY_ENV)
        # Both programs must have seen the same number of sources (2 in the comment-free fixture: a '#' line
        # would be a third source for C only) and one sub-pixel per pixel.
        c_rep, py_rep = hermetic.reported(c_out), hermetic.reported(py_out)
        assert c_rep["sources"] == py_rep["sources"], (c_rep, py_rep)
        assert c_rep["oversample"] == py_rep["oversample"] == 1, (c_rep, py_rep)
        assert float(c_img.sum()) > 0.0, "C image is all zero: the comparison would be vacuous"
        metrics = compare_images(c_img, py_img)
        passed, reasons = verdict(metrics, CASE.gate)
        assert passed, f"{reasons}; metrics: {metrics}"

    @pytest.mark.skipif(not HAVE_CLI, reason="nanobrag_torch CLI not importable")
    def test_weights_are_ignored_like_c(self, tmp_path, monkeypatch):
        """Our CLI, like C, ignores the weight column: weights (1.0, 0.2) and (1.0, 1.0) give the same image.

        The Phase D fixture cannot show this: with N=1 and -default_F every source contributes the same
        intensity (the polarization comes from the first source), so any weighted mean equals the plain
        mean. Here the two sources have different wavelengths and the crystal has Bragg peaks (N=5), so a
        weighted mean would differ; the single-source image checks that the sources really differ.
        """
        from nanobrag_torch.programs.nanobragg import main as cli_main  # the console entry point, run in-process (fast)

        args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-lambda", "1",
                "-distance", "100", "-pixel", "0.1", "-detpixels", "48", "-oversample", "1", "-nointerpolate",
                "-nonoise", "-nopgm", "-floatfile", "img.bin", "-sourcefile", "src.txt", "-dtype", "float64"]
        # MOSFLM beam along +x: sources up-beam at -x (X Y Z weight wavelength).
        variants = {
            "weighted": ["-10 0 0 1.0 1.0e-10", "-10 0 0 0.2 1.02e-10"],
            "equal": ["-10 0 0 1.0 1.0e-10", "-10 0 0 1.0 1.02e-10"],
            "first_only": ["-10 0 0 1.0 1.0e-10"],
        }
        images = {}
        for name, lines in variants.items():
            run = tmp_path / name
            run.mkdir()
            (run / "src.txt").write_text("\n".join(lines) + "\n")
            monkeypatch.chdir(run)
            assert cli_main(args) == 0
            images[name] = read_float_image(run / "img.bin", (48, 48))
        np.testing.assert_array_equal(images["weighted"], images["equal"])
        # The second source changes the image by much more than rounding, so weights could have mattered.
        diff = np.abs(images["weighted"] - images["first_only"]).max()
        assert diff > 0.01 * images["first_only"].max(), diff
