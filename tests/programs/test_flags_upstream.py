"""The command-line spellings of the upstream nanoBragg README and test scripts (issue 10, items 4 and 6).

C matches flags by substring, so ``-matrix`` is ``-mat`` and ``-adcoffset`` is ``-adc``; ``-hdiv``, ``-vdiv``,
``-dispstep`` and ``-[xyz]det_vector`` match no handler and C skips them with their values. We accept exactly
these spellings the same way (everything else stays an exact match), so the upstream examples run as written.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nanobrag_torch import config_from_argv
from nanobrag_torch.errors import UsageError
from nanobrag_torch.cmdline.flags import NOT_C_FLAGS, help_text, parse_argv
from tools import REPO
from tools.cbin import resolve_c_binary
from tools.metrics import read_float_image

AMAT = REPO / "tests" / "data" / "live_corpus" / "inputs" / "A.mat"
BASE = ["-cell", "50", "60", "70", "90", "90", "90", "-default_F", "10", "-detpixels", "8"]


def test_matrix_is_mat_and_adcoffset_is_adc():
    # Same events as the canonical spellings: C's handlers for -mat and -adc are the ones that fire.
    assert parse_argv(["-matrix", "A.mat", "-adcoffset", "12"]) == parse_argv(["-mat", "A.mat", "-adc", "12"])
    assert parse_argv(["-adcoffset", "12"]) == [("adc", 12.0)]


@pytest.mark.parametrize("flag", sorted(NOT_C_FLAGS))
def test_not_c_flags_are_ignored_with_their_values(flag):
    # The config with the flag (and its values) equals the config without it, apart from one warning that
    # names the flag and the one meant; the values are consumed, not read as stray arguments.
    count, meant = NOT_C_FLAGS[flag]
    values = ["0.28", "0.02", "-1"][:count]
    with_flag = config_from_argv([*BASE, flag, *values])
    without = config_from_argv(BASE)
    warning = with_flag.warnings[-1]
    assert warning.startswith(f"{flag} is not a flag of the C program") and f"use {meant} " in warning
    assert with_flag.warnings[:-1] == without.warnings
    assert {k: v for k, v in vars(with_flag).items() if k != "warnings"} == \
        {k: v for k, v in vars(without).items() if k != "warnings"}


def test_ignored_flags_still_need_their_values():
    # Like every flag, a missing value is a usage error naming the flag (C would read past the end).
    with pytest.raises(UsageError, match="-hdiv: expects 1 value"):
        parse_argv(["-hdiv"])
    with pytest.raises(UsageError, match="-xdet_vector: expects 3 values"):
        parse_argv(["-xdet_vector", "1", "0"])


def test_everything_else_is_still_an_exact_match():
    # Substring matching is not reintroduced: a near miss of -mat or -adc is still an unknown flag.
    for token in ("-mat_file", "-adc_offset", "-hdivx", "--mat"):
        with pytest.raises(UsageError, match=f"unknown flag {token}"):
            parse_argv([token, "1"])


def test_help_placeholders_say_what_the_value_is():
    # -dtype and -device take names, not files; file flags keep FILE.
    lines = {ln.split()[0]: ln for ln in help_text().splitlines() if ln.startswith("  -")}
    assert lines["-dtype"].split()[1] == "NAME" and lines["-device"].split()[1] == "NAME"
    assert lines["-hkl"].split()[1] == "FILE" and "-mat, -matrix FILE" in lines["-mat,"]
    assert "-hdiv (-hdivrange)" in help_text()


C = resolve_c_binary()


@pytest.mark.skipif(not C.ok, reason=f"needs the C program: {C.problem}")
def test_upstream_spellings_render_what_c_renders(tmp_path):
    # A shrunken copy of the upstream README's SAXS example, with all six spellings: C and our CLI must write
    # the same float image bit for bit (C ignores -hdiv/-vdiv/-dispstep/-?det_vector and reads -matrix as
    # -mat), and the same SMV pixels (the -adcoffset 7 of both is added to every pixel).
    argv = ["-matrix", "A.mat", "-default_F", "100", "-lambda", "1", "-dispersion", "0", "-distance", "100",
            "-detsize", "3.2", "-pixel", "0.1", "-hdiv", "0", "-vdiv", "0", "-dispstep", "3", "-xdet_vector", "1",
            "0", "0", "-ydet_vector", "0", "1", "0", "-zdet_vector", "0", "0", "1", "-N", "2", "-adcoffset", "7",
            "-oversample", "1", "-nonoise", "-nopgm", "-floatfile", "f.bin", "-intfile", "i.img"]
    images = {}
    for who, cmd in (("c", [str(C.path)]), ("py", [sys.executable, "-m", "nanobrag_torch", "-quiet"])):
        run = tmp_path / who
        run.mkdir()
        (run / "A.mat").write_bytes(AMAT.read_bytes())
        proc = subprocess.run([*cmd, *argv], cwd=run, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        images[who] = (read_float_image(run / "f.bin", (32, 32)), (run / "i.img").read_bytes())
    np.testing.assert_array_equal(images["py"][0], images["c"][0])
    assert images["c"][0].max() > 0  # not a vacuous comparison
    smv = [np.frombuffer(b[-32 * 32 * 2:], "<u2") for b in (images["c"][1], images["py"][1])]
    np.testing.assert_array_equal(smv[1], smv[0])
    assert smv[0].min() >= 7
