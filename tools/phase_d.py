"""Phase D parity-evidence pipeline: the steps behind ``invoke phase-d`` and the nox sessions.

A bundle is one directory ``<bundle_root>/<STAMP>/``. Each step is a separate command
(``python -m tools.phase_d <step> --outdir DIR``, which is what the nox sessions run) that records its
outcome in ``status.json``; a step after a hard block records itself as skipped. A missing C binary is
a soft block: every PyTorch step still runs, the C steps are recorded as ``missing_c``. The ``report``
step always runs last: it writes ``summary.md`` (and ``blocking.md`` when blocked), appends an Attempt
to the ledger, ticks the plan when the run passed cleanly, and exits 0 only for a PASS.

Validity rules enforced here (docs/development/testing_strategy.md): a skipped parity test is invalid
evidence; a non-zero exit, a missing or wrong-sized output, a NaN pixel or an all-zero C image blocks; the
gate (config [gate]) blocks below threshold.

This module imports only the standard library at import time (numpy and matplotlib inside the metrics
step), so invoke and nox can import it from any interpreter.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from array import array
from pathlib import Path

from tools import cmdlog, hermetic, ledger
from tools.case_config import DEFAULT_CONFIG, REPO, CaseConfig, ConfigError, load_case
from tools.cbin import ENV_VAR as C_BIN_ENV
from tools.cbin import CBinary, resolve_c_binary

STEPS = ("collect", "parity", "cli_c", "cli_py", "env", "metrics", "report")
# nox session running each step (see noxfile.py).
SESSIONS = {"collect": "collect", "parity": "parity", "cli_c": "cli_c", "cli_py": "cli_py", "env": "env",
            "metrics": "metrics", "report": "report"}
NEEDS_C = ("parity", "cli_c", "metrics")

PASS, BLOCKED = "PASS", "BLOCKED"


class BundleError(RuntimeError):
    """The bundle cannot be created or used (existing directory, bad config, unknown ledger item...)."""


def _rel(path, root=REPO) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path(root).resolve()))
    except ValueError:
        return str(p)


def read_json(path, default=None):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def write_json(path, data) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ledger.atomic_write(path, json.dumps(data, indent=2) + "\n")


class Bundle:
    """One evidence directory and its state files (run.json, status.json, commands.txt)."""

    def __init__(self, outdir, root=REPO):
        self.outdir = Path(outdir)
        self.root = Path(root)
        self.run = read_json(self.outdir / "run.json")
        if self.run is None:
            raise BundleError(f"{self.outdir} is not a bundle (no run.json); start one with `invoke phase-d`")
        self.cfg: CaseConfig = load_case(self.root / self.run["config"])
        cb = self.run["c_binary"]
        self.c = CBinary(Path(cb["path"]) if cb["path"] else None, cb["source"], cb["problem"])

    # --- paths -------------------------------------------------------------------------------------------
    @property
    def commands(self) -> Path:
        return self.outdir / "commands.txt"

    def p(self, *parts) -> Path:
        return self.outdir.joinpath(*parts)

    # --- status ------------------------------------------------------------------------------------------
    def steps(self) -> list[dict]:
        return read_json(self.p("status.json"), {"steps": []})["steps"]

    def step(self, name) -> dict | None:
        found = [s for s in self.steps() if s["step"] == name]
        return found[-1] if found else None

    def record(self, name, status, reason="", result: cmdlog.RunResult | None = None, **extra) -> dict:
        entry = {"step": name, "status": status, "reason": reason, "at": cmdlog.utc_now(), **extra}
        if result is not None:
            entry.update(command=result.command, exit_code=result.exit_code, tail=result.tail)
        steps = [s for s in self.steps() if s["step"] != name] + [entry]
        write_json(self.p("status.json"), {"steps": steps})
        if status in ("blocked", "missing_c"):
            from tools import bundle_report

            ledger.atomic_write(self.p("blocking.md"), bundle_report.render_blocking(self))
        return entry

    def hard_blocked(self) -> dict | None:
        return next((s for s in self.steps() if s["status"] == "blocked"), None)

    def blocks(self) -> list[dict]:
        return [s for s in self.steps() if s["status"] in ("blocked", "missing_c")]

    # --- environment for Python commands -----------------------------------------------------------------
    def py_env(self) -> dict:
        """Make the repo's own code importable whatever interpreter runs the step."""
        paths = [str(self.root / "src"), str(self.root)]
        return {"PYTHONPATH": os.pathsep.join(paths)}


