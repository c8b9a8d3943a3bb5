"""The Phase D pipeline end to end with fake C and PyTorch programs (tools.evidence, tasks.py, noxfile.py).

The fakes write a smooth 16x16 float image (or fail in a chosen way, set by $FAKE_C / $FAKE_PY), the parity
"selector" is a tiny test file that checks the environment the pipeline must give it, and the ledger and
plan are temporary copies of the real ones. Most runs call the steps in-process with the environment step
stubbed (it imports torch and runs torch.utils.collect_env: slow); one run goes through the real command
line and every step as a subprocess.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import REPO, cmdlog
from tools.evidence import ledger, phase_d, steps
from tools.evidence.bundle import Bundle, BundleError
from tools.evidence.case import DEFAULT_CONFIG, load_case
from tools.files import write_json

COMMENTED_FIXTURE = "configs/fixtures/source_weights/two_sources.txt"

FAKE = r'''
import os, struct, sys
args = sys.argv[1:]
role = "py" if "--role=py" in args else "c"
args = [a for a in args if a != "--role=py"]
mode = os.environ.get("FAKE_" + role.upper(), "ok")
def val(flag, default):
    return args[args.index(flag) + 1] if flag in args else default
nf, ns = int(val("-detpixels_x", 16)), int(val("-detpixels_y", 16))
print("nanoBragg fake " + role)
print("  2 sources")
print("  1x1 pixel oversample steps")
if mode == "exit3":
    print("ERROR: fake failure")
    sys.exit(3)
if mode == "nooutput":
    sys.exit(0)
vals = [1.0 + 0.01 * ((i % nf) - nf / 2) ** 2 + 0.02 * (i // nf) for i in range(nf * ns)]
if mode == "nan":
    vals[5] = float("nan")
if mode == "zero":
    vals = [0.0] * len(vals)
if mode == "scale":
    vals = [v * 1.1 for v in vals]
with open(val("-floatfile", "floatimage.bin"), "wb") as fh:
    fh.write(struct.pack("<%df" % len(vals), *vals))
with open("intimage.img", "wb") as fh:
    fh.write(b"int")
'''

PARITY_TEST = '''
import os, pytest
def test_parity():
    if os.environ.get("FAKE_PARITY") == "skip":
        pytest.skip("no C binary here")
    # The environment the pipeline promises the real parity test:
    assert os.environ["NB_RUN_PARALLEL"] == "1"
    assert os.path.isfile(os.environ["NB_C_BIN"])
    assert os.environ["KMP_DUPLICATE_LIB_OK"] == "TRUE"
    assert os.environ["NB_PHASE_D_CONFIG"]
'''

LEDGER = """# Fix plan

## [SOURCE-WEIGHT-001] Weighted source normalization
- Status: open — Phase D parity evidence not captured yet

### Attempts
(no attempts yet)

