"""nox sessions: the test suite, lint and the evidence jobs. `nox -l` lists them; a bare `nox` runs tests and lint.

One environment for everything that needs torch: the `project` session creates `.nox/project` (nox creates
and reuses it) with torch==2.13.0 installed first, then this package with its `test` and `pipeline` extras
(pyproject.toml, the one place dependencies are declared). Every session that needs torch requires `project` and
runs in that environment, so torch is installed once, not once per session; `project` writes a stamp when it
is complete and does nothing while pyproject.toml and the pin are unchanged (tools/nox_env.py); `lint` has
its own small environment (ruff only). torch goes in first and pinned, the pin is repeated when the package is
installed so no resolver can swap it for another build (e.g. CUDA), and the session fails unless the result
is the CPU build; where pip finds no local CPU wheel, set NB_TORCH_INDEX_URL to a CPU-only torch wheel index.
Arguments after `--` go to the job: `nox -s tests -- -k ledger`, `nox -s parity`, `nox -s metrics -- --outdir DIR`.
`invoke phase-d` chains the evidence sessions collect, parity, cli_c, cli_py, env, metrics and ledger.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ (standard library only) for the shared helpers
from tools import nox_env  # noqa: E402

nox.options.sessions = ["tests", "lint"]
nox.options.error_on_external_run = True
nox.options.default_venv_backend = "venv"
# nox checks for uv whenever it sets up a session and logs "uv binary not found." each time; we use venv.
logging.getLogger("nox").addFilter(lambda record: "uv binary not found" not in record.getMessage())

TORCH_PIN = nox_env.TORCH_SPEC
PROJECT_BIN = nox_env.ENV_DIR / "bin"  # nox's location for the `project` session's environment
# Fail unless the torch we got is the pinned CPU build (unless NB_TORCH_SPEC overrides the pin).
CHECK_TORCH = (
    "import sys, torch; v = torch.__version__; cuda = torch.version.cuda; print('torch', v, 'cuda', cuda); "
    "sys.exit(0 if (v.split('+')[0] == '2.13.0' and cuda is None) else "
    "f'expected the CPU build of torch 2.13.0, got {v} (cuda {cuda}); set NB_TORCH_INDEX_URL or NB_TORCH_SPEC')"
)


def _golden_dir() -> str:
    return os.environ.get("NB_GOLDEN_DIR") or str(Path("..", "shared", "golden").resolve())


def _installed_torch(session: nox.Session) -> str | None:
    """The torch version in the environment, read from its metadata (no import), or None."""
    out = session.run("python", "-c", "import importlib.metadata as m; print(m.version('torch'))", silent=True,
                      success_codes=[0, 1], log=False)
    last = out.strip().splitlines()[-1] if isinstance(out, str) and out.strip() else ""
    return last if last[:1].isdigit() else None


def _stand_in(session: nox.Session, site: str) -> None:
    """For the pipeline's own tests only ($NB_NOX_STANDIN_SITE): instead of installing torch and this package,
    make an existing environment's site-packages visible in the new one (a .pth file), in seconds."""
    purelib = session.run("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                          silent=True, log=False).strip().splitlines()[-1]
    Path(purelib, "nb_stand_in.pth").write_text(site + "\n")
    session.log(f"stand-in environment: {site} on its path, nothing installed")


@nox.session(reuse_venv=True, default=False)
def project(session: nox.Session) -> None:
    """The shared environment (.nox/project): torch==2.13.0 CPU first, then this package with [test,pipeline]."""
    index = os.environ.get("NB_TORCH_INDEX_URL")
    index_args = ["--extra-index-url", index] if index else []
    build_requires = tomllib.loads(Path("pyproject.toml").read_text())["build-system"]["requires"]
    with nox_env.lock("project.lock"):
        if nox_env.is_ready(TORCH_PIN):
            session.log(f"environment ready ({TORCH_PIN}, pyproject.toml unchanged since it was built)")
            return
        nox_env.stamp_path().unlink(missing_ok=True)
        if os.environ.get("NB_NOX_STANDIN_SITE"):
            _stand_in(session, os.environ["NB_NOX_STANDIN_SITE"])
            nox_env.mark_ready(TORCH_PIN)
            return
        have = _installed_torch(session)
        fresh = have is None or have.split("+")[0] != TORCH_PIN.split("==")[-1] or "NB_TORCH_SPEC" in os.environ
        if fresh:
            session.log(f"installing {TORCH_PIN} first (CPU build, ~200 MB once), so no later resolve can pull "
                        "a CUDA build; with it the build backend, so later refreshes need no build environment")
            session.install(TORCH_PIN, *build_requires, *index_args, silent=False)
            session.log("installing this package (editable) with its test and pipeline extras; torch stays pinned")
            session.install(TORCH_PIN, "-e", ".[test,pipeline]", *index_args, silent=False)
        else:  # pyproject.toml changed since the environment was built: refresh the editable install, quietly
            session.log(f"torch {have} is installed; refreshing this package's editable install (pip -q)")
            session.install("-q", "--no-build-isolation", TORCH_PIN, "-e", ".[test,pipeline]", *index_args,
                            silent=False)
        if "NB_TORCH_SPEC" not in os.environ:
            session.run("python", "-c", CHECK_TORCH)
        # run_install: skipped when nox reuses the environment without installing (-R), so the stamp only ever
        # follows installs that really ran.
        session.run_install("python", "-m", "tools.nox_env", "mark-ready", TORCH_PIN)


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
    _in_project(session, "-m", "pytest", "-q", "-m", "dials", "tests/datasets/test_dxtbx_readback.py",
                "tests/datasets/test_dxtbx_panels.py", env={"NB_REQUIRE_DIALS": "1"})
    _in_project(session, "-m", "tools.interop.run", *session.posargs)


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """ruff check [PATHS] (default: the whole repository), then the layer contract (import-linter, pyproject.toml)."""
    session.install("ruff==0.17.6", "import-linter==2.17")  # pinned: a new release must not change the verdict
    session.run("ruff", "check", *(session.posargs or ["."]))
    session.run("lint-imports", env={"PYTHONPATH": "src"})


# --- the Phase D evidence steps, one session each (`invoke phase-d` chains them; tools/evidence/phase_d.py) ----
# With `-- --outdir DIR` a session runs its step on the bundle in DIR (starting one there if DIR has none);
# `collect` and `parity` also run on their own. Sessions that need torch run in the project environment; the
# C run and the ledger use only the standard library and run on nox's own interpreter.

def _step(session: nox.Session, step: str, needs_torch: bool = True) -> None:
    args = ("-m", "tools.evidence.phase_d", step, *session.posargs)
    if needs_torch:
        _in_project(session, *args)
    else:
        session.run(sys.executable, *args, external=True)


@nox.session(venv_backend="none", requires=["project"], default=False)
def collect(session: nox.Session) -> None:
    """pytest --collect-only -q of the case's tests [-- --outdir DIR: into DIR/pytest_collect.log]."""
    _step(session, "collect")


@nox.session(venv_backend="none", requires=["project"], default=False)
def parity(session: nox.Session) -> None:
    """The parity selector against C ($NB_C_BIN), NB_RUN_PARALLEL=1; prints the verdict [-- --outdir DIR]."""
    _step(session, "parity")


@nox.session(venv_backend="none", default=False)
def cli_c(session: nox.Session) -> None:
    """The case's run of the C program in a fresh directory -> DIR/cli/c_* (-- --outdir DIR)."""
    _step(session, "cli_c", needs_torch=False)


@nox.session(venv_backend="none", requires=["project"], default=False)
def cli_py(session: nox.Session) -> None:
    """The case's run of our CLI in a fresh directory -> DIR/cli/py_* (-- --outdir DIR)."""
    _step(session, "cli_py")


@nox.session(venv_backend="none", requires=["project"], default=False)
def env(session: nox.Session) -> None:
    """The environment record: python, torch, numpy, git, the C binary -> DIR/env.json (-- --outdir DIR)."""
    _step(session, "env")


@nox.session(venv_backend="none", requires=["project"], default=False)
def metrics(session: nox.Session) -> None:
    """C vs ours: correlation, sum ratio, max error and the gate -> DIR/metrics.json + compare.png (-- --outdir DIR)."""
    _step(session, "metrics")


@nox.session(venv_backend="none", default=False)
def ledger(session: nox.Session) -> None:
    """DIR/summary.md, the ledger Attempt in docs/fix_plan.md, plan ticks on a clean PASS (-- --outdir DIR)."""
    _step(session, "report", needs_torch=False)


@nox.session(venv_backend="none", requires=["project"], default=False)
def parity_matrix(session: nox.Session) -> None:
    """C-vs-PyTorch parity matrix: python -m tools.matrix.parity_matrix [ARGS] (--corpus --live --select ...)."""
    _in_project(session, "-m", "tools.matrix.parity_matrix", *session.posargs, env={"NB_GOLDEN_DIR": _golden_dir()})


@nox.session(venv_backend="none", requires=["project"], default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks vs the C program ($NB_C_BIN): python -m tools.perf.bench [ARGS] -> reports/bench/<STAMP>/."""
    _in_project(session, "-m", "tools.perf.bench", *session.posargs)


@nox.session(venv_backend="none", requires=["project"], default=False)
def bench_grad(session: nox.Session) -> None:
    """Gradient cost, eager and fused kernels: python -m tools.perf.bench_grad [ARGS] -> reports/bench/grad-<STAMP>/."""
    _in_project(session, "-m", "tools.perf.bench_grad", *session.posargs)
