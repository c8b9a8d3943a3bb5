"""Phase D parity evidence: ``python -m tools.evidence.phase_d run|<step>|check`` (what ``invoke phase-d`` runs).

``run`` creates a bundle ``<bundle_root>/<STAMP>/`` (a stamp no other run has; an existing directory is never
reused) or continues one that ``invoke phase-d`` just created, then runs the steps in order, each as its own
command ``python -m tools.evidence.phase_d <step> --outdir DIR`` logged to ``commands.txt``. After a hard
block only ``report`` runs; a missing C binary is a block by the environment: every PyTorch step still runs,
the C steps are recorded as ``missing_c``. ``report`` writes the summary, appends the ledger Attempt and
prints the one-line outcome; the exit code is 0 only for a PASS. ``check`` exits 0 iff a PASS bundle vouches
for the committed code (for downstream tasks such as profiling).

Only the standard library is imported here, so invoke can call it from any interpreter.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from tools import REPO, cmdlog, hermetic, nox_env
from tools.cbin import ENV_VAR as C_BIN_ENV
from tools.cbin import CBinary, resolve_c_binary
from tools.evidence import ledger, report, steps
from tools.evidence.bundle import HARD, PASS, SKIPPED, STEPS, Bundle, BundleError
from tools.evidence.case import DEFAULT_CONFIG, CaseConfig, ConfigError, load_case
from tools.files import atomic_write, fresh_dir, read_json, rel, write_json

STEP_MODULE = "tools.evidence.phase_d"


# --- creating a bundle ---------------------------------------------------------------------------------------

def check_case(cfg: CaseConfig, root=REPO) -> None:
    """Refuse a case whose ledger item or plan items do not exist, before anything runs."""
    led = cfg.resolve(cfg.ledger, root)
    if not led.is_file():
        raise BundleError(f"ledger {led} does not exist")
    if cfg.item not in ledger.item_ids(led.read_text(encoding="utf-8")):
        raise BundleError(f"unknown ledger item [{cfg.item}] in {rel(led, root)}")
    plan = cfg.resolve(cfg.plan, root)
    if not plan.is_file():
        raise BundleError(f"plan {plan} does not exist")
    try:
        ledger.check_plan_items(plan.read_text(encoding="utf-8"), cfg.plan_items)
    except ledger.LedgerError as exc:
        raise BundleError(f"{rel(plan, root)}: {exc}") from None


def preflight_check(cfg: CaseConfig, root=REPO) -> dict:
    """Stage the inputs in a scratch directory and flag what would change C's result (before any run),
    so that a run stopped early still reports its input flags. A missing input refuses the case."""
    with tempfile.TemporaryDirectory(prefix="phase_d_preflight_") as tmp:
        try:
            inputs = hermetic.prepare_run_dir(Path(tmp) / "run", [cfg.resolve(p, root) for p in cfg.inputs], root)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{rel(cfg.path, root)}: {exc}") from None
        hazards = hermetic.scan_hazards(cfg.c_argv("nanoBragg"), Path(tmp) / "run")
    return {"inputs": inputs, "hazards": hermetic.hazards_as_dicts(hazards)}


def _load(config) -> CaseConfig:
    try:
        return load_case(config)
    except ConfigError as exc:
        raise BundleError(str(exc)) from None


def _write_run(outdir: Path, cfg: CaseConfig, c: CBinary, preflight: dict, invocation, root) -> Bundle:
    write_json(outdir / "run.json", {
        "stamp": outdir.name, "outdir": rel(outdir, root), "config": rel(cfg.path, root), "item": cfg.item,
        "created": cmdlog.utc_now(), "invocation": invocation,
        "c_binary": {"path": str(c.path) if c.path else None, "source": c.source, "problem": c.problem},
        "preflight": preflight,
    })
    return Bundle(outdir, root)


def create_bundle(config=None, c_bin=None, root=REPO, invocation: str | None = None) -> Bundle:
    """A new bundle under the case's bundle_root, in a directory with a fresh UTC stamp."""
    cfg = _load(config)
    check_case(cfg, root)
    preflight = preflight_check(cfg, root)
    outdir = fresh_dir(cfg.resolve(cfg.bundle_root, root))
    return _write_run(outdir, cfg, resolve_c_binary(c_bin), preflight, invocation, root)


def init_bundle(outdir, config=None, c_bin=None, root=REPO, fresh=True, invocation: str | None = None) -> Bundle:
    """A new bundle in the given ``outdir`` (``fresh``: which must not exist yet)."""
    outdir = Path(outdir)
    cfg = _load(config)
    check_case(cfg, root)
    if fresh and outdir.exists():
        raise BundleError(f"{outdir} already exists; a bundle is never reused (take a new stamp)")
    if (outdir / "run.json").exists():
        raise BundleError(f"{outdir} already holds a bundle")
    preflight = preflight_check(cfg, root)
    outdir.mkdir(parents=True, exist_ok=not fresh)
    return _write_run(outdir, cfg, resolve_c_binary(c_bin), preflight, invocation, root)


