"""The evidence steps as nox sessions (noxfile.py), `invoke phase-d` chaining them, and the shared environment
prepared once under a lock (tools/nox_env.py) — issue 20.

The fakes of test_pipeline_phase_d (a fake C program, a fake parity test, temporary ledger and plan) stand in
for the real programs; the fresh-clone test uses a stand-in environment (``NB_NOX_STANDIN_SITE``: this test
environment's packages made visible in the new `.nox/project` instead of installing torch) to stay fast.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from tests.pipeline import test_pipeline_phase_d as phase_d_tests
from tools import REPO, cmdlog, nox_env
from tools.evidence import phase_d
from tools.evidence.bundle import Bundle

case = phase_d_tests.case  # the fakes, the case file, the temporary ledger and plan
REQUIRED_FILES, attempts = phase_d_tests.REQUIRED_FILES, phase_d_tests.attempts
STEP_SESSIONS = ["collect", "parity", "cli_c", "cli_py", "env", "metrics", "ledger"]
needs_nox_invoke = pytest.mark.skipif(shutil.which("nox") is None or shutil.which("invoke") is None,
                                      reason="nox and invoke are installed with the [pipeline] extra")


# --- the sessions --------------------------------------------------------------------------------------------

def test_nox_lists_one_session_per_evidence_step_and_torch_sessions_share_the_project_environment():
    proc = subprocess.run([sys.executable, "-m", "nox", "-l"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    listed = {ln[2:].split(" -> ")[0]: ln.split(" -> ", 1)[1] for ln in proc.stdout.splitlines()
              if ln[:2] in ("* ", "- ")}
    assert set(STEP_SESSIONS) <= set(listed)
    assert {"project", "tests", "lint", "parity_matrix", "bench", "bench_grad"} <= set(listed)
    assert "phase_d" not in listed  # the chain is invoke's, one session per step
    assert all(listed[name].strip() for name in STEP_SESSIONS)  # one line of documentation each
    import noxfile

    # bench_grad too: `invoke bench-grad` runs it, since invoke's own interpreter need not hold torch
    for name in ("tests", "collect", "parity", "cli_py", "env", "metrics", "parity_matrix", "bench", "bench_grad"):
        func = getattr(noxfile, name)
        assert func.requires == ["project"] and func.venv_backend == "none", name
    for name in ("cli_c", "ledger"):  # the C run and the ledger need no torch: no environment at all
        func = getattr(noxfile, name)
        assert not func.requires and func.venv_backend == "none", name
    # invoke's chain runs exactly these sessions, in the bundle's step order, reusing the environment.
    chain = phase_d.nox_chain_commands(Path("reports/x"))
    assert [argv[3] for _, argv in chain] == STEP_SESSIONS
    assert all(argv[:3] == ["nox", "-R", "-s"] and argv[4:] == ["--", "--outdir", "reports/x"] for _, argv in chain)


def test_parity_alone_without_a_c_program_is_one_line_naming_nb_c_bin_and_a_failure(case, monkeypatch, capsys):
    monkeypatch.delenv("NB_C_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert phase_d.main(["parity", "--config", str(case())]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: not run:") and "export NB_C_BIN=" in lines[0]
    assert captured.out == ""


def test_parity_alone_prints_the_verdict_and_a_skip_is_not_a_pass(case, monkeypatch, capsys):
    cfg = case()
    assert phase_d.main(["parity", "--config", str(cfg), "--c-bin", str(case.fake)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("parity: PASS (")
    monkeypatch.setenv("FAKE_PARITY", "skip")
    assert phase_d.main(["parity", "--config", str(cfg), "--c-bin", str(case.fake)]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("parity: FAIL: evidence invalid: the parity test was SKIPPED") and "no C binary here" in last


def test_collect_alone_lists_the_case_tests(case, capsys):
    assert phase_d.main(["collect", "--config", str(case())]) == 0
    assert "test_fake_parity.py::test_parity" in capsys.readouterr().out


def test_a_step_that_works_on_a_bundle_asks_for_outdir(case, capsys):
    assert phase_d.main(["metrics", "--config", str(case())]) == 2
    assert "give --outdir DIR (`nox -s metrics -- --outdir DIR`)" in capsys.readouterr().err


def test_the_chain_hides_only_noxs_closing_lines():
    hidden = ["nox > Session parity failed.", "nox > Session ledger was successful in 3 seconds.",
              "nox > Ran 2 sessions in 5 seconds:", "nox > * project: success",
              "nox > Command .nox/project/bin/python -m tools.evidence.phase_d parity failed with exit code 1"]
    shown = ["nox > Running session parity", "parity: PASS (x)", "Phase D BLOCKED by the environment ...",
             "nox > Session parity aborted: interrupted", "  * project: a line of the job's own output"]
    assert all(phase_d.nox_summary_line(s) for s in hidden)
    assert not any(phase_d.nox_summary_line(s) for s in shown)


def test_a_streamed_run_echoes_the_accepted_lines_and_keeps_them_all(capfd):
    script = "print('keep 1'); print('drop'); print('keep 2')"
    res = cmdlog.run([sys.executable, "-c", script], stream=True, echo=lambda line: "drop" not in line)
    assert capfd.readouterr().out.splitlines() == ["keep 1", "keep 2"]
    assert res.stdout.splitlines() == ["keep 1", "drop", "keep 2"] and res.exit_code == 0


# --- the shared environment ------------------------------------------------------------------------------------

def test_the_environment_is_ready_only_for_the_pin_and_pyproject_it_was_built_from(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / nox_env.ENV_DIR).mkdir(parents=True)
    assert not nox_env.is_ready("torch==2.13.0", tmp_path)
    nox_env.mark_ready("torch==2.13.0", tmp_path)
    assert nox_env.is_ready("torch==2.13.0", tmp_path)
    assert not nox_env.is_ready("torch==2.12.0", tmp_path)  # another pin
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['gemmi']\n")
    assert not nox_env.is_ready("torch==2.13.0", tmp_path)  # a dependency added since


def test_two_chains_prepare_the_environment_once(tmp_path):
    # Both wait on the lock; the first builds (slowly), the second finds it ready and runs nothing.
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / nox_env.ENV_DIR).mkdir(parents=True)
    builds, results = [], []

    def build(argv):
        builds.append(argv)
        time.sleep(0.3)
        nox_env.mark_ready("pin", tmp_path)
        return 0

    threads = [threading.Thread(target=lambda: results.append(nox_env.prepare(build, "pin", tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert builds == [list(nox_env.PREPARE_COMMAND)] and sorted(results, key=str) == [0, None]


# --- invoke phase-d in a fresh clone ----------------------------------------------------------------------------

def _fresh_clone(dest: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored) in a new git repository: no .nox/."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def _invoke_env(**extra) -> dict:
    bindir = str(Path(sys.executable).parent)
    site = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if k not in ("NB_C_BIN", "VIRTUAL_ENV")}
    env.update({"PATH": bindir + os.pathsep + env.get("PATH", ""), "NB_NOX_STANDIN_SITE": site, **extra})
    return env


@needs_nox_invoke
def test_two_invoke_phase_d_started_together_in_a_fresh_clone_both_pass(case, tmp_path):
    clone = _fresh_clone(tmp_path / "clone")
    assert not (clone / ".nox").exists()
    cfg = case()
    cmd = ["invoke", "phase-d", "--config", str(cfg), "--c-bin", str(case.fake)]
    procs = [subprocess.Popen(cmd, cwd=clone, env=_invoke_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    bundles = sorted((case.tmp / "bundles").iterdir())
    assert len(bundles) == 2
    for d in bundles:
        assert all((d / name).is_file() for name in REQUIRED_FILES), d
        assert Bundle(d).step("report")["verdict"] == "PASS"
        # One `nox -R -s <session>` line per step, each with its exit code (0 for a PASS).
        nox_lines = [c for c in cmdlog.read_commands(d / "commands.txt") if c.command.startswith("nox -R -s ")]
        assert [c.command.split()[3] for c in nox_lines] == STEP_SESSIONS
        assert all(c.exit_code == 0 for c in nox_lines)
    # The environment was made once: exactly one of the two bundles logs `nox -s project`.
    made = [any(c.command == "nox -s project" for c in cmdlog.read_commands(d / "commands.txt")) for d in bundles]
    assert sorted(made) == [False, True]
    assert attempts(case) == [1, 2]
    # Each run ends on its outcome line, naming its bundle, which exists.
    for out in outs:
        last = out.strip().splitlines()[-1]
        assert last.startswith("Phase D PASS: ") and "Attempt #" in last
        assert Path(last.split("Phase D PASS: ")[1].split()[0]).is_dir()


@needs_nox_invoke
def test_a_blocked_run_is_said_once_at_the_end_without_noxs_failure_lines(case, tmp_path):
    clone = _fresh_clone(tmp_path / "clone")
    proc = subprocess.run(["invoke", "phase-d", "--config", str(case())], cwd=clone,
                          env=_invoke_env(PATH=str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin"),
                          capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    lines = out.strip().splitlines()
    assert sum("BLOCKED" in ln for ln in lines) == 1 and lines[-1].startswith("Phase D BLOCKED by the environment")
    assert "NB_C_BIN" in lines[-1] and "Attempt #1 recorded" in lines[-1]
    assert not [ln for ln in lines if phase_d.nox_summary_line(ln)]
    bundle = Path(lines[-1].rsplit("bundle ", 1)[1].rstrip("/"))
    assert (bundle / "blocking.md").is_file() and (bundle / "summary.md").is_file()
