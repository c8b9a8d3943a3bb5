"""tools.bench: the benchmark bundle (timings recorded, never asserted)."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from tools import bench

TINY = '''threads = 1
[[case]]
id = "tiny"
note = "16x16 cubic"
argv = "-cell 100 100 100 90 90 90 -default_F 100 -N 3 -detpixels 16 -oversample 1 -nonoise -nopgm"
[[case]]
id = "big"
argv = "-cell 100 100 100 90 90 90 -default_F 100 -N 3 -detpixels 4096"
slow = true
'''


def _fake_c(tmp_path: Path) -> Path:
    """A stand-in 'C binary' that runs our own CLI, so parity is exact and the plumbing is exercised."""
    exe = tmp_path / "fake_nanoBragg"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m nanobrag_torch \"$@\"\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_bench_bundle_with_a_reference_binary(tmp_path):
    cfg = tmp_path / "bench.toml"
    cfg.write_text(TINY)
    out = tmp_path / "bundle"
    code = bench.main(["--config", str(cfg), "--outdir", str(out), "--c-bin", str(_fake_c(tmp_path))])
    assert code == 0
    data = json.loads((out / "bench.json").read_text())
    assert [c["id"] for c in data["cases"]] == ["tiny"], "slow cases are left out unless --slow"
    row = data["cases"][0]
    assert row["py"]["exit"] == 0 and row["c"]["exit"] == 0
    assert row["py"]["render_s"] > 0, "the render time is parsed from the CLI's 'rendered in' line"
    assert row["parity"]["correlation"] == 1.0, "the stand-in runs the same code, so the images are identical"
    assert row["py_over_c"] > 0
    assert data["env"]["threads"] == 1
    assert "| tiny |" in (out / "bench.md").read_text()


def test_bench_without_a_binary_still_times_ours(tmp_path, monkeypatch):
    monkeypatch.delenv("NB_C_BIN", raising=False)
    monkeypatch.setenv("PATH", os.defpath)  # no nanoBragg on PATH
    cfg = tmp_path / "bench.toml"
    cfg.write_text(TINY)
    out = tmp_path / "bundle"
    assert bench.main(["--config", str(cfg), "--outdir", str(out)]) == 0
    data = json.loads((out / "bench.json").read_text())
    assert data["env"]["c_binary"] is None and data["env"]["c_binary_problem"]
    assert "c" not in data["cases"][0] and data["cases"][0]["py"]["exit"] == 0
