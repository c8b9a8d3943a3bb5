"""tools.perf.profile: refuses without a PASS Phase D bundle for the current code; otherwise writes a profile bundle."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tools.evidence import phase_d
from tools.evidence.bundle import BLOCKED, PASS, BundleError
from tools.perf import profile as prof
from tools.evidence.case import DEFAULT_CONFIG, load_case

REPO = Path(__file__).resolve().parents[2]


def test_refuses_without_a_passing_bundle(tmp_path, monkeypatch, capsys):
    # The evidence check fails: exit 1, one line saying why and naming the bundle root; nothing is written.
    def no_bundle(config=None, root=REPO):
        raise BundleError("no passing Phase D bundle under X made from the current code")

    monkeypatch.setattr(phase_d, "passing_bundle_for_code", no_bundle)
    out = tmp_path / "p"
    assert prof.main(["--outdir", str(out), "--detpixels", "8"]) == 1
    err = capsys.readouterr().err
    cfg = load_case(None)
    assert err.startswith("error: profile refused: no passing Phase D bundle") and err.count("\n") == 1
    assert f"(Phase D bundles: {cfg.bundle_root};" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def _bundle(root: Path, stamp: str, verdict: str, sha: str) -> Path:
    d = root / "bundles" / stamp
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"steps": [{"step": "report", "verdict": verdict}]}))
    (d / "env.json").write_text(json.dumps({"git": {"sha": sha, "changed": []}}))
    return d


def test_evidence_check_on_a_fake_repository(tmp_path):
    # A throw-away git repository with code under src/ and a case whose bundles live in bundles/: a BLOCKED
    # bundle is refused (message names the bundle root), a PASS bundle made at the code's commit is accepted,
    # and an uncommitted code change is refused again.
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "m.py").write_text("x = 1\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    sha = _git(root, "rev-parse", "HEAD")
    case = tmp_path / "case.toml"
    case.write_text(f'extends = "{DEFAULT_CONFIG}"\n[case]\nbundle_root = "bundles"\n')
    _bundle(root, "20250101T000000Z", BLOCKED, sha)
    with pytest.raises(prof.Refused, match=r"profile refused: no passing Phase D bundle.*\(Phase D bundles: bundles;"):
        prof.require_evidence(str(case), root=root)
    good = _bundle(root, "20250102T000000Z", PASS, sha)
    assert prof.require_evidence(str(case), root=root) == good
    (root / "src" / "m.py").write_text("x = 2\n")
    with pytest.raises(prof.Refused, match="uncommitted changes"):
        prof.require_evidence(str(case), root=root)


def test_profile_bundle_of_a_small_render(tmp_path, monkeypatch):
    # With evidence (faked), a 32x32 Phase D render is profiled: operators, a Chrome trace, peak memory, the
    # CLI's own output; the bundle appears complete under its name.
    monkeypatch.setattr(phase_d, "passing_bundle_for_code", lambda config=None, root=REPO: REPO / "reports" / "x")
    out = tmp_path / "p"
    assert prof.main(["--outdir", str(out), "--detpixels", "32", "--dtype", "float64", "--threads", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["memory.json", "profile.json", "stdout.log", "summary.md",
                                                     "top_ops.json", "top_ops.txt", "trace.json"]
    events = json.loads((out / "trace.json").read_text())["traceEvents"]
    assert any(e.get("name", "").startswith("aten::") for e in events), "torch operators were recorded"
    rows = json.loads((out / "top_ops.json").read_text())
    assert rows and [r["self_cpu_s"] for r in rows] == sorted((r["self_cpu_s"] for r in rows), reverse=True)
    assert json.loads((out / "memory.json").read_text())["peak_rss_mb"] > 50, "torch alone holds more than 50 MB"
    info = json.loads((out / "profile.json").read_text())
    assert info["evidence"] == "reports/x" and info["threads"] == 1
    argv = info["argv"]
    assert argv[argv.index("-detpixels") + 1] == "32" and "-sourcefile" in argv
    assert "max_I" in (out / "stdout.log").read_text()
    assert not (tmp_path / ".p.part").exists()
