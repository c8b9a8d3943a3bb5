"""nox sessions: the test suite, lint and the evidence jobs. `nox -l` lists them; a bare `nox` runs tests and lint.

One environment for everything that needs torch: the `project` session creates `.nox/project` (nox creates
and reuses it) with torch==2.13.0 installed first, then this package with its `test` and `pipeline` extras
(pyproject.toml, the one place dependencies are declared). `tests`, `phase_d`, `parity_matrix` and `bench`
require `project` and run in that environment, so torch is installed once, not once per session; `lint` has
its own small environment (ruff only). torch goes in first and pinned, the pin is repeated when the package is
installed so no resolver can swap it for another build (e.g. CUDA), and the session fails unless the result
is the CPU build; where pip finds no local CPU wheel, set NB_TORCH_INDEX_URL to a CPU-only torch wheel index.
Arguments after `--` go to the job: `nox -s tests -- -k ledger`, `nox -s phase_d -- run --config FILE`.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_external_run = True
nox.options.default_venv_backend = "venv"
# nox checks for uv whenever it sets up a session and logs "uv binary not found." each time; we use venv.
logging.getLogger("nox").addFilter(lambda record: "uv binary not found" not in record.getMessage())

TORCH_PIN = os.environ.get("NB_TORCH_SPEC", "torch==2.13.0")
PROJECT_BIN = Path(".nox", "project", "bin")  # nox's location for the `project` session's environment
# Fail unless the torch we got is the pinned CPU build (unless NB_TORCH_SPEC overrides the pin).
CHECK_TORCH = (
    "import sys, torch; v = torch.__version__; cuda = torch.version.cuda; print('torch', v, 'cuda', cuda); "
    "sys.exit(0 if (v.split('+')[0] == '2.13.0' and cuda is None) else "
    "f'expected the CPU build of torch 2.13.0, got {v} (cuda {cuda}); set NB_TORCH_INDEX_URL or NB_TORCH_SPEC')"
)


def _golden_dir() -> str:
    return os.environ.get("NB_GOLDEN_DIR") or str(Path("..", "shared", "golden").resolve())


@contextlib.contextmanager
def _install_lock():
    """Two runs started together (two `invoke phase-d`) must not run pip in one environment at once."""
    Path(".nox").mkdir(exist_ok=True)
    with open(Path(".nox", "project.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _installed_torch(session: nox.Session) -> str | None:
    """The torch version in the environment, read from its metadata (no import), or None."""
    out = session.run("python", "-c", "import importlib.metadata as m; print(m.version('torch'))", silent=True,
                      success_codes=[0, 1], log=False)
    last = out.strip().splitlines()[-1] if isinstance(out, str) and out.strip() else ""
    return last if last[:1].isdigit() else None


@nox.session(reuse_venv=True, default=False)
def project(session: nox.Session) -> None:
    """The shared environment (.nox/project): torch==2.13.0 CPU first, then this package with [test,pipeline]."""
    index = os.environ.get("NB_TORCH_INDEX_URL")
    index_args = ["--extra-index-url", index] if index else []
    build_requires = tomllib.loads(Path("pyproject.toml").read_text())["build-system"]["requires"]
    with _install_lock():
        have = _installed_torch(session)
        fresh = have is None or have.split("+")[0] != TORCH_PIN.split("==")[-1] or "NB_TORCH_SPEC" in os.environ
        if fresh:
            session.log(f"installing {TORCH_PIN} first (CPU build, ~200 MB once), so no later resolve can pull "
                        "a CUDA build; with it the build backend, so later refreshes need no build environment")
            session.install(TORCH_PIN, *build_requires, *index_args, silent=False)
            session.log("installing this package (editable) with its test and pipeline extras; torch stays pinned")
            session.install(TORCH_PIN, "-e", ".[test,pipeline]", *index_args, silent=False)
        else:  # a reused environment: refresh the editable install (picks up pyproject.toml changes), quietly
            session.log(f"torch {have} is installed; refreshing this package's editable install (pip -q)")
            session.install("-q", "--no-build-isolation", TORCH_PIN, "-e", ".[test,pipeline]", *index_args,
                            silent=False)
        if "NB_TORCH_SPEC" not in os.environ:
            session.run("python", "-c", CHECK_TORCH)


def _in_project(session: nox.Session, *args, env: dict | None = None, **kwargs) -> None:
    """Run ``python ARGS`` in the `project` environment. Hypothesis keeps its example database and caches
    under `.nox/hypothesis` (not `.hypothesis/` at the repository root): a run leaves nothing outside
    `.nox/` and `reports/`."""
    env = {"HYPOTHESIS_STORAGE_DIRECTORY": str(Path(".nox", "hypothesis").resolve()), **(env or {})}
    session.run(str(PROJECT_BIN / "python"), *args, external=True, env=env, **kwargs)


@nox.session(venv_backend="none", requires=["project"])
def tests(session: nox.Session) -> None:
    """Full test suite (what CI runs): pytest -q [ARGS]; NB_GOLDEN_DIR defaults to ../shared/golden."""
    golden = _golden_dir()
    if not Path(golden).is_dir():
        session.warn(f"golden corpus not found at {golden}: golden-corpus tests will skip (set NB_GOLDEN_DIR)")
    # With a selection in ARGS, "no tests collected" (exit 5) is an answer, not a failure.
    _in_project(session, "-m", "pytest", "-q", *session.posargs, env={"NB_GOLDEN_DIR": golden},
                success_codes=[0, 5] if session.posargs else [0])


@nox.session(venv_backend="none", requires=["project"], default=False)
def interop(session: nox.Session) -> None:
    """DIALS on our files (issue 22): dxtbx read-back tests, then import/find_spots/index/refine/integrate on
    small simulated datasets (python -m tools.interop.run [ARGS]); fails, in one line, without DIALS."""
    out = session.run(str(PROJECT_BIN / "python"), "-m", "tools.interop.run", "--check", external=True, silent=True,
                      success_codes=[0, 2], log=False)
    if "DIALS found" not in (out or ""):
        session.error((out or "interop: DIALS check failed").strip().splitlines()[-1])
    _in_project(session, "-m", "pytest", "-q", "-m", "dials", "tests/test_dxtbx_readback.py",
                env={"NB_REQUIRE_DIALS": "1"})
    _in_project(session, "-m", "tools.interop.run", *session.posargs)


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """ruff check [PATHS] (default: the whole repository)."""
    session.install("ruff==0.17.6")  # pinned: a new ruff release must not change the verdict silently
    session.run("ruff", "check", *(session.posargs or ["."]))


@nox.session(venv_backend="none", requires=["project"], default=False)
def phase_d(session: nox.Session) -> None:
    """Phase D evidence bundle: python -m tools.evidence.phase_d [run|STEP --outdir DIR|check] (default: run)."""
    _in_project(session, "-m", "tools.evidence.phase_d", *(session.posargs or ["run"]))


@nox.session(venv_backend="none", requires=["project"], default=False)
def parity_matrix(session: nox.Session) -> None:
    """C-vs-PyTorch parity matrix: python -m tools.matrix.parity_matrix [ARGS] (--corpus --live --select ...)."""
    _in_project(session, "-m", "tools.matrix.parity_matrix", *session.posargs, env={"NB_GOLDEN_DIR": _golden_dir()})


@nox.session(venv_backend="none", requires=["project"], default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks vs the C program ($NB_C_BIN): python -m tools.perf.bench [ARGS] -> reports/bench/<STAMP>/."""
    _in_project(session, "-m", "tools.perf.bench", *session.posargs)
