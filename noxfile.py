"""nox sessions for nanobrag-torch: the test suite, lint, and the Phase D parity-evidence steps.

`nox -l` lists them; a bare `nox` runs `tests` and `lint`. The evidence steps take the bundle directory
as their first positional argument or from $OUTDIR (`nox -s cli_c -- reports/.../phase_d/<STAMP>`), so
the same sessions serve any bundle; `invoke phase-d` chains them (see tasks.py and
docs/development/testing_strategy.md).

Environments: `tests` and `lint` have their own reused virtualenvs; the evidence sessions share one,
.nox/pipeline-env, so that every step of a bundle runs on the same interpreter and torch. torch is always
installed first and pinned (TORCH_PIN) so no install can pull another torch (e.g. a CUDA build); set
NB_TORCH_INDEX_URL to a CPU-only torch wheel index on a machine without a local
CPU wheel. Installs are skipped while pyproject.toml and the pins are unchanged, so a second run is fast.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_external_run = True

ROOT = Path(__file__).resolve().parent
TORCH_PIN = os.environ.get("NB_TORCH_SPEC", "torch==2.13.0")
PIPELINE_VENV = ROOT / ".nox" / "pipeline-env"
# Fail the install when the torch we got is not the pinned CPU build (unless NB_TORCH_SPEC overrides it).
CHECK_TORCH = (
    "import sys, torch; v = torch.__version__; cuda = torch.version.cuda; print('torch', v, 'cuda', cuda); "
    "sys.exit(0 if (v.split('+')[0] == '2.13.0' and cuda is None) else "
    "f'expected the CPU build of torch 2.13.0, got {v} (cuda {cuda}); set NB_TORCH_INDEX_URL or NB_TORCH_SPEC')"
)


def _golden_dir() -> str:
    return os.environ.get("NB_GOLDEN_DIR") or str((ROOT.parent / "shared" / "golden").resolve())


def _install(session: nox.Session, python: str, extras: str) -> None:
    """torch (pinned, first), then this package with ``extras``, into the venv of ``python``.

    Skipped when the stamp in the venv matches pyproject.toml, the pin and the index.
    """
    index = os.environ.get("NB_TORCH_INDEX_URL")
    index_args = ["--extra-index-url", index] if index else []
    key = hashlib.sha256(
        "\0".join([(ROOT / "pyproject.toml").read_text(), TORCH_PIN, extras, index or ""]).encode()
    ).hexdigest()
    stamp = Path(python).parent.parent / ".nb-install-stamp"
    if stamp.exists() and stamp.read_text() == key:
        session.log(f"dependencies up to date ({stamp})")
        return
    pip = [python, "-m", "pip", "install", "--quiet"]
    session.run(*pip, TORCH_PIN, *index_args, external=True)
    # The pin is repeated so that resolving the extras can never replace torch.
    session.run(*pip, TORCH_PIN, "-e", f".[{extras}]", *index_args, external=True)
    if "NB_TORCH_SPEC" not in os.environ:
        session.run(python, "-c", CHECK_TORCH, external=True)
    stamp.write_text(key)


def _venv_python(session: nox.Session) -> str:
    return str(Path(session.bin) / "python")


def _pipeline_python(session: nox.Session) -> str:
    """Python of the shared evidence venv (.nox/pipeline-env), created and filled on first use."""
    python = PIPELINE_VENV / "bin" / "python"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(PIPELINE_VENV), external=True)
    _install(session, str(python), "test,pipeline")
    return str(python)


def _bundle_args(session: nox.Session) -> list[str]:
    """``--outdir DIR`` from the first positional argument or $OUTDIR, plus any further arguments."""
    args = list(session.posargs)
    if args and not args[0].startswith("-"):
        return ["--outdir", args[0], *args[1:]]
    if os.environ.get("OUTDIR"):
        return ["--outdir", os.environ["OUTDIR"], *args]
    session.error("give the bundle directory: `nox -s <session> -- OUTDIR` or `OUTDIR=... nox -s <session>`")


def _step(session: nox.Session, step: str) -> None:
    python = _pipeline_python(session)
    session.run(python, "-m", "tools.phase_d", step, *_bundle_args(session), external=True)


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """Full test suite (what CI runs): pytest -q [ARGS]; NB_GOLDEN_DIR defaults to ../shared/golden."""
    python = _venv_python(session)
    # "pipeline" too: the tests of tools/ need matplotlib, invoke and nox (tasks.py and noxfile.py are tested).
    _install(session, python, "test,pipeline")
    golden = _golden_dir()
    if not Path(golden).is_dir():
        session.warn(f"golden corpus not found at {golden}: golden-corpus tests will skip (set NB_GOLDEN_DIR)")
    # With a selection in ARGS, "no tests collected" (exit 5) is an answer, not a failure.
    codes = [0, 5] if session.posargs else [0]
    session.run(python, "-m", "pytest", "-q", *session.posargs, env={"NB_GOLDEN_DIR": golden},
                success_codes=codes, external=True)


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """ruff check [PATHS] (default: the whole repository)."""
    session.install("ruff==0.17.6")  # pinned: a new ruff release must not change the verdict silently
    session.run("ruff", "check", *(session.posargs or ["."]))


@nox.session(venv_backend="none", default=False)
def collect(session: nox.Session) -> None:
    """Phase D: pytest --collect-only -q into OUTDIR/pytest_collect.log."""
    _step(session, "collect")


@nox.session(venv_backend="none", default=False)
def parity(session: nox.Session) -> None:
    """Phase D: the parity selector with NB_RUN_PARALLEL=1, NB_C_BIN, KMP_DUPLICATE_LIB_OK=TRUE; skipped = invalid."""
    _step(session, "parity")


@nox.session(venv_backend="none", default=False)
def cli_c(session: nox.Session) -> None:
    """Phase D: the C binary (NB_C_BIN) on the case in a fresh OUTDIR/cli/c_run; writes cli/c_weight.bin."""
    _step(session, "cli_c")


@nox.session(venv_backend="none", default=False)
def cli_py(session: nox.Session) -> None:
    """Phase D: our CLI on the case in a fresh OUTDIR/cli/py_run; writes cli/py_weight.bin."""
    _step(session, "cli_py")


@nox.session(venv_backend="none", default=False)
def env(session: nox.Session) -> None:
    """Phase D: OUTDIR/env.json (versions, git, C binary) and torch_env.txt (torch.utils.collect_env)."""
    _step(session, "env")


@nox.session(venv_backend="none", default=False)
def metrics(session: nox.Session) -> None:
    """Phase D: OUTDIR/metrics.json and compare.png from the two float images; blocks below the gate."""
    _step(session, "metrics")


@nox.session(venv_backend="none", default=False)
def report(session: nox.Session) -> None:
    """Phase D: OUTDIR/summary.md (+ blocking.md), the ledger Attempt and, on a clean PASS, the plan ticks."""
    _step(session, "report")


@nox.session(venv_backend="none", default=False)
def parity_matrix(session: nox.Session) -> None:
    """C-vs-PyTorch parity matrix: python -m tools.parity_matrix [ARGS] (--corpus --live --select ...)."""
    python = _pipeline_python(session)
    session.run(python, "-m", "tools.parity_matrix", *session.posargs, env={"NB_GOLDEN_DIR": _golden_dir()},
                external=True)


@nox.session(venv_backend="none", default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks vs the C program ($NB_C_BIN): python -m tools.bench [ARGS] -> reports/bench/<STAMP>/."""
    python = _pipeline_python(session)
    session.run(python, "-m", "tools.bench", *session.posargs, external=True)
