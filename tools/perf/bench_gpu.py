"""The GPU section of the benchmark: our renders on a CUDA device against the C program on all CPU cores.

    PYTHONPATH=src:. python -m tools.perf.bench_gpu [--outdir DIR] [--c-bin PATH] [--repeats N]
                                                   [--dtype D ...] [--cases ID ...] [--no-cli] [--dry-run]
    invoke bench --device cuda [--python PY]          (the same, through nox or the given interpreter)

One command on a machine with CUDA (and a CUDA build of torch) runs the whole section and writes
DIR/bench_gpu.json and DIR/bench_gpu.md (default DIR: reports/bench/gpu-<UTC STAMP>/, assembled under a
temporary name and renamed when complete); the [gpu] table of configs/bench.toml says what runs:

* single images of each case (heavy-1024 of the CPU benchmark and a 1024² still), each dtype: our render in
  this process (warm, the image copied back to the host; median of ``repeats``), our whole command-line run
  (``-device cuda``: interpreter, imports, CUDA start, files) and the C program's whole run with
  OMP_NUM_THREADS = every CPU core of the machine, alternating; our float image judged against C's with the
  parity thresholds (tools.thresholds);
* images/s for a batch of ``batch`` random stills rendered in one call (a batch axis on the misset, frame i the
  still of ``-misset random -misset_seed (seed + i)``; its first image checked against that still rendered
  alone) and for a ``frames``-frame rotation series (``render_series``, ``osc`` degrees per frame), against C's
  images/s on all cores (one process per image, as C renders them).

``--dry-run`` runs every step on the CPU at toy sizes (the eager kernel, as on a GPU): the tests use it, so the
script is known to run before a GPU is at hand. Exit status 0 when every run succeeded and every checked image
passed, 1 otherwise, 2 for a bad option or no CUDA device (without --dry-run).
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tools import REPO as ROOT
from tools.cbin import resolve_c_binary, sha256_file
from tools.cmdlog import utc_stamp
from tools.perf.bench import (DEFAULT_CONFIG, BenchError, case_inputs, fresh_dir, load_config, measure, median,
                              write_bundle, write_inputs)
from tools.thresholds import tolerances

DRY_PIXELS = 64  # --dry-run: every detector this size, the batch, series and repeats minimal
PEER = "~120 images/s for 1024² stills on a consumer GPU (published figure, a compiled PyTorch kernel)"


def gpu_settings(cfg: dict) -> dict:
    """The [gpu] table of the benchmark config with its defaults, and the argv of every case it names."""
    g = {"cases": ["heavy-1024", "still-1024"], "still": "still-1024", "batch": 32, "frames": 100, "osc": 0.1,
         "repeats": 3, "misset_seed": 1, "max_memory_gb": 16.0, "dtypes": ["float32", "float64"], "argv": {},
         **cfg.get("gpu", {})}
    known = {c["id"]: c["argv"] for c in cfg["case"] if "argv" in c}
    known.update(g.get("argv", {}))
    missing = [c for c in {*g["cases"], g["still"]} if c not in known]
    if missing:
        raise BenchError(f"[gpu]: no argv for case(s) {', '.join(sorted(missing))}")
    g["argv"] = {c: shlex.split(known[c]) for c in {*g["cases"], g["still"]}}
    return g


def at_size(argv: list[str], n: int) -> list[str]:
    """``argv`` with its detector made n x n pixels (the --dry-run size)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in ("-detpixels", "-detpixels_x", "-detpixels_y"):
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return [*out, "-detpixels", str(n)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _model(argv: list[str], dtype: str, device: str):
    from nanobrag_torch import config_from_argv, load_model

    return load_model(config_from_argv([*argv, "-dtype", dtype, "-device", device]), log=lambda m: None)


def time_renders(render, repeats: int, device: str) -> list[float]:
    """Wall seconds of ``render()`` (which returns host data) after one warm-up call, ``repeats`` times."""
    render()
    out = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        render()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def in_process(argv: list[str], dtype: str, device: str, kernel: str, repeats: int, max_gb: float) -> dict:
    """Our render of one image in this process: median seconds (image copied to the host) and the image."""
    from nanobrag_torch import render_details

    model = _model(argv, dtype, device)
    box = {}

    def one():
        box["image"] = render_details(model, kernel=kernel, max_memory_gb=max_gb, progress=False).image.cpu().numpy()

    walls = time_renders(one, repeats, device)
    return {"walls_s": walls, "median_s": median(walls), "image": box["image"]}


def stills_batch(argv: list[str], dtype: str, device: str, kernel: str, batch: int, seed: int, repeats: int,
                 max_gb: float) -> dict:
    """``batch`` random stills in one render (misset batch axis): images/s, and the first image against the same
    still rendered alone (relative max difference)."""
    import torch

    from nanobrag_torch import render_details
    from nanobrag_torch.model import SETUP_DTYPE
    from nanobrag_torch.crandom.streams import CRandom, random_misset

    model = _model(argv, dtype, device)
    missets = torch.tensor([random_misset(seed + i, CRandom())[1] for i in range(batch)], dtype=SETUP_DTYPE,
                           device=model.device)
    batched = model.replace(crystal__misset=missets)
    box = {}

    def one():
        box["images"] = render_details(batched, kernel=kernel, max_memory_gb=max_gb, progress=False).image.cpu()

    walls = time_renders(one, repeats, device)
    alone = render_details(model.replace(crystal__misset=missets[0]), kernel=kernel, max_memory_gb=max_gb,
                           progress=False).image.cpu()
    first = box["images"][0].double()
    rel = float((first - alone.double()).abs().max() / alone.double().abs().max().clamp_min(1e-300))
    t = median(walls)
    return {"batch": batch, "walls_s": walls, "median_s": t, "images_per_s": round(batch / t, 3) if t else None,
            "first_vs_alone_rel": rel, "first_vs_alone_ok": rel <= tolerances(dtype).tensor_rtol * 10}


def series(argv: list[str], dtype: str, device: str, kernel: str, frames: int, osc: float, max_gb: float) -> dict:
    """A ``frames``-frame rotation series (``render_series``, float images to the host, no files): frames/s."""
    from nanobrag_torch.datasets.series import render_series

    model = _model(argv, dtype, device)
    list(render_series(model, frames=1, osc=osc, kernel=kernel, max_memory_gb=max_gb))  # warm-up
    _sync(device)
    t = time.perf_counter()
    n = sum(1 for _ in render_series(model, frames=frames, osc=osc, kernel=kernel, max_memory_gb=max_gb))
    _sync(device)
    wall = time.perf_counter() - t
    return {"frames": n, "wall_s": round(wall, 4), "images_per_s": round(n / wall, 3) if wall else None}


def whole_runs(argv: list[str], dtype: str, device: str, c_bin: Path | None, inputs: list[Path], scratch: Path,
               repeats: int, timeout: float, cli: bool) -> dict:
    """C (all cores) and our command line (``-device``), alternating: median walls, C's float image judged."""
    env_c = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1), OMP_PROC_BIND="false")
    ours_cmd = [sys.executable, "-m", "nanobrag_torch", *argv, "-dtype", dtype, "-device", device, "-noprogress"]
    c_walls, ours_walls, first = [], [], {}
    try:
        for rep in range(repeats):
            for side in (["c"] if c_bin else []) + (["ours"] if cli else []):
                d = fresh_dir(scratch, inputs, side)
                cmd, env = ([str(c_bin), *argv], env_c) if side == "c" else (ours_cmd, dict(os.environ))
                r = measure(cmd, d, env, timeout)
                (c_walls if side == "c" else ours_walls).append(r.wall_s if r.exit == 0 else None)
                if rep == 0:
                    first[side] = d
                else:
                    shutil.rmtree(d)
        out = {"c_walls_s": c_walls, "c_median_s": median(c_walls), "ours_walls_s": ours_walls,
               "ours_median_s": median(ours_walls), "c_float": None}
        if "c" in first and (first["c"] / "floatimage.bin").exists():
            out["c_float"] = np.fromfile(first["c"] / "floatimage.bin", dtype="<f4")
        return out
    finally:
        for d in first.values():
            shutil.rmtree(d, ignore_errors=True)