## [OTHER-001] Another item
- Status: open
"""

PLAN = """# plan
- [x] A1 — fixtures
- [ ] D1 — collect
- [ ] D2 — parity
- [ ] D3 — CLI runs
- [ ] D4 — gate
- [ ] D5 — bundle and Attempt
"""

REQUIRED_FILES = ["commands.txt", "pytest_collect.log", "pytest/pytest.log", "cli/c_stdout.log", "cli/py_stdout.log",
                  "cli/c_weight.bin", "cli/py_weight.bin", "env.json", "torch_env.txt", "metrics.json", "summary.md",
                  "compare.png"]


@pytest.fixture
def case(tmp_path):
    """Write fakes, a parity test, ledger/plan copies and a case file; return a factory of case files."""
    fake = tmp_path / "fake_nanoBragg"
    fake.write_text(f"#!{sys.executable}\n{FAKE}")
    fake.chmod(0o755)
    ptests = tmp_path / "ptests"
    ptests.mkdir()
    (ptests / "test_fake_parity.py").write_text(PARITY_TEST)
    # Fresh ledger and plan in the checked-in format (the real ones already hold Attempts and ticks).
    (tmp_path / "fix_plan.md").write_text(LEDGER)
    (tmp_path / "plan.md").write_text(PLAN)
    base = load_case()
    argv = ["16" if prev in ("-detpixels_x", "-detpixels_y") else a for prev, a in zip(("",) + base.argv, base.argv)]

    def make(name="case.toml", item=None, source=None):
        run_argv = list(argv)
        inputs = list(base.inputs)
        if source:  # another source file, same flags
            src_input = next(p for p in inputs if p.endswith(".txt"))
            inputs[inputs.index(src_input)] = source
            run_argv[run_argv.index("-sourcefile") + 1] = Path(source).name
        lines = [f"extends = {json.dumps(str(DEFAULT_CONFIG))}", "[case]",
                 f"bundle_root = {json.dumps(str(tmp_path / 'bundles'))}",
                 f"ledger = {json.dumps(str(tmp_path / 'fix_plan.md'))}",
                 f"plan = {json.dumps(str(tmp_path / 'plan.md'))}"]
        if item:
            lines.append(f"item = {json.dumps(item)}")
        lines += ["[tests]", f"collect = {json.dumps([str(ptests)])}",
                  f"parity_selector = {json.dumps(str(ptests / 'test_fake_parity.py') + '::test_parity')}",
                  "[run]", "shape = [16, 16]", "timeout_s = 120", f"inputs = {json.dumps(inputs)}",
                  f"argv = {json.dumps(run_argv)}", f"py_command = {json.dumps(['{python}', str(fake), '--role=py'])}"]
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    make.fake = fake
    make.tmp = tmp_path
    return make


def _stub_env(b):
    """Environment step without torch: the real one is exercised by test_pass_bundle_end_to_end."""
    write_json(b.p("env.json"), {"stub": True})
    b.p("torch_env.txt").write_text("stub\n")
    b.record("env", "ok", "stubbed in tests")
    return 0


def _result(argv, code, output=""):
    return cmdlog.RunResult(list(argv), cmdlog.format_command(argv), None, code, output, "", 0.0)


def in_process(argv):
    """Run a chain command (``python -m tools.evidence.phase_d STEP --outdir DIR``) in this process."""
    return _result(argv, phase_d.run_step(argv[3], argv[5]))


def run_inprocess(cfg_path, c_bin, monkeypatch, stamp="S1", runner=in_process):
    monkeypatch.setitem(steps.STEP_FUNCS, "env", _stub_env)
    cfg = load_case(cfg_path)
    outdir = cfg.resolve(cfg.bundle_root) / stamp
    phase_d.init_bundle(outdir, cfg_path, c_bin)
    code = phase_d.run_chain(outdir, phase_d.chain_commands(outdir, python=sys.executable), runner)
    return code, Bundle(outdir)


def statuses(b):
    return {s["step"]: s["status"] for s in b.steps()}


def attempts(case):
    return ledger.attempt_numbers((case.tmp / "fix_plan.md").read_text(), "SOURCE-WEIGHT-001")


def test_pass_bundle_end_to_end(case):
    # The real command line, every step a subprocess, the real environment capture: a complete PASS bundle.
    cfg = case()
    outdir = case.tmp / "bundles" / "S1"
    proc = subprocess.run([sys.executable, "-m", "tools.evidence.phase_d", "run", "--config", str(cfg), "--c-bin",
                           str(case.fake), "--outdir", str(outdir)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in REQUIRED_FILES:
        assert (outdir / name).is_file(), name
    assert not (outdir / "blocking.md").exists()
    # Hermetic runs: only the inputs stay in the run directories; C's other default outputs were recorded.
    assert sorted(p.name for p in (outdir / "cli" / "c_run").iterdir()) == ["A.mat", "two_sources_nc.txt"]
    c_run = json.loads((outdir / "cli" / "c_run.json").read_text())
    assert set(c_run["outputs"]["written"]) == {"c_weight.bin", "intimage.img"} and c_run["hazards"] == []
    # commands.txt: every line well formed, all exit 0; the two CLI runs with an explicit -oversample 1.
    cmds = cmdlog.read_commands(outdir / "commands.txt")
    assert cmds and all(c.exit_code == 0 for c in cmds)
    cli = [c.command for c in cmds if "-floatfile" in c.command]
    assert len(cli) == 2 and all("-oversample 1" in c for c in cli)
    assert cli[0].startswith(f"cd {outdir}/cli/c_run && {case.fake} ")
    metrics = json.loads((outdir / "metrics.json").read_text())
    for key in ("sum_c", "sum_py", "max_c", "max_py", "sum_ratio", "correlation", "rmse", "max_abs_diff",
                "max_abs_diff_pixel", "nan_c", "nan_py", "shape", "dtype", "oversample", "thresholds", "verdict"):
        assert key in metrics, key
    assert metrics["verdict"] == "PASS" and metrics["correlation"] == 1.0 and metrics["shape"] == [16, 16]
    assert metrics["oversample"] == {"c": {"explicit": "1", "reported": 1}, "py": {"explicit": "1", "reported": 1}}
    env = json.loads((outdir / "env.json").read_text())
    assert env["python"] == sys.version.split()[0] and env["torch"] and env["numpy"] and env["cpu_count"]
    assert env["c_binary"]["path"] == str(case.fake.resolve()) and env["c_binary"]["banner"] == "nanoBragg fake c"
    assert len(env["c_binary"]["sha256"]) == 64 and "sha" in env["git"] and "dirty" in env["git"]
    assert "PyTorch version" in (outdir / "torch_env.txt").read_text()
    summary = (outdir / "summary.md").read_text()
    assert "**Verdict: PASS**" in summary and summary.count("`-oversample 1` explicit") == 2
    assert "![C / PyTorch / difference](compare.png)" in summary
    # Ledger Attempt #1 PASS and the plan's D items ticked with this bundle.
    text = (case.tmp / "fix_plan.md").read_text()
    assert attempts(case) == [1] and f"Bundle: `{outdir}/`" in text
    assert ledger.item_status(text, "SOURCE-WEIGHT-001").startswith("done — Phase D parity evidence PASS")
    plan = (case.tmp / "plan.md").read_text()
    assert plan.count(f"— evidence: `{outdir}/`") == 5


def test_two_runs_started_together_give_two_bundles_and_two_ordered_attempts(case):
    # Issue 12.3: two `phase_d run` processes on one case at the same moment (the real command line, fake
    # programs). Both take a stamp in the same second, so one must move to the next second's directory;
    # both bundles are complete; the ledger gets Attempts #1 and #2, one per bundle, in file order, and
    # the plan's evidence is the bundle of the later Attempt.
    cfg = case()
    cmd = [sys.executable, "-m", "tools.evidence.phase_d", "run", "--config", str(cfg), "--c-bin", str(case.fake)]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    bundles = sorted((case.tmp / "bundles").iterdir())
    assert len(bundles) == 2 and bundles[0].name != bundles[1].name
    for d in bundles:
        assert all((d / name).is_file() for name in REQUIRED_FILES), d
        assert Bundle(d).step("report")["verdict"] == "PASS"
    text = (case.tmp / "fix_plan.md").read_text()
    assert attempts(case) == [1, 2] and text.count("#### Attempt #") == 2
    by_attempt = {Bundle(d).step("report")["attempt"]: d for d in bundles}
    assert sorted(by_attempt) == [1, 2]
    assert text.index(f"Bundle: `{by_attempt[1]}/`") < text.index(f"Bundle: `{by_attempt[2]}/`")
    assert (case.tmp / "plan.md").read_text().count(f"`{by_attempt[2]}/`") == 5


def test_second_run_is_a_new_bundle_and_attempt(case, monkeypatch):
    cfg = case()
    assert run_inprocess(cfg, case.fake, monkeypatch, stamp="S1")[0] == 0
    code, b2 = run_inprocess(cfg, case.fake, monkeypatch, stamp="S2")
    assert code == 0 and attempts(case) == [1, 2]
    plan = (case.tmp / "plan.md").read_text()
    assert plan.count(f"`{b2.outdir}/`") == 5 and "/S1/" not in plan  # evidence points at the newest bundle
    with pytest.raises(BundleError, match="already exists"):  # a stamp is never reused
        phase_d.init_bundle(b2.outdir, cfg, case.fake)


def test_skipped_parity_test_is_invalid_evidence(case, monkeypatch):
    monkeypatch.setenv("FAKE_PARITY", "skip")
    code, b = run_inprocess(case(), case.fake, monkeypatch)
    assert code == 1
    st = statuses(b)
    assert st["parity"] == "blocked" and st["cli_c"] == st["metrics"] == "skipped"
    assert "SKIPPED" in b.step("parity")["reason"] and "no C binary here" in b.step("parity")["reason"]
    assert "evidence invalid" in b.p("blocking.md").read_text()
    assert not b.p("metrics.json").exists()
    assert "Attempt #1 — " in (case.tmp / "fix_plan.md").read_text() and attempts(case) == [1]
    assert (case.tmp / "plan.md").read_text() == PLAN


def test_failing_c_binary_blocks_with_command_exit_code_and_tail(case, monkeypatch):
    monkeypatch.setenv("FAKE_C", "exit3")
    code, b = run_inprocess(case(), case.fake, monkeypatch)
    assert code == 1
    assert statuses(b)["cli_c"] == "blocked" and statuses(b)["cli_py"] == "skipped"
    blocking = b.p("blocking.md").read_text()
    assert "- Exit code: 3" in blocking and "ERROR: fake failure" in blocking
    assert f"cd {b.outdir}/cli/c_run && {case.fake} -mat A.mat" in blocking
    assert not b.p("cli", "py_weight.bin").exists()
    assert "**Verdict: BLOCKED**" in b.p("summary.md").read_text()
    text = (case.tmp / "fix_plan.md").read_text()
    assert "— BLOCKED" in text and ledger.item_status(text, "SOURCE-WEIGHT-001").startswith("blocked")


@pytest.mark.parametrize("mode, reason", [("nan", "1 NaN"), ("zero", "all zero"), ("nooutput", "no float image")])
def test_invalid_c_image_blocks(case, monkeypatch, mode, reason):
    monkeypatch.setenv("FAKE_C", mode)
    code, b = run_inprocess(case(), case.fake, monkeypatch)
    assert code == 1 and statuses(b)["cli_c"] == "blocked" and reason in b.step("cli_c")["reason"]


def test_missing_c_binary_still_runs_every_pytorch_step(case, monkeypatch, capsys):
    code, b = run_inprocess(case(), case.tmp / "no-nanoBragg-here", monkeypatch)
    assert code == 1
    st = statuses(b)
    assert st["collect"] == st["cli_py"] == st["env"] == "ok"
    assert st["parity"] == st["cli_c"] == st["metrics"] == "missing_c"
    assert b.p("cli", "py_weight.bin").stat().st_size == 16 * 16 * 4
    blocking = b.p("blocking.md").read_text()
    assert "## No C binary" in blocking and "export NB_C_BIN=/path/to/nanoBragg" in blocking
    # The terminal's last line names what is missing and how to provide it.
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("Phase D BLOCKED by the environment, not by the code: C binary")
    assert "does not exist" in last and "export NB_C_BIN=/path/to/nanoBragg" in last and "Attempt #1" in last


def _after_a_pass(case):
    """The tmp ledger and plan as a PASS Attempt #1 leaves them: the item done, the D items ticked."""
    done = "done — Phase D parity evidence PASS (Attempt #1, 2026-01-01, `reports/x/S0/`)"
    text = LEDGER.replace("- Status: open — Phase D parity evidence not captured yet", f"- Status: {done}")
    (case.tmp / "fix_plan.md").write_text(text.replace("(no attempts yet)", "#### Attempt #1 — t — PASS\n- b"))
    plan = ledger.tick_items(PLAN, ["D1", "D2", "D3", "D4", "D5"], "reports/x/S0/")
    (case.tmp / "plan.md").write_text(plan)
    return done, plan


