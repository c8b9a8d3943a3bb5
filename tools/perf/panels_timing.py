"""Time a detector of P panels against one panel of the same pixels (issue 24).

    python -m tools.perf.panels_timing [--pixels 512] [--panels 1 8 64] [--repeats 3] [--kernels numba torch]
                                       [--threads N] [--cpu-time] [--default-heap]

One C detector of pixels x pixels (MOSFLM, 0.1 mm, 100 mm, a 100 A cubic cell, N 5, 10 mosaic domains) is
rendered as C's ``Detector`` and as P ``Panels`` cutting it into P strips of pixels/P rows (the same pixels:
the images agree to rounding, which is printed). Median of --repeats turns, wall clock, this process, after one
warm-up render (numba compiles there), the renders taking turns; --cpu-time measures the process's CPU
time instead (steadier on a shared machine, with --threads 1). Prints one line per (kernel, P); records
numbers, asserts nothing (``--json``: one JSON object, what ``invoke bench`` records as its panels section).

The heap is held steady (``heap.steady_heap``, as in our programs) unless --default-heap: with glibc's
default thresholds the eager kernel's chunk buffers are now and then handed back to the system between chunks
and page-faulted in again, and which render that hits is chance (+-20 % between runs of the same code). The
same setting holds for every render compared. Medians of --repeats turns, not the best turn, for the same
reason.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

import nanobrag_torch as nb
from nanobrag_torch.heap import steady_heap
from nanobrag_torch.panels import Panels, panels_from_detector

ARGV = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -mosaic 0.5 -mosaic_domains 10 -distance 100 "
        "-pixel 0.1 -detpixels {n} -oversample 1 -mosflm")


def strips(one: Panels, parts: int) -> Panels:
    """The panel ``one`` (P = 1) cut into ``parts`` panels of spixels/parts rows each."""
    rows = one.spixels // parts
    k = torch.arange(parts, dtype=torch.float64)[:, None]
    origin = one.origin + k * rows * one.pixel_size * one.slow
    return replace(one, origin=origin, fast=one.fast.expand(parts, 3), slow=one.slow.expand(parts, 3),
                   normal=one.normal.expand(parts, 3), spixels=rows)


def interleaved(fns: dict, repeats: int, clock=time.perf_counter) -> dict:
    """Median time of each function, the functions run in turn ``repeats`` times (after a warm-up each), so
    that a busy machine slows every one of them alike. The median, not the best: on a shared VM a single
    lucky turn (CPU time 20 % below the rest) would otherwise set one side's number."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(pixels: int, panels, repeats: int, kernels, cpu_time: bool) -> dict:
    """{kernel: {"detector": s, "panels": {P: s}, "max_rel_diff": {P: d}}}: the median time of C's detector and
    of P strips of it (see the module doc)."""
    clock = time.process_time if cpu_time else time.perf_counter
    model = nb.load_model(nb.config_from_argv(ARGV.format(n=pixels).split()))
    one = panels_from_detector(model.detector, model.beam.beam_vector)
    out = {}
    for kernel in kernels:
        ref = nb.render(model, kernel=kernel)
        models = {0: model, **{p: replace(model, detector=strips(one, p)) for p in panels}}
        diffs = {p: float((nb.render(models[p], kernel=kernel).reshape(ref.shape) - ref).abs().max()
                          / ref.abs().max()) for p in panels}
        t = interleaved({p: (lambda m=m, k=kernel: nb.render(m, kernel=k, progress=False)) for p, m in models.items()},
                        repeats, clock)
        out[kernel] = {"detector": t[0], "panels": {str(p): t[p] for p in panels},
                       "max_rel_diff": {str(p): diffs[p] for p in panels}}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=512)
    ap.add_argument("--panels", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kernels", nargs="+", default=["numba", "torch"])
    ap.add_argument("--threads", type=int, default=0, help="torch/numba threads (0: the default)")
    ap.add_argument("--cpu-time", action="store_true", help="CPU time of the process, not wall time")
    ap.add_argument("--default-heap", action="store_true", help="leave glibc malloc's thresholds as they are")
    ap.add_argument("--json", action="store_true", help="print the times as one JSON object (for invoke bench)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steady = not args.default_heap and steady_heap()
    res = measure(args.pixels, args.panels, args.repeats, args.kernels, args.cpu_time)
    if args.json:
        print(json.dumps({"pixels": args.pixels, "threads": torch.get_num_threads(), "cpu_time": args.cpu_time,
                          "repeats": args.repeats, "steady_heap": steady, "kernels": res}))
        return 0
    print(f"{args.pixels}x{args.pixels} pixels, {torch.get_num_threads()} threads, "
          f"{'steady' if steady else 'default'} heap")
    for kernel, r in res.items():
        print(f"{kernel:6s} Detector (C's panel)      {r['detector']:8.3f} s")
        for p in args.panels:
            t = r["panels"][str(p)]
            print(f"{kernel:6s} {p:3d} panels of {args.pixels}x{args.pixels // p:<4d}  {t:8.3f} s  "
                  f"{100 * (t / r['detector'] - 1):+6.1f} %   max|diff|/max {r['max_rel_diff'][str(p)]:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
