"""Tests of the parity matrix (tools.matrix.parity_matrix) on a tiny synthetic corpus with a fake simulator.

standard_corpus (tests/helpers/synthetic.py): spots_ok passes, sum_off misses (its reference is 1.01x
brighter: score |1/1.01 - 1| / 1e-5 = 990), refused passes (both sides refuse a missing -hkl file).
"""
from __future__ import annotations

import json
import math
import os
import shlex
import stat

import pytest

from tests.helpers.synthetic import fake_sim_cmd, make_case, make_corpus, standard_corpus
from tools.matrix.parity_matrix import available_memory_gb, bounded_workers, feature_counts, main, sort_key

FAKE = shlex.join(fake_sim_cmd())


def _run(corpus, outdir, *extra):
    return main(["--corpus", str(corpus), "--outdir", str(outdir), "--py-cmd", FAKE, "--no-progress", *extra])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """One matrix run over the standard corpus, shared by the bundle tests (drawing costs ~1 s a case)."""
    tmp = tmp_path_factory.mktemp("pm")
    corpus = standard_corpus(tmp / "corpus")
    rc = _run(corpus, tmp / "out")
    return rc, tmp / "out", json.loads((tmp / "out" / "matrix.json").read_text())


def test_exit_code_is_one_when_a_case_misses(bundle):
    # sum_off misses its threshold, so the whole matrix must report failure (exit 1).
    rc, _, m = bundle
    assert rc == 1
    assert m["summary"] == {"cases": 3, "passed": 2, "failed": 1}


def test_cases_sorted_worst_first_with_verdicts_and_scores(bundle):
    # Failed first; then the passes by score: spots_ok (bit-identical, score 0) and refused (score 0) by id.
    _, _, m = bundle
    assert [c["id"] for c in m["cases"]] == ["sum_off", "refused", "spots_ok"]
    worst = m["cases"][0]
    assert worst["verdict"] == "fail" and worst["score"] == pytest.approx(990.1, rel=1e-3)
    assert any("sum_ratio" in r for r in worst["reasons"])
    assert [c["verdict"] for c in m["cases"][1:]] == ["pass", "pass"]
    refused = m["cases"][1]
    assert refused["expect_error"] and refused["py_run"]["exit_code"] == 1 and refused["outputs"] == []


def test_matrix_json_carries_metrics_runtimes_and_meta(bundle):
    _, _, m = bundle
    spots = next(c for c in m["cases"] if c["id"] == "spots_ok")
    kinds = {o["kind"]: o for o in spots["outputs"]}
    # Identical renders: r = 1, sum ratio exactly 1, SMV max pixel difference 0.
    assert kinds["floatfile"]["metrics"]["sum_ratio"] == 1.0
    assert kinds["floatfile"]["metrics"]["correlation"] == pytest.approx(1.0, abs=1e-12)
    assert kinds["intfile"]["metrics"]["max_pixel_diff"] == 0
    assert spots["py_wall_s"] > 0 and spots["c_wall_s"] == 0.01 and spots["c_wall_s_source"] == "recorded"
    assert m["meta"]["dtype"] == "float64" and m["meta"]["live"] is False
    assert m["meta"]["thresholds"]["float_image"]["min_correlation"] == 0.999999


def test_per_feature_counts(bundle):
    # default_F tags spots_ok (pass) and sum_off (fail); error/hkl tag only refused (pass); most failures first.
    _, _, m = bundle
    rows = {f["feature"]: f for f in m["features"]}
    assert rows["default_F"] == {"feature": "default_F", "cases": 2, "passed": 1, "failed": 1}
    assert rows["error"] == {"feature": "error", "cases": 1, "passed": 1, "failed": 0}
    assert m["features"][0]["feature"] == "default_F"


def test_bundle_files(bundle):
    # Image cases get a comparison PNG and a profile PNG; the refusal has no image, so no PNG.
    _, out, m = bundle
    assert sorted(p.name for p in (out / "cases").iterdir()) == [
        "spots_ok.png", "spots_ok_profile.png", "sum_off.png", "sum_off_profile.png"]
    assert next(c for c in m["cases"] if c["id"] == "sum_off")["images"] == {
        "compare": "cases/sum_off.png", "profile": "cases/sum_off_profile.png"}
    md = (out / "index.md").read_text()
    assert "2/3 cases pass (1 fail)" in md
    # The worst case is the first row of the case table.
    table = md.split("## Cases (worst first)")[1]
    assert table.index("sum_off") < table.index("refused") < table.index("spots_ok")
    page = (out / "index.html").read_text()
    # Self-contained: both thumbnails embedded as data URIs, no external stylesheet or script.
    assert page.count("src='data:image/png;base64,") == 2
    assert "<link" not in page and "<script" not in page
    assert page.index("sum_off") < page.index("spots_ok")


def test_all_pass_gives_exit_zero_and_select(tmp_path):
    # Selecting only the passing cases (by id and by tag) gives exit 0; no PNGs with --no-images.
    corpus = standard_corpus(tmp_path / "corpus")
    assert _run(corpus, tmp_path / "a", "--select", "spots_ok", "error", "--no-images") == 0
    m = json.loads((tmp_path / "a" / "matrix.json").read_text())
    assert sorted(c["id"] for c in m["cases"]) == ["refused", "spots_ok"]
    assert not (tmp_path / "a" / "cases").exists()


