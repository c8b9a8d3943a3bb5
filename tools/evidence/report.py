"""What a person reads about a Phase D bundle: summary.md, blocking.md, the ledger Attempt and the one line
printed at the end of a run (what happened and, for a block, what to do)."""
from __future__ import annotations

import os

from tools import cmdlog
from tools.cbin import ENV_VAR as C_BIN_ENV
from tools.cbin import HOW_TO as C_BIN_HOW_TO
from tools.evidence.bundle import BLOCKED, ENVIRONMENT, PASS, Bundle
from tools.files import read_json, rel

STEP_TITLES = {
    "collect": "pytest --collect-only", "parity": "parity test selector", "cli_c": "C CLI run",
    "cli_py": "PyTorch CLI run", "env": "environment capture", "metrics": "metrics and gate",
    "report": "summary and ledger", "incomplete": "incomplete run",
}


def _read_json(b: Bundle, *parts):
    return read_json(b.p(*parts))


def _fmt(x, spec=".9g"):
    return "n/a" if x is None else format(x, spec)


def _steps_table(b: Bundle) -> list[str]:
    rows = ["| step | status | exit | note |", "| --- | --- | --- | --- |"]
    for s in b.steps():
        note = str(s.get("reason", "")).replace("|", "\\|")
        rows.append(f"| {s['step']} | {s['status']} | {s.get('exit_code', '')} | {note} |")
    return rows


def _commands(b: Bundle) -> list[str]:
    try:
        cmds = cmdlog.read_commands(b.commands)
    except ValueError as exc:
        return [f"(commands.txt unreadable: {exc})"]
    if not cmds:
        return ["(none)"]
    return [f"{i}. `{c.command}` → exit {c.exit_code} ({c.started})" for i, c in enumerate(cmds, 1)]


def _hint(step: dict) -> str | None:
    if step["status"] == ENVIRONMENT:
        return None  # one "How to unblock" paragraph at the top
    if step["step"] == "parity" and "SKIPPED" in step.get("reason", ""):
        return (f"How to unblock: the selector only runs with NB_RUN_PARALLEL=1 and an existing {C_BIN_ENV}; "
                "read pytest/pytest.log for the skip reason.")
    if step["step"] == "metrics":
        return ("The images disagree beyond the gate: compare.png and metrics.json show where; check the "
                "summary's input flags (e.g. '#' lines in a source file) before suspecting the port.")
    return None


def render_blocking(b: Bundle) -> str:
    cfg = b.cfg
    lines = [f"# BLOCKED — [{cfg.item}] Phase D bundle {b.run['stamp']}", "",
             ("This bundle is **not** valid parity evidence: nothing downstream (performance work, closing the "
             "ledger item) may rely on it."), ""]
    if any(s["status"] == ENVIRONMENT for s in b.blocks()):
        lines += ["## No C binary", "", b.c.problem.split(";")[0] + ".", "",
                  (f"How to unblock: {C_BIN_HOW_TO}. Then run `invoke phase-d` again (it takes a new stamp). "
                  "Every PyTorch step of this bundle ran; the C-dependent steps below did not."), ""]
    hazards = b.hazards()
    if hazards:
        lines += ["## Input flags (a likely cause)", "",
                  "The case's inputs make C's result differ from what the case intends:", "",
                  *[f"- ⚠ {h}" for h in hazards], ""]
    for s in b.blocks():
        lines += [f"## {s['step']} ({STEP_TITLES.get(s['step'], s['step'])}): {s['status']}", "",
                  f"- Reason: {s['reason']}"]
        if s.get("command"):
            lines.append(f"- Command: `{s['command']}`")
        if "exit_code" in s:
            lines.append(f"- Exit code: {s['exit_code']}")
        hint = _hint(s)
        if hint:
            lines.append(f"- {hint}")
        if s.get("tail"):
            lines += ["- Output tail:", "", "```text", s["tail"], "```"]
        lines.append("")
    lines += ["## All steps", "", *_steps_table(b), ""]
    return "\n".join(lines)


def _metrics_table(m: dict) -> list[str]:
    g = m["thresholds"]
    dev = abs(m["sum_ratio"] - 1.0)
    return [
        "| quantity | C | PyTorch | gate |", "| --- | --- | --- | --- |",
        f"| total (sum) | {_fmt(m['sum_c'])} | {_fmt(m['sum_py'])} | |",
        f"| maximum | {_fmt(m['max_c'])} | {_fmt(m['max_py'])} | |",
        f"| NaN pixels | {m['nan_c']} | {m['nan_py']} | equal |",
        f"| sum ratio py/C | | {_fmt(m['sum_ratio'], '.9f')} (|Δ| {dev:.3g}) | ≤ {g['max_sum_ratio_dev']} |",
        f"| Pearson r | | {_fmt(m['correlation'], '.9f')} | ≥ {g['min_correlation']} |",
        f"| RMSE | | {_fmt(m['rmse'])} | |",
        (f"| max abs diff | | {_fmt(m['max_abs_diff'])} at [slow, fast] {m['max_abs_diff_pixel']} "
        f"({_fmt(m['max_abs_diff_rel'], '.3g')} of max C) | "
        f"{'≤ ' + str(g['max_abs_diff_rel']) if g.get('max_abs_diff_rel') is not None else 'not gated'} |"),
    ]


