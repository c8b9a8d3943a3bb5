"""invoke tasks: each calls Python functions of tools/ or runs nox sessions (docs/development/testing_strategy.md).

    invoke phase-d                  # one Phase D evidence bundle, ledger Attempt, plan ticks on a clean PASS:
                                    # the sessions collect, parity, cli_c, cli_py, env, metrics, ledger in turn
    invoke phase-d --dry-run        # print every command it would run; creates nothing
    invoke tests / lint / metrics --outdir D / ledger / parity-matrix / bench ...

nox owns the environments (noxfile.py); the functions called here use only the standard library.
"""
from __future__ import annotations

import os
import shlex
import sys

from invoke import Exit, task

from tools import REPO
from tools.cbin import resolve_c_binary
from tools.evidence import ledger as led
from tools.evidence import phase_d as pd
from tools.evidence import report
from tools.evidence.bundle import Bundle, BundleError
from tools.evidence.case import ConfigError, load_case
from tools.files import rel


def _run(c, argv) -> int:
    """Run one command at the repository root, its output shown live; return its exit code."""
    with c.cd(str(REPO)):
        return c.run(shlex.join(str(a) for a in argv), warn=True, pty=False).exited


def _step_argv(python, step, outdir) -> list[str]:
    """``nox -s <session> -- --outdir DIR`` for one Phase D step, or ``PYTHON -m tools.evidence.phase_d STEP``."""
    if python:
        return [python, "-m", pd.STEP_MODULE, step, "--outdir", outdir]
    return ["nox", "-s", pd.SESSIONS[step], "--", "--outdir", outdir]


@task(help={
    "c_bin": "C nanoBragg binary (default: $NB_C_BIN, then nanoBragg on PATH); without one the run ends BLOCKED",
    "python": "run the chain with this interpreter instead of nox (it needs torch and this package installed)",
    "config": "case file (default: configs/phase_d_source_weights.toml)",
    "dry_run": "print the commands that would run; create nothing",
})
def phase_d(c, c_bin=None, python=None, config=None, dry_run=False):
    """Phase D parity evidence: a new UTC-stamped bundle, its seven steps, a ledger Attempt; exit 0 only for PASS."""
    try:
        if dry_run:
            cfg = load_case(config)
            outdir = cfg.resolve(cfg.bundle_root) / "<UTC STAMP>"
            print("\n".join(pd.describe(cfg, outdir, resolve_c_binary(c_bin), python)))
            return
        flags = [f"--c-bin {c_bin}" if c_bin else "", f"--python {python}" if python else "",
                 f"--config {config}" if config else ""]
        b = pd.create_bundle(config, c_bin, invocation=" ".join(["invoke phase-d", *[f for f in flags if f]]))
    except (BundleError, ConfigError) as exc:
        raise Exit(f"error: {exc}", code=2) from None
    if python:
        code = _run(c, [python, "-m", pd.STEP_MODULE, "run", "--outdir", rel(b.outdir)])
    else:
        with c.cd(str(REPO)):
            code = pd.run_with_nox(b.outdir)
    done = Bundle(b.outdir)
    code = 0 if code == 0 and done.verdict() == "PASS" else (code or 1)
    # The ledger step's outcome line is the last line on the terminal: it says what happened and, for a block,
    # what is missing and how to provide it. Only if that step could not run is the outcome said here.
    raise Exit(None if done.step("report") else report.outcome_line(done), code=code)


@task(help={"outdir": "bundle directory", "python": "interpreter instead of nox"})
def metrics(c, outdir, python=None):
    """Re-run the metrics step of an existing bundle (metrics.json, compare.png, the gate)."""
    raise Exit(code=_run(c, _step_argv(python, "metrics", outdir)))


@task(help={"outdir": "record this bundle: summary.md, ledger Attempt, plan ticks on a clean PASS",
            "item": "item to show when no --outdir is given", "python": "interpreter instead of nox"})
def ledger(c, outdir=None, item="SOURCE-WEIGHT-001", python=None):
    """Show an item's status and Attempts in docs/fix_plan.md, or record a bundle there with --outdir."""
    if outdir:
        raise Exit(code=_run(c, _step_argv(python, "report", outdir)))
    text = (REPO / "docs" / "fix_plan.md").read_text(encoding="utf-8")
    try:
        print(f"[{item}] status: {led.item_status(text, item)}; attempts: {led.attempt_numbers(text, item) or 'none'}")
    except led.LedgerError as exc:
        raise Exit(f"error: {exc}", code=1) from None


@task(help={"config": "case file"})
def phase_d_check(c, config=None):
    """Exit 0 iff a PASS Phase D bundle exists for the committed code (for downstream tasks, e.g. profiling)."""
    try:
        print(pd.passing_bundle_for_code(config))
    except (BundleError, ConfigError) as exc:
        raise Exit(f"error: {exc}", code=1) from None


@task(help={"config": "Phase D case file (default: configs/phase_d_source_weights.toml)",
            "detpixels": "detector size (default 4096)", "dtype": "float32|float64 (default float32)",
            "device": "cpu|cuda (default cpu)", "threads": "torch intra-op threads (default: torch's)",
            "outdir": "bundle directory (default: reports/profile/<STAMP>)"})