def test_an_environment_block_is_recorded_but_keeps_the_items_status(case, monkeypatch):
    # Issue 10.1: after a PASS, a run without a C binary gets its Attempt (#2, marked as an environment
    # block) but the item stays done with the PASS bundle as its evidence, and the plan keeps its ticks:
    # a missing binary says nothing about the code.
    done, plan = _after_a_pass(case)
    code, b = run_inprocess(case(), case.tmp / "no-nanoBragg-here", monkeypatch, stamp="S2")
    assert code == 1
    text = (case.tmp / "fix_plan.md").read_text()
    assert attempts(case) == [1, 2]
    assert text.split("#### Attempt #2 — ")[1].splitlines()[0].endswith("— BLOCKED (environment: no C binary)")
    assert ledger.item_status(text, "SOURCE-WEIGHT-001") == done
    assert (case.tmp / "plan.md").read_text() == plan
    assert b.step("report")["environment_block"] is True


def test_a_real_failure_after_a_pass_does_change_the_status(case, monkeypatch):
    # The contrast to the environment block: a failing C run is a failed attempt and the status says so.
    _after_a_pass(case)
    monkeypatch.setenv("FAKE_C", "exit3")
    assert run_inprocess(case(), case.fake, monkeypatch, stamp="S2")[0] == 1
    status = ledger.item_status((case.tmp / "fix_plan.md").read_text(), "SOURCE-WEIGHT-001")
    assert status.startswith("blocked — Phase D Attempt #2") and "cli_c" in status