def render_summary(b: Bundle) -> str:
    cfg = b.cfg
    verdict = b.verdict()
    m = _read_json(b, "metrics.json")
    env = _read_json(b, "env.json") or {}
    runs = {w: _read_json(b, "cli", f"{w}_run.json") for w in ("c", "py")}
    hazards = b.hazards()
    lines = [f"# [{cfg.item}] Phase D parity evidence — {b.run['stamp']}", "",
             f"**Verdict: {verdict}**" + (" — see [blocking.md](blocking.md)" if verdict == BLOCKED else ""), "",
             f"- Case: {cfg.title}",
             (f"- Config: `{b.run['config']}`; PyTorch dtype {cfg.dtype}, device {cfg.device}; image {cfg.shape[0]}x"
             f"{cfg.shape[1]} (slow x fast)")]
    git = env.get("git") or {}
    if git:
        lines.append(f"- Code: git `{git.get('sha')}`{' with uncommitted changes' if git.get('dirty') else ' (clean)'}")
    cb = env.get("c_binary") or b.run["c_binary"]
    lines.append(f"- C binary: `{cb.get('path')}`" + (f" sha256 `{cb['sha256']}`" if cb.get("sha256") else "")
                 + (f", banner \"{cb['banner']}\"" if cb.get("banner") else "")
                 + (f" — {b.c.problem}" if not b.c.ok else ""))
    if env:
        lines.append(f"- Python {env.get('python')}, torch {env.get('torch')}, numpy {env.get('numpy')}, "
                     f"{env.get('cpu_count')} CPUs, torch threads {env.get('torch_threads')}")
    lines.append("")
    if m:
        lines += ["## Metrics", "", *_metrics_table(m), ""]
        if m.get("reasons"):
            lines += ["Gate failures: " + "; ".join(m["reasons"]), ""]
        lines += ["![C / PyTorch / difference](compare.png)", ""]
    lines += ["## Oversampling", ""]
    for w, name in (("c", "C"), ("py", "PyTorch")):
        r = runs[w]
        if r is None:
            lines.append(f"- {name}: not run")
            continue
        exp = r.get("oversample_explicit")
        rep = (r.get("reported") or {}).get("oversample")
        lines.append(f"- {name}: `-oversample {exp}` explicit on the command line" if exp is not None
                     else f"- {name}: **-oversample NOT given** (auto-selected)")
        if rep is not None:
            lines[-1] += f"; the program reported {rep}x{rep} sub-pixels"
    lines += ["", "## Input flags", ""]
    if hazards:
        lines += [("These inputs make C's result differ from what the case intends; a flagged run is never "
                  "clean evidence (the plan is not ticked):"), ""]
        lines += [f"- ⚠ {h}" for h in hazards]
    else:
        lines.append("None: no Fdump.bin in the run directories, no `#` lines in source/HKL files, "
                     "-oversample explicit.")
    lines += ["", "## Inputs (copied into fresh run directories)", "", "| file | from | sha256 | bytes |",
              "| --- | --- | --- | --- |"]
    seen = set()
    for r in runs.values():
        for i in (r or {}).get("inputs", []):
            if i["name"] not in seen:
                seen.add(i["name"])
                lines.append(f"| {i['name']} | `{i['source']}` | `{i['sha256']}` | {i['bytes']} |")
    lines += ["", "## Commands (exit code)", "", *_commands(b), "", "## Steps", "", *_steps_table(b), "",
              "## Files", ""]
    for name, what in (("commands.txt", "every command, UTC time and exit code"),
                       ("pytest_collect.log", "pytest --collect-only -q"),
                       ("pytest/pytest.log", f"parity selector `{cfg.parity_selector}`"),
                       ("cli/c_stdout.log", "C stdout+stderr"), ("cli/py_stdout.log", "PyTorch stdout+stderr"),
                       (f"cli/{cfg.c_floatfile}", "C float image"), (f"cli/{cfg.py_floatfile}", "PyTorch float image"),
                       ("cli/c_run.json", "C run record (inputs, flags, outputs)"),
                       ("cli/py_run.json", "PyTorch run record"),
                       ("env.json", "versions, git, C binary"), ("torch_env.txt", "python -m torch.utils.collect_env"),
                       ("metrics.json", "metrics and verdict"), ("compare.png", "C / PyTorch / difference"),
                       ("blocking.md", "why the run is blocked")):
        if b.p(name).exists():
            lines.append(f"- [{name}]({name}) — {what}")
    return "\n".join(lines) + "\n"


