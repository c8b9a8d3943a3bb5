"""nonbragg against the C program nonBragg, live (§12): skips unless NB_NONBRAGG_BIN (or nonBragg on PATH) names
the binary, built outside this repository from the upstream bl831/nanoBragg.

A few cases of tests/data/live_corpus_nonbragg, one per hard part (the table walk, Kahn polarization, weighted
sources, noise over an ROI), must give float images bit-identical to C's (float64) and pass
every other comparison; the -img analysis must write C's numbers and the end-of-run lines must read as C's.
The whole corpus: ``invoke parity-matrix --corpus tests/data/live_corpus_nonbragg --live``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tools.cbin import resolve_c_binary
from tools.matrix.corpus import PROGRAMS, evaluate_case, load_corpus, run_c_case, run_py_case

CORPUS = Path(__file__).resolve().parents[1] / "data" / "live_corpus_nonbragg"
C = resolve_c_binary(env_var=PROGRAMS["nonBragg"].c_bin_env, program=PROGRAMS["nonBragg"].c_name)
pytestmark = pytest.mark.skipif(not C.ok, reason=f"C nonBragg parity: {C.problem}")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(CORPUS)


def _case(corpus, case_id):
    return next(c for c in corpus.cases if c.id == case_id)


@pytest.mark.parametrize("case_id", ["table_unsorted", "beam_polar_kahn", "beam_sourcefile_weights",
                                     "out_roi_scales_noise"])
def test_case_is_bit_identical_to_c(corpus, case_id, tmp_path):
    res = evaluate_case(corpus, _case(corpus, case_id), dtype="float64", c_bin=C.path, workroot=tmp_path)
    assert res.passed, res.reasons
    for check in res.checks:
        if check.kind == "floatfile":
            assert check.metrics["max_abs_diff"] == 0.0, check.metrics
        else:
            assert check.metrics.get("max_pixel_diff", 0) == 0, (check.kind, check.metrics)


END_LINES = ("solid angle subtended", "wrote ", "max_I = ", "mean= ", "intfile_scale = ", "pgm_scale = ")


def test_img_analysis_and_end_of_run_lines_match_c(corpus, tmp_path):
    # -img: output.stol's stol, mean, rmsd and pixel-count columns are C's (C leaves the median and MAD columns
    # uninitialised, §12.7); the end-of-run lines, including C's mean over the last bin's count, read the same.
    case = _case(corpus, "img_header_stolout")
    c_run = run_c_case(corpus, case, tmp_path / "c", C.path)
    py_run = run_py_case(corpus, case, tmp_path / "py", dtype="float64")
    assert c_run.exit_code == 0 and py_run.exit_code == 0, py_run.stderr
    c_rows = [ln.split() for ln in (tmp_path / "c" / "output.stol").read_text().splitlines()]
    py_rows = [ln.split() for ln in (tmp_path / "py" / "output.stol").read_text().splitlines()]
    assert len(c_rows) >= 3
    assert [r[:3] + r[5:] for r in py_rows] == [r[:3] + r[5:] for r in c_rows]

    def ends(text):
        return [ln for ln in text.splitlines() if ln.startswith(END_LINES)]
    assert len(ends(c_run.stdout)) == len(END_LINES) and ends(py_run.stdout) == ends(c_run.stdout)
