"""tools.perf.bench_grad: one real (tiny) measurement per mode and the report it writes."""
from __future__ import annotations

import json

from tools.perf import bench_grad


def test_measures_every_mode_and_writes_a_report(tmp_path):
    out = tmp_path / "grad"
    assert bench_grad.main(["--sizes", "16", "--repeats", "1", "--outdir", str(out)]) == 0
    rows = json.loads((out / "grad.json").read_text())
    assert [r["n"] for r in rows] == [16]
    # every mode (eager and fused, forward and forward + backward) ran in its own process and reported a time and
    # a peak-memory reading
    for mode in ("forward", "backward", "fused_forward", "fused_backward"):
        assert rows[0][f"{mode}_s"] > 0 and rows[0][f"{mode}_cpu_s"] > 0, mode
        assert isinstance(rows[0][f"{mode}_peak"], int), mode
    md = (out / "grad.md").read_text()
    assert "| 16² | eager | 2 |" in md and "| 16² | fused | 2 |" in md
    assert "- 16²: fused forward + backward / eager forward = " in md