# --- creating a bundle ---------------------------------------------------------------------------------------

def check_case(cfg: CaseConfig, root=REPO) -> None:
    """Refuse a case whose ledger item or plan items do not exist, before anything runs."""
    led = cfg.resolve(cfg.ledger, root)
    if not led.is_file():
        raise BundleError(f"ledger {led} does not exist")
    if cfg.item not in ledger.item_ids(led.read_text(encoding="utf-8")):
        raise BundleError(f"unknown ledger item [{cfg.item}] in {_rel(led, root)}")
    plan = cfg.resolve(cfg.plan, root)
    if not plan.is_file():
        raise BundleError(f"plan {plan} does not exist")
    try:
        ledger.check_plan_items(plan.read_text(encoding="utf-8"), cfg.plan_items)
    except ledger.LedgerError as exc:
        raise BundleError(f"{_rel(plan, root)}: {exc}") from None


def preflight_check(cfg: CaseConfig, root=REPO) -> dict:
    """Stage the inputs in a scratch directory and flag what would change C's result (before any run),
    so that a run stopped early still reports its input flags. A missing input refuses the case."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="phase_d_preflight_") as tmp:
        try:
            inputs = hermetic.prepare_run_dir(Path(tmp) / "run", [cfg.resolve(p, root) for p in cfg.inputs])
        except (OSError, ValueError) as exc:
            raise BundleError(f"{_rel(cfg.path, root)}: {exc}") from None
        hazards = hermetic.scan_hazards(cfg.c_argv("nanoBragg"), Path(tmp) / "run")
    return {"inputs": inputs, "hazards": hermetic.hazards_as_dicts(hazards)}


def new_outdir(cfg: CaseConfig, root=REPO, stamp: str | None = None) -> Path:
    return cfg.resolve(cfg.bundle_root, root) / (stamp or cmdlog.utc_stamp())


def init_bundle(outdir, config=None, c_bin=None, root=REPO, fresh=True, invocation: str | None = None) -> Bundle:
    """Create the bundle directory (``fresh``: refuse an existing one) and write run.json."""
    outdir = Path(outdir)
    try:
        cfg = load_case(config)
    except ConfigError as exc:
        raise BundleError(str(exc)) from None
    check_case(cfg, root)
    if fresh and outdir.exists():
        raise BundleError(f"{outdir} already exists; a bundle is never reused (take a new stamp)")
    if (outdir / "run.json").exists():
        raise BundleError(f"{outdir} already holds a bundle")
    preflight = preflight_check(cfg, root)
    outdir.mkdir(parents=True, exist_ok=not fresh)
    c = resolve_c_binary(c_bin)
    run = {
        "stamp": outdir.name,
        "outdir": _rel(outdir, root),
        "config": _rel(cfg.path, root),
        "item": cfg.item,
        "created": cmdlog.utc_now(),
        "invocation": invocation,
        "c_binary": {"path": str(c.path) if c.path else None, "source": c.source, "problem": c.problem},
        "preflight": preflight,
    }
    write_json(outdir / "run.json", run)
    return Bundle(outdir, root)


def open_or_init(outdir, config=None, c_bin=None, root=REPO) -> Bundle:
    """For a session run on its own: use the bundle in ``outdir`` or start one there."""
    if (Path(outdir) / "run.json").exists():
        b = Bundle(outdir, root)
        if config and Path(config).resolve() != b.cfg.path:
            raise BundleError(f"{outdir} was started with {b.run['config']}, not {config}")
        return b
    return init_bundle(outdir, config, c_bin, root, fresh=False)


# --- image facts without numpy (the C step may run on a bare interpreter) ---------------------------------

def image_facts(path, shape) -> dict:
    """Size, NaN/Inf count, sum and max of a raw little-endian float32 image."""
    data = Path(path).read_bytes()
    expected = shape[0] * shape[1] * 4
    facts = {"bytes": len(data), "expected_bytes": expected}
    if len(data) != expected:
        return facts
    a = array("f")
    a.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    nan = sum(1 for x in a if math.isnan(x))
    inf = sum(1 for x in a if math.isinf(x))
    finite = [x for x in a if math.isfinite(x)]
    facts.update(nan=nan, inf=inf, sum=float(sum(finite)), max=max(finite) if finite else None,
                 all_zero=not any(finite))
    return facts


# --- steps ---------------------------------------------------------------------------------------------------

def _missing_c(b: Bundle, name: str) -> int:
    b.record(name, "missing_c", f"not run: {b.c.problem.split(';')[0]}")
    return 1


def step_collect(b: Bundle) -> int:
    cfg = b.cfg
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *cfg.collect]
    res = cmdlog.run_logged(argv, b.commands, cwd=b.root, env=b.py_env(), output_path=b.p("pytest_collect.log"),
                            timeout_s=cfg.timeout_s, root=b.root)
    text = b.p("pytest_collect.log").read_text(encoding="utf-8")
    if res.exit_code != 0:
        b.record("collect", "blocked", f"pytest --collect-only exited {res.exit_code}", res)
        return 1
    m = re.search(r"(\d+) tests? collected", text)
    n = int(m.group(1)) if m else None
    file_part, _, rest = cfg.parity_selector.partition("::")
    want = f"{Path(file_part).name}::{rest}"
    if not any(line.strip().endswith(want) for line in text.splitlines()):
        b.record("collect", "blocked", f"the parity selector {cfg.parity_selector} is not in the collected tests",
                 res, tests_collected=n)
        return 1
    b.record("collect", "ok", f"{n} tests collected", res, tests_collected=n)
    return 0


def junit_counts(path) -> dict | None:
    """tests/failures/errors/skipped totals and skip messages of a pytest JUnit XML report."""
    try:
        root = ET.parse(path).getroot()
    except (FileNotFoundError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["skip_messages"] = [e.get("message", "") for e in root.iter("skipped")]
    counts["cases"] = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")]
    return counts


def parity_command(b: Bundle) -> tuple[list[str], dict]:
    junit = b.p("pytest", "junit.xml")
    argv = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={_rel(junit, b.root)}",
            b.cfg.parity_selector]
    env = {"NB_RUN_PARALLEL": "1", C_BIN_ENV: str(b.c.path), "KMP_DUPLICATE_LIB_OK": "TRUE",
           "NB_PHASE_D_CONFIG": _rel(b.cfg.path, b.root), **b.py_env()}
    return argv, env


def step_parity(b: Bundle) -> int:
    if not b.c.ok:
        return _missing_c(b, "parity")
    argv, env = parity_command(b)
    b.p("pytest").mkdir(exist_ok=True)
    res = cmdlog.run_logged(argv, b.commands, cwd=b.root, env=env, output_path=b.p("pytest", "pytest.log"),
                            timeout_s=b.cfg.timeout_s, root=b.root)
    counts = junit_counts(b.p("pytest", "junit.xml"))
    if counts is None:
        b.record("parity", "blocked", f"pytest exited {res.exit_code} without a JUnit report", res)
        return 1
    extra = {"junit": {k: v for k, v in counts.items()}}
    if counts["skipped"]:
        b.record("parity", "blocked", "evidence invalid: the parity test was SKIPPED, which is not a pass ("
                 + "; ".join(counts["skip_messages"]) + ")", res, **extra)
        return 1
    if res.exit_code != 0 or counts["failures"] or counts["errors"]:
        b.record("parity", "blocked", f"parity test failed: pytest exit {res.exit_code}, {counts['failures']} "
                 f"failed, {counts['errors']} errors", res, **extra)
        return 1
    if counts["tests"] != 1:
        b.record("parity", "blocked", f"the selector ran {counts['tests']} tests; exactly 1 expected", res, **extra)
        return 1
    b.record("parity", "ok", "1 passed", res, **extra)
    return 0


def cli_command(b: Bundle, which: str) -> tuple[list[str], dict]:
    if which == "c":
        return b.cfg.c_argv(b.c.path), dict(b.cfg.env)
    return b.cfg.py_argv(sys.executable), {**b.cfg.env, "KMP_DUPLICATE_LIB_OK": "TRUE", **b.py_env()}


def explicit_oversample(argv) -> str | None:
    vals = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-oversample"]
    return vals[-1] if vals else None


def step_cli(b: Bundle, which: str) -> int:
    name = f"cli_{which}"
    cfg = b.cfg
    if which == "c" and not b.c.ok:
        return _missing_c(b, name)
    run_dir = b.p("cli", f"{which}_run")
    inputs = [cfg.resolve(p, b.root) for p in cfg.inputs]
    try:
        checks = hermetic.prepare_run_dir(run_dir, inputs)
    except (OSError, ValueError) as exc:
        b.record(name, "blocked", f"cannot prepare the hermetic run directory: {exc}")
        return 1
    argv, env = cli_command(b, which)
    hazards = hermetic.scan_hazards(argv, run_dir)
    stdout = b.p("cli", f"{which}_stdout.log")
    res = cmdlog.run_logged(argv, b.commands, cwd=run_dir, env=env, output_path=stdout, timeout_s=cfg.timeout_s,
                            root=b.root)
    floatfile = cfg.c_floatfile if which == "c" else cfg.py_floatfile
    dest = b.p("cli", floatfile)
    fin = hermetic.finish_run_dir(run_dir, {c["name"] for c in checks}, floatfile, dest)
    info = {
        "program": "C nanoBragg" if which == "c" else "PyTorch nanobrag_torch",
        "command": res.command, "exit_code": res.exit_code, "wall_s": round(res.wall_s, 3),
        "inputs": checks, "hazards": hermetic.hazards_as_dicts(hazards),
        "oversample_explicit": explicit_oversample(argv),
        "reported": hermetic.reported(stdout.read_text(encoding="utf-8")),
        "outputs": fin,
    }
    reason = None
    if res.exit_code != 0:
        reason = f"{info['program']} exited {res.exit_code}"
    elif fin["float_image"] is None:
        reason = f"{info['program']} exited 0 but wrote no float image {floatfile}"
    else:
        facts = image_facts(dest, cfg.shape)
        info["image"] = facts
        if facts["bytes"] != facts["expected_bytes"]:
            reason = f"{floatfile} has {facts['bytes']} bytes, expected {facts['expected_bytes']} ({cfg.shape})"
        elif facts["nan"] or facts["inf"]:
            reason = f"{floatfile} has {facts['nan']} NaN and {facts['inf']} Inf pixels"
        elif which == "c" and facts["all_zero"]:
            reason = f"{floatfile} is all zero: the C reference exercises nothing, the comparison would be vacuous"
    write_json(b.p("cli", f"{which}_run.json"), info)
    if reason:
        b.record(name, "blocked", reason, res, hazards=info["hazards"])
        return 1
    b.record(name, "ok", f"wrote {floatfile}", res, hazards=info["hazards"])
    return 0


def c_banner(b: Bundle) -> str | None:
    log = b.p("cli", "c_stdout.log")
    if not log.exists():
        return None
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            return line.strip()
    return None


def step_env(b: Bundle) -> int:
    from tools import envcapture

    # The bundle, ledger and plan are written by the pipeline itself: not "uncommitted code".
    own = tuple(_rel(p, b.root) for p in (b.outdir, b.cfg.resolve(b.cfg.ledger, b.root),
                                          b.cfg.resolve(b.cfg.plan, b.root)))
    info = envcapture.capture(b.root, b.c.path if b.c.ok else None, c_banner(b), ignore_prefix=own)
    info["c_binary"]["resolved_from"] = b.c.source
    info["c_binary"]["problem"] = b.c.problem
    write_json(b.p("env.json"), info)
    res = cmdlog.run_logged([sys.executable, "-m", "torch.utils.collect_env"], b.commands, cwd=b.root,
                            output_path=b.p("torch_env.txt"), timeout_s=b.cfg.timeout_s, root=b.root)
    if res.exit_code != 0:
        b.record("env", "blocked", f"torch.utils.collect_env exited {res.exit_code}", res)
        return 1
    b.record("env", "ok", f"python {info['python']}, torch {info['torch']}, numpy {info['numpy']}", res)
    return 0


def step_metrics(b: Bundle) -> int:
    if not b.c.ok:
        return _missing_c(b, "metrics")
    from tools.metrics import compare_images, read_float_image, verdict

    cfg = b.cfg
    c_path, py_path = b.p("cli", cfg.c_floatfile), b.p("cli", cfg.py_floatfile)
    for p in (c_path, py_path):
        if not p.is_file():
            b.record("metrics", "blocked", f"{_rel(p, b.root)} is missing")
            return 1
    c_img, py_img = read_float_image(c_path, cfg.shape), read_float_image(py_path, cfg.shape)
    m = compare_images(c_img, py_img)
    passed, reasons = verdict(m, cfg.gate)
    runs = {w: read_json(b.p("cli", f"{w}_run.json"), {}) for w in ("c", "py")}
    m.update(
        dtype=cfg.dtype, device=cfg.device, float_file_dtype="float32",
        oversample={w: {"explicit": r.get("oversample_explicit"), "reported": r.get("reported", {}).get("oversample")}
                    for w, r in runs.items()},
        thresholds=cfg.gate.as_dict(), verdict=PASS if passed else "FAIL", reasons=reasons,
        hazards=sorted({h["message"] for r in runs.values() for h in r.get("hazards", [])}),
    )
    write_json(b.p("metrics.json"), m)
    from tools.compare_images import write_compare_png

    write_compare_png(c_img, py_img, b.p("compare.png"),
                      title=f"{cfg.item} {b.run['stamp']}: r={m['correlation']:.6f}, sum ratio={m['sum_ratio']:.6f}")
    if not passed:
        b.record("metrics", "blocked", "gate failed (anomaly): " + "; ".join(reasons), correlation=m["correlation"],
                 sum_ratio=m["sum_ratio"])
        return 1
    b.record("metrics", "ok", f"r={m['correlation']:.9f}, sum_ratio={m['sum_ratio']:.9f}",
             correlation=m["correlation"], sum_ratio=m["sum_ratio"])
    return 0


def final_verdict(b: Bundle) -> str:
    steps = {s["step"]: s for s in b.steps()}
    ok = all(steps.get(name, {}).get("status") == "ok" for name in STEPS if name != "report")
    return PASS if ok else BLOCKED


def all_hazards(b: Bundle) -> list[str]:
    """Input flags of the case (checked before the run) and of the CLI runs that happened."""
    msgs = []
    found = list((b.run.get("preflight") or {}).get("hazards", []))
    for w in ("c", "py"):
        found += read_json(b.p("cli", f"{w}_run.json"), {}).get("hazards", [])
    for h in found:
        if h["message"] not in msgs:
            msgs.append(h["message"])
    return msgs


def step_report(b: Bundle) -> int:
    from tools import bundle_report

    cfg = b.cfg
    verdict = final_verdict(b)
    hazards = all_hazards(b)
    # Steps that never ran (a chain stopped by a failure, or a session run alone) are listed as such.
    for name in STEPS[:-1]:
        if b.step(name) is None:
            b.record(name, "skipped", "not run")
    if verdict == BLOCKED and not b.blocks():
        missing = [s["step"] for s in b.steps() if s["status"] != "ok" and s["step"] in STEPS]
        b.record("incomplete", "blocked", f"steps not run or not passed: {', '.join(missing)}")
    # The summary exists even if the ledger update below fails; it is rewritten at the end.
    ledger.atomic_write(b.p("summary.md"), bundle_report.render_summary(b))
    ledger_path = cfg.resolve(cfg.ledger, b.root)
    bundle_rel = _rel(b.outdir, b.root) + "/"
    when = b.run["created"]
    m = read_json(b.p("metrics.json"))
    if verdict == PASS:
        result = "PASS" + (" (flagged)" if hazards else "")
        status = (f"{'in_progress' if hazards else 'done'} — Phase D parity evidence {result} "
                  f"(Attempt #{{n}}, {when[:10]}, `{bundle_rel}`)")
    else:
        first = b.blocks()[0]
        result = "BLOCKED"
        reason = first["reason"] if len(first["reason"]) <= 160 else first["reason"][:157] + "..."
        status = f"blocked — Phase D Attempt #{{n}} ({when[:10]}): {first['step']}: {reason}"
    try:
        text = ledger_path.read_text(encoding="utf-8")
        n = ledger.next_attempt_number(text, cfg.item)
        body = bundle_report.attempt_body(b, verdict, m, hazards)
        ledger.append_attempt(ledger_path, cfg.item, when, result, body, status.replace("{n}", str(n)),
                              bundle=bundle_rel)
    except (OSError, ledger.LedgerError) as exc:
        print(f"error: ledger {_rel(ledger_path, b.root)}: {exc}", file=sys.stderr)
        return 1
    ticked = False
    if verdict == PASS and not hazards and cfg.plan_items:
        ledger.tick_plan(cfg.resolve(cfg.plan, b.root), cfg.plan_items, bundle_rel)
        ticked = True
    b.record("report", "ok", f"verdict {verdict}", verdict=verdict, attempt=n, plan_ticked=ticked)
    ledger.atomic_write(b.p("summary.md"), bundle_report.render_summary(b))
    if verdict != PASS:
        ledger.atomic_write(b.p("blocking.md"), bundle_report.render_blocking(b))
    print(f"{verdict}: {bundle_rel} (ledger [{cfg.item}] Attempt #{n}{', plan ticked' if ticked else ''})")
    return 0 if verdict == PASS else 1


STEP_FUNCS = {
    "collect": step_collect, "parity": step_parity, "cli_c": lambda b: step_cli(b, "c"),
    "cli_py": lambda b: step_cli(b, "py"), "env": step_env, "metrics": step_metrics, "report": step_report,
}


def run_step(name: str, outdir, config=None, c_bin=None, root=REPO) -> int:
    """Run one step on the bundle in ``outdir`` (skipped, exit 0, after a hard block; report always runs)."""
    b = open_or_init(outdir, config, c_bin, root)
    blocked = b.hard_blocked()
    if name != "report" and blocked and blocked["step"] != name:
        b.record(name, "skipped", f"not run: step {blocked['step']} blocked the run")
        return 0
    try:
        return STEP_FUNCS[name](b)
    except Exception as exc:  # noqa: BLE001 - a crash of the pipeline itself must still leave a blocking.md
        import traceback

        b.record(name, "blocked", f"pipeline error: {type(exc).__name__}: {exc}",
                 tail=cmdlog.tail_text(traceback.format_exc()))
        return 1


# --- the chain (invoke phase-d) --------------------------------------------------------------------------------

def chain_commands(outdir, python=None, nox=("nox",)) -> list[tuple[str, list[str]]]:
    """One command per step: ``nox -s <session> -- OUTDIR``, or ``PYTHON -m tools.phase_d <step> --outdir``.

    The commands run at the repository root; ``outdir`` is written relative to it when inside it.
    """
    outdir = _rel(outdir)
    out = []
    for step in STEPS:
        if python:
            out.append((step, [str(python), "-m", "tools.phase_d", step, "--outdir", str(outdir)]))
        else:
            out.append((step, [*nox, "-s", SESSIONS[step], "--", str(outdir)]))
    return out


def subprocess_runner(argv, cwd=REPO) -> tuple[int, str]:
    """Run a chain command with its output streamed to the console; return (exit code, output tail)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        return cmdlog.EXIT_NOT_FOUND, f"cannot start {argv[0]}: {exc}"
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
        del lines[:-cmdlog.TAIL_LINES]
    return proc.wait(), "\n".join(lines)


