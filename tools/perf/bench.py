"""Benchmarks: whole runs of our CLI and of the C program on the same cores, with every output parity-checked.

    python -m tools.perf.bench [--config configs/bench.toml] [--select ID ...] [--repeats N] [--dtype D ...]
                          [--no-scaling] [--sizes N ...] [--outdir DIR] [--c-bin PATH] [--nonbragg-bin PATH]
                          [--noisify-bin PATH] [--device cpu|cuda]

A case runs one program of the C suite (``program``: nanoBragg by default, nonBragg or noisify; the C binaries
from $NB_C_BIN, $NB_NONBRAGG_BIN, $NB_NOISIFY_BIN or the options). ``--device cuda`` runs the GPU section
instead (tools.perf.bench_gpu, on a machine with CUDA).

For each case of the config, the C program and our CLI (once per dtype) run alternately ``repeats`` times,
each in a fresh directory holding only the inputs. Recorded per run: wall time (process start to exit), peak
RSS (``ru_maxrss`` from ``os.wait4``, taken by a small launcher process so that the benchmark's own size does
not leak into it; floor ~10 MB) and our in-process time (the CLI's ``rendered in`` line).
Reported per case and dtype: medians, ours/C, ours minus the interpreter's ``import torch`` time over C, and a
parity check of every output file of the first repeat against C's (float image with tools.thresholds via
tools.metrics; SMV and PGM images with the corpus judges; the noise image pixel for pixel in float64 only, since
a float32 render moves the pixel values that decide how many draws each pixel takes). A scaling scan times
ours and C against pixel count and against sources x mosaic domains and fits power-law exponents (scaling.png).
The config's [[target]] entries are evaluated into a MET/MISSED table.

A [[series]] entry (issue 13) times a dataset: the C program launched once per frame with the matching -phi
and -seed (the total of those walls), against ours rendering all frames in one run (-frames N) for each count
of -workers listed; the frames of the first repeat are parity-checked frame by frame (float, int and, in
float64, noise images). Reported: totals, ours/C, and our in-run frames/s (from the CLI's last line).

Writes DIR/bench.json, DIR/bench.md and DIR/scaling.png (default DIR: reports/bench/<UTC STAMP>/); the
directory is assembled under a temporary name and renamed when complete. Exit status 0 when every run
succeeded and every checked output passed, 1 otherwise, 2 for a bad config or option.
Nothing here asserts a speed: it records one (targets are reported, not enforced).
"""
from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from tools.matrix import corpus
from tools.matrix.corpus import PROGRAMS
from tools.evidence.case import ConfigError, load_case
from tools.cbin import resolve_c_binary, sha256_file
from tools.cmdlog import utc_stamp
from tools.files import atomic_write

from tools import REPO as ROOT  # noqa: E402
DEFAULT_CONFIG = ROOT / "configs" / "bench.toml"
OUTPUTS = (("floatimage.bin", "float"), ("intimage.img", "smv"), ("image.pgm", "pgm"), ("noiseimage.img", "noise"))
RENDERED = re.compile(r"rendered in ([0-9.eE+-]+) s")
FRAMES_PER_S = re.compile(r"\(([0-9.eE+-]+) frames/s\)")
NOISE_PROBE = """import json, sys, time
t0 = time.perf_counter()
import numpy as np
from nanobrag_torch.crandom.streams import poisson_noise
x = np.fromfile(sys.argv[1], dtype="<f4")
t1 = time.perf_counter(); poisson_noise(x, int(sys.argv[2]), float(sys.argv[3])); t2 = time.perf_counter()
warm = []
for _ in range(int(sys.argv[4])):
    t = time.perf_counter(); poisson_noise(x, int(sys.argv[2]), float(sys.argv[3])); warm.append(time.perf_counter() - t)
print(json.dumps({"pixels": int(x.size), "import_s": t1 - t0, "first_call_s": t2 - t1, "warm_s": warm}))
"""


class BenchError(ValueError):
    """A config or option the benchmark cannot use; the message names it."""


# ------------------------------------------------------------------------------------------------ running
@dataclass
class Run:
    """One timed process."""

    exit: int
    wall_s: float | None  # None when the program was killed or could not start
    peak_rss_mb: float
    render_s: float | None
    tail: str


# A small launcher between the benchmark and each timed program. On Linux a child's ru_maxrss includes the
# resident size of the process it was forked from (kept across exec), so a program forked straight from this
# (numpy-, torch- and image-holding) process would report at least this process's size; forked from the
# launcher, it reports its own peak plus at most the launcher's ~10 MB. The launcher also times the program.
LAUNCHER = """import json, os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"exit": os.waitstatus_to_exitcode(status), "wall_s": wall, "maxrss": usage.ru_maxrss}, f)
"""


def measure(cmd: list[str], cwd: Path, env: dict, timeout_s: float) -> Run:
    """Run ``cmd`` in ``cwd`` through the launcher: exit code, wall time, peak RSS (os.wait4), output tail."""
    log_path, res_path = cwd.parent / f"{cwd.name}.log", cwd.parent / f"{cwd.name}.json"
    with open(log_path, "w+", encoding="utf-8", errors="replace") as log:
        p = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(res_path), *cmd], cwd=cwd, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # the launcher and the program
            p.wait()
        log.seek(0)
        out = log.read()
    log_path.unlink()
    try:
        res = json.loads(res_path.read_text())
        res_path.unlink()
    except FileNotFoundError:  # killed, or the program could not be started (the launcher's error is in out)
        res = {"exit": p.returncode or 1, "wall_s": None, "maxrss": 0}
    rss_mb = res["maxrss"] / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)
    m = RENDERED.search(out)
    wall = None if res["wall_s"] is None else round(res["wall_s"], 4)
    return Run(res["exit"], wall, round(rss_mb, 1), float(m.group(1)) if m else None, out[-800:])


def fresh_dir(scratch: Path, inputs: list[Path], tag: str) -> Path:
    """A new empty directory under ``scratch`` holding copies of ``inputs``."""
    d = Path(tempfile.mkdtemp(prefix=f"{tag}_", dir=scratch))
    for f in inputs:
        shutil.copyfile(f, d / f.name)
    return d