def open_or_init(outdir, config=None, c_bin=None, root=REPO) -> Bundle:
    """For a step run on its own: use the bundle in ``outdir`` or start one there."""
    if (Path(outdir) / "run.json").exists():
        b = Bundle(outdir, root)
        if config and Path(config).resolve() != b.cfg.path:
            raise BundleError(f"{outdir} was started with {b.run['config']}, not {config}")
        return b
    return init_bundle(outdir, config, c_bin, root, fresh=False)


# --- running steps -------------------------------------------------------------------------------------------

def _refresh_blocking(b: Bundle) -> None:
    """blocking.md says why, as soon as any step blocked (rewritten by every later block)."""
    if b.blocks():
        atomic_write(b.p("blocking.md"), report.render_blocking(b))


def run_step(name: str, outdir, config=None, c_bin=None, root=REPO) -> int:
    """Run one step on the bundle in ``outdir`` (skipped, exit 0, after a hard block; report always runs)."""
    b = open_or_init(outdir, config, c_bin, root)
    blocked = b.hard_blocked()
    if name != "report" and blocked and blocked["step"] != name:
        b.record(name, SKIPPED, f"not run: step {blocked['step']} blocked the run")
        return 0
    try:
        code = steps.STEP_FUNCS[name](b)
    except Exception as exc:  # noqa: BLE001 - a crash of the pipeline itself must still leave a blocking.md
        import traceback

        b.record(name, HARD, f"pipeline error: {type(exc).__name__}: {exc}",
                 tail=cmdlog.tail_text(traceback.format_exc()))
        code = 1
    if name != "report":
        _refresh_blocking(b)
    return code


def chain_commands(outdir, python=None) -> list[tuple[str, list[str]]]:
    """One command per step, ``PYTHON -m tools.evidence.phase_d <step> --outdir OUTDIR``, run at the repo root."""
    python = str(python or sys.executable)
    return [(step, [python, "-m", STEP_MODULE, step, "--outdir", rel(outdir)]) for step in STEPS]


# The nox session of each step (noxfile.py): the step's name, except the report, which is the `ledger` session.
SESSIONS = {step: ("ledger" if step == "report" else step) for step in STEPS}


def nox_chain_commands(outdir) -> list[tuple[str, list[str]]]:
    """One command per step, ``nox -R -s <session> -- --outdir OUTDIR`` (what ``invoke phase-d`` runs): the
    environment is prepared first (tools.nox_env.prepare), so every session reuses it and installs nothing."""
    return [(step, ["nox", "-R", "-s", SESSIONS[step], "--", "--outdir", rel(outdir)]) for step in STEPS]


def nox_summary_line(line: str) -> bool:
    """nox's own closing lines of a session (``nox > Session parity failed.``, ``nox > Ran 2 sessions ...``):
    the chain prints each step's recorded outcome instead, so a block expected without a C program does not
    read as a crash."""
    text = line.strip()
    return text.startswith("nox > ") and (
        (text.startswith("nox > Session ") and (" failed" in text or " was successful" in text))
        or (text.startswith("nox > Command ") and " failed with exit code " in text)
        or text.startswith("nox > Ran ") or text.startswith("nox > * "))


def _run_streamed(argv, root) -> cmdlog.RunResult:
    return cmdlog.run(argv, cwd=root, stream=True, echo=lambda line: not nox_summary_line(line))


def run_chain(outdir, commands, runner=None, root=REPO) -> int:
    """Run the step commands in order; a step that fails without recording itself is recorded here.

    ``runner(argv) -> RunResult`` (default: streamed to the console). After a hard block only ``report``
    runs. Returns the report's exit code (0 = PASS).
    """
    runner = runner or (lambda argv: _run_streamed(argv, root))
    code = 1
    for i, (step, argv) in enumerate(commands, 1):
        b = Bundle(outdir, root)
        if step != "report" and b.hard_blocked():
            b.record(step, SKIPPED, f"not run: step {b.hard_blocked()['step']} blocked the run")
            print(f"phase-d [{i}/{len(commands)}] {step}: skipped", flush=True)
            continue
        print(f"phase-d [{i}/{len(commands)}] {step}: {report.STEP_TITLES[step]} ...", flush=True)
        started = cmdlog.utc_now()
        res = runner(argv)
        cmdlog.log_command(b.commands, res.exit_code, cmdlog.format_command(argv, root=root), started)
        if res.exit_code != 0 and b.step(step) is None:
            b.record(step, HARD, f"step command exited {res.exit_code} before the step could record a result", res)
            _refresh_blocking(b)
            if step == "report":
                return res.exit_code
        if step == "report":
            code = res.exit_code
        elif b.step(step):
            entry = b.step(step)
            print(f"phase-d [{i}/{len(commands)}] {step}: {entry['status']}"
                  + (f" ({entry['reason']})" if entry["reason"] else ""), flush=True)
    return code


