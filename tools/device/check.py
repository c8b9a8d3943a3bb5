"""One prepared GPU check: CUDA correctness against the CPU render, and CUDA vs CPU timings.

The CPU float64 render is the reference (it matches the C program bit for bit on the golden corpus), so
this needs neither the corpus nor a C binary. Usage (on a machine with CUDA):

    PYTHONPATH=src:. python -m tools.device.check --out DIR [--quick]

Writes DIR/device_check.json and DIR/device_check.md, and prints the table last.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nanobrag_torch import config_from_argv, load_model, render as nb_render
from tools.metrics import compare_images, verdict
from tools.thresholds import for_dtype

# Correctness cases: small images covering the kernel's code paths.
CASES = {
    "cubic_default_F": "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -detpixels 128 -oversample 1",
    "triclinic_hkl_os2": "-cell 70 80 90 75 85 95 -misset 10 20 30 -hkl toy.hkl -N 6 -lambda 1.2 -distance 150 -detpixels 128 -oversample 2",
    "mosaic_phi_mat": "-mat A.mat -hkl toy.hkl -lambda 0.9768 -distance 231.27 -pixel 0.172 -detpixels 128 -N 10 -mosaic 1 -mosaic_domains 10 -mosaic_seed 42 -phi 5 -osc 2 -phisteps 4 -oversample 1 -nointerpolate",
    "tricubic_shutoff": "-mat A.mat -hkl toy.hkl -lambda 0.9768 -distance 231.27 -pixel 0.172 -detpixels 128 -N 2 -oversample 1",
    "os_flags_kahn": "-mat A.mat -hkl toy.hkl -lambda 1 -distance 80 -detpixels 96 -N 8 -phi 12 -osc 1 -oversample 3 -oversample_omega -oversample_polar -polar 0.9 -nointerpolate",
    "thick_twotheta": "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -distance 80 -detpixels 96 -twotheta 20 -detector_thick 450 -detector_abs 320 -thicksteps 3 -oversample 2 -oversample_thick",
    "div_disp_dmin_water": "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -energy 8000 -dispersion 1 -dispsteps 3 -hdivrange 8 -vdivrange 5 -hdivsteps 3 -vdivsteps 3 -dmin 10 -water 50 -detpixels 96 -distance 80 -oversample 1",
    "round_xtal": "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -round_xtal -fudge 0.8 -detpixels 96 -oversample 1",
    "gauss_xtal_xds": "-xds -cell 70 80 90 75 85 95 -hkl toy.hkl -N 6 -gauss_xtal -ORGX 50 -ORGY 40 -detpixels 96 -oversample 1",
    "tophat_curved": "-curved_det -cell 100 100 100 90 90 90 -default_F 100 -N 5 -tophat_spots -fudge 1.5 -distance 50 -pixel 0.2 -detpixels 96 -oversample 2",
}

# Timing cases: (name, argv, run on CPU too?)
TIMINGS = [
    ("1024sq_3src_8mos_os2", "-mat A.mat -hkl toy.hkl -sourcefile src3.txt -N 8 -mosaic 0.5 -mosaic_domains 8 -mosaic_seed 31337 -lambda 1 -distance 120 -detpixels 1024 -oversample 2 -nointerpolate", True),
    ("4096sq_10src_10mos_os2", "-mat A.mat -hkl toy.hkl -hdivrange 0.5 -vdivrange 0.5 -hdivsteps 5 -vdivsteps 2 -square_div -N 8 -mosaic 0.5 -mosaic_domains 10 -lambda 1 -distance 120 -pixel 0.025 -detpixels 4096 -oversample 2 -nointerpolate", False),
]


def write_inputs(d: Path) -> None:
    """Synthetic inputs: a structure-factor table, a MOSFLM matrix and a 3-source file."""
    rng = np.random.default_rng(1)
    lines = []
    for h in range(-12, 13):
        for k in range(-12, 13):
            for l_ in range(-12, 13):
                lines.append(f"{h} {k} {l_} {rng.uniform(1, 50):.2f}")
    (d / "toy.hkl").write_text("\n".join(lines) + "\n")
    src = Path("A.mat")
    if src.exists():
        (d / "A.mat").write_text(src.read_text())
    else:  # a 30 A-ish triclinic-looking cell, lambda-scaled
        (d / "A.mat").write_text(" 0.0327 0.0011 0.0017\n-0.0012 0.0301 0.0020\n 0.0015 -0.0009 0.0290\n")
    (d / "src3.txt").write_text("-10 0 0 1 1e-10\n-10 0.004 0 0.5 1e-10\n-10 0 0.004 0.25 1.02e-10\n")


def render(argv: str, device: str, dtype: str, workdir: Path, mem: float) -> tuple[np.ndarray, float]:
    cfg = config_from_argv(argv.split() + ["-device", device, "-dtype", dtype, "-max_memory_gb", str(mem)])
    model = load_model(cfg, workdir=workdir)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    img = nb_render(model, kernel="torch", max_memory_gb=mem, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return img.detach().cpu().numpy().astype(np.float32), dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/device")
    ap.add_argument("--quick", action="store_true", help="skip the 4096x4096 timing")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    env = {
        "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
    }
    print(json.dumps(env))
    results = {"env": env, "correctness": [], "timing": []}
    work = Path(tempfile.mkdtemp())
    write_inputs(work)
    ok_all = True
    for name, argv in CASES.items():
        ref, t_cpu = render(argv, "cpu", "float64", work, 2.0)
        row = {"case": name, "cpu_s": t_cpu}
        if cuda:
            for dtype in ("float64", "float32"):
                render(argv, "cuda", dtype, work, 8.0)  # warm-up
                img, t = render(argv, "cuda", dtype, work, 8.0)
                m = compare_images(ref, img)
                ok, why = verdict(m, for_dtype(dtype))
                ok_all &= ok
                row[dtype] = {"ok": ok, "why": why, "correlation": m["correlation"], "sum_ratio": m["sum_ratio"],
                              "max_abs_diff_rel": m["max_abs_diff_rel"], "identical": bool(np.array_equal(ref, img)),
                              "cuda_s": t}
        results["correctness"].append(row)
        print(json.dumps(row))
    for name, argv, with_cpu in TIMINGS:
        if args.quick and not with_cpu:
            continue
        row = {"case": name}
        if with_cpu:
            _, row["cpu_float64_s"] = render(argv, "cpu", "float64", work, 2.0)
        if cuda:
            for dtype in ("float64", "float32"):
                render(argv.replace("-detpixels 4096", "-detpixels 256").replace("-detpixels 1024", "-detpixels 128"),
                       "cuda", dtype, work, 16.0)  # warm-up on a small image
                _, row[f"cuda_{dtype}_s"] = render(argv, "cuda", dtype, work, 16.0)
                row[f"cuda_{dtype}_peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
        results["timing"].append(row)
        print(json.dumps(row))
    (out / "device_check.json").write_text(json.dumps(results, indent=1))
    lines = [f"# Device check ({env['gpu']}, torch {env['torch']}, {env['cpu_threads']} CPU threads)", "",
             "| case | cuda f64 vs cpu f64 | cuda f32 vs cpu f64 (r, sum ratio) |", "|---|---|---|"]
    for r in results["correctness"]:
        f64, f32 = r.get("float64", {}), r.get("float32", {})
        lines.append(f"| {r['case']} | {'identical' if f64.get('identical') else f64.get('ok')} "
                     f"| {f32.get('ok')} r={f32.get('correlation', float('nan')):.7f} sr={f32.get('sum_ratio', float('nan')):.6f} |")
    lines += ["", "| timing case | seconds |", "|---|---|"]
    for r in results["timing"]:
        lines.append(f"| {r['case']} | " + ", ".join(f"{k}={v:.3g}" for k, v in r.items() if k != "case") + " |")
    text = "\n".join(lines) + "\n"
    (out / "device_check.md").write_text(text)
    print(text)
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
