"""DIALS on our simulated datasets (issue 22): does the program users process data with read our files and
find what we simulated?

    python -m tools.interop.run [--config configs/interop.toml] [--select CASE ...] [--outdir DIR]
    python -m tools.interop.run --check          # only: is DIALS there?

For each [[case]] of the config: one dataset run of ours (the config's flags, its single-panel detector flags or,
for a case with a ``layout``, the multi-module detector of ``layout.mini_jungfrau`` read with -expt, and the
case's flags) writes the formats
the case lists (``nxmx`` -> -nexus, ``cbf`` -> -cbf, ``smv`` -> -noisefile with -adc_header) and the truth
(-exptout); each format then goes through ``dials.import`` -> ``dials.find_spots`` -> ``dials.index`` ->
``dials.refine`` -> ``dials.integrate`` (a failing step ends that format), and ``dials_metrics.py``, run by
DIALS's own Python, compares the results with the truth. Every metric is judged against [thresholds].

Writes DIR/results.json and DIR/summary.md (one table per format: import, spots, indexed %, cell error,
orientation error, distance error, RMSD, r) and the logs of every command under DIR/<case>/ (default DIR:
reports/interop/<UTC STAMP>/). Exit 0 when every case and format passed, 1 when one failed, 2 when DIALS is
not installed (one line saying so: never a silent pass) or the config is bad.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from tools import REPO
from tools.cmdlog import run, utc_stamp
from tools.files import atomic_write
from tools.interop.layout import mini_jungfrau, write_layout

DEFAULT_CONFIG = REPO / "configs" / "interop.toml"
METRICS = Path(__file__).with_name("dials_metrics.py")
STEPS = ("import", "find_spots", "index", "refine", "integrate")
INSTALL = "apt-get install python3-dials bitshuffle (Debian/Ubuntu), or DIALS from dials.github.io"
# What each format's dataset run writes, and how dials.import is pointed at it.
OUTPUT_FLAGS = {"nxmx": ["-nexus", "data.h5"], "cbf": ["-cbf", "frame_#####.cbf"],
                "smv": ["-noisefile", "smv_#####.img", "-adc_header"]}
IMPORT_ARGS = {"nxmx": ["../data.h5"], "cbf": ["template=../frame_#####.cbf"], "smv": ["template=../smv_#####.img"]}


def dials_python() -> str | None:
    """The Python DIALS runs on: $NB_DIALS_PYTHON, else the interpreter named by dials.import's #! line."""
    if os.environ.get("NB_DIALS_PYTHON"):
        return os.environ["NB_DIALS_PYTHON"]
    exe = shutil.which("dials.import")
    if exe is None:
        return None
    with open(exe, "rb") as fh:
        first = fh.readline().decode(errors="replace")
    return first[2:].strip().split()[0] if first.startswith("#!") else None


def check_dials() -> str | None:
    """None when DIALS can run here, else one line saying what is missing."""
    py = dials_python()
    if shutil.which("dials.import") is None or py is None:
        return f"DIALS not found (no dials.import on PATH): {INSTALL}"
    probe = run([py, "-c", "import dials, dxtbx, h5py; print(dxtbx.__file__)"], timeout_s=120)
    if probe.exit_code != 0:
        return f"DIALS found but its Python ({py}) cannot import dials/dxtbx: {INSTALL}"
    return None


def write_random_hkl(path: Path, cell, dmin: float, seed: int) -> int:
    """A P1 HKL file of every index to ``dmin`` (orthogonal cell ``cell``, Å) with random |F|: 100 sqrt(E), E
    exponential (Wilson statistics), F(-h) = F(h). Returns the number of lines."""
    rng = np.random.default_rng(seed)
    lim = [int(math.ceil(c / dmin)) for c in cell]
    lines, seen = [], {}
    for h, k, l in itertools.product(*(range(-n, n + 1) for n in lim)):
        if (h, k, l) == (0, 0, 0) or math.sqrt((h / cell[0]) ** 2 + (k / cell[1]) ** 2 + (l / cell[2]) ** 2) > 1 / dmin:
            continue
        key = max((h, k, l), (-h, -k, -l))
        if key not in seen:
            seen[key] = 100.0 * math.sqrt(rng.exponential(1.0))
        lines.append(f"{h} {k} {l} {seen[key]:.4f}")
    atomic_write(path, "\n".join(lines) + "\n")
    return len(lines)