def run_with_nox(outdir, root=REPO) -> int:
    """What ``invoke phase-d`` runs on a new bundle: the environment prepared once under a lock (logged in
    commands.txt when it had to run), then one nox session per step. An environment that cannot be prepared
    blocks the run at its first step; the ledger session still records the Attempt."""
    started = cmdlog.utc_now()

    def prepare(argv) -> int:
        res = _run_streamed(argv, root)
        cmdlog.log_command(Bundle(outdir, root).commands, res.exit_code, cmdlog.format_command(argv, root=root),
                           started)
        return res.exit_code

    print(f"phase-d [0/{len(STEPS)}] environment: {nox_env.ENV_DIR} (made once, then reused) ...", flush=True)
    code = nox_env.prepare(prepare, nox_env.TORCH_SPEC, root)
    if code:
        b = Bundle(outdir, root)
        b.record(STEPS[0], HARD, f"the nox environment {nox_env.ENV_DIR} could not be prepared: "
                 f"`{shlex.join(nox_env.PREPARE_COMMAND)}` exited {code}")
        _refresh_blocking(b)
    return run_chain(outdir, nox_chain_commands(outdir), root=root)


def describe(cfg: CaseConfig, outdir, c: CBinary, python=None) -> list[str]:
    """The dry-run text: every command the chain would run and, under each, the commands it runs."""
    py = python or "python"
    c_prog = str(c.path) if c.ok else "<missing C binary>"
    outdir = Path(rel(outdir))  # shown relative to the repository root, where the commands run
    run_c, run_py = outdir / "cli" / "c_run", outdir / "cli" / "py_run"
    inner = {
        "collect": [cmdlog.format_command([py, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                           *cfg.collect])],
        "parity": [cmdlog.format_command(
            [py, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={outdir}/pytest/junit.xml",
             cfg.parity_selector],
            env={"NB_RUN_PARALLEL": "1", C_BIN_ENV: c_prog, "KMP_DUPLICATE_LIB_OK": "TRUE",
                 "NB_PHASE_D_CONFIG": rel(cfg.path)})],
        "cli_c": [f"copy {', '.join(cfg.inputs)} into fresh {run_c}/",
                  cmdlog.format_command(cfg.c_argv(c_prog), cwd=run_c, env=cfg.env)],
        "cli_py": [f"copy {', '.join(cfg.inputs)} into fresh {run_py}/",
                   cmdlog.format_command(cfg.py_argv(py), cwd=run_py, env={**cfg.env, "KMP_DUPLICATE_LIB_OK": "TRUE"})],
        "env": [f"write {outdir}/env.json", cmdlog.format_command([py, "-m", "torch.utils.collect_env"])],
        "metrics": [(f"write {outdir}/metrics.json and compare.png; gate: r >= {cfg.gate.min_correlation}, "
                    f"|sum_ratio-1| <= {cfg.gate.max_sum_ratio_dev}")],
        "report": [(f"write {outdir}/summary.md; append an Attempt to {cfg.ledger} [{cfg.item}]; on a clean PASS "
                   f"tick {', '.join(cfg.plan_items)} in {cfg.plan}")],
    }
    lines = [f"# dry run: would create {outdir}/ (case {rel(cfg.path)}, item [{cfg.item}])",
             f"# C binary: {c.path if c.ok else 'MISSING: ' + str(c.problem)}"]
    if python is None:
        lines.append(f"{shlex.join(nox_env.PREPARE_COMMAND)}    # under .nox/prepare.lock, only if {nox_env.ENV_DIR} "
                     "is not ready; every session below reuses it (-R)")
    commands = chain_commands(outdir, py) if python else nox_chain_commands(outdir)
    for step, argv in commands:
        lines.append(shlex.join(argv))
        lines += [f"    {x}" for x in inner[step]]
    return lines


# --- "is there valid evidence for the current code?" (for downstream tasks such as profiling) --------------

CODE_PATHS = ("src", "pyproject.toml")


def _git(root, *args) -> cmdlog.RunResult:
    return cmdlog.run(["git", *args], cwd=root, merge_stderr=False, timeout_s=60)


