"""Tests of the golden-corpus harness (tools.matrix.corpus) on synthetic corpora and files made here."""
from __future__ import annotations

import json
import math
import stat
import sys

import numpy as np
import pytest

from tests.helpers.synthetic import (fake_sim_cmd, fdump_bytes, make_case, make_corpus, pattern, pgm_bytes,
                                     smv_bytes, standard_corpus, write_smv)
from tools.matrix.corpus import (RNG_TAGS, compare_fdump, compare_pgm, compare_smv, evaluate_case, load_corpus,
                          read_pgm, read_smv, run_py_case, select_cases)


@pytest.fixture
def corpus(tmp_path):
    return load_corpus(standard_corpus(tmp_path / "corpus"))


# ------------------------------------------------------------------------------------------- loading
def test_load_corpus_counts_and_fields(corpus):
    # standard_corpus writes 3 cases and no records; 'refused' is C's exit 9 with no outputs.
    assert [c.id for c in corpus.cases] == ["spots_ok", "sum_off", "refused"]
    assert corpus.records == []
    refused = corpus.cases[2]
    assert refused.is_error and refused.outputs == {} and refused.shape is None
    assert corpus.cases[0].shape == (16, 16) and corpus.cases[0].pixels == 256


def test_load_corpus_bad_dirs(tmp_path):
    # A directory without cases.json, broken JSON, and duplicate ids are each refused with a clear error.
    with pytest.raises(FileNotFoundError, match="cases.json"):
        load_corpus(tmp_path)
    (tmp_path / "cases.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_corpus(tmp_path)
    case = {"id": "a", "argv": [], "exit_code": 0}
    (tmp_path / "cases.json").write_text(json.dumps({"cases": [case, case]}))
    with pytest.raises(ValueError, match="duplicate case ids"):
        load_corpus(tmp_path)


def test_select_by_id_tag_comma_and_exclude(corpus):
    cases = corpus.cases
    # 'default_F' tags spots_ok and sum_off; 'refused' is an id; a comma list is a union.
    assert [c.id for c in select_cases(cases, ["default_F"])] == ["spots_ok", "sum_off"]
    assert [c.id for c in select_cases(cases, "refused,spots_ok")] == ["spots_ok", "refused"]
    assert [c.id for c in select_cases(cases, None, exclude_tags=["intfile", "error"])] == ["sum_off"]
    # No selection: everything, in corpus order.
    assert len(select_cases(cases)) == 3


def test_select_unknown_token_is_an_error(corpus):
    # A typo must not silently select nothing.
    with pytest.raises(ValueError, match="defualt_F"):
        select_cases(corpus.cases, ["defualt_F"])


def test_rng_tags_are_the_readme_ones():
    # The golden README names exactly these three tags as depending on C's random-number streams.
    assert set(RNG_TAGS) == {"mosaic_domains", "misset_random", "noise"}


# ------------------------------------------------------------------------------------------- readers
def test_read_smv_roundtrip_and_line_without_semicolon(tmp_path):
    # C writes 'DIALS_ORIGIN=-12.9,12.9,-100' without a ';': it must parse to the same value.
    px = np.arange(12, dtype=np.uint16).reshape(3, 4)
    write_smv(tmp_path / "a.img", px, [("DIALS_ORIGIN", "-12.9,12.9,-100")])
    raw = (tmp_path / "a.img").read_bytes().replace(b"-100;", b"-100 ")  # same header length
    (tmp_path / "a.img").write_bytes(raw)
    items, back = read_smv(tmp_path / "a.img")
    assert dict(items)["DIALS_ORIGIN"] == "-12.9,12.9,-100"
    assert dict(items)["SIZE1"] == "4" and back.shape == (3, 4)
    np.testing.assert_array_equal(back, px)


def test_read_smv_and_pgm_reject_truncated_files(tmp_path):
    # A short pixel block must be reported, not reshaped into garbage.
    (tmp_path / "a.img").write_bytes(smv_bytes(np.zeros((4, 4)))[:-2])
    with pytest.raises(ValueError, match="30 bytes after the header, expected 4x4"):
        read_smv(tmp_path / "a.img")
    (tmp_path / "a.pgm").write_bytes(pgm_bytes(np.zeros((4, 4)), 1.0)[:-1])
    with pytest.raises(ValueError, match="15 pixels"):
        read_pgm(tmp_path / "a.pgm")


def test_read_golden_smv_header_if_present():
    # Golden cubic_spots_baseline is 256x256 with a 512-byte header and 27 header keys (README layout).
    from tools.matrix.corpus import default_corpus_dir
    path = default_corpus_dir() / "out" / "cubic_spots_baseline" / "intimage.img"
    if not path.is_file():
        pytest.skip("golden corpus absent")
    items, px = read_smv(path)
    assert px.shape == (256, 256)
    assert len(items) == 27 and items[0] == ("HEADER_BYTES", "512")


# ------------------------------------------------------------------------------------------- comparisons
def _smv_pair(tmp_path, c_px, py_px, c_extra=None, py_extra=None):
    write_smv(tmp_path / "c.img", c_px, c_extra)
    write_smv(tmp_path / "p.img", py_px, py_extra)
    return tmp_path / "c.img", tmp_path / "p.img"


def test_smv_pixels_within_one_count_pass_two_fail(tmp_path):
    # float64 gate: 1 count (rounding), so a 1-count difference passes with score 1 and 2 counts fail.
    c = np.full((4, 4), 100, dtype=np.uint16)
    py = c.copy()
    py[1, 2] += 1
    m, reasons, score = compare_smv(*_smv_pair(tmp_path, c, py), "intfile", "float64")
    assert reasons == [] and m["max_pixel_diff"] == 1 and score == 1.0
    py[1, 2] += 1
    m, reasons, score = compare_smv(*_smv_pair(tmp_path, c, py), "intfile", "float64")
    assert m["max_pixel_diff"] == 2 and score == 2.0
    assert reasons == ["intfile: 1 pixels differ by more than 1 (max 2 at [1, 2])"]


def test_smv_header_values_keys_order_and_dates(tmp_path):
    c = np.zeros((2, 2), dtype=np.uint16)
    # Same number written differently ("100" vs "100.0") is equal; a DATE key is ignored.
    _, reasons, _ = compare_smv(*_smv_pair(tmp_path, c, c, [("DISTANCE", "100"), ("DATE", "Mon")],
                                           [("DISTANCE", "100.0"), ("DATE", "Tue")]), "intfile", "float64")
    assert reasons == []
    # A different value fails, and so does a different key order; a header problem has an infinite score.
    _, reasons, score = compare_smv(*_smv_pair(tmp_path, c, c, [("DISTANCE", "100")], [("DISTANCE", "101")]),
                                    "intfile", "float64")
    assert reasons == ["intfile: header values differ: DISTANCE: C '100' vs '101'"] and math.isinf(score)
    _, reasons, _ = compare_smv(*_smv_pair(tmp_path, c, c, [("A", "1"), ("B", "2")], [("B", "2"), ("A", "1")]),
                                "intfile", "float64")
    assert reasons == ["intfile: header key order differs from C"]
    _, reasons, _ = compare_smv(*_smv_pair(tmp_path, c, c, [("A", "1")], []), "intfile", "float64")
    assert reasons == ["intfile: header keys differ (missing ['A'], extra [])"]


def test_pgm_scale_compared_to_six_digits_and_bytes_within_one(tmp_path):
    px = np.full((3, 3), 200, dtype=np.uint8)
    (tmp_path / "c.pgm").write_bytes(pgm_bytes(px, 50.0))
    # 50.00001 differs from 50 by 2e-7 relative: within the float64 tolerance 1e-5.
    (tmp_path / "p.pgm").write_bytes(pgm_bytes(px + 1, 50.00001))
    m, reasons, _ = compare_pgm(tmp_path / "c.pgm", tmp_path / "p.pgm", "float64")
    assert reasons == [] and m["pgm_scale_py"] == 50.00001 and m["max_pixel_diff"] == 1
    # 50.01 (2e-4 relative) and a 2-level byte difference both fail.
    (tmp_path / "p.pgm").write_bytes(pgm_bytes(px + 2, 50.01))
    _, reasons, _ = compare_pgm(tmp_path / "c.pgm", tmp_path / "p.pgm", "float64")
    assert len(reasons) == 2 and "pixels scaled by 50.01, C 50" in reasons[0] and "max 2" in reasons[1]


def test_fdump_must_be_identical(tmp_path):
    v = np.linspace(0, 1, 27)
    (tmp_path / "c.bin").write_bytes(fdump_bytes(v))
    (tmp_path / "p.bin").write_bytes(fdump_bytes(v))
    assert compare_fdump(tmp_path / "c.bin", tmp_path / "p.bin")[1] == []
    w = v.copy()
    w[5] = np.nextafter(w[5], 2.0)  # one ulp is already a difference: Fdump is a copy of the input table
    (tmp_path / "p.bin").write_bytes(fdump_bytes(w))
    m, reasons, score = compare_fdump(tmp_path / "c.bin", tmp_path / "p.bin")
    assert m["values_differing"] == 1 and math.isinf(score)
    (tmp_path / "p.bin").write_bytes(fdump_bytes(v, (-2, 1, -1, 1, -1, 1)))
    assert "header" in compare_fdump(tmp_path / "c.bin", tmp_path / "p.bin")[1][0]


# ------------------------------------------------------------------------------------------- whole cases
def test_evaluate_standard_cases(corpus):
    by_id = {c.id: evaluate_case(corpus, c, py_cmd=fake_sim_cmd()) for c in corpus.cases}
    # spots_ok: same renderer on both sides -> bit-identical float and SMV: score 0.
    ok = by_id["spots_ok"]
    assert ok.passed and ok.score == 0.0 and [c.kind for c in ok.checks] == ["floatfile", "intfile"]
    # sum_off: the reference is 1.01x brighter, so sum(py)/sum(c) = 1/1.01 -> |ratio-1| = 0.0099 = 990x the
    # float64 limit 1e-5; max|d|/max(C) is also 0.0099 (990x 1e-4 would be 99x; the sum term dominates).
    bad = by_id["sum_off"]
    assert not bad.passed
    assert bad.score == pytest.approx(0.01 / 1.01 / 1e-5, rel=1e-4)
    assert any("sum_ratio" in r for r in bad.reasons) and any("max|d|" in r for r in bad.reasons)
    # refused: C exit 9; the fake refuses with one stderr line, exit 1, no files -> pass.
    ref = by_id["refused"]
    assert ref.passed and ref.expect_error and ref.py_run.exit_code == 1 and ref.py_run.new_files == []


def test_crash_missing_output_and_bad_refusals_fail(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    cases = [
        make_case(root, "crash", ["-detpixels", "8", "-floatfile", "f.bin", "-crash"], features=["x"],
                  ref_argv=["-detpixels", "8", "-floatfile", "f.bin"]),
        make_case(root, "no_int", ["-detpixels", "8", "-floatfile", "f.bin", "-intfile", "i.img"], features=["x"]),
        # C refused this, but the fake renders it (no -hkl): exit 0 and files written -> two reasons.
        make_case(root, "should_refuse", ["-detpixels", "8", "-floatfile", "f.bin"], features=["x"], exit_code=9),
    ]
    cases[1]["outputs"]["intfile"] = "other.img"  # the case expects a file the simulator never writes
    corpus = load_corpus(make_corpus(root, cases))
    res = {c.id: evaluate_case(corpus, c, py_cmd=fake_sim_cmd()) for c in corpus.cases}
    crash = res["crash"]
    assert not crash.passed and math.isinf(crash.score)
    assert crash.reasons == ["exit 1: RuntimeError: fake simulator crashed on purpose"]
    assert res["no_int"].reasons == ["intfile: other.img not written"]
    assert res["should_refuse"].reasons == [
        "exit 0, expected a non-zero exit (C refuses this input)",
        "stderr has 0 lines, expected one message line",
        "wrote ['f.bin'] although it refused the input",
    ]


def test_timeout_is_a_failure_not_a_hang(corpus):
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    r = evaluate_case(corpus, corpus.cases[0], py_cmd=sleeper, timeout=1.0)
    assert not r.passed and r.reasons == ["timed out after 1 s"] and r.py_run.timed_out
    assert r.py_wall_s < 10


def test_run_is_hermetic_and_appends_our_flags(tmp_path):
    # The run dir (created by the harness) holds exactly the case's inputs;
    # argv is the case's plus '-dtype float32 -device cpu'.
    root = tmp_path / "c"
    root.mkdir()
    (root / "inputs").mkdir()
    (root / "inputs" / "x.hkl").write_text("0 0 0 1\n")
    (root / "inputs" / "unused.hkl").write_text("0 0 0 1\n")
    case = make_case(root, "h", ["-hkl", "x.hkl", "-detpixels", "4"], features=["hkl"], inputs=["x.hkl"],
                     exit_code=9)
    corpus = load_corpus(make_corpus(root, [case]))
    probe = [sys.executable, "-c", "import os, sys; print(sorted(os.listdir('.'))); print(sys.argv[1:])"]
    run = run_py_case(corpus, corpus.cases[0], tmp_path / "work", dtype="float32", device="cpu", py_cmd=probe)
    assert run.exit_code == 0
    assert run.stdout.splitlines() == ["['x.hkl']", "['-hkl', 'x.hkl', '-detpixels', '4', '-dtype', 'float32', "
                                                   "'-device', 'cpu']"]


def test_live_mode_compares_against_the_rerun(corpus, tmp_path):
    # sum_off fails against its recorded (1.01x) reference but passes against a live re-run of the same
    # renderer standing in for C; the live C wall time is then reported instead of the recorded 0.01 s.
    cbin = tmp_path / "fake_c"
    cbin.write_text(f"#!/bin/sh\nexec {sys.executable} {fake_sim_cmd()[1]} \"$@\"\n")
    cbin.chmod(cbin.stat().st_mode | stat.S_IXUSR)
    case = next(c for c in corpus.cases if c.id == "sum_off")
    r = evaluate_case(corpus, case, py_cmd=fake_sim_cmd(), c_bin=cbin)
    assert r.passed and r.c_run is not None and r.c_run.exit_code == 0 and r.c_wall_s != 0.01
    ref = next(c for c in corpus.cases if c.id == "refused")
    r = evaluate_case(corpus, ref, py_cmd=fake_sim_cmd(), c_bin=cbin)
    assert r.passed and r.expect_error  # both sides refuse the missing -hkl file


def test_pattern_max_is_one():
    # The synthetic spot peaks at 0.01 + 0.99 = 1 at the centre; other tests' ratios rely on it.
    assert float(pattern(16).max()) == pytest.approx(1.0) and pattern(16).argmax() == 8 * 16 + 8


def test_missing_corpus_input_fails_the_case_without_running(tmp_path):
    # A case naming an input the corpus lacks cannot be run hermetically: it fails (score inf), nothing runs.
    root = tmp_path / "c"
    root.mkdir()
    case = make_case(root, "needs_hkl", ["-detpixels", "4", "-floatfile", "f.bin"], features=["x"],
                     inputs=["absent.hkl"])
    corpus = load_corpus(make_corpus(root, [case]))
    r = evaluate_case(corpus, corpus.cases[0], py_cmd=fake_sim_cmd())
    assert not r.passed and math.isinf(r.score) and r.py_run is None
    assert r.reasons == [f"input(s) ['absent.hkl'] missing from {root / 'inputs'}"]


def test_float32_smv_gate_follows_the_float_gate(tmp_path):
    # float32 may move the float image by 1e-2 * max(C); autoscale maps max(C) to 55000 counts, so the
    # float32 SMV gate is 1 + ceil(0.01 * 55000) = 551 counts (float64 stays at 1).
    c = np.full((2, 2), 1000, dtype=np.uint16)
    _, reasons, score = compare_smv(*_smv_pair(tmp_path, c, c + 551), "intfile", "float32")
    assert reasons == [] and score == 1.0
    _, reasons, _ = compare_smv(*_smv_pair(tmp_path, c, c + 552), "intfile", "float32")
    assert reasons == ["intfile: 4 pixels differ by more than 551 (max 552 at [0, 0])"]


def test_smv_header_last_digit_tolerated_in_float32_only(tmp_path):
    # '7.0181' vs '7.01809' (1.4e-6 relative, C's 6 significant digits) is a float32 geometry rounding:
    # accepted at the float32 header tolerance 1e-5, refused at the float64 one, 1e-6.
    c = np.zeros((2, 2), dtype=np.uint16)
    pair = _smv_pair(tmp_path, c, c, [("ADXV_CENTER_Y", "7.0181")], [("ADXV_CENTER_Y", "7.01809")])
    assert compare_smv(*pair, "intfile", "float32")[1] == []
    assert compare_smv(*pair, "intfile", "float64")[1] == [
        "intfile: header values differ: ADXV_CENTER_Y: C '7.0181' vs '7.01809'"]