def write_random_model(path: Path, cell, atoms: int, seed: int, spacegroup: str = "P 21 21 21") -> None:
    """A PDB model of ``atoms`` carbon/nitrogen/oxygen atoms at random positions (B 15-35) in ``spacegroup``: a
    small protein-like structure for the -pdb case (F then comes from the model, and -hklout writes the P1 table
    the run used, which the metrics compare DIALS's intensities with)."""
    import gemmi

    rng = random.Random(seed)
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*cell, 90.0, 90.0, 90.0)
    st.spacegroup_hm = spacegroup
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    for i in range(atoms):
        element = rng.choice("CCCNO")
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        at = gemmi.Atom()
        at.name, at.element = element, gemmi.Element(element)
        at.pos = st.cell.orthogonalize(gemmi.Fractional(rng.random(), rng.random(), rng.random()))
        at.b_iso, at.occ = rng.uniform(15.0, 35.0), 1.0
        res.add_atom(at)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    st.write_pdb(str(path))


def judge(metrics: dict, th: dict) -> list[str]:
    """The thresholds a format's metrics miss (empty: passed)."""
    miss = []
    checks = (("cell_err_pct", "<=", th["cell_err_pct"]), ("orientation_err_deg", "<=", th["orientation_err_deg"]),
              ("distance_err_mm", "<=", th["distance_err_mm"]), ("rmsd_x_px", "<=", th["rmsd_px"]),
              ("rmsd_y_px", "<=", th["rmsd_px"]), ("intensity_r", ">=", th["intensity_r"]))
    for key, op, limit in checks:
        v = metrics.get(key)
        if v is None or not (v <= limit if op == "<=" else v >= limit):
            miss.append(f"{key} {v if v is None else round(v, 4)} (need {op} {limit})")
    return miss


def run_format(case_dir: Path, fmt: str, py: str, extra: dict, log) -> dict:
    """dials.import ... dials.integrate on one format of a case's dataset (``extra``: more parameters per step),
    then the metrics."""
    work = case_dir / fmt
    work.mkdir()
    args = {"import": IMPORT_ARGS[fmt], "find_spots": ["imported.expt", "nproc=2"],
            "index": ["imported.expt", "strong.refl"], "refine": ["indexed.expt", "indexed.refl"],
            "integrate": ["refined.expt", "refined.refl", "nproc=2"]}
    failed = None
    for step in STEPS:
        r = run([f"dials.{step}", *args[step], *extra.get(step, [])], cwd=work, output_path=work / f"{step}.out",
                timeout_s=900, log_path=case_dir.parent / "commands.log")
        log(f"  {fmt}: dials.{step} exit {r.exit_code} ({r.wall_s:.1f} s)")
        if r.exit_code != 0:
            failed = f"dials.{step} exit {r.exit_code}: {r.tail.splitlines()[-1] if r.tail else ''}"
            break
    m = run([py, str(METRICS), "../truth.expt", "../data.hkl", "."], cwd=work, merge_stderr=False,
            output_path=work / "metrics.json", timeout_s=600)
    metrics = json.loads(m.stdout) if m.exit_code == 0 and m.stdout.strip() else {"metrics_error": m.stderr[-2000:]}
    metrics["failed_step"] = failed
    return metrics


def run_case(case: dict, cfg: dict, outdir: Path, py: str, log) -> dict:
    """Simulate one case's dataset and run every format it lists through DIALS."""
    d = outdir / case["name"]
    d.mkdir(parents=True)
    ds = cfg["dataset"]
    if case.get("model_atoms"):  # F from a structure (-pdb), the table it used written for the metrics (-hklout)
        write_random_model(d / "model.pdb", ds["cell"], case["model_atoms"], ds["hkl_seed"])
        source = ["-pdb", "model.pdb", "-hklout", "data.hkl"]
    else:
        write_random_hkl(d / "data.hkl", ds["cell"], ds["hkl_dmin"], ds["hkl_seed"])
        source = ["-hkl", "data.hkl"]
    if "layout" in case:  # a multi-module detector from an experiment list the tool writes (-expt)
        write_layout(d / "layout.expt", **case["layout"])
        detector = ["-expt", "layout.expt"]
    else:
        detector = shlex.split(ds["detector"])
    flags = [*shlex.split(ds["flags"]), *detector, *shlex.split(case.get("flags", ""))]
    outs = [a for fmt in case["formats"] for a in OUTPUT_FLAGS[fmt]]
    sim = run([sys.executable, "-m", "nanobrag_torch", *flags, *source, *outs, "-exptout", "truth.expt",
               "-workers", "0", "-quiet", "-noprogress"], cwd=d, output_path=d / "simulate.out",
              log_path=outdir / "commands.log", root=REPO)
    log(f"{case['name']}: simulated ({sim.wall_s:.1f} s, exit {sim.exit_code})")
    result = {"name": case["name"], "flags": " ".join(flags), "simulate_exit": sim.exit_code, "formats": {}}
    if sim.exit_code != 0:
        result["error"] = sim.tail
        return result
    # DIALS must see every module of a layout as a panel
    want = len(mini_jungfrau(**case["layout"])["detector"][0]["panels"]) if "layout" in case else None
    for fmt in case["formats"]:
        metrics = run_format(d, fmt, py, case.get("dials", cfg.get("dials", {})), log)
        metrics["missed"] = judge(metrics, cfg["thresholds"])
        if want is not None and metrics.get("panels") != want:
            metrics["missed"].append(f"panels {metrics.get('panels')} (need {want})")
        result["formats"][fmt] = metrics
    return result