def run_chain(outdir, commands, runner=subprocess_runner, root=REPO) -> int:
    """Run the step commands in order; a step that fails without recording itself is recorded here.

    After a hard block only ``report`` runs. Returns the report's exit code (0 = PASS).
    """
    code = 1
    for step, argv in commands:
        b = Bundle(outdir, root)
        if step != "report" and b.hard_blocked():
            b.record(step, "skipped", f"not run: step {b.hard_blocked()['step']} blocked the run")
            continue
        started = cmdlog.utc_now()
        rc, tail = runner(argv)
        cmdlog.log_command(b.commands, rc, cmdlog.format_command(argv), started)
        if rc != 0 and b.step(step) is None:
            result = cmdlog.RunResult(rc, cmdlog.format_command(argv), None, cmdlog.tail_text(tail), 0.0)
            b.record(step, "blocked", f"step command exited {rc} before the step could record a result", result)
            if step == "report":
                return rc
        if step == "report":
            code = rc
    return code


def describe(cfg: CaseConfig, outdir, c: CBinary, python=None, nox=("nox",)) -> list[str]:
    """The dry-run text: every command the chain would run and, under each, the commands it runs."""
    py = python or "python"
    c_prog = str(c.path) if c.ok else "<missing C binary>"
    outdir = Path(_rel(outdir))  # shown relative to the repository root, where the commands run
    run_c = outdir / "cli" / "c_run"
    run_py = outdir / "cli" / "py_run"
    inner = {
        "collect": [cmdlog.format_command([py, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                           *cfg.collect])],
        "parity": [cmdlog.format_command(
            [py, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={outdir}/pytest/junit.xml",
             cfg.parity_selector],
            env={"NB_RUN_PARALLEL": "1", C_BIN_ENV: c_prog, "KMP_DUPLICATE_LIB_OK": "TRUE",
                 "NB_PHASE_D_CONFIG": _rel(cfg.path)})],
        "cli_c": [f"copy {', '.join(cfg.inputs)} into fresh {run_c}/",
                  cmdlog.format_command(cfg.c_argv(c_prog), cwd=run_c, env=cfg.env)],
        "cli_py": [f"copy {', '.join(cfg.inputs)} into fresh {run_py}/",
                   cmdlog.format_command(cfg.py_argv(py), cwd=run_py,
                                         env={**cfg.env, "KMP_DUPLICATE_LIB_OK": "TRUE"})],
        "env": [f"write {outdir}/env.json", cmdlog.format_command([py, "-m", "torch.utils.collect_env"])],
        "metrics": [(f"write {outdir}/metrics.json and compare.png; gate: r >= {cfg.gate.min_correlation}, "
                    f"|sum_ratio-1| <= {cfg.gate.max_sum_ratio_dev}")],
        "report": [(f"write {outdir}/summary.md; append an Attempt to {cfg.ledger} [{cfg.item}]; on a clean PASS "
                   f"tick {', '.join(cfg.plan_items)} in {cfg.plan}")],
    }
    lines = [f"# dry run: would create {outdir}/ (case {_rel(cfg.path)}, item [{cfg.item}])",
             f"# C binary: {c.path if c.ok else 'MISSING: ' + str(c.problem)}"]
    for step, argv in chain_commands(outdir, python, nox):
        lines.append(shlex.join(argv))
        lines += [f"    {x}" for x in inner[step]]
    return lines