def median(xs):
    """Median of the values that are not None, to 6 significant digits (None when there are none)."""
    xs = [x for x in xs if x is not None]
    return float(f"{statistics.median(xs):.6g}") if xs else None


# ------------------------------------------------------------------------------------------------ config
def load_config(path) -> dict:
    """Read and check the benchmark config (see configs/bench.toml for the keys)."""
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"--config {path}: invalid TOML: {exc}") from None
    cfg.setdefault("threads", 2)
    cfg.setdefault("repeats", 3)
    cfg.setdefault("dtypes", ["float32", "float64"])
    cfg.setdefault("timeout_s", 1800)
    cfg.setdefault("py_command", ["{python}", "-m", "nanobrag_torch"])
    cfg.setdefault("import_probe", "import torch")
    cfg.setdefault("case_inputs", None)
    cfg.setdefault("case", [])
    cfg.setdefault("series", [])
    cfg.setdefault("target", [])
    ids = [c.get("id") for c in cfg["case"]] + [c.get("id") for c in cfg["series"]]
    for c in cfg["series"]:
        if not c.get("id") or "argv" not in c or int(c.get("frames", 0)) < 1:
            raise BenchError(f"{path}: each [[series]] needs an id, argv and frames >= 1 ({c})")
    for c in cfg["case"]:
        if not c.get("id") or ("argv" in c) == ("phase_d" in c):
            raise BenchError(f"{path}: each [[case]] needs an id and exactly one of argv / phase_d ({c})")
    if len(set(ids)) != len(ids):
        raise BenchError(f"{path}: duplicate case ids")
    return cfg


def write_inputs(d: Path, source_counts=(3,), spot_images=()) -> None:
    """Synthetic inputs shared by every case: an HKL table (h, k, l in -12..12), source files, a water-like
    .stol table (water.stol) and, for noisify, float images of spots on a background (spots<N>.bin, N x N)."""
    rng = np.random.default_rng(7)
    rows = [f"{h} {k} {l_} {rng.uniform(1, 50):.2f}" for h in range(-12, 13) for k in range(-12, 13)
            for l_ in range(-12, 13)]
    (d / "toy25.hkl").write_text("\n".join(rows) + "\n")
    for n in sorted(set(source_counts)):
        # n sources ~0.2 mrad apart around the beam axis, weights 1, wavelength 1 A (position x y z, weight, lambda)
        lines = [f"-10 {0.002 * (i % 3 - 1):g} {0.002 * (i // 3 - 1):g} 1 1e-10" for i in range(n)]
        (d / f"src{n}.txt").write_text("\n".join(lines) + "\n")
    # F of water vs sin(theta)/lambda (1/A): 2.57 forward, the ring near 0.16, a second one near 0.35
    stol = np.linspace(0.0, 1.0, 201)
    F = 2.57 * np.exp(-(stol / 0.5) ** 2) + 3.0 * np.exp(-((stol - 0.16) / 0.04) ** 2) \
        + 1.2 * np.exp(-((stol - 0.35) / 0.08) ** 2)
    (d / "water.stol").write_text("".join(f"{x:.3f} {f:.5f}\n" for x, f in zip(stol, F)))
    for n in sorted(set(spot_images)):
        write_spots(d / f"spots{n}.bin", n)


def write_spots(path: Path, n: int) -> None:
    """An n x n float32 image in photons: a smooth background of ~2 and n/4 Gaussian spots up to ~500."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / np.float32(n)
    img = np.float32(2.0) + np.float32(1.5) * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / np.float32(0.1))
    g = np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)
    spot = np.outer(g, g).astype(np.float32)
    for cy, cx, h in zip(rng.integers(3, n - 3, n // 4), rng.integers(3, n - 3, n // 4),
                         rng.uniform(10, 500, n // 4)):
        img[cy - 3:cy + 4, cx - 3:cx + 4] += np.float32(h) * spot
    img.astype("<f4").tofile(path)


SPOTS = re.compile(r"^spots(\d+)\.bin$")


def spot_images(cases) -> list[int]:
    """The spots<N>.bin images the cases' command lines name."""
    return sorted({int(m.group(1)) for c in cases for tok in shlex.split(c.get("argv", ""))
                   if (m := SPOTS.match(tok))})


def case_inputs(config: str | None) -> list[Path]:
    """The input files of an evidence case (tools.evidence.case; default: the Phase D case)."""
    cfg = load_case(config)
    return [cfg.resolve(p) for p in cfg.inputs]


def phase_d_run(config: str | None, detpixels: int) -> tuple[list[str], list[Path]]:
    """The Phase D case's argv (float image under C's default name) at ``detpixels``², and its input files."""
    cfg = load_case(config)
    argv = [a.replace("{floatfile}", "floatimage.bin") for a in cfg.argv]
    for flag in ("-detpixels", "-detpixels_x", "-detpixels_y"):
        while flag in argv:
            i = argv.index(flag)
            del argv[i:i + 2]
    return [*argv, "-detpixels", str(detpixels)], case_inputs(config)


def case_run(case: dict, inputs: list[Path]) -> tuple[list[str], list[Path]]:
    """(argv, input files) of one [[case]]."""
    if "phase_d" in case:
        argv, extra = phase_d_run(case["phase_d"] or None, int(case["detpixels"]))
        return argv, [*inputs, *extra]
    return shlex.split(case["argv"]), inputs


def image_shape(argv: list[str]) -> tuple[int, int] | None:
    """[slow, fast] from -detpixels / -detpixels_x / -detpixels_y (None when not given)."""
    def val(flag):
        return int(argv[argv.index(flag) + 1]) if flag in argv else None
    n = val("-detpixels")
    x, y = val("-detpixels_x") or n, val("-detpixels_y") or n
    return (y, x) if x and y else None