def profile(c, config=None, detpixels=4096, dtype="float32", device="cpu", threads=None, outdir=None):
    """Profile a warm 4096² render -> reports/profile/<STAMP>/; refuses without a PASS `phase-d-check`.

    Writes the top operators (torch.profiler), a Chrome trace and the peak
    memory of a warm multi-source render; refuses unless `invoke phase-d-check` passes for the current code."""
    from tools.perf import profile as prof

    argv = ["--detpixels", str(detpixels), "--dtype", dtype, "--device", device]
    for flag, value in (("--config", config), ("--threads", threads), ("--outdir", outdir)):
        if value:
            argv += [flag, str(value)]
    raise Exit(code=prof.main(argv))


@task(help={"args": "extra pytest arguments, e.g. \"-k ledger\""})
def tests(c, args=""):
    """The full test suite (nox -s tests; CI runs it and `invoke interop`)."""
    raise Exit(code=_run(c, ["nox", "-s", "tests", *(["--", *shlex.split(args)] if args else [])]))


@task(help={"select": "case names of configs/interop.toml (default: all)"})
def interop(c, select=None):
    """DIALS on our simulated datasets, checked against the truth (nox -s interop; needs python3-dials)."""
    raise Exit(code=_run(c, ["nox", "-s", "interop", *(["--", "--select", *select.split()] if select else [])]))


@task
def lint(c):
    """ruff check over the repository (nox -s lint)."""
    raise Exit(code=_run(c, ["nox", "-s", "lint"]))


@task(help={"corpus": "golden corpus directory", "live": "run the C binary live", "select": "case selection",
            "dtype": "float32|float64", "device": "cpu|cuda", "jobs": "parallel jobs", "outdir": "report directory"})
def parity_matrix(c, corpus=None, live=False, select=None, dtype=None, device=None, jobs=None, outdir=None):
    """C-vs-PyTorch parity matrix over a corpus, worst case first (nox -s parity_matrix)."""
    argv = ["nox", "-s", "parity_matrix", "--"]
    for flag, value in (("--corpus", corpus), ("--select", select), ("--dtype", dtype), ("--device", device),
                        ("-j", jobs), ("--outdir", outdir)):
        if value is not None:
            argv += [flag, str(value)]
    if live:
        argv.append("--live")
    raise Exit(code=_run(c, argv))


@task(help={"select": "case ids, or 'panels' for the panels section (space-separated; default: all of "
                      "configs/bench.toml)",
            "repeats": "alternations of C and ours per case (default: the config's, 3)",
            "dtype": "our dtypes, space-separated (default: float32 float64)",
            "no_scaling": "skip the scaling scans (time vs pixels, vs sources x domains)",
            "sizes": "detpixels of the pixel scan, space-separated (default: 256 ... 4096)",
            "c_bin": "C nanoBragg binary (default: $NB_C_BIN)", "outdir": "report directory",
            "device": "cpu (default: every program vs C on the same cores) or cuda (the GPU section)",
            "python": "--device cuda: an interpreter with a CUDA build of torch (default: this one)"})
def bench(c, select=None, repeats=None, dtype=None, no_scaling=False, sizes=None, c_bin=None, outdir=None,
          device="cpu", python=None):
    """Benchmarks of our CLIs vs the C programs (nanoBragg, nonBragg, noisify), outputs parity-checked.

    CPU: every program against its C binary on the same cores -> reports/bench/<STAMP>/;
    --device cuda: the GPU section -> reports/bench/gpu-<STAMP>/.

    A short run: invoke bench --select heavy-1024 --repeats 1 --dtype float32 --no-scaling
    On a CUDA machine: invoke bench --device cuda --python /path/to/python-with-cuda-torch"""
    if device == "cuda":  # the nox environment holds the CPU build of torch: run the GPU section directly
        argv = [python or sys.executable, "-m", "tools.perf.bench_gpu"]
        for flag, value in (("--repeats", repeats), ("--c-bin", c_bin), ("--outdir", outdir), ("--dtype", dtype)):
            if value:
                argv += [flag, *str(value).split()]
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
        raise Exit(code=_run(c, argv))
    if device != "cpu":
        raise Exit(f"error: --device: expected cpu or cuda, got {device!r}", code=2)
    argv = ["nox", "-s", "bench", "--"]
    for flag, value in (("--select", select), ("--dtype", dtype), ("--sizes", sizes)):
        if value:
            argv += [flag, *value.split()]
    for flag, value in (("--repeats", repeats), ("--c-bin", c_bin), ("--outdir", outdir)):
        if value:
            argv += [flag, str(value)]
    if no_scaling:
        argv.append("--no-scaling")
    raise Exit(code=_run(c, argv))


@task(help={"sizes": "detpixels to measure, space-separated (default: 256 1024)", "repeats": "runs per mode",
            "outdir": "report directory (default: reports/bench/grad-<STAMP>)"})
def bench_grad(c, sizes="256 1024", repeats=3, outdir=None):
    """Gradient cost of the render, eager and fused kernels: forward vs forward+backward time and peak memory ->
    reports/bench/ (nox -s bench_grad: in the project's environment, which holds torch)."""
    argv = ["nox", "-s", "bench_grad", "--", "--sizes", *sizes.split(), "--repeats", str(repeats)]
    raise Exit(code=_run(c, argv + (["--outdir", str(outdir)] if outdir else [])))