def test_gate_failure_is_recorded_as_an_anomaly(case, monkeypatch):
    # PyTorch image 10% brighter: r = 1 but sum_ratio 1.1 > 1 + 5e-3.
    monkeypatch.setenv("FAKE_PY", "scale")
    code, b = run_inprocess(case(), case.fake, monkeypatch)
    assert code == 1
    m = json.loads(b.p("metrics.json").read_text())
    assert m["verdict"] == "FAIL" and m["sum_ratio"] == pytest.approx(1.1, rel=1e-6)
    assert "sum_ratio" in m["reasons"][0] and b.p("compare.png").is_file()
    assert "gate failed (anomaly)" in b.p("blocking.md").read_text()
    assert (case.tmp / "plan.md").read_text() == PLAN


def test_commented_fixture_runs_and_is_flagged(case, monkeypatch):
    # The fakes ignore the file, so the gate passes; the '#' lines are still flagged and the plan is not
    # ticked: a flagged run is not clean evidence.
    code, b = run_inprocess(case(source=COMMENTED_FIXTURE), case.fake, monkeypatch)
    assert code == 0
    summary = b.p("summary.md").read_text()
    assert "⚠ two_sources.txt has '#' lines [1, 2]" in summary
    text = (case.tmp / "fix_plan.md").read_text()
    assert "— PASS (flagged)" in text and ledger.item_status(text, "SOURCE-WEIGHT-001").startswith("in_progress")
    assert (case.tmp / "plan.md").read_text() == PLAN