# ------------------------------------------------------------------------------------------------ parity
def check_outputs(c_dir: Path, py_dir: Path, dtype: str, shape, program: str = "nanoBragg") -> list[dict]:
    """Every image C wrote, judged against ours: a list of {output, status PASS|FAIL|SKIP, reasons}. A program
    without our engine flags (noisify) is judged with the float64 gates (its arithmetic is C's)."""
    rows = []
    trailing_ok = "pgm_trailing_bytes" in PROGRAMS[program].quirks
    dtype = dtype if PROGRAMS[program].engine_flags else "float64"
    for name, kind in OUTPUTS:
        ref, ours = c_dir / name, py_dir / name
        if not ref.exists():
            continue
        if not ours.exists():
            rows.append({"output": name, "status": "FAIL", "reasons": [f"{name}: C wrote it, ours did not"]})
            continue
        if kind == "noise" and dtype != "float64":
            rows.append({"output": name, "status": "SKIP", "reasons": [
                "a float32 render moves pixel values, so the Poisson stream diverges: compared in float64 only"]})
            continue
        try:
            if kind == "float":
                m, reasons, _, _ = corpus.compare_float(ref, ours, shape, dtype)
                m = {k: m.get(k) for k in ("correlation", "sum_ratio", "max_abs_diff_rel")}
            elif kind == "pgm":
                m, reasons, _ = corpus.compare_pgm(ref, ours, dtype, trailing_ok)
            else:
                m, reasons, _ = corpus.compare_smv(ref, ours, "noisefile" if kind == "noise" else "intfile", dtype)
        except ValueError as exc:
            m, reasons = {}, [f"{name}: {exc}"]
        rows.append({"output": name, "status": "FAIL" if reasons else "PASS", "reasons": reasons, "metrics": m})
    return rows


# ------------------------------------------------------------------------------------------------ cases
OURS = "ours"  # the side of our run of a program without -dtype (noisify)


class Runner:
    """Runs C and ours with the benchmark's environment, in fresh directories under one scratch root.
    ``c_bins``: the C binary of each program (None: not available); ``c_bin`` is nanoBragg's."""

    def __init__(self, cfg: dict, c_bins: dict | Path | None, scratch: Path):
        self.c_bins = c_bins if isinstance(c_bins, dict) else {"nanoBragg": c_bins}
        self.cfg, self.c_bin, self.scratch = cfg, self.c_bins.get("nanoBragg"), scratch
        self.env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), OMP_PROC_BIND="false")
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # ours runs from bytecode, as after `pip install`
        self.py_cmd = [sys.executable if a == "{python}" else a for a in cfg["py_command"]]

    def command(self, side: str, argv: list[str], program: str = "nanoBragg") -> list[str]:
        if side == "c":
            return [str(self.c_bins[program]), *argv]
        ours = [*self.py_cmd, *PROGRAMS[program].subcommand, *argv]
        return ours if side == OURS else [*ours, "-dtype", side, "-noprogress"]

    def sides(self, dtypes, program: str = "nanoBragg") -> list[str]:
        ours = list(dtypes) if PROGRAMS[program].engine_flags else [OURS]
        return (["c"] if self.c_bins.get(program) else []) + ours

    def run(self, side: str, argv: list[str], inputs: list[Path], keep: bool,
            program: str = "nanoBragg") -> tuple[Run, Path | None]:
        d = fresh_dir(self.scratch, inputs, side)
        r = measure(self.command(side, argv, program), d, self.env, self.cfg["timeout_s"])
        if not keep:
            shutil.rmtree(d)
            d = None
        return r, d


def summarise(runs: list[Run]) -> dict:
    ok = [r for r in runs if r.exit == 0]
    return {"exit": [r.exit for r in runs], "wall_s": [r.wall_s for r in runs],
            "median_wall_s": median([r.wall_s for r in ok]), "min_wall_s": min((r.wall_s for r in ok), default=None),
            "max_wall_s": max((r.wall_s for r in ok), default=None),
            "peak_rss_mb": max((r.peak_rss_mb for r in runs), default=None),
            "median_render_s": median([r.render_s for r in ok]),
            **({"tail": runs[-1].tail} if any(r.exit for r in runs) else {})}


def run_case(runner: Runner, case: dict, inputs: list[Path], repeats: int, dtypes) -> dict:
    """C and ours (each dtype) alternately ``repeats`` times; parity of the first repeat's outputs."""
    argv, files = case_run(case, inputs)
    program = case.get("program", "nanoBragg")
    sides = runner.sides(dtypes, program)
    runs: dict[str, list[Run]] = {s: [] for s in sides}
    first: dict[str, Path | None] = {}
    try:
        for rep in range(repeats):
            for side in sides:
                r, d = runner.run(side, argv, files, keep=rep == 0, program=program)
                runs[side].append(r)
                if rep == 0:
                    first[side] = d
        row = {"id": case["id"], "program": program, "note": case.get("note", ""), "argv": shlex.join(argv),
               "sides": {s: summarise(runs[s]) for s in sides}}
        shape = image_shape(argv)
        for side in sides[1:] if "c" in sides else ():
            if runs["c"][0].exit or runs[side][0].exit:
                continue
            row["sides"][side]["parity"] = check_outputs(first["c"], first[side], side, shape, program)
        if program != "noisify" and "noiseimage.img" in {n for d in first.values() if d for n in os.listdir(d)}:
            row["noise_probe"] = noise_probe(runner, argv, first)
    finally:
        for d in first.values():
            if d:
                shutil.rmtree(d, ignore_errors=True)
    return row


def _series_parity(c_dir: Path, py_dir: Path, frames: int, dtype: str, shape) -> dict:
    """Frame i of ours against C's run i: float image (thresholds), int and (float64) noise SMV images."""
    reasons, checked = [], 0
    for i in range(frames):
        pairs = [("float", f"c_{i}.bin", f"f_{i + 1:05d}.bin"), ("intfile", f"c_{i}.img", f"i_{i + 1:05d}.img")]
        if dtype == "float64":
            pairs.append(("noisefile", f"c_{i}_noise.img", f"n_{i + 1:05d}.img"))
        for kind, ref, ours in pairs:
            if not (c_dir / ref).exists():
                continue
            if not (py_dir / ours).exists():
                reasons.append(f"frame {i + 1}: {ours} missing")
                continue
            try:
                if kind == "float":
                    why = corpus.compare_float(c_dir / ref, py_dir / ours, shape, dtype)[1]
                else:
                    why = corpus.compare_smv(c_dir / ref, py_dir / ours, kind, dtype)[1]
            except ValueError as exc:
                why = [str(exc)]
            checked += 1
            reasons += [f"frame {i + 1}: {r}" for r in why]
    return {"status": "FAIL" if reasons else "PASS", "files_checked": checked, "reasons": reasons[:10]}