def attempt_body(b: Bundle, verdict: str, m: dict | None, hazards: list[str]) -> list[str]:
    """Bullet lines of the ledger Attempt for this bundle."""
    bundle = rel(b.outdir, b.root) + "/"
    body = [f"Bundle: `{bundle}` ([summary]({_link(b, 'summary.md')}))", f"Config: `{b.run['config']}`"]
    if m:
        body.append(f"Metrics: correlation {m['correlation']:.9f}, sum_ratio {m['sum_ratio']:.9f}, "
                    f"max |Δ| {m['max_abs_diff']:.3g} at {m['max_abs_diff_pixel']}, sums C {m['sum_c']:.6g} / "
                    f"PyTorch {m['sum_py']:.6g} (gate r ≥ {m['thresholds']['min_correlation']}, "
                    f"|sum_ratio−1| ≤ {m['thresholds']['max_sum_ratio_dev']})")
    if b.blocked_by_environment():
        body.append(f"Blocked by the environment: {b.c.problem.split(';')[0]}; steps "
                    f"{', '.join(s['step'] for s in b.blocks())} not run, every PyTorch step passed")
    elif verdict != PASS:
        for s in b.blocks():
            body.append(f"Blocked at {s['step']}: {s['reason']}")
    body.append("Flags: " + ("; ".join(hazards) if hazards else "none"))
    if b.run.get("invocation"):
        body.append(f"Run with: `{b.run['invocation']}`")
    try:
        cmds = cmdlog.read_commands(b.commands)
    except ValueError:
        cmds = []
    body.append("Commands (exit code), all in `commands.txt`:")
    body += [f"  - `{c.command}` → {c.exit_code}" for c in cmds if " -m tools.evidence.phase_d " not in c.command]
    return body


def _link(b: Bundle, name: str) -> str:
    """Relative link from the ledger file to a bundle file."""
    ledger_dir = b.cfg.resolve(b.cfg.ledger, b.root).parent
    return os.path.relpath(b.p(name), ledger_dir)


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def attempt_result(b: Bundle, hazards: list[str]) -> str:
    """The Attempt heading's result: PASS, PASS (flagged), BLOCKED (environment: ...) or BLOCKED."""
    if b.verdict() == PASS:
        return "PASS" + (" (flagged)" if hazards else "")
    return "BLOCKED (environment: no C binary)" if b.blocked_by_environment() else "BLOCKED"


def new_status(b: Bundle, hazards: list[str]):
    """The item's new status line for Attempt #n (a function of n), or None to keep the status as it is.

    A block by the environment says nothing about the code, so it keeps the item's last status (a done item
    stays done); a PASS or a failed attempt rewrites it.
    """
    if b.blocked_by_environment():
        return None
    when, bundle = b.run["created"], rel(b.outdir, b.root) + "/"
    if b.verdict() == PASS:
        state = "in_progress" if hazards else "done"
        return lambda n: (f"{state} — Phase D parity evidence {attempt_result(b, hazards)} (Attempt #{n}, "
                          f"{when[:10]}, `{bundle}`)")
    first = b.blocks()[0]
    return lambda n: f"blocked — Phase D Attempt #{n} ({when[:10]}): {first['step']}: {_short(first['reason'])}"


def outcome_line(b: Bundle) -> str:
    """One line for the terminal: the verdict, the Attempt, and for a block what is missing and how to fix it."""
    report = b.step("report") or {}
    bundle = rel(b.outdir, b.root) + "/"
    attempt = f"ledger [{b.cfg.item}] Attempt #{report['attempt']}" if report.get("attempt") else "no ledger Attempt"
    if b.verdict() == PASS:
        return f"Phase D PASS: {bundle} ({attempt}{', plan ticked' if report.get('plan_ticked') else ''})"
    if b.blocked_by_environment():
        return (f"Phase D BLOCKED by the environment, not by the code: {b.c.problem.split(';')[0]}. To provide it: "
                f"build the C program (README, 'Getting the C reference'), `export {C_BIN_ENV}=/path/to/nanoBragg`"
                f" and run `invoke phase-d` again. Every PyTorch step passed; {attempt} recorded, the item keeps "
                f"its status; bundle {bundle}")
    first = b.blocks()[0] if b.blocks() else {"step": "?", "reason": "see blocking.md"}
    return (f"Phase D BLOCKED at {first['step']}: {_short(first['reason'])} ({attempt}; "
            f"details in {bundle}blocking.md)")
