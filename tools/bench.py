"""Benchmarks: time our CLI against the C program on the same cores; write a report bundle.

    python -m tools.bench [--config configs/bench.toml] [--select ID ...] [--slow] [--outdir DIR] [--c-bin PATH]

Writes DIR/bench.json and DIR/bench.md (default DIR: reports/bench/<UTC STAMP>/). Timings are wall-clock
seconds of whole runs (process start to exit) in fresh directories; our in-process render time is parsed
from the CLI's "rendered in" line. Nothing here asserts a speed: it records one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from tools.cbin import resolve_c_binary
from tools.metrics import compare_images, read_float_image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "bench.toml"


def write_inputs(d: Path) -> None:
    """Synthetic inputs shared by every case: a MOSFLM matrix, an HKL table and a 3-source file."""
    from tools.mosflm_matrix import a_matrix, write_a_matrix

    write_a_matrix(d / "A.mat", a_matrix((26.75, 31.31, 33.67, 88.69, 71.53, 68.14), 0.9768, (10.0, 20.0, 30.0)))
    rng = np.random.default_rng(7)
    rows = [f"{h} {k} {l_} {rng.uniform(1, 50):.2f}" for h in range(-12, 13) for k in range(-12, 13)
            for l_ in range(-12, 13)]
    (d / "toy.hkl").write_text("\n".join(rows) + "\n")
    (d / "src3.txt").write_text("-10 0 0 1 1e-10\n-10 0.004 0 0.5 1e-10\n-10 0 0.004 0.25 1.02e-10\n")


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return r.returncode, time.perf_counter() - t0, r.stdout + r.stderr


def run_case(case: dict, inputs: Path, threads: int, c_bin: Path | None) -> dict:
    argv = shlex.split(case["argv"])
    row = {"id": case["id"], "note": case.get("note", ""), "argv": case["argv"]}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="false")
    results = {}
    for side in ("py", "c"):
        if side == "c" and c_bin is None:
            continue
        work = Path(tempfile.mkdtemp(prefix=f"bench_{side}_"))
        for f in inputs.iterdir():
            (work / f.name).write_bytes(f.read_bytes())
        if side == "py":
            # torch takes its intra-op thread count from OMP_NUM_THREADS, like the C program
            cmd = [sys.executable, "-m", "nanobrag_torch", *argv, "-floatfile", "out.bin", "-noprogress"]
        else:
            cmd = [str(c_bin), *argv, "-floatfile", "out.bin"]
        code, wall, out = timed(cmd, work, env)
        results[side] = {"exit": code, "wall_s": round(wall, 3), "dir": str(work)}
        m = re.search(r"rendered in ([0-9.eE+-]+) s", out)
        if m:
            results[side]["render_s"] = float(m.group(1))
        if code != 0:
            results[side]["tail"] = out[-500:]
    row.update(results)
    if "c" in results and results["c"]["exit"] == 0 and results["py"]["exit"] == 0:
        shape = None
        m = re.search(r"-detpixels (\d+)", case["argv"])
        if m:
            shape = (int(m.group(1)),) * 2
        c = read_float_image(Path(results["c"]["dir"]) / "out.bin", shape)
        p = read_float_image(Path(results["py"]["dir"]) / "out.bin", shape)
        met = compare_images(c, p)
        row["parity"] = {k: met[k] for k in ("correlation", "sum_ratio", "max_abs_diff_rel")}
        row["py_over_c"] = round(results["py"]["wall_s"] / results["c"]["wall_s"], 2)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="time our CLI against the C program; write reports/bench/<STAMP>/")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--select", nargs="*", default=None, help="case ids (default: all non-slow cases)")
    ap.add_argument("--slow", action="store_true", help="include cases marked slow")
    ap.add_argument("--outdir", default=None)
    ap.add_argument("--c-bin", default=None, help="C nanoBragg binary (default: $NB_C_BIN, then PATH)")
    args = ap.parse_args(argv)
    cfg = tomllib.loads(Path(args.config).read_text())
    threads = int(cfg.get("threads", 2))
    cases = [c for c in cfg["case"] if (args.select and c["id"] in args.select)
             or (not args.select and (args.slow or not c.get("slow")))]
    cb = resolve_c_binary(args.c_bin)
    c_bin = cb.path if cb.ok else None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = Path(args.outdir or ROOT / "reports" / "bench" / stamp)
    outdir.mkdir(parents=True, exist_ok=False)
    inputs = Path(tempfile.mkdtemp(prefix="bench_inputs_"))
    write_inputs(inputs)
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "threads": threads, "c_binary": str(c_bin) if c_bin else None,
           "c_binary_problem": None if cb.ok else cb.problem}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    rows = []
    for case in cases:
        print(f"bench {case['id']} ...", file=sys.stderr, flush=True)
        rows.append(run_case(case, inputs, threads, c_bin))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    (outdir / "bench.json").write_text(json.dumps({"env": env, "cases": rows}, indent=1))
    lines = [f"# Benchmark {stamp}", "", f"{threads} threads each side; {env['platform']}; torch {env.get('torch')}; "
             f"C binary: {env['c_binary'] or 'none (' + str(env['c_binary_problem']) + ')'}", "",
             "| case | ours wall s (render s) | C wall s | ours/C | parity r | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        py, c = r.get("py", {}), r.get("c", {})
        lines.append(f"| {r['id']} | {py.get('wall_s')} ({py.get('render_s')}) | {c.get('wall_s', '-')} | "
                     f"{r.get('py_over_c', '-')} | {r.get('parity', {}).get('correlation', '-')} | {r['note']} |")
    (outdir / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"bench bundle: {outdir}")
    return 0 if all(r.get("py", {}).get("exit") == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