def run_series_case(runner: Runner, s: dict, inputs: list[Path], repeats: int) -> dict:
    """C launched once per frame (-phi phi+i*osc, -seed seed+i) against ours in one run per -workers count."""
    argv = shlex.split(s["argv"])
    n, phi, seed = int(s["frames"]), float(s.get("phi", 0.0)), int(s.get("seed", 1))
    osc, dtype = _flag(argv, "-osc", 0.0), s.get("dtype", "float64")
    workers = [int(w) for w in s.get("workers", [1, 2])]
    c_totals, c_frames, c_exits, ours = [], [], [], {w: [] for w in workers}
    first: dict[str, Path] = {}
    try:
        for rep in range(repeats):
            if runner.c_bin:
                d = fresh_dir(runner.scratch, inputs, "c")
                runs = [measure([str(runner.c_bin), *argv, "-phi", repr(phi + i * osc), "-seed", str(seed + i),
                                 "-floatfile", f"c_{i}.bin", "-intfile", f"c_{i}.img", "-noisefile",
                                 f"c_{i}_noise.img"], d, runner.env, runner.cfg["timeout_s"]) for i in range(n)]
                c_exits += [r.exit for r in runs]
                ok = all(r.exit == 0 and r.wall_s is not None for r in runs)
                c_totals.append(round(sum(r.wall_s for r in runs), 4) if ok else None)
                c_frames += [r.wall_s for r in runs]
                if rep == 0:
                    first["c"] = d
                else:
                    shutil.rmtree(d)
            for w in workers:
                d = fresh_dir(runner.scratch, inputs, f"w{w}")
                r = measure([*runner.py_cmd, *argv, "-phi", repr(phi), "-seed", str(seed), "-frames", str(n),
                             "-workers", str(w), "-floatfile", "f_#####.bin", "-intfile", "i_#####.img",
                             "-noisefile", "n_#####.img", "-dtype", dtype, "-noprogress"],
                            d, runner.env, runner.cfg["timeout_s"])
                m = FRAMES_PER_S.search(r.tail)
                ours[w].append((r, float(m.group(1)) if m else None))
                if rep == 0 and w == workers[0]:
                    first["ours"] = d
                else:
                    shutil.rmtree(d)
        row = {"id": s["id"], "note": s.get("note", ""), "argv": shlex.join(argv), "frames": n, "phi": phi,
               "osc": osc, "dtype": dtype,
               "c": {"exit": c_exits, "total_wall_s": c_totals, "median_total_wall_s": median(c_totals),
                     "median_frame_wall_s": median(c_frames)} if runner.c_bin else None,
               "ours": {str(w): {**summarise([r for r, _ in ours[w]]),
                                 "median_frames_per_s": median([f for _, f in ours[w]])} for w in workers}}
        if "c" in first and "ours" in first and not any(c_exits) and ours[workers[0]][0][0].exit == 0:
            row["parity"] = _series_parity(first["c"], first["ours"], n, dtype, image_shape(argv))
    finally:
        for d in first.values():
            shutil.rmtree(d, ignore_errors=True)
    return row


def _flag(argv: list[str], flag: str, default):
    return type(default)(argv[argv.index(flag) + 1]) if flag in argv else default


def noise_probe(runner: Runner, argv: list[str], first: dict) -> dict | None:
    """Our noise generator alone, in a fresh interpreter, on our first float image of this case."""
    d = next((first[s] for s in ("float64", "float32") if first.get(s) and (first[s] / "floatimage.bin").exists()),
             None)
    if d is None:
        return None
    cmd = [sys.executable, "-c", NOISE_PROBE, str(d / "floatimage.bin"), str(_flag(argv, "-seed", 1)),
           str(_flag(argv, "-adc", 40.0)), str(max(1, runner.cfg["repeats"]))]
    r = subprocess.run(cmd, env=runner.env, capture_output=True, text=True, timeout=runner.cfg["timeout_s"])
    if r.returncode:
        return {"error": r.stderr[-500:]}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["median_warm_s"] = median(out.pop("warm_s"))
    return out


# A tiny run of each program per dtype before anything is timed: numba compiles (10-30 s per kernel and dtype)
# whenever its on-disk cache is stale (a fresh checkout, an edited kernel), and that must not land in a timing.
WARM_UP = {"nanoBragg": "-cell 100 100 100 90 90 90 -default_F 10 -N 2 -detpixels 8 -seed 1",
           "nonBragg": "-stol water.stol -detpixels 8 -seed 1",
           "noisify": "-floatfile warm8.bin -seed 1"}


def warm_up(runner: Runner, cases, dtypes, inputs_dir: Path) -> dict:
    """One untimed tiny run of ours per program of ``cases`` and dtype (numba's cache filled): {side: seconds}."""
    (inputs_dir / "warm8.bin").write_bytes(np.full(64, 5.0, dtype="<f4").tobytes())
    files = [inputs_dir / "warm8.bin", inputs_dir / "water.stol"]
    out = {}
    for program in dict.fromkeys(c.get("program", "nanoBragg") for c in cases):
        for side in runner.sides(dtypes, program):
            if side != "c":
                r, _ = runner.run(side, shlex.split(WARM_UP[program]), files, keep=False, program=program)
                out[f"{program} {side}"] = r.wall_s if r.exit == 0 else None
    return out


NUMBA_PROBE = ("import numpy as np; from nanobrag_torch import fused; "
               "fused.masked_sums(np.ones(1, np.float32), np.zeros(0, bool), 0.0)")


def import_times(runner: Runner, repeats: int) -> dict:
    """Median wall of ``python -c <import_probe>``, of our ``-h`` (the fixed cost of every run of ours) and of
    the import probe plus numba's start (its import and the first call of a cached compiled loop: the fixed cost
    of every run on the compiled CPU kernels)."""
    probes = {"import_probe": [sys.executable, "-c", runner.cfg["import_probe"]], "help": [*runner.py_cmd, "-h"],
              "numba_probe": [sys.executable, "-c", f"{runner.cfg['import_probe']}; {NUMBA_PROBE}"]}
    out = {"import_probe_code": runner.cfg["import_probe"]}
    for name, cmd in probes.items():
        walls = []
        for _ in range(repeats):
            d = fresh_dir(runner.scratch, [], name)
            r = measure(cmd, d, runner.env, runner.cfg["timeout_s"])
            shutil.rmtree(d)
            walls.append(r.wall_s if r.exit == 0 else None)
        out[f"{name}_s"] = median(walls)
    return out


