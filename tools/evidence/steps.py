"""The steps of a Phase D bundle, one function each: ``collect``, ``parity``, ``cli_c``, ``cli_py``, ``env``,
``metrics``, ``report``. Each records its outcome in the bundle (tools.evidence.bundle) and returns an exit code.

Validity rules enforced here (docs/development/testing_strategy.md): a skipped parity test is invalid
evidence; a non-zero exit, a missing or wrong-sized output, a NaN pixel or an all-zero C image blocks; the
gate (the case's [gate]) blocks below threshold. A missing C binary blocks only the C steps (``missing_c``).

Only the standard library is imported at module level (numpy and matplotlib inside the metrics step), so the
C step can run on any interpreter.
"""
from __future__ import annotations

import math
import re
import sys
import xml.etree.ElementTree as ET
from array import array
from pathlib import Path

from tools import cmdlog, hermetic
from tools.cbin import ENV_VAR as C_BIN_ENV
from tools.evidence import ledger, report
from tools.evidence.bundle import ENVIRONMENT, HARD, OK, PASS, SKIPPED, STEPS, Bundle
from tools.files import atomic_write, read_json, rel, write_json


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
    b.record(name, ENVIRONMENT, f"not run: {b.c.problem.split(';')[0]}")
    return 1


def step_collect(b: Bundle) -> int:
    cfg = b.cfg
    res = cmdlog.run(collect_command(cfg), cwd=b.root, output_path=b.p("pytest_collect.log"), timeout_s=cfg.timeout_s,
                     log_path=b.commands, root=b.root)
    text = b.p("pytest_collect.log").read_text(encoding="utf-8")
    if res.exit_code != 0:
        b.record("collect", HARD, f"pytest --collect-only exited {res.exit_code}", res)
        return 1
    m = re.search(r"(\d+) tests? collected", text)
    n = int(m.group(1)) if m else None
    file_part, _, rest = cfg.parity_selector.partition("::")
    want = f"{Path(file_part).name}::{rest}"
    if not any(line.strip().endswith(want) for line in text.splitlines()):
        b.record("collect", HARD, f"the parity selector {cfg.parity_selector} is not in the collected tests",
                 res, tests_collected=n)
        return 1
    b.record("collect", OK, f"{n} tests collected", res, tests_collected=n)
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
    return selector_command(b.cfg, b.c.path, b.p("pytest", "junit.xml"), b.root)


def selector_command(cfg, c_path, junit, root) -> tuple[list[str], dict]:
    """The parity selector's pytest command and environment, its JUnit report written to ``junit``."""
    argv = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={rel(junit, root)}",
            cfg.parity_selector]
    env = {"NB_RUN_PARALLEL": "1", C_BIN_ENV: str(c_path), "KMP_DUPLICATE_LIB_OK": "TRUE",
           "NB_PHASE_D_CONFIG": rel(cfg.path, root)}
    return argv, env


def collect_command(cfg) -> list[str]:
    """pytest --collect-only over the case's test paths."""
    return [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *cfg.collect]


def parity_problem(counts: dict | None, exit_code: int) -> str | None:
    """Why a run of the parity selector is not a pass (None when it is): no report, a skip, a failure, or a
    selector that ran other than exactly one test."""
    if counts is None:
        return f"pytest exited {exit_code} without a JUnit report"
    if counts["skipped"]:
        return "evidence invalid: the parity test was SKIPPED, which is not a pass (" + \
            "; ".join(counts["skip_messages"]) + ")"
    if exit_code != 0 or counts["failures"] or counts["errors"]:
        return f"parity test failed: pytest exit {exit_code}, {counts['failures']} failed, {counts['errors']} errors"
    if counts["tests"] != 1:
        return f"the selector ran {counts['tests']} tests; exactly 1 expected"
    return None


def step_parity(b: Bundle) -> int:
    if not b.c.ok:
        return _missing_c(b, "parity")
    argv, env = parity_command(b)
    b.p("pytest").mkdir(exist_ok=True)
    res = cmdlog.run(argv, cwd=b.root, env=env, output_path=b.p("pytest", "pytest.log"), timeout_s=b.cfg.timeout_s,
                     log_path=b.commands, root=b.root)
    counts = junit_counts(b.p("pytest", "junit.xml"))
    problem = parity_problem(counts, res.exit_code)
    extra = {"junit": dict(counts)} if counts is not None else {}
    if problem:
        b.record("parity", HARD, problem, res, **extra)
        return 1
    b.record("parity", OK, "1 passed", res, **extra)
    return 0


