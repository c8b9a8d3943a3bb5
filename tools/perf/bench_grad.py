"""Cost of gradients: forward vs forward+backward time and peak memory, eager and fused kernels (issues 8, 25).

    python -m tools.perf.bench_grad [--sizes 256 1024] [--repeats 3] [--outdir DIR]   (invoke bench-grad)

Each measurement runs in a fresh process, with the heap held steady (``nb.steady_heap()``): the model is
loaded, an 8x8 render in the same mode warms up (so first-call costs of autograd and of the kernels count in
no mode), the peak RSS is reset (Linux clear_refs), then the render (no grad) or render + backward w.r.t. the
orientation matrix and the distance is timed (wall and process CPU seconds: the CPU time is the steadier number
on a shared machine) and the peak RSS increase read back; on the eager kernel (autograd) and on the fused one
(its compiled backward, ``fused_grad``). Writes grad.json and grad.md to reports/bench/grad-<STAMP>/
(atomically, a new directory each run). Records numbers; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from tools import REPO
from tools.cmdlog import utc_stamp
from tools.files import atomic_write

ARGV = ("-mat {mat} -default_F 100 -lambda 0.9768 -distance 100 -pixel {px} -detpixels {n} -N 10 -mosaic 0.5 "
        "-mosaic_domains 10 -oversample 1 -nointerpolate")
MAT = REPO / "tests" / "data" / "live_corpus" / "inputs" / "A.mat"

CHILD = r"""
import json, sys, time, torch
import nanobrag_torch as nb
nb.steady_heap()  # as docs/api.md asks of eager CPU work (our programs call it too)
argv, mode, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
kernel = "numba" if mode.startswith("fused") else "torch"
model = nb.load_model(nb.config_from_argv(argv.split()))
def run(m):
    if mode.endswith("forward"):
        with torch.no_grad():
            return nb.render(m, kernel=kernel, max_memory_gb=budget)
    mat = m.crystal.matrix.clone().requires_grad_(True)
    d = m.detector.distance.clone().requires_grad_(True)
    img = nb.render(m.replace(crystal__matrix=mat, detector__distance=d), kernel=kernel, max_memory_gb=budget)
    img.sum().backward()
run(model.replace(detector__fpixels=8, detector__spixels=8, detector__roi=(0, 8, 0, 8)))  # warm-up, same mode
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
try:
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
base = rss()
t0, c0 = time.perf_counter(), time.process_time()
run(model)
dt, dc = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": dt, "cpu_seconds": dc, "peak_extra_bytes": hwm() - base}))
"""


def measure(n: int, mode: str, budget: float) -> dict:
    argv = ARGV.format(mat=MAT, px=0.1 * 1024 / n, n=n)
    r = subprocess.run([sys.executable, "-c", CHILD, argv, mode, str(budget)], capture_output=True, text=True,
                       cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"{mode} {n}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    lines = ["# Gradient cost of the render (eager and fused kernels)", "",
             "Case: `" + ARGV.format(mat="A.mat", px="P", n="N") + "` (10 mosaic domains), float64, CPU; "
             "gradient w.r.t. the orientation matrix and the distance; the heap held steady (nb.steady_heap()). "
             "Median of the repeats; peak memory is "
             "the peak RSS above the loaded model.", "",
             "| pixels | kernel | budget GiB | forward s | forward+backward s | ratio | forward CPU s "
             "| fwd+bwd CPU s | CPU ratio | forward peak MiB | fwd+bwd peak MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for name, f, b in (("eager", "forward", "backward"), ("fused", "fused_forward", "fused_backward")):
            if f"{f}_s" not in r:
                continue
            lines.append(f"| {r['n']}² | {name} | {r['budget_gb']:g} | {r[f + '_s']:.3f} | {r[b + '_s']:.3f} | "
                         f"{r[b + '_s'] / r[f + '_s']:.2f} | {r[f + '_cpu_s']:.3f} | {r[b + '_cpu_s']:.3f} | "
                         f"{r[b + '_cpu_s'] / r[f + '_cpu_s']:.2f} | {r[f + '_peak'] / 2**20:.0f} | "
                         f"{r[b + '_peak'] / 2**20:.0f} |")
    lines += ["", "Targets (issue 25): forward + backward <= 3x the eager forward; the fused gradient within 5x the "
              "fused forward.", ""]
    for r in rows:
        if "fused_backward_s" in r:
            lines.append(f"- {r['n']}²: fused forward + backward / eager forward = "
                         f"{r['fused_backward_s'] / r['forward_s']:.2f}; / fused forward = "
                         f"{r['fused_backward_s'] / r['fused_forward_s']:.2f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, nargs="+", default=[2.0], help="-max_memory_gb values to run")
    ap.add_argument("--outdir", default=None)
    ap.add_argument("--eager-only", action="store_true", help="skip the fused kernel's rows")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        for budget in args.budget:
            modes = ("forward", "backward") + (() if args.eager_only else ("fused_forward", "fused_backward"))
            runs = {m: [measure(n, m, budget) for _ in range(args.repeats)] for m in modes}
            row = {"n": n, "budget_gb": budget}
            for m, rs in runs.items():
                row[f"{m}_s"] = statistics.median(r["seconds"] for r in rs)
                row[f"{m}_cpu_s"] = statistics.median(r["cpu_seconds"] for r in rs)
                row[f"{m}_peak"] = max(r["peak_extra_bytes"] for r in rs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    outdir = Path(args.outdir) if args.outdir else REPO / "reports" / "bench" / f"grad-{utc_stamp()}"
    outdir.mkdir(parents=True, exist_ok=False)
    atomic_write(outdir / "grad.json", json.dumps(rows, indent=1))
    atomic_write(outdir / "grad.md", markdown(rows))
    print(markdown(rows))
    print(f"wrote {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