# ------------------------------------------------------------------------------------------------ panels
def run_panels(runner: Runner, pc: dict) -> dict:
    """Issue 24's panel cost: ``tools.perf.panels_timing --json`` in a fresh interpreter ([panels] of the
    config: pixels, panels, repeats, threads, kernels): C's single panel and P strips of it, CPU time, median of
    repeats with the renders taking turns, the heap held steady (``heap.steady_heap``)."""
    cmd = [sys.executable, "-m", "tools.perf.panels_timing", "--json", "--cpu-time",
           "--pixels", str(pc.get("pixels", 512)), "--panels", *map(str, pc.get("panels", [1, 8, 64])),
           "--repeats", str(pc.get("repeats", 5)), "--threads", str(pc.get("threads", 1)),
           "--kernels", *pc.get("kernels", ["numba", "torch"])]
    env = dict(runner.env, OMP_NUM_THREADS=str(pc.get("threads", 1)),
               PYTHONPATH=os.pathsep.join([str(ROOT), runner.env.get("PYTHONPATH", "")]))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=runner.cfg["timeout_s"], cwd=ROOT)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def panels_overhead(panels: dict, kernel: str, count: int) -> float | None:
    """t(P panels) / t(C's single panel) - 1 of one kernel (None when not measured)."""
    k = (panels or {}).get("kernels", {}).get(kernel)
    if not k or str(count) not in k["panels"] or not k["detector"]:
        return None
    return round(k["panels"][str(count)] / k["detector"] - 1.0, 3)


# ------------------------------------------------------------------------------------------------ scaling
def fit_exponent(xs, ts) -> float | None:
    """Least-squares slope of log(t) against log(x): the p of t ~ x**p (None with fewer than 2 points)."""
    pts = [(x, t) for x, t in zip(xs, ts) if x and t and t > 0]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2:
        return None
    lx, lt = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return round(float(np.polyfit(lx, lt, 1)[0]), 3)


def scan(runner: Runner, argvs: list[tuple[float, list[str]]], inputs: list[Path], dtype: str, repeats: int) -> dict:
    """Time C and ours (``dtype``) alternately on each (x, argv) point; medians per point and fitted exponents."""
    sides = runner.sides([dtype])
    points = []
    for x, argv in argvs:
        runs: dict[str, list[Run]] = {s: [] for s in sides}
        for _ in range(repeats):
            for side in sides:
                runs[side].append(runner.run(side, argv, inputs, keep=False)[0])
        points.append({"x": x, "argv": shlex.join(argv), **{s: summarise(runs[s]) for s in sides}})
    xs = [p["x"] for p in points]
    fits = {"ours_wall": fit_exponent(xs, [p[dtype]["median_wall_s"] for p in points]),
            "ours_in_process": fit_exponent(xs, [p[dtype]["median_render_s"] for p in points])}
    if "c" in sides:
        fits["c_wall"] = fit_exponent(xs, [p["c"]["median_wall_s"] for p in points])
    return {"dtype": dtype, "points": points, "exponents": fits}


def run_scaling(runner: Runner, sc: dict, inputs: list[Path], sizes, repeats: int) -> dict:
    """The two scans of [scaling]: time vs pixels (field of view fixed) and vs sources x mosaic domains."""
    dtype = sc.get("dtype", "float32")
    fov = float(sc.get("fov_mm", 204.8))
    px = [(n * n, shlex.split(sc["pixels_argv"].format(n=n, pixel=f"{fov / n:.6g}"))) for n in sizes]
    sd = [(s * d, shlex.split(sc["sources_domains_argv"].format(sources=s, domains=d)))
          for s, d in sc.get("sources_domains", [])]
    out = {"pixels": scan(runner, px, inputs, dtype, repeats)}
    if sd:
        out["sources_domains"] = scan(runner, sd, inputs, dtype, repeats)
    return out


def plot_scaling(scaling: dict, path: Path) -> None:
    """Log-log panels of time vs pixels and vs sources x domains, with the fitted exponents in the legends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, v) for k, v in scaling.items() if v["points"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    labels = {"pixels": "pixels", "sources_domains": "sources x mosaic domains"}
    for ax, (key, s) in zip(axes[0], panels):
        xs = [p["x"] for p in s["points"]]
        series = [("C wall", "c", "median_wall_s", "c_wall"), (f"ours {s['dtype']} wall", s["dtype"], "median_wall_s",
                  "ours_wall"), (f"ours {s['dtype']} in-process", s["dtype"], "median_render_s", "ours_in_process")]
        for label, side, field, fit in series:
            ys = [p.get(side, {}).get(field) for p in s["points"]]
            if any(y is not None for y in ys):
                ax.plot(xs, [y if y is not None else np.nan for y in ys], "o-",
                        label=f"{label} (exponent {s['exponents'].get(fit)})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(labels.get(key, key))
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ targets
def target_value(t: dict, rows: dict, imports: dict, scaling: dict):
    """The measured value of one [[target]] (None when not measured in this run)."""
    metric = t["metric"]
    if metric == "series_ratio":  # ours in one run (the target's -workers count) over C's launches, summed
        row = rows.get(("series", t.get("case")))
        if row is None or not row.get("c"):
            return None
        w, cw = row["ours"].get(str(t.get("workers", 1)), {}).get("median_wall_s"), row["c"]["median_total_wall_s"]
        return round(w / cw, 3) if w and cw else None
    if metric == "panels_overhead":
        return panels_overhead(scaling.get("panels"), t["kernel"], int(t["panels"]))
    if metric.endswith("_exponent"):
        s = scaling.get(metric[: -len("_exponent")])
        return s["exponents"].get(t.get("series", "ours_in_process")) if s else None
    row = rows.get(t.get("case"))
    if row is None:
        return None
    ours, c = row["sides"].get(t.get("dtype", OURS), {}), row["sides"].get("c", {})
    w, cw, imp = ours.get("median_wall_s"), c.get("median_wall_s"), imports.get("import_probe_s")
    if metric == "delta_ratio":  # what the case adds to its baseline (e.g. -noisefile), ours over C's
        od, cd = _deltas(t, rows)
        return round(od / cd, 3) if od is not None and cd is not None and cd > 0 else None
    if metric == "ratio":
        return round(w / cw, 3) if w and cw else None
    if metric == "ratio_minus_import":
        return round((w - imp) / cw, 3) if w and cw and imp is not None else None
    if metric == "peak_rss_gb":
        return round(ours["peak_rss_mb"] / 1024.0, 3) if ours.get("peak_rss_mb") else None
    if metric == "noise_ratio":  # our noise kernel (warm) over C's noise cost (this case minus its baseline)
        base = rows.get(t.get("baseline"), {}).get("sides", {}).get("c", {}).get("median_wall_s")
        warm = (row.get("noise_probe") or {}).get("median_warm_s")
        return round(warm / (cw - base), 3) if warm and cw and base and cw > base else None
    raise BenchError(f"[[target]] {t.get('what', t)}: unknown metric {metric!r}")


def _deltas(t: dict, rows: dict) -> tuple[float | None, float | None]:
    """(ours, C): median wall of the target's case minus that of its ``baseline`` case."""
    def wall(case_id, side):
        return (rows.get(case_id) or {}).get("sides", {}).get(side, {}).get("median_wall_s")
    side = t.get("dtype", OURS)
    o, ob, c, cb = wall(t.get("case"), side), wall(t.get("baseline"), side), wall(t.get("case"), "c"), \
        wall(t.get("baseline"), "c")
    return (round(o - ob, 4) if o is not None and ob is not None else None,
            round(c - cb, 4) if c is not None and cb is not None else None)


