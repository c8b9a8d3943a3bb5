"""tools.perf.bench_grad: one real (tiny) measurement per mode and the report it writes."""
from __future__ import annotations

import json

from tools.perf import bench_grad


def test_measures_both_modes_and_writes_a_report(tmp_path):
    out = tmp_path / "grad"
    assert bench_grad.main(["--sizes", "16", "--repeats", "1", "--outdir", str(out)]) == 0
    rows = json.loads((out / "grad.json").read_text())
    assert [r["n"] for r in rows] == [16]
    # both modes ran in their own process and reported a time and a peak-memory reading
    assert rows[0]["backward_s"] > 0 and rows[0]["forward_s"] > 0
    assert rows[0]["backward_cpu_s"] > 0 and rows[0]["forward_cpu_s"] > 0
    assert isinstance(rows[0]["forward_peak"], int) and isinstance(rows[0]["backward_peak"], int)
    md = (out / "grad.md").read_text()
    assert "| 16² | 2 |" in md
