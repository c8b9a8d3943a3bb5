"""Profile a warm 4096² multi-source render with torch.profiler (what the Phase D evidence exists for).

    python -m tools.perf.profile [--config CASE.toml] [--detpixels 4096] [--dtype float32] [--device cpu]
                            [--threads N] [--outdir DIR]

Refuses (exit 1, one line saying why and where the evidence lives) unless a PASS Phase D bundle exists for the
current code (tools.evidence.phase_d.passing_bundle_for_code, what ``invoke phase-d-check`` asks). Otherwise it runs our
CLI in-process on the Phase D case's argv at ``--detpixels``² (the case's comment-free two-source file) in a
scratch directory: once to warm up, once under torch.profiler. Writes to DIR (default
reports/profile/<UTC STAMP>/, assembled under a temporary name and renamed when complete):

* ``top_ops.txt`` / ``top_ops.json``: operators by self CPU time (and CUDA time on a GPU), with call counts and
  the memory they allocated;
* ``trace.json``: the Chrome trace (open in chrome://tracing or https://ui.perfetto.dev);
* ``memory.json``: peak resident memory of the profiled run (and peak CUDA memory on a GPU);
* ``profile.json`` / ``summary.md``: what ran (evidence bundle, argv, dtype, device, threads, wall times);
* ``stdout.log``: the CLI's output of the profiled run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.evidence import phase_d
from tools.evidence.bundle import BundleError
from tools.perf.bench import phase_d_run
from tools.evidence.case import ConfigError, load_case
from tools.cmdlog import utc_stamp
from tools.files import atomic_write

from tools import REPO as ROOT  # noqa: E402
TOP_N = 40


class Refused(RuntimeError):
    """No valid Phase D evidence for the current code; the message says why and names the bundle root."""


def require_evidence(config: str | None, root: Path = ROOT) -> Path:
    """The PASS Phase D bundle that vouches for the current code, or Refused saying why (with the bundle path)."""
    try:
        return phase_d.passing_bundle_for_code(config, root=root)
    except BundleError as exc:
        cfg = load_case(config)
        where = os.path.relpath(cfg.resolve(cfg.bundle_root, root), root)
        raise Refused(f"profile refused: {exc} (Phase D bundles: {where}; "
                      "check with `invoke phase-d-check`)") from None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: write 5 to /proc/self/clear_refs); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset_done: bool) -> float:
    """Peak RSS since the reset (VmHWM) where it could be reset, else since process start (ru_maxrss)."""
    if reset_done:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


def _cli_run(argv: list[str], workdir: Path) -> tuple[int, float, str]:
    """Our CLI in this process, in ``workdir``: (exit code, wall seconds, its stdout)."""
    from nanobrag_torch.programs.nanobragg import main as cli_main

    buf = io.StringIO()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            code = cli_main(list(argv))
        return code, time.perf_counter() - t0, buf.getvalue()
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` (None: unchanged) for the block, restored afterwards."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def top_operators(prof, device: str) -> tuple[str, list[dict]]:
    """(text table, rows) of the operators with the most self CPU time (CUDA time too on a GPU)."""
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    avgs = prof.key_averages()
    table = avgs.table(sort_by=key, row_limit=TOP_N)
    rows = []
    for e in sorted(avgs, key=lambda e: getattr(e, key, 0.0), reverse=True)[:TOP_N]:
        row = {"name": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6,
               "cpu_total_s": e.cpu_time_total / 1e6, "self_cpu_memory_bytes": e.self_cpu_memory_usage}
        if device == "cuda":
            row["self_cuda_s"] = getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)) / 1e6
        rows.append(row)
    return table, rows


def profile_render(argv: list[str], inputs: list[Path], device: str, part: Path) -> dict:
    """Warm-up run, then a profiled run of ``argv``; writes the profiler outputs into ``part``."""
    import torch
    from torch.profiler import ProfilerActivity

    scratch = Path(tempfile.mkdtemp(prefix="profile_"))
    try:
        for f in inputs:
            shutil.copyfile(f, scratch / f.name)
        code, warm_s, _ = _cli_run(argv, scratch)
        if code != 0:
            raise RuntimeError(f"the warm-up run exited {code}")
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        reset = _reset_peak_rss()
        with torch.profiler.profile(activities=activities, record_shapes=True, profile_memory=True) as prof:
            code, wall_s, stdout = _cli_run(argv, scratch)
        if code != 0:
            raise RuntimeError(f"the profiled run exited {code}")
        memory = {"peak_rss_mb": _peak_rss_mb(reset), "peak_rss_since": "profiled run" if reset else "process start"}
        if device == "cuda":
            memory["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table, rows = top_operators(prof, device)
    prof.export_chrome_trace(str(part / "trace.json"))
    atomic_write(part / "top_ops.txt", table + "\n")
    atomic_write(part / "top_ops.json", json.dumps(rows, indent=1))
    atomic_write(part / "memory.json", json.dumps(memory, indent=1))
    atomic_write(part / "stdout.log", stdout)
    return {"warm_up_s": round(warm_s, 3), "profiled_s": round(wall_s, 3), "memory": memory, "top": rows[:10],
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it, else absolute."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def summary_md(info: dict) -> str:
    lines = [f"# Profile {info['stamp']}", "",
             f"Evidence: PASS Phase D bundle `{info['evidence']}` for git {info['git']}.",
             f"Run: `{' '.join(info['argv'])}` ({info['detpixels']}², {info['dtype']}, {info['device']}, "
             f"{info['threads']} torch threads, torch {info['torch']}).",
             f"Wall: warm-up {info['warm_up_s']} s, profiled {info['profiled_s']} s (profiler overhead included). "
             f"Peak RSS {info['memory']['peak_rss_mb']} MB (since {info['memory']['peak_rss_since']})"
             + (f", peak CUDA {info['memory']['peak_cuda_allocated_mb']} MB." if "peak_cuda_allocated_mb"
                in info["memory"] else "."), "",
             "| operator | calls | self CPU s | CPU total s |", "|---|---|---|---|"]
    lines += [f"| `{r['name']}` | {r['calls']} | {r['self_cpu_s']:.3f} | {r['cpu_total_s']:.3f} |" for r in info["top"]]
    lines += ["", "Full table: top_ops.txt; trace: trace.json; memory: memory.json."]
    return "\n".join(lines) + "\n"


def run(args) -> Path:
    """Check the evidence, profile, write the bundle; return its directory."""
    evidence = require_evidence(args.config)
    outdir = Path(args.outdir) if args.outdir else ROOT / "reports" / "profile" / utc_stamp()
    if outdir.exists():
        raise ConfigError(f"--outdir {outdir}: already exists")
    argv, inputs = phase_d_run(args.config, args.detpixels)
    argv = [*argv, "-dtype", args.dtype, "-device", args.device, "-noprogress"]
    part = outdir.parent / f".{outdir.name}.part"
    part.mkdir(parents=True)
    try:
        with _torch_threads(args.threads):
            info = profile_render(argv, inputs, args.device, part)
        git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
        info.update(stamp=outdir.name, evidence=_shown(evidence), git=git.stdout.strip() or None,
                    argv=argv, detpixels=args.detpixels, dtype=args.dtype, device=args.device)
        atomic_write(part / "profile.json", json.dumps(info, indent=1))
        atomic_write(part / "summary.md", summary_md(info))
        os.rename(part, outdir)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return outdir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.perf.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="Phase D case file (default: configs/phase_d_source_weights.toml)")
    ap.add_argument("--detpixels", type=int, default=4096, help="detector size (default 4096)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--outdir", default=None, help="bundle directory (default: reports/profile/<UTC STAMP>)")
    args = ap.parse_args(argv)
    if args.detpixels < 1:
        print(f"error: --detpixels {args.detpixels}: must be positive", file=sys.stderr)
        return 2
    try:
        outdir = run(args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: profile failed: {exc}", file=sys.stderr)
        return 1
    print(f"profile bundle: {outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
