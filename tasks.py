"""invoke tasks: thin wrappers over the nox sessions and tools/ (docs/development/testing_strategy.md).

    invoke phase-d                  # one Phase D evidence bundle, ledger Attempt, plan ticks on PASS
    invoke phase-d --dry-run        # print every command it would run; creates nothing
    invoke tests / lint / metrics --outdir D / ledger / parity-matrix ...
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from invoke import Exit, task

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import phase_d as pd
from tools.case_config import ConfigError, load_case
from tools.cbin import resolve_c_binary


def _run(c, argv) -> tuple[int, str]:
    """Run one command at the repo root, output shown live; never raises on a non-zero exit."""
    with c.cd(str(ROOT)):
        r = c.run(shlex.join(str(a) for a in argv), warn=True, pty=False)
    return r.exited, (r.stdout or "") + (r.stderr or "")


def _step_argv(step: str, outdir, python=None) -> list[str]:
    return dict(pd.chain_commands(outdir, python))[step]


@task(help={
    "c_bin": "C nanoBragg binary (default: $NB_C_BIN, then nanoBragg on PATH); without one the run ends BLOCKED",
    "python": "run the steps with this interpreter instead of the nox sessions (it needs torch and this package)",
    "config": "case file (default: configs/phase_d_source_weights.toml)",
    "dry_run": "print the commands that would run; create nothing",
})
def phase_d(c, c_bin=None, python=None, config=None, dry_run=False):
    """Phase D evidence: fresh UTC-stamped bundle, collect → parity → C CLI → PyTorch CLI → env → metrics →
    summary → ledger. Exits 0 only for a PASS; otherwise the bundle holds blocking.md."""
    try:
        cfg = load_case(config)
    except ConfigError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    outdir = pd.new_outdir(cfg)
    if dry_run:
        print("\n".join(pd.describe(cfg, outdir, resolve_c_binary(c_bin), python)))
        return
    flags = [f"--c-bin {c_bin}" if c_bin else "", f"--python {python}" if python else "",
             f"--config {config}" if config else ""]
    invocation = " ".join(["invoke phase-d", *[f for f in flags if f]])
    try:
        pd.init_bundle(outdir, config, c_bin, invocation=invocation)
    except pd.BundleError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    code = pd.run_chain(outdir, pd.chain_commands(outdir, python), lambda argv: _run(c, argv))
    raise Exit(f"Phase D {'PASS' if code == 0 else 'BLOCKED'}: {outdir}", code=code)


@task(help={"outdir": "bundle directory", "python": "interpreter instead of nox"})
def metrics(c, outdir, python=None):
    """Metrics and gate for an existing bundle (metrics.json, compare.png)."""
    code, _ = _run(c, _step_argv("metrics", outdir, python))
    raise Exit(code=code)


@task(help={"outdir": "record this bundle: summary.md, ledger Attempt, plan ticks on a clean PASS",
            "item": "item to show when no --outdir is given", "python": "interpreter instead of nox"})
def ledger(c, outdir=None, item="SOURCE-WEIGHT-001", python=None):
    """Show an item's status and Attempts in docs/fix_plan.md, or record a bundle there (--outdir)."""
    if outdir:
        code, _ = _run(c, _step_argv("report", outdir, python))
    else:
        code, _ = _run(c, [sys.executable, "-m", "tools.ledger", "show", item])
    raise Exit(code=code)


@task(help={"config": "case file"})
def phase_d_check(c, config=None):
    """Exit 0 iff a PASS Phase D bundle exists for the current code (for downstream tasks, e.g. profiling)."""
    try:
        print(pd.passing_bundle_for_code(config))
    except (pd.BundleError, ConfigError) as exc:
        raise Exit(f"error: {exc}", code=1) from None


@task(help={"config": "Phase D case file (default: configs/phase_d_source_weights.toml)",
            "detpixels": "detector size (default 4096)", "dtype": "float32|float64 (default float32)",
            "device": "cpu|cuda (default cpu)", "threads": "torch intra-op threads (default: torch's)",
            "outdir": "bundle directory (default: reports/profile/<STAMP>)"})
def profile(c, config=None, detpixels=4096, dtype="float32", device="cpu", threads=None, outdir=None):
    """Profile a warm 4096² multi-source render (torch.profiler) -> reports/profile/<STAMP>/ (top operators,
    Chrome trace, peak memory); refuses unless `invoke phase-d-check` passes for the current code."""
    from tools import profile as prof

    argv = ["--detpixels", str(detpixels), "--dtype", dtype, "--device", device]
    for flag, value in (("--config", config), ("--threads", threads), ("--outdir", outdir)):
        if value:
            argv += [flag, str(value)]
    raise Exit(code=prof.main(argv))


@task(help={"args": "extra pytest arguments, e.g. \"-k ledger\""})
def tests(c, args=""):
    """The full test suite, as CI runs it (nox -s tests)."""
    code, _ = _run(c, ["nox", "-s", "tests", *(["--", *shlex.split(args)] if args else [])])
    raise Exit(code=code)


@task
def lint(c):
    """ruff check (nox -s lint)."""
    code, _ = _run(c, ["nox", "-s", "lint"])
    raise Exit(code=code)


@task(help={"corpus": "golden corpus directory", "live": "run the C binary live", "select": "case selection",
            "dtype": "float32|float64", "device": "cpu|cuda", "jobs": "parallel jobs", "outdir": "report directory"})
def parity_matrix(c, corpus=None, live=False, select=None, dtype=None, device=None, jobs=None, outdir=None):
    """C-vs-PyTorch parity matrix (nox -s parity_matrix -- ...; flags pass through to tools.parity_matrix)."""
    argv = ["nox", "-s", "parity_matrix", "--"]
    for flag, value in (("--corpus", corpus), ("--select", select), ("--dtype", dtype), ("--device", device),
                        ("-j", jobs), ("--outdir", outdir)):
        if value is not None:
            argv += [flag, str(value)]
    if live:
        argv.append("--live")
    code, _ = _run(c, argv)
    raise Exit(code=code)


@task(help={"select": "case ids (space-separated; default: every case of configs/bench.toml)",
            "repeats": "alternations of C and ours per case (default: the config's, 3)",
            "dtype": "our dtypes, space-separated (default: float32 float64)",
            "no_scaling": "skip the scaling scans (time vs pixels, vs sources x domains)",
            "sizes": "detpixels of the pixel scan, space-separated (default: 256 ... 4096)",
            "c_bin": "C nanoBragg binary (default: $NB_C_BIN)", "outdir": "report directory"})
def bench(c, select=None, repeats=None, dtype=None, no_scaling=False, sizes=None, c_bin=None, outdir=None):
    """Benchmarks of our CLI vs the C program on the same cores, outputs parity-checked -> reports/bench/<STAMP>/.

    A short run: invoke bench --select heavy-1024 --repeats 1 --dtype float32 --no-scaling"""
    argv = ["nox", "-s", "bench", "--"]
    for flag, value in (("--select", select), ("--dtype", dtype), ("--sizes", sizes)):
        if value:
            argv += [flag, *value.split()]
    for flag, value in (("--repeats", repeats), ("--c-bin", c_bin), ("--outdir", outdir)):
        if value:
            argv += [flag, str(value)]
    if no_scaling:
        argv.append("--no-scaling")
    code, _ = _run(c, argv)
    raise Exit(code=code)
