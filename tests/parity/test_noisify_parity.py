"""noisify against the C program, case by case over tests/data/live_corpus_noisify (issue 14).

The C side runs live (``NB_NOISIFY_BIN``, or ``noisify`` on PATH; the tests skip without it); our side runs in
this process (``python -m nanobrag_torch noisify`` without the start-up cost). Every output file is judged
with the parity matrix's comparisons and thresholds (tools.matrix.corpus, tools.thresholds) and must moreover be
byte-identical to C's: every noisify image comes from C's generators or from integer conversions. Cases that
C refuses must be refused by us with one line, a non-zero exit and no file. Without the C binary, the corpus
itself is still checked (every flag is exercised).
"""
from __future__ import annotations

import os
import subprocess

import pytest

from nanobrag_torch.programs.nanobragg import main
from nanobrag_torch.programs.noisify import FLAGS
from tools import REPO
from tools.cbin import resolve_c_binary
from tools.matrix.corpus import PROGRAMS, compare_outputs, load_corpus, stage_inputs

CORPUS = load_corpus(REPO / "tests" / "data" / "live_corpus_noisify")
_PROG = PROGRAMS["noisify"]
C_BIN = resolve_c_binary(env_var=_PROG.c_bin_env, program=_PROG.c_name)


def test_corpus_covers_every_flag():
    # >= 20 runs that C accepts, a few it refuses, and every noisify flag of C (one spelling each) in some case.
    assert all(c.program == "noisify" for c in CORPUS.cases)
    assert sum(not c.is_error for c in CORPUS.cases) >= 20 and any(c.is_error for c in CORPUS.cases)
    used = {a for c in CORPUS.cases for a in c.argv}
    missing = [f.names[0] for f in FLAGS if f.group != "Ours" and not used & set(f.names)]
    assert not missing, f"flags without a corpus case: {missing}"


@pytest.mark.skipif(not C_BIN.ok, reason=f"C noisify parity: {C_BIN.problem}")
@pytest.mark.parametrize("case", CORPUS.cases, ids=[c.id for c in CORPUS.cases])
def test_noisify_matches_c(case, tmp_path, monkeypatch, capsys):
    c_dir, py_dir = tmp_path / "c", tmp_path / "py"
    stage_inputs(CORPUS, case, c_dir)
    stage_inputs(CORPUS, case, py_dir)
    staged = {p.name for p in py_dir.iterdir()}
    c_run = subprocess.run([str(C_BIN.path), *case.argv], cwd=c_dir, capture_output=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    monkeypatch.chdir(py_dir)
    code = main(["noisify", *case.argv])
    err = capsys.readouterr().err
    written = {p.name for p in py_dir.iterdir()} - staged
    if case.is_error:
        assert c_run.returncode != 0, "C accepted a case the corpus records as refused"
        assert code != 0 and len(err.strip().splitlines()) == 1 and not written, (code, err, written)
        return
    assert c_run.returncode == 0, c_run.stdout.decode(errors="replace")[-500:]
    assert code == 0, err
    assert written == set(case.outputs.values())
    checks, _ = compare_outputs(case, c_dir, py_dir, "float64")
    assert all(chk.passed for chk in checks), [r for chk in checks for r in chk.reasons]
    for name in case.outputs.values():
        assert (py_dir / name).read_bytes() == (c_dir / name).read_bytes(), f"{name} is not byte-identical to C's"