def _walls(t: dict, rows: dict) -> tuple[float | None, float | None]:
    """(C, ours) seconds behind a case target: the case's median walls, or the deltas of a delta_ratio."""
    if t.get("metric") == "delta_ratio":
        od, cd = _deltas(t, rows)
        return cd, od
    sides = (rows.get(t.get("case")) or {}).get("sides", {})
    return sides.get("c", {}).get("median_wall_s"), sides.get(t.get("dtype", OURS), {}).get("median_wall_s")


def evaluate_targets(cfg: dict, rows: dict, imports: dict, scaling: dict) -> list[dict]:
    """Each [[target]]: its value, MET when ``value <= max`` (or, with ``or_within_s``, when ours takes at most
    that many seconds), MISSED, or NOT MEASURED; with the C and our seconds behind it."""
    out = []
    for t in cfg["target"]:
        v = target_value(t, rows, imports, scaling)
        c_s, ours_s = _walls(t, rows) if t.get("case") and not t["metric"].startswith("series") else (None, None)
        within = ours_s is not None and "or_within_s" in t and ours_s <= float(t["or_within_s"])
        status = "MET" if within or (v is not None and v <= float(t["max"])) else \
            "NOT MEASURED" if v is None else "MISSED"
        out.append({"what": t.get("what", t["metric"]), "value": v, "max": t["max"], "status": status,
                    "c_s": c_s, "ours_s": ours_s})
    return out


# ------------------------------------------------------------------------------------------------ report
def parity_cell(side: dict) -> str:
    rows = side.get("parity")
    if rows is None:
        return "-"
    bad = [r for r in rows if r["status"] == "FAIL"]
    if bad:
        return "FAIL: " + "; ".join(bad[0]["reasons"])[:160]
    return "PASS (" + ", ".join(f"{r['output']}{'' if r['status'] == 'PASS' else ' skipped'}" for r in rows) + ")"