def cli_command(b: Bundle, which: str) -> tuple[list[str], dict]:
    if which == "c":
        return b.cfg.c_argv(b.c.path), dict(b.cfg.env)
    return b.cfg.py_argv(sys.executable), {**b.cfg.env, "KMP_DUPLICATE_LIB_OK": "TRUE"}


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
        b.record(name, HARD, f"cannot prepare the hermetic run directory: {exc}")
        return 1
    argv, env = cli_command(b, which)
    hazards = hermetic.scan_hazards(argv, run_dir)
    stdout = b.p("cli", f"{which}_stdout.log")
    res = cmdlog.run(argv, cwd=run_dir, env=env, output_path=stdout, timeout_s=cfg.timeout_s, log_path=b.commands,
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
        b.record(name, HARD, reason, res, hazards=info["hazards"])
        return 1
    b.record(name, OK, f"wrote {floatfile}", res, hazards=info["hazards"])
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
    from tools.evidence import envcapture

    # The bundle, ledger and plan are written by the pipeline itself: not "uncommitted code".
    own = tuple(rel(p, b.root) for p in (b.outdir, b.cfg.resolve(b.cfg.ledger, b.root),
                                          b.cfg.resolve(b.cfg.plan, b.root)))
    info = envcapture.capture(b.root, b.c.path if b.c.ok else None, c_banner(b), ignore_prefix=own)
    info["c_binary"]["resolved_from"] = b.c.source
    info["c_binary"]["problem"] = b.c.problem
    write_json(b.p("env.json"), info)
    res = cmdlog.run([sys.executable, "-m", "torch.utils.collect_env"], cwd=b.root, output_path=b.p("torch_env.txt"),
                     timeout_s=b.cfg.timeout_s, log_path=b.commands, root=b.root)
    if res.exit_code != 0:
        b.record("env", HARD, f"torch.utils.collect_env exited {res.exit_code}", res)
        return 1
    b.record("env", OK, f"python {info['python']}, torch {info['torch']}, numpy {info['numpy']}", res)
    return 0


def step_metrics(b: Bundle) -> int:
    if not b.c.ok:
        return _missing_c(b, "metrics")
    from tools.metrics import compare_images, read_float_image, verdict

    cfg = b.cfg
    c_path, py_path = b.p("cli", cfg.c_floatfile), b.p("cli", cfg.py_floatfile)
    for p in (c_path, py_path):
        if not p.is_file():
            b.record("metrics", HARD, f"{rel(p, b.root)} is missing")
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

    # With profiles and histograms: the case's image is nearly flat, so the picture must carry numbers.
    write_compare_png(c_img, py_img, b.p("compare.png"), with_profiles=True,
                      title=f"{cfg.item} {b.run['stamp']}: r={m['correlation']:.6f}, sum ratio={m['sum_ratio']:.6f}")
    if not passed:
        b.record("metrics", HARD, "gate failed (anomaly): " + "; ".join(reasons), correlation=m["correlation"],
                 sum_ratio=m["sum_ratio"])
        return 1
    b.record("metrics", OK, f"r={m['correlation']:.9f}, sum_ratio={m['sum_ratio']:.9f}",
             correlation=m["correlation"], sum_ratio=m["sum_ratio"])
    return 0


def _finish_status(b: Bundle) -> None:
    """Steps that never ran (a chain stopped by a block, or a step run alone) are listed as such."""
    for name in STEPS[:-1]:
        if b.step(name) is None:
            b.record(name, SKIPPED, "not run")
    if b.verdict() != PASS and not b.blocks():
        missing = [s["step"] for s in b.steps() if s["status"] != OK and s["step"] in STEPS]
        b.record("incomplete", HARD, f"steps not run or not passed: {', '.join(missing)}")


def step_report(b: Bundle) -> int:
    """summary.md, the ledger Attempt (+ plan ticks on a clean PASS), blocking.md; prints the outcome line."""
    cfg = b.cfg
    _finish_status(b)
    verdict, hazards = b.verdict(), b.hazards()
    # The summary exists even if the ledger update below fails; it is rewritten at the end.
    atomic_write(b.p("summary.md"), report.render_summary(b))
    ledger_path = cfg.resolve(cfg.ledger, b.root)
    bundle_rel = rel(b.outdir, b.root) + "/"
    tick = verdict == PASS and not hazards and bool(cfg.plan_items)
    try:
        n = ledger.record_attempt(
            ledger_path, cfg.item, b.run["created"], report.attempt_result(b, hazards),
            report.attempt_body(b, verdict, read_json(b.p("metrics.json")), hazards), report.new_status(b, hazards),
            bundle=bundle_rel, plan_path=cfg.resolve(cfg.plan, b.root), plan_items=cfg.plan_items if tick else ())
    except (OSError, ledger.LedgerError) as exc:
        print(f"error: ledger {rel(ledger_path, b.root)}: {exc}", file=sys.stderr)
        return 1
    b.record("report", OK, f"verdict {verdict}", verdict=verdict, attempt=n, plan_ticked=tick,
             environment_block=b.blocked_by_environment())
    atomic_write(b.p("summary.md"), report.render_summary(b))
    if verdict != PASS:
        atomic_write(b.p("blocking.md"), report.render_blocking(b))
    print(report.outcome_line(b))
    return 0 if verdict == PASS else 1


STEP_FUNCS = {
    "collect": step_collect, "parity": step_parity, "cli_c": lambda b: step_cli(b, "c"),
    "cli_py": lambda b: step_cli(b, "py"), "env": step_env, "metrics": step_metrics, "report": step_report,
}