def test_crash_does_not_stop_other_cases_in_parallel(tmp_path):
    # A simulator crash fails its case (score inf, sorted first) while the other cases still run; with
    # -j 2 on this 3-case corpus two workers are used (where the machine has 2 cores and 6 GB free).
    root = tmp_path / "corpus"
    root.mkdir()
    make_corpus(root, [
        make_case(root, "crashes", ["-detpixels", "8", "-floatfile", "f.bin", "-crash"], features=["x"],
                  ref_argv=["-detpixels", "8", "-floatfile", "f.bin"]),
        make_case(root, "fine_a", ["-detpixels", "8", "-floatfile", "f.bin"], features=["x"]),
        make_case(root, "fine_b", ["-detpixels", "6", "-floatfile", "f.bin", "-default_F", "2"], features=["x"]),
    ])
    rc = _run(root, tmp_path / "out", "-j", "2", "--no-images")
    m = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert rc == 1
    assert (m["cases"][0]["id"], m["cases"][0]["verdict"]) == ("crashes", "fail")
    assert sorted((c["id"], c["verdict"]) for c in m["cases"][1:]) == [("fine_a", "pass"), ("fine_b", "pass")]
    assert m["cases"][0]["score_is_inf"] and "RuntimeError" in m["cases"][0]["reasons"][0]
    assert m["meta"]["workers"] == bounded_workers(2, 3, os.cpu_count(), available_memory_gb())


def test_usage_errors_exit_two(tmp_path, capsys):
    # Not a corpus, an unknown selection token, and --live without a usable binary: exit 2, one-line reason.
    corpus = standard_corpus(tmp_path / "corpus")
    assert _run(tmp_path / "nowhere", tmp_path / "o1") == 2
    assert "cases.json" in capsys.readouterr().err
    assert _run(corpus, tmp_path / "o2", "--select", "no_such_thing") == 2
    assert "no_such_thing" in capsys.readouterr().err
    assert _run(corpus, tmp_path / "o3", "--live", "--c-bin", str(tmp_path / "missing_c")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_report_directory_is_never_reused(tmp_path, capsys):
    # An --outdir that exists (an earlier report) is refused with exit 2 and left as it was.
    corpus = standard_corpus(tmp_path / "corpus")
    old = tmp_path / "old"
    old.mkdir()
    (old / "index.html").write_text("earlier report")
    assert _run(corpus, old, "--no-images") == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in old.iterdir()) == ["index.html"]
    assert (old / "index.html").read_text() == "earlier report"


def test_the_time_columns_say_what_they_measure(bundle):
    # Issue 10.9: ours is a whole process measured now, C's the corpus's recorded whole-process time.
    _, out, _ = bundle
    md = (out / "index.md").read_text()
    assert "| ours, whole run s | C, whole run s (recorded) |" in md
    assert "C's as recorded with the corpus (another run, maybe another machine)" in md


def test_live_mode_uses_the_rerun_reference(tmp_path):
    # With a "C binary" that is the same fake renderer, sum_off (wrong only in its recorded reference)
    # passes, so all 3 cases pass and the exit status is 0.
    corpus = standard_corpus(tmp_path / "corpus")
    cbin = tmp_path / "fake_c"
    cbin.write_text(f"#!/bin/sh\nexec {shlex.join(fake_sim_cmd())} \"$@\"\n")
    cbin.chmod(cbin.stat().st_mode | stat.S_IXUSR)
    assert _run(corpus, tmp_path / "out", "--live", "--c-bin", str(cbin), "--no-images") == 0
    m = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert m["meta"]["live"] and all(c["c_wall_s_source"] == "live" for c in m["cases"])


def test_bounded_workers():
    # Never more than cores, cases, or memory/3 GB allows, never fewer than one.
    assert bounded_workers(8, 44, cores=2, mem_gb=100) == 2
    assert bounded_workers(8, 1, cores=16, mem_gb=100) == 1
    assert bounded_workers(8, 44, cores=16, mem_gb=7.0) == 2
    assert bounded_workers(4, 44, cores=16, mem_gb=1.0) == 1


def test_sort_key_and_feature_counts_pure():
    rows = [
        {"id": "b", "passed": True, "score": 0.5, "score_is_inf": False, "features": ["t"]},
        {"id": "a", "passed": False, "score": 3.0, "score_is_inf": False, "features": ["t", "u"]},
        {"id": "c", "passed": False, "score": None, "score_is_inf": True, "features": ["u"]},
        {"id": "d", "passed": True, "score": 0.9, "score_is_inf": False, "features": []},
    ]
    # inf (crash) before a finite miss; passes by closeness to their thresholds.
    assert [r["id"] for r in sorted(rows, key=sort_key)] == ["c", "a", "d", "b"]
    assert feature_counts(rows) == [
        {"feature": "u", "cases": 2, "passed": 0, "failed": 2},
        {"feature": "t", "cases": 2, "passed": 1, "failed": 1},
    ]
    assert not math.isinf(sort_key(rows[0])[1])
