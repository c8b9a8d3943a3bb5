"""Golden-corpus parity: our CLI against the recorded C outputs, case by case (issue 2, Acceptance).

Every case of ``cases`` in $NB_GOLDEN_DIR (default ../shared/golden) is run hermetically with its exact argv
and every output file it lists is compared (tools.matrix.corpus; thresholds in tools.thresholds). Cases are data:
nothing here names a case id, so any directory in the same format works. Skips when the corpus is absent.

Every test runs on both render kernels (``-kernel numba``: the fused CPU path, ``-kernel torch``: the eager
reference kernel):

* ``test_golden_case``: cases without RNG-dependent features, float64 — must pass.
* ``test_golden_case_rng_dependent``: cases tagged mosaic_domains / misset_random / noise, float64. They
  depend on C's random-number streams (nanobrag_torch.crandom.streams) and are kept apart so their status is visible.
* ``test_golden_case_float32``: every image case in float32 on the fused kernel (it is fast), the three
  smallest deterministic ones on the eager kernel.
"""
from __future__ import annotations

import os

import pytest

from tools.matrix.corpus import IN_PROCESS, RNG_TAGS, default_corpus_dir, default_py_cmd, evaluate_case, load_corpus

CORPUS_DIR = default_corpus_dir()
CORPUS = load_corpus(CORPUS_DIR) if (CORPUS_DIR / "cases.json").is_file() else None
TIMEOUT_S = float(os.environ.get("NB_GOLDEN_TIMEOUT", "900"))
LARGE_PIXELS = 512 * 512  # a render this big takes tens of seconds on 2 cores: marked slow
FLOAT32_CASES = 3  # on the eager kernel; the fused one runs every image case in float32
KERNELS = ("numba", "torch")
# Our CLI's entry point is called in this process (tools.matrix.corpus.run_in_process: the same argv in a fresh
# directory, without ~2 s of interpreter and torch start-up per case); NB_GOLDEN_SUBPROCESS=1 starts
# `python -m nanobrag_torch` (or $NB_PY_CMD) for every case instead. tests/programs/test_cli.py covers the
# process itself.
PY_CMD = default_py_cmd() if os.environ.get("NB_GOLDEN_SUBPROCESS") == "1" else [IN_PROCESS]

pytestmark = pytest.mark.golden

ABSENT = pytest.param(None, id="corpus-absent",
                      marks=pytest.mark.skip(reason=f"golden corpus not found at {CORPUS_DIR} (set NB_GOLDEN_DIR)"))


def _params(cases):
    if CORPUS is None:
        return [ABSENT]
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.pixels >= LARGE_PIXELS else []) for c in cases]


def _deterministic():
    return [c for c in CORPUS.cases if not c.rng_dependent] if CORPUS else []


def _rng():
    return [c for c in CORPUS.cases if c.rng_dependent] if CORPUS else []


def _float32_cases():
    images = [c for c in CORPUS.cases if not c.is_error and "floatfile" in c.outputs] if CORPUS else []
    small = sorted((c for c in images if not c.rng_dependent), key=lambda c: (c.pixels, c.id))[:FLOAT32_CASES]
    return [(c, "numba") for c in images] + [(c, "torch") for c in small]


def _check(case, dtype, kernel):
    r = evaluate_case(CORPUS, case, dtype=dtype, timeout=TIMEOUT_S, py_cmd=PY_CMD + ["-kernel", kernel])
    if not r.passed:
        tail = (r.py_run.stderr.strip().splitlines()[-5:] if r.py_run else [])
        pytest.fail(f"{case.id} ({dtype}, -kernel {kernel}): " + "; ".join(r.reasons)
                    + (f"\ncommand: {' '.join(r.py_run.cmd)}" if r.py_run else "")
                    + ("\nstderr tail:\n  " + "\n  ".join(tail) if tail else ""), pytrace=False)
    # Passing means: the refusal was right for an error case, and every listed output was compared.
    assert len(r.checks) == (0 if r.expect_error else len(case.outputs))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", _params(_deterministic()))
def test_golden_case(case, kernel):
    _check(case, "float64", kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", _params(_rng()))
def test_golden_case_rng_dependent(case, kernel):
    _check(case, "float64", kernel)


def _float32_params():
    if CORPUS is None:
        return [pytest.param(None, None, id="corpus-absent", marks=ABSENT.marks)]
    return [pytest.param(c, k, id=f"{c.id}-{k}", marks=[pytest.mark.slow] if c.pixels >= LARGE_PIXELS else [])
            for c, k in _float32_cases()]


@pytest.mark.parametrize("case, kernel", _float32_params())
def test_golden_case_float32(case, kernel):
    _check(case, "float32", kernel)


def test_parametrization_covers_every_case_once():
    # The two float64 tests together run each entry of `cases` exactly once (no id special-cased or lost),
    # and none of c_behaviour_records, which C itself cannot be compared on.
    if CORPUS is None:
        pytest.skip(f"golden corpus not found at {CORPUS_DIR}")
    ids = [c.id for c in _deterministic()] + [c.id for c in _rng()]
    assert sorted(ids) == sorted(c.id for c in CORPUS.cases)
    assert not set(ids) & {r.id for r in CORPUS.records}
    assert all(any(t in c.features for t in RNG_TAGS) for c in _rng())