# --- "is there valid evidence for the current code?" (for downstream tasks such as profiling) --------------

CODE_PATHS = ("src", "pyproject.toml")


def _git(root, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def passing_bundle_for_code(config=None, root=REPO) -> Path:
    """The newest PASS bundle made from the current code; raise BundleError saying why there is none.

    "Current code": no uncommitted change under src/ or pyproject.toml, and the bundle's git SHA contains
    the last commit that touched them.
    """
    cfg = load_case(config)
    if _git(root, "status", "--porcelain", "--", *CODE_PATHS).stdout.strip():
        raise BundleError("uncommitted changes under src/ or pyproject.toml: no bundle can vouch for them")
    last = _git(root, "log", "-1", "--format=%H", "--", *CODE_PATHS).stdout.strip()
    broot = cfg.resolve(cfg.bundle_root, root)
    stamps = sorted((p for p in broot.iterdir() if p.is_dir()), reverse=True) if broot.is_dir() else []
    for d in stamps:
        status = read_json(d / "status.json", {"steps": []})["steps"]
        report = next((s for s in status if s["step"] == "report"), None)
        env = read_json(d / "env.json", {})
        sha = (env.get("git") or {}).get("sha")
        if not report or report.get("verdict") != PASS or not sha:
            continue
        if any(p.startswith(CODE_PATHS) for p in (env["git"].get("changed") or [])):
            continue
        if not last or _git(root, "merge-base", "--is-ancestor", last, sha).returncode == 0:
            return d
    raise BundleError(f"no passing Phase D bundle under {_rel(broot, root)} made from the current code "
                      f"(last code commit {last[:12] or 'none'}); run `invoke phase-d` first")


# --- command line ------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.phase_d", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for step in STEPS:
        sp = sub.add_parser(step, help=f"run the {step} step on a bundle")
        sp.add_argument("--outdir", required=True)
        sp.add_argument("--config", default=None, help="case file (only when starting a new bundle)")
        sp.add_argument("--c-bin", default=None, help=f"C binary (default: ${C_BIN_ENV}, then PATH)")
    sp = sub.add_parser("run", help="the whole chain in this interpreter (what `invoke phase-d --python` does)")
    sp.add_argument("--config", default=str(DEFAULT_CONFIG))
    sp.add_argument("--c-bin", default=None)
    sp.add_argument("--outdir", default=None, help="default: <bundle_root>/<new UTC stamp>")
    sp.add_argument("--dry-run", action="store_true")
    sp = sub.add_parser("check", help="exit 0 iff a PASS bundle exists for the current code")
    sp.add_argument("--config", default=str(DEFAULT_CONFIG))
    args = ap.parse_args(argv)
    try:
        if args.cmd in STEPS:
            return run_step(args.cmd, args.outdir, args.config, args.c_bin)
        if args.cmd == "check":
            print(passing_bundle_for_code(args.config))
            return 0
        cfg = load_case(args.config)
        outdir = Path(args.outdir) if args.outdir else new_outdir(cfg)
        if args.dry_run:
            print("\n".join(describe(cfg, outdir, resolve_c_binary(args.c_bin), python=sys.executable)))
            return 0
        invocation = shlex.join(["python", "-m", "tools.phase_d", *sys.argv[1:]])
        init_bundle(outdir, args.config, args.c_bin, invocation=invocation)
        return run_chain(outdir, chain_commands(outdir, python=sys.executable))
    except (BundleError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
