"""The nonBragg live corpus (tests/data/live_corpus_nonbragg) and the tools' support for the C suite's programs
(tools.matrix.corpus.PROGRAMS, a case's ``program``): without a C binary.

Parity against the C program itself: tests/parity/test_nonbragg_parity.py (skips without NB_NONBRAGG_BIN).
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from nanobrag_torch.programs import nonbragg
from tests.helpers.synthetic import fake_sim_cmd, make_case, make_corpus
from tools.cbin import resolve_c_binary
from tools.matrix.corpus import PROGRAMS, load_corpus, read_pgm, run_py_case
from tools.matrix.parity_matrix import main as matrix_main

CORPUS = Path(__file__).resolve().parents[1] / "data" / "live_corpus_nonbragg"


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(CORPUS)


def test_corpus_has_twenty_nonbragg_cases_with_their_inputs(corpus):
    assert len(corpus.cases) >= 20
    assert {c.program for c in corpus.cases} == {"nonBragg"}
    for c in corpus.cases:
        for name in c.inputs:
            assert corpus.input_path(name).is_file(), (c.id, name)


def test_every_case_parses_and_records_the_detector_shape(corpus, monkeypatch):
    # Each successful case's argv must be a valid nonbragg command line whose detector has the recorded shape
    # (the -img cases read their header, so run from the inputs directory).
    monkeypatch.chdir(CORPUS / "inputs")
    for c in corpus.cases:
        if c.is_error:
            continue
        cfg = nonbragg.build_config(nonbragg.parse(c.argv))
        assert (cfg.detector.spixels, cfg.detector.fpixels) == tuple(c.shape), c.id


def test_every_flag_of_nonbragg_is_exercised(corpus):
    # every flag group, indeed every flag except our own engine flags, appears in some case
    used = {tok for c in corpus.cases for tok in c.argv if tok.startswith("-")}
    missing = [f.names[0] for f in nonbragg.FLAGS
               if f.group != "Engine" and not any(name in used for name in f.names)]
    assert missing == []


def test_error_cases_refuse_without_files(corpus):
    errors = [c for c in corpus.cases if c.is_error]
    assert len(errors) >= 3 and all(c.outputs == {} for c in errors)


def test_program_table_names_binary_variable_subcommand_and_quirks():
    nb = PROGRAMS["nonBragg"]
    assert (nb.c_bin_env, nb.c_name, nb.subcommand, nb.engine_flags) == ("NB_NONBRAGG_BIN", "nonBragg", ("nonbragg",),
                                                                         True)
    assert nb.quirks == {"pgm_trailing_bytes"} and PROGRAMS["nanoBragg"].quirks == frozenset()


def test_resolver_uses_the_programs_variable(tmp_path):
    exe = tmp_path / "nonBragg"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    found = resolve_c_binary(env={"NB_NONBRAGG_BIN": str(exe), "NB_C_BIN": "/nonexistent"},
                             env_var="NB_NONBRAGG_BIN", program="nonBragg")
    assert found.ok and found.path == exe.resolve() and found.source == "$NB_NONBRAGG_BIN"
    none = resolve_c_binary(env={"PATH": str(tmp_path / "empty")}, env_var="NB_NONBRAGG_BIN", program="nonBragg")
    assert not none.ok and "NB_NONBRAGG_BIN is not set" in none.problem


def test_our_run_gets_the_subcommand(tmp_path, corpus):
    # A stand-in for our simulator records its argv: the case's program adds "nonbragg" before the C argv.
    recorder = [sys.executable, "-c", "import sys; open('argv.txt', 'w').write(' '.join(sys.argv[1:]))"]
    case = next(c for c in corpus.cases if c.id == "table_default")
    run_py_case(corpus, case, tmp_path / "w", py_cmd=recorder, dtype="float64")
    words = (tmp_path / "w" / "argv.txt").read_text().split()
    assert words[0] == "nonbragg" and words[1:-2] == list(case.argv) and words[-2:] == ["-dtype", "float64"]


def test_unknown_program_is_refused_when_loading(tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps({"cases": [{"id": "a", "argv": [], "exit_code": 0,
                                                                "program": "nearBragg"}]}))
    with pytest.raises(ValueError, match="case 'a': unknown program 'nearBragg'"):
        load_corpus(tmp_path)


def test_pgm_with_trailing_bytes(tmp_path):
    # C nonBragg writes 2 bytes per pixel after its PGM header: the comparison reads the image and ignores the rest
    p = tmp_path / "c.pgm"
    p.write_bytes(b"P5\n2 2\n# pixels scaled by 1\n255\n" + bytes([1, 2, 3, 4]) + b"\x07" * 4)
    with pytest.raises(ValueError, match="8 pixels after the header"):
        read_pgm(p)
    _, px = read_pgm(p, trailing_ok=True)
    assert px.tolist() == [[1, 2], [3, 4]]


def test_matrix_refuses_one_c_bin_for_two_programs(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    a = make_case(root, "bragg", ["-default_F", "1", "-detpixels", "4", "-floatfile", "f.bin"], features=["x"])
    b = make_case(root, "amorphous", ["-default_F", "1", "-detpixels", "4", "-floatfile", "f.bin"], features=["x"])
    b["program"] = "nonBragg"
    make_corpus(root, [a, b])
    rc = matrix_main(["--corpus", str(root), "--outdir", str(tmp_path / "o"), "--py-cmd", shlex.join(fake_sim_cmd()),
                      "--live", "--c-bin", sys.executable, "--no-progress"])
    assert rc == 2


def test_committed_results_cover_every_case(corpus):
    # README.md records the last live run: one table row per case of cases.json
    text = (CORPUS / "README.md").read_text()
    rows = {ln.split("|")[1].strip().strip("`") for ln in text.splitlines() if ln.startswith("| `")}
    assert rows == {c.id for c in corpus.cases}
    assert np.all([f"| `{c.id}` |" in text for c in corpus.cases])