def _f(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def summary(results: list[dict], cfg: dict) -> str:
    """One markdown table per format: a row per case."""
    th = cfg["thresholds"]
    lines = ["# DIALS on simulated datasets", "",
             f"Thresholds: cell error <= {th['cell_err_pct']} %, orientation <= {th['orientation_err_deg']} deg, "
             f"distance <= {th['distance_err_mm']} mm, RMSD x/y <= {th['rmsd_px']} px, r(I, F^2) >= "
             f"{th['intensity_r']}.", ""]
    fmts = sorted({f for r in results for f in r["formats"]}, key=list(OUTPUT_FLAGS).index)
    for fmt in fmts:
        lines += [f"## {fmt}", "", "| case | import | spots | indexed % | cell err % | orientation err deg | "
                  "distance err mm | RMSD x/y px (z images) | r(I, F^2) (n) | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in results:
            m = r["formats"].get(fmt)
            if m is None:
                continue
            verdict = "PASS" if not m["missed"] else "FAIL: " + "; ".join(m["missed"])
            if m.get("failed_step"):
                verdict += f" ({m['failed_step']})"
            rmsd = (f"{_f(m.get('rmsd_x_px'), 3)}/{_f(m.get('rmsd_y_px'), 3)} ({_f(m.get('rmsd_z_img'), 3)})")
            imported = "no" if not m.get("imported") else "yes" if (m.get("panels") or 1) == 1 else \
                f"yes ({m['panels']} panels)"
            lines.append(f"| {r['name']} | {imported} | {m.get('spots') or '-'} | "
                         f"{_f(m.get('indexed_pct'), 1)} | {_f(m.get('cell_err_pct'), 3)} | "
                         f"{_f(m.get('orientation_err_deg'), 3)} | {_f(m.get('distance_err_mm'), 3)} | {rmsd} | "
                         f"{_f(m.get('intensity_r'), 3)} ({m.get('intensity_n', '-')}) | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.interop.run", description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--select", nargs="+", metavar="CASE")
    ap.add_argument("--outdir", type=Path)
    ap.add_argument("--check", action="store_true", help="only check that DIALS is installed")
    args = ap.parse_args(argv)
    missing = check_dials()
    if missing is not None:
        print(f"interop: {missing}", file=sys.stderr)
        return 2
    if args.check:
        print(f"interop: DIALS found ({dials_python()})")
        return 0
    try:
        cfg = tomllib.loads(args.config.read_text())
        cases = [c for c in cfg["case"] if not args.select or c["name"] in args.select]
        for c in cases:
            unknown = set(c["formats"]) - set(OUTPUT_FLAGS)
            if unknown:
                raise ValueError(f"case {c['name']}: unknown formats {sorted(unknown)}")
    except (OSError, KeyError, ValueError) as exc:
        print(f"interop: bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print(f"interop: no case of {args.config} matches {args.select}", file=sys.stderr)
        return 2
    outdir = args.outdir or REPO / "reports" / "interop" / utc_stamp()
    outdir.mkdir(parents=True, exist_ok=False)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    py = dials_python()
    results = [run_case(c, cfg, outdir, py, log) for c in cases]
    text = summary(results, cfg)
    atomic_write(outdir / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    atomic_write(outdir / "summary.md", text)
    print(text)
    ok = all(r["simulate_exit"] == 0 and r["formats"] and all(not m["missed"] for m in r["formats"].values())
             for r in results)
    print(f"interop: {'PASS' if ok else 'FAIL'} ({outdir})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