def panels_lines(panels: dict | None) -> list[str]:
    """The report's panels section: each kernel's C panel and P strips of it, with the overhead."""
    if not panels:
        return []
    if "error" in panels:
        return ["", f"Panels: not measured ({panels['error']})"]
    out = ["", f"Panels (issue 24): C's {panels['pixels']}x{panels['pixels']} detector against P panels cutting it "
           f"into strips (the same pixels), {panels['threads']} thread(s), "
           f"{'CPU' if panels['cpu_time'] else 'wall'} time, median of {panels['repeats']} turns (the renders taking "
           f"turns), {'steady' if panels.get('steady_heap') else 'default'} heap:",
           "", "| kernel | P | s | vs one panel | max rel. diff |", "|---|---|---|---|---|"]
    for kernel, k in panels["kernels"].items():
        out.append(f"| {kernel} | C's panel | {k['detector']:.3f} | | |")
        out += [f"| {kernel} | {p} | {t:.3f} | {100 * panels_overhead(panels, kernel, int(p)):+.1f} % | "
                f"{k['max_rel_diff'][p]:.1e} |" for p, t in k["panels"].items()]
    return out


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def markdown(data: dict) -> str:
    env, imp = data["env"], data["imports"]
    lines = [f"# Benchmark {data['stamp']}", "",
             f"{env['threads']} threads each side (OMP_NUM_THREADS); {env['platform']}; {env['cpu_count']} CPUs; "
             f"torch {env.get('torch')}; git {env.get('git')}; load average before/after "
             f"{env['loadavg_before']} / {env.get('loadavg_after')}.",
             f"C binary: {env['c_binary'] or 'none (' + str(env['c_binary_problem']) + ')'}"
             + "".join(f"; {p}: {b or 'none'}" for p, b in env.get("c_binaries", {}).items() if p != "nanoBragg"),
             f"{data['repeats']} repeats, C and ours alternating; medians of whole-run wall times. Our package's "
             f"bytecode: {env.get('bytecode', 'as found')}.", "",
             f"Fixed cost of ours: `python -c \"{imp.get('import_probe_code')}\"` {imp.get('import_probe_s')} s, "
             f"our `-h` {imp.get('help_s')} s; numba's start (import and first cached call) on top of the import "
             f"probe {_minus(imp.get('numba_probe_s'), imp.get('import_probe_s'))} s. Untimed warm-up runs (numba's cache filled): "
             + (", ".join(f"{k} {v} s" for k, v in data.get("warm_up", {}).items()) or "none") + ".", "",
             "| case | dtype | C wall s | ours wall s (in-process) | ours/C | (ours - import)/C | peak RSS MB C / ours "
             "| parity |", "|---|---|---|---|---|---|---|---|"]
    for r in data["cases"]:
        c = r["sides"].get("c", {})
        name = r["id"] if r.get("program", "nanoBragg") == "nanoBragg" else f"{r['id']} [{r['program']}]"
        for dt in [s for s in r["sides"] if s != "c"]:
            o = r["sides"].get(dt, {})
            w, cw, i = o.get("median_wall_s"), c.get("median_wall_s"), imp.get("import_probe_s")
            ratio = f"{w / cw:.2f}" if w and cw else "-"
            minus = f"{(w - i) / cw:.2f}" if w and cw and i is not None else "-"
            fails = "" if not any(o.get("exit", [])) else f" exits {o['exit']}"
            lines.append(f"| {name} | {dt} | {cw or '-'} | {w}{fails} ({o.get('median_render_s')}) | {ratio} | "
                         f"{minus} | {c.get('peak_rss_mb', '-')} / {o.get('peak_rss_mb')} | {parity_cell(o)} |")
    if data.get("series"):
        lines += ["", "Datasets: C launched once per frame (matching -phi, -seed) vs ours in one run (-frames):", "",
                  "| series | frames | C total s (per frame) | workers | ours wall s (in-run s) | ours/C | frames/s "
                  "in-run | parity |", "|---|---|---|---|---|---|---|---|"]
        for r in data["series"]:
            c = r.get("c") or {}
            cw = c.get("median_total_wall_s")
            par = r.get("parity") or {}
            cell = par.get("status", "-") + (": " + "; ".join(par.get("reasons", []))[:160] if par.get("reasons")
                                             else f" ({par.get('files_checked')} files)" if par else "")
            for w, o in r["ours"].items():
                ratio = f"{o['median_wall_s'] / cw:.2f}" if o.get("median_wall_s") and cw else "-"
                fails = "" if not any(o.get("exit", [])) else f" exits {o['exit']}"
                lines.append(f"| {r['id']} | {r['frames']} | {cw or '-'} ({c.get('median_frame_wall_s', '-')}) | {w} | "
                             f"{o.get('median_wall_s')}{fails} ({o.get('median_render_s')}) | {ratio} | "
                             f"{o.get('median_frames_per_s')} | {cell} |")
    lines += panels_lines(data.get("panels"))
    noise = [(r["id"], r["noise_probe"]) for r in data["cases"] if r.get("noise_probe")]
    if noise:
        lines += ["", "Noise generator alone (fresh interpreter, on our float image of the case):", ""]
        for cid, n in noise:
            lines.append(f"- {cid}: {n.get('pixels')} pixels; package import {n.get('import_s', 0):.3f} s, first "
                         f"call (numba import, cache load, kernel) {n.get('first_call_s', 0):.3f} s, warm "
                         f"{n.get('median_warm_s')} s" if "error" not in n else f"- {cid}: probe failed {n['error']}")
    for key, s in data.get("scaling", {}).items():
        lines += ["", f"Scaling vs {key.replace('_', ' x ')} ({s['dtype']}); fitted exponents: "
                  + ", ".join(f"{k} {v}" for k, v in s["exponents"].items()), "",
                  "| x | C wall s | ours wall s | ours in-process s |", "|---|---|---|---|"]
        for p in s["points"]:
            lines.append(f"| {p['x']} | {p.get('c', {}).get('median_wall_s', '-')} | "
                         f"{p[s['dtype']]['median_wall_s']} | {p[s['dtype']]['median_render_s']} |")
    if data.get("scaling"):
        lines += ["", "![scaling](scaling.png)"]
    if data["targets"]:
        lines += ["", "| target | measured | limit | status | C s | ours s |", "|---|---|---|---|---|---|"]
        lines += [f"| {t['what']} | {t['value']} | {t['max']} | {t['status']} | {_cell(t.get('c_s'))} | "
                  f"{_cell(t.get('ours_s'))} |" for t in data["targets"]]
    return "\n".join(lines) + "\n"


def _cell(x) -> str:
    return "-" if x is None else f"{x:g}"


def environment(threads: int, cb, others: dict | None = None) -> dict:
    """The machine, the software and the C binaries (nanoBragg's ``cb``; ``others``: program -> CBinary)."""
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "threads": threads, "c_binary": str(cb.path) if cb.ok else None,
           "c_binary_sha256": sha256_file(cb.path) if cb.ok else None,
           "c_binary_problem": None if cb.ok else cb.problem, "loadavg_before": _loadavg(),
           "c_binaries": {p: (str(b.path) if b.ok else None) for p, b in (others or {}).items()}}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    env["git"] = git.stdout.strip() or None
    return env


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_bundle(outdir: Path, data: dict, stem: str = "bench", render=None) -> None:
    """<stem>.json, <stem>.md (``render(data)``, default ``markdown``) and scaling.png (with scaling points),
    assembled in a hidden sibling directory and renamed into place."""
    part = outdir.parent / f".{outdir.name}.part"
    part.mkdir(parents=True)
    try:
        atomic_write(part / f"{stem}.json", json.dumps(data, indent=1))
        atomic_write(part / f"{stem}.md", (render or markdown)(data))
        if any(s["points"] for s in data.get("scaling", {}).values()):
            plot_scaling(data["scaling"], part / "scaling.png")
        os.rename(part, outdir)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise


def passed(data: dict) -> bool:
    """Every run exited 0 and no checked output failed."""
    for r in data["cases"]:
        for side in r["sides"].values():
            if any(side["exit"]) or any(p["status"] == "FAIL" for p in side.get("parity", [])):
                return False
    for s in data.get("scaling", {}).values():
        if any(any(p[k]["exit"]) for p in s["points"] for k in p if isinstance(p[k], dict)):
            return False
    for r in data.get("series", []):
        if any((r.get("c") or {}).get("exit", [])) or any(any(o["exit"]) for o in r["ours"].values()):
            return False
        if (r.get("parity") or {}).get("status") == "FAIL":
            return False
    return True


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m tools.perf.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--select", nargs="+", default=None, metavar="ID",
                    help="case or series ids, or 'panels' (default: everything in the config)")
    ap.add_argument("--repeats", type=int, default=None, help="alternations per case (default: the config's)")
    ap.add_argument("--dtype", nargs="+", default=None, choices=("float32", "float64"), help="our dtypes")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling scans")
    ap.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N", help="detpixels of the pixel scan")
    ap.add_argument("--scaling-repeats", type=int, default=None, help="repeats per scaling point")
    ap.add_argument("--outdir", default=None, help="bundle directory (default: reports/bench/<UTC STAMP>)")
    ap.add_argument("--c-bin", default=None, help="C nanoBragg binary (default: $NB_C_BIN, then PATH)")
    ap.add_argument("--nonbragg-bin", default=None, help="C nonBragg binary (default: $NB_NONBRAGG_BIN, then PATH)")
    ap.add_argument("--noisify-bin", default=None, help="C noisify binary (default: $NB_NOISIFY_BIN, then PATH)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: the GPU section (tools.perf.bench_gpu) instead of the CPU cases")
    return ap.parse_args(argv)


def plan(args, cfg: dict) -> tuple[list[dict], int, list[str]]:
    """The selected cases, repeat count and dtypes; BenchError for an unknown id or a bad count."""
    known = [c["id"] for c in cfg["case"]] + [c["id"] for c in cfg["series"]] + (["panels"] if cfg.get("panels")
                                                                                 else [])
    unknown = sorted(set(args.select or []) - set(known))
    if unknown:
        raise BenchError(f"--select: unknown case id(s) {', '.join(unknown)} (known: {', '.join(known)})")
    cases = [c for c in cfg["case"] if not args.select or c["id"] in args.select]
    repeats = cfg["repeats"] if args.repeats is None else args.repeats
    if repeats < 1:
        raise BenchError(f"--repeats {repeats}: must be at least 1")
    return cases, repeats, list(args.dtype or cfg["dtypes"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda":
        from tools.perf import bench_gpu

        return bench_gpu.main([*(["--outdir", args.outdir] if args.outdir else []),
                               *(["--c-bin", args.c_bin] if args.c_bin else []),
                               *(["--repeats", str(args.repeats)] if args.repeats else [])])
    try:
        cfg = load_config(args.config)
        cases, repeats, dtypes = plan(args, cfg)
        outdir = Path(args.outdir) if args.outdir else ROOT / "reports" / "bench" / utc_stamp()
        if outdir.exists():
            raise BenchError(f"--outdir {outdir}: already exists")
        binaries = {}
        for program, flag, value in (("nanoBragg", "--c-bin", args.c_bin),
                                     ("nonBragg", "--nonbragg-bin", args.nonbragg_bin),
                                     ("noisify", "--noisify-bin", args.noisify_bin)):
            b = resolve_c_binary(value, env_var=PROGRAMS[program].c_bin_env, program=PROGRAMS[program].c_name)
            if value and not b.ok:
                raise BenchError(f"{flag} {value}: {b.problem}")
            binaries[program] = b
        return bench(cfg, cases, repeats, dtypes, args, outdir, binaries)
    except (BenchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def compile_package() -> str:
    """Compile our package's bytecode, as `pip install` does for a wheel (an editable install under
    PYTHONDONTWRITEBYTECODE would otherwise compile every module from source in every timed run)."""
    spec = importlib.util.find_spec("nanobrag_torch")
    folder = Path(spec.origin).parent
    ok = compileall.compile_dir(str(folder), quiet=1)
    return f"{folder} compiled" if ok else f"{folder}: compileall failed"


def bench(cfg, cases, repeats, dtypes, args, outdir: Path, binaries: dict) -> int:
    cb = binaries["nanoBragg"]
    data = {"stamp": outdir.name, "env": environment(cfg["threads"], cb, binaries), "repeats": repeats,
            "dtypes": dtypes}
    sc = cfg.get("scaling") if not args.no_scaling else None
    scratch = Path(tempfile.mkdtemp(prefix="bench_"))
    try:
        inputs_dir = scratch / "inputs"
        inputs_dir.mkdir()
        counts = [3, *[s for s, _ in (sc or {}).get("sources_domains", [])]]
        write_inputs(inputs_dir, counts, spot_images(cases))
        inputs = sorted(inputs_dir.iterdir())
        if cfg["case_inputs"]:
            inputs += [p for p in case_inputs(cfg["case_inputs"]) if p.name not in {q.name for q in inputs}]
        runner = Runner(cfg, {p: (b.path if b.ok else None) for p, b in binaries.items()}, scratch)
        data["env"]["bytecode"] = compile_package()
        data["warm_up"] = warm_up(runner, cases, dtypes, inputs_dir)
        data["imports"] = import_times(runner, repeats)
        data["cases"] = []
        for case in cases:
            print(f"bench {case['id']} ...", file=sys.stderr, flush=True)
            data["cases"].append(run_case(runner, case, inputs, repeats, dtypes))
        data["series"] = []
        for s in cfg["series"]:
            if not args.select or s["id"] in args.select:
                print(f"bench {s['id']} ...", file=sys.stderr, flush=True)
                data["series"].append(run_series_case(runner, s, inputs, repeats))
        if cfg.get("panels") and (not args.select or "panels" in args.select):
            print("bench panels ...", file=sys.stderr, flush=True)
            data["panels"] = run_panels(runner, cfg["panels"])
        if sc:
            print("bench scaling ...", file=sys.stderr, flush=True)
            sizes = args.sizes or sc.get("sizes", [256, 512, 1024, 2048, 4096])
            reps = sc.get("repeats", 1) if args.scaling_repeats is None else args.scaling_repeats
            data["scaling"] = run_scaling(runner, sc, inputs, sizes, reps)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    data["env"]["loadavg_after"] = _loadavg()
    rows = {r["id"]: r for r in data["cases"]}
    rows.update({("series", r["id"]): r for r in data["series"]})
    data["targets"] = evaluate_targets(cfg, rows, data["imports"], {**data.get("scaling", {}),
                                                                    "panels": data.get("panels")})
    data["passed"] = passed(data)
    write_bundle(outdir, data)
    print(markdown(data))
    print(f"bench bundle: {outdir}")
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