def test_input_flags_are_reported_even_when_the_run_stops_early(case, monkeypatch):
    # The inputs are checked before anything runs, so a run blocked at the parity test still names the
    # '#' lines as a likely cause.
    monkeypatch.setenv("FAKE_PARITY", "skip")
    code, b = run_inprocess(case(source=COMMENTED_FIXTURE), case.fake, monkeypatch)
    assert code == 1 and [h["code"] for h in b.run["preflight"]["hazards"]] == ["source_comments"]
    assert "## Input flags (a likely cause)" in b.p("blocking.md").read_text()
    assert "⚠ two_sources.txt has '#' lines [1, 2]" in b.p("summary.md").read_text()


def test_a_missing_input_refuses_the_case(case):
    cfg = case(source="configs/fixtures/no-such-fixture.txt")
    with pytest.raises(BundleError, match="does not exist"):
        phase_d.init_bundle(case.tmp / "bundles" / "X", cfg, case.fake)
    assert not (case.tmp / "bundles").exists()


def test_a_step_command_that_dies_before_recording_is_recorded_by_the_chain(case, monkeypatch):
    # e.g. `nox -s cli_c` failing to build its environment: the chain records the command and its output.
    def runner(argv):
        if argv[3] == "cli_c":
            return _result(argv, 2, "Traceback (most recent call last):\nImportError: cannot import torch")
        return in_process(argv)

    code, b = run_inprocess(case(), case.fake, monkeypatch, runner=runner)
    assert code == 1
    entry = b.step("cli_c")
    assert entry["status"] == "blocked" and entry["exit_code"] == 2 and "cannot import torch" in entry["tail"]
    assert statuses(b)["cli_py"] == "skipped"
    assert any(c.exit_code == 2 and " cli_c " in c.command for c in cmdlog.read_commands(b.commands))