def judge(c_float: np.ndarray | None, image: np.ndarray, dtype: str) -> dict:
    """Our in-process image against C's float image with the parity thresholds of ``dtype``."""
    if c_float is None:
        return {"status": "-"}
    from tools.metrics import compare_images, verdict
    from tools.thresholds import for_dtype

    ours = image.astype(np.float32).reshape(-1)
    if ours.size != c_float.size:
        return {"status": "FAIL", "reasons": [f"{ours.size} pixels, C wrote {c_float.size}"]}
    m = compare_images(c_float, ours)
    ok, reasons = verdict(m, for_dtype(dtype))
    return {"status": "PASS" if ok else "FAIL", "reasons": reasons,
            "metrics": {k: m.get(k) for k in ("correlation", "sum_ratio", "max_abs_diff_rel")}}


def environment(device: str, c_bin) -> dict:
    import torch

    env = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "device": device,
           "c_binary": str(c_bin.path) if c_bin.ok else None, "c_binary_problem": None if c_bin.ok else c_bin.problem,
           "c_binary_sha256": sha256_file(c_bin.path) if c_bin.ok else None}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                      "capability": f"{p.major}.{p.minor}"}
    return env


def _f(x, spec=".4g") -> str:
    return "-" if x is None else format(x, spec)


def markdown(data: dict) -> str:
    env = data["env"]
    gpu = env.get("gpu") or {}
    c_bin = env["c_binary"] or f"no C binary: {env['c_binary_problem']}"
    lines = [f"# GPU benchmark {data['stamp']}" + (" (dry run on the CPU: toy sizes, not a measurement)"
                                                   if data["dry_run"] else ""), "",
             f"Device {env['device']} {gpu.get('name', '')} ({gpu.get('memory_gb', '-')} GB); torch {env['torch']} "
             f"(CUDA {env['cuda']}); {env['cpu_count']} CPU cores for C ({c_bin}).",
             f"Medians of {data['repeats']} repeats. Ours in-process: one render, the image copied to the host; "
             "whole runs: process start to exit, files written.", "",
             "| case | dtype | C all cores s | ours whole run s | ours in-process s | C/ours (in-process) | "
             "images/s ours | images/s C | parity |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["single"]:
        c, ours = r.get("c_median_s"), r.get("median_s")
        par = r["parity"]
        cell = par["status"] + (": " + "; ".join(par.get("reasons", []))[:120] if par.get("reasons") else "")
        lines.append(f"| {r['case']} | {r['dtype']} | {_f(c)} | {_f(r.get('ours_median_s'))} | {_f(ours)} | "
                     f"{_f(c / ours if c and ours else None, '.3g')} | {_f(1 / ours if ours else None, '.3g')} | "
                     f"{_f(1 / c if c else None, '.3g')} | {cell} |")
    lines += ["", f"Throughput of the still ({data['still']}), images/s; C: one process per image on all cores:", "",
              "| mode | dtype | images | ours images/s | C images/s | ours/C | check |",
              "|---|---|---|---|---|---|---|"]
    c_rate = data.get("c_still_images_per_s")
    for r in data["throughput"]:
        ok = r.get("first_vs_alone_ok")
        check = "-" if ok is None else (f"{'PASS' if ok else 'FAIL'} (first image vs alone, rel "
                                        f"{r['first_vs_alone_rel']:.1e})")
        rate = r.get("images_per_s")
        lines.append(f"| {r['mode']} | {r['dtype']} | {r.get('batch', r.get('frames'))} | {_f(rate, '.4g')} | "
                     f"{_f(c_rate, '.3g')} | {_f(rate / c_rate if rate and c_rate else None, '.3g')} | {check} |")
    lines += ["", f"Peer figure to beat: {PEER}."]
    return "\n".join(lines) + "\n"


def passed(data: dict) -> bool:
    single = all(r["parity"]["status"] != "FAIL" and not r.get("failed") for r in data["single"])
    return single and all(r.get("first_vs_alone_ok", True) is not False for r in data["throughput"])


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m tools.perf.bench_gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--outdir", default=None, help="bundle directory (default: reports/bench/gpu-<UTC STAMP>)")
    ap.add_argument("--c-bin", default=None, help="C nanoBragg binary (default: $NB_C_BIN, then PATH)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per measurement (default: [gpu] repeats)")
    ap.add_argument("--dtype", nargs="+", default=None, choices=("float32", "float64"))
    ap.add_argument("--cases", nargs="+", default=None, metavar="ID", help="single-image cases (default: [gpu])")
    ap.add_argument("--no-cli", action="store_true", help="skip our whole command-line runs")
    ap.add_argument("--dry-run", action="store_true", help="every step on the CPU at toy sizes (for the tests)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        g = gpu_settings(load_config(args.config))
        cases = args.cases or g["cases"]
        unknown = [c for c in cases if c not in g["argv"]]
        if unknown:
            raise BenchError(f"--cases: unknown case id(s) {', '.join(unknown)} (known: {', '.join(g['argv'])})")
        outdir = Path(args.outdir) if args.outdir else ROOT / "reports" / "bench" / f"gpu-{utc_stamp()}"
        if outdir.exists():
            raise BenchError(f"--outdir {outdir}: already exists")
        cb = resolve_c_binary(args.c_bin)
        if args.c_bin and not cb.ok:
            raise BenchError(f"--c-bin {args.c_bin}: {cb.problem}")
        import torch

        if not args.dry_run and not torch.cuda.is_available():
            raise BenchError("no CUDA device: run this on a machine with a GPU and a CUDA build of torch "
                             "(--dry-run runs every step on the CPU at toy sizes)")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(g, cases, args, outdir, cb)


def run(g: dict, cases: list[str], args, outdir: Path, cb) -> int:
    dry = args.dry_run
    device, kernel = ("cpu", "torch") if dry else ("cuda", "auto")
    repeats = 1 if dry else (args.repeats or g["repeats"])
    batch, frames = (2, 3) if dry else (g["batch"], g["frames"])
    dtypes = args.dtype or g["dtypes"]
    size = (lambda a: at_size(a, DRY_PIXELS)) if dry else (lambda a: a)
    data = {"stamp": outdir.name, "dry_run": dry, "env": environment(device, cb), "repeats": repeats,
            "still": g["still"], "single": [], "throughput": []}
    scratch = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    cwd = os.getcwd()
    try:
        write_inputs(scratch)
        inputs = sorted(p for p in scratch.iterdir() if p.is_file())
        inputs += [p for p in case_inputs(None) if p.name not in {q.name for q in inputs}]
        for p in inputs:
            if p.parent != scratch:
                shutil.copyfile(p, scratch / p.name)
        os.chdir(scratch)  # the models read their input files from here
        c_path = cb.path if cb.ok else None
        for case in cases:
            argv = size(g["argv"][case])
            for dt in dtypes:
                print(f"bench_gpu {case} {dt} ...", file=sys.stderr, flush=True)
                row = {"case": case, "dtype": dt, "argv": shlex.join(argv)}
                try:
                    ours = in_process(argv, dt, device, kernel, repeats, g["max_memory_gb"])
                    runs = whole_runs(argv, dt, device, c_path, inputs, scratch, repeats, 1800, not args.no_cli)
                    row.update({k: v for k, v in ours.items() if k != "image"})
                    row.update({k: v for k, v in runs.items() if k != "c_float"})
                    row["parity"] = judge(runs["c_float"], ours["image"], dt)
                except Exception as exc:  # recorded, the section goes on
                    row.update(failed=f"{type(exc).__name__}: {exc}", parity={"status": "FAIL",
                                                                              "reasons": [str(exc)[:200]]})
                data["single"].append(row)
        still = size(g["argv"][g["still"]])
        timed = [r.get("c_median_s") for r in data["single"] if r["case"] == g["still"] and r.get("c_median_s")]
        c_still = timed[0] if timed else \
            whole_runs(still, dtypes[0], device, c_path, inputs, scratch, repeats, 1800, False)["c_median_s"]
        data["c_still_images_per_s"] = round(1 / c_still, 3) if c_still else None
        for dt in dtypes:
            print(f"bench_gpu stills/series {dt} ...", file=sys.stderr, flush=True)
            b = stills_batch(still, dt, device, kernel, batch, g["misset_seed"], repeats, g["max_memory_gb"])
            data["throughput"].append({"mode": "batch of stills", "dtype": dt, **b})
            s = series(still, dt, device, kernel, frames, g["osc"], g["max_memory_gb"])
            data["throughput"].append({"mode": "rotation series", "dtype": dt, **s})
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    data["passed"] = passed(data)
    write_bundle(outdir, data, "bench_gpu", markdown)
    print(markdown(data))
    print(f"bench_gpu bundle: {outdir}")
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