def passing_bundle_for_code(config=None, root=REPO) -> Path:
    """The newest PASS bundle made from the current code; raise BundleError saying why there is none.

    "Current code": no uncommitted change under src/ or pyproject.toml, and the bundle's git SHA contains
    the last commit that touched them.
    """
    cfg = _load(config)
    if _git(root, "status", "--porcelain", "--", *CODE_PATHS).stdout.strip():
        raise BundleError("uncommitted changes under src/ or pyproject.toml: no bundle can vouch for them")
    last = _git(root, "log", "-1", "--format=%H", "--", *CODE_PATHS).stdout.strip()
    broot = cfg.resolve(cfg.bundle_root, root)
    stamps = sorted((p for p in broot.iterdir() if p.is_dir()), reverse=True) if broot.is_dir() else []
    for d in stamps:
        status = read_json(d / "status.json", {"steps": []})["steps"]
        rep = next((s for s in status if s["step"] == "report"), None)
        env = read_json(d / "env.json", {})
        sha = (env.get("git") or {}).get("sha")
        if not rep or rep.get("verdict") != PASS or not sha:
            continue
        if any(p.startswith(CODE_PATHS) for p in (env["git"].get("changed") or [])):
            continue
        if not last or _git(root, "merge-base", "--is-ancestor", last, sha).exit_code == 0:
            return d
    raise BundleError(f"no passing Phase D bundle under {rel(broot, root)} made from the current code "
                      f"(last code commit {last[:12] or 'none'}); run `invoke phase-d` first")


# --- command line ------------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python -m {STEP_MODULE}", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for step in STEPS:
        sp = sub.add_parser(step, help=f"run the {step} step on a bundle" + (
            " (without --outdir: on its own)" if step in ("collect", "parity") else ""))
        sp.add_argument("--outdir", default=None, help="the bundle (collect and parity also run without one)")
        sp.add_argument("--config", default=None, help="case file (only when starting a new bundle)")
        sp.add_argument("--c-bin", default=None, help=f"C binary (default: ${C_BIN_ENV}, then PATH)")
    sp = sub.add_parser("run", help="the whole chain: a new bundle, or --outdir of one just created")
    sp.add_argument("--config", default=None, help=f"case file (default {rel(DEFAULT_CONFIG)})")
    sp.add_argument("--c-bin", default=None)
    sp.add_argument("--outdir", default=None, help="default: <bundle_root>/<new UTC stamp>")
    sp.add_argument("--dry-run", action="store_true")
    sp = sub.add_parser("check", help="exit 0 iff a PASS bundle exists for the current code")
    sp.add_argument("--config", default=None)
    return ap


def _bundle_for_run(args) -> Bundle:
    """The bundle ``run`` works on: a new one, or the one ``--outdir`` names if no step has run in it yet."""
    invocation = shlex.join(["python", "-m", STEP_MODULE, *sys.argv[1:]])
    if args.outdir is None:
        return create_bundle(args.config, args.c_bin, invocation=invocation)
    if (Path(args.outdir) / "run.json").exists():
        b = Bundle(args.outdir)
        if b.steps():
            raise BundleError(f"{args.outdir} has already run; a bundle is never reused (take a new stamp)")
        return b
    return init_bundle(args.outdir, args.config, args.c_bin, invocation=invocation)


def standalone(step: str, config=None, c_bin=None, root=REPO) -> int:
    """``collect`` or ``parity`` without a bundle (``nox -s collect``, ``nox -s parity``): the case's tests
    collected, or its parity selector run against C with the verdict printed. A skip is not a pass, and without
    a C program the selector is not run at all: one line says what is missing, exit 2."""
    cfg = _load(config)
    if step == "collect":
        return cmdlog.run(steps.collect_command(cfg), cwd=root, stream=True).exit_code
    if step != "parity":
        raise BundleError(f"{step} works on a bundle: give --outdir DIR (`nox -s {SESSIONS[step]} -- --outdir DIR`)")
    c = resolve_c_binary(c_bin)
    if not c.ok:
        print(f"parity: not run: {c.problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="parity_") as tmp:
        argv, env = steps.selector_command(cfg, c.path, Path(tmp) / "junit.xml", root)
        res = cmdlog.run(argv, cwd=root, env=env, stream=True)
        problem = steps.parity_problem(steps.junit_counts(Path(tmp) / "junit.xml"), res.exit_code)
    print(f"parity: {'FAIL: ' + problem if problem else 'PASS'} ({cfg.parity_selector} against {c.path})")
    return 1 if problem else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd in STEPS:
            if args.outdir is None:
                return standalone(args.cmd, args.config, args.c_bin)
            return run_step(args.cmd, args.outdir, args.config, args.c_bin)
        if args.cmd == "check":
            print(passing_bundle_for_code(args.config))
            return 0
        if args.dry_run:
            cfg = load_case(args.config)
            outdir = Path(args.outdir) if args.outdir else cfg.resolve(cfg.bundle_root) / cmdlog.utc_stamp()
            print("\n".join(describe(cfg, outdir, resolve_c_binary(args.c_bin), python=sys.executable)))
            return 0
        b = _bundle_for_run(args)
        return run_chain(b.outdir, chain_commands(b.outdir))
    except (BundleError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