def test_unknown_ledger_item_is_refused_before_anything_runs(case):
    cfg = case(item="NOPE-001")
    with pytest.raises(BundleError, match=r"unknown ledger item \[NOPE-001\]"):
        phase_d.init_bundle(case.tmp / "bundles" / "X", cfg, case.fake)
    assert not (case.tmp / "bundles").exists()


def test_a_session_alone_starts_a_bundle_in_outdir(case, monkeypatch):
    # `OUTDIR=dir nox -s cli_c` on a directory without run.json: the step starts the bundle there.
    out = case.tmp / "alone"
    out.mkdir()
    assert phase_d.run_step("cli_c", out, case(), case.fake) == 0
    assert (out / "run.json").is_file() and (out / "cli" / "c_weight.bin").stat().st_size == 16 * 16 * 4


def test_dry_run_prints_every_command_and_creates_nothing(case, capsys):
    cfg = case()
    assert phase_d.main(["run", "--config", str(cfg), "--c-bin", str(case.fake), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "NB_RUN_PARALLEL=1" in out and "--collect-only" in out and "torch.utils.collect_env" in out
    c_line = next(ln for ln in out.splitlines() if f"{case.fake} -mat" in ln)
    assert "/cli/c_run &&" in c_line and "-oversample 1" in c_line
    assert "-dtype float64 -device cpu" in out
    assert not (case.tmp / "bundles").exists()


@pytest.mark.skipif(importlib.util.find_spec("invoke") is None, reason="invoke not installed")
def test_invoke_phase_d_dry_run_lists_the_sessions_in_order(case):
    cfg = case()
    proc = subprocess.run([sys.executable, "-m", "invoke", "phase-d", "--dry-run", "--config", str(cfg),
                           "--c-bin", str(case.fake)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("nox ")]
    assert lines[0].startswith("nox -s project ")  # the environment first, under the lock
    assert [ln.split()[3] for ln in lines[1:]] == ["collect", "parity", "cli_c", "cli_py", "env", "metrics", "ledger"]
    assert all(ln.startswith("nox -R -s ") for ln in lines[1:])
    assert not (case.tmp / "bundles").exists()


@pytest.mark.skipif(importlib.util.find_spec("invoke") is None, reason="invoke not installed")
def test_invoke_list_shows_whole_descriptions():
    # Issue 10.9: `invoke -l` shows each task's first docstring line, so that line must be a whole sentence.
    import tasks

    for name in ("phase_d", "metrics", "ledger", "phase_d_check", "tests", "lint", "parity_matrix", "bench",
                 "interop"):
        first = getattr(tasks, name).__doc__.strip().splitlines()[0]
        assert first.endswith(".") or first.endswith(")"), (name, first)


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_downstream_gate_wants_a_pass_bundle_of_the_current_code(case, tmp_path):
    # A PASS bundle made at commit X vouches for X and later commits that do not touch src/; a later src/
    # change (committed or not) needs a new bundle.
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    (repo / "src" / "a.py").write_text("x = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "code")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout
    cfg = case()
    bundle = case.tmp / "bundles" / "20250101T000000Z"
    bundle.mkdir(parents=True)
    write_json(bundle / "status.json", {"steps": [{"step": "report", "status": "ok", "verdict": "PASS"}]})
    write_json(bundle / "env.json", {"git": {"sha": sha.strip(), "dirty": False, "changed": []}})
    assert phase_d.passing_bundle_for_code(cfg, root=repo) == bundle
    (repo / "src" / "a.py").write_text("x = 2\n")
    with pytest.raises(BundleError, match="uncommitted"):
        phase_d.passing_bundle_for_code(cfg, root=repo)
    _git(repo, "commit", "-q", "-am", "change")
    with pytest.raises(BundleError, match="no passing Phase D bundle"):
        phase_d.passing_bundle_for_code(cfg, root=repo)
