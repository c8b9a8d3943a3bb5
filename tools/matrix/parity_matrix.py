"""Parity matrix: every case of a golden-format corpus against our simulator, in one worst-first report.

    python -m tools.matrix.parity_matrix [--corpus DIR] [--live [--c-bin PATH]] [--select IDS_OR_TAGS ...]
                                  [--exclude TAGS ...] [--dtype float64|float32] [--device cpu|cuda]
                                  [-j N] [--outdir DIR] [--py-cmd CMD] [--timeout S] [--no-images]

Writes ``reports/parity/<UTC STAMP>/`` (or ``--outdir``): ``matrix.json``, ``index.md``, a self-contained
``index.html`` (thumbnails embedded) and ``cases/<id>.png`` (C / PyTorch / difference) plus
``cases/<id>_profile.png`` (line profiles through the worst pixel). Exit status: 0 when every case passes,
1 when any case misses, 2 on a usage error. Running and judging a case is ``tools.matrix.corpus``; pictures are
``tools.compare_images``; numbers are ``tools.metrics`` against ``tools.thresholds``.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import multiprocessing
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tools import REPO, cmdlog
from tools import thresholds as th
from tools.matrix.corpus import CaseResult, default_corpus_dir, default_py_cmd, evaluate_case, load_corpus, select_cases
from tools.files import atomic_write, fresh_dir

# Memory one worker may need: the simulator's default chunk budget (-max_memory_gb 2) plus interpreter,
# torch and the comparison images.
WORKER_MEMORY_GB = 3.0
THUMB_WIDTH = 540


# ------------------------------------------------------------------------------------------ planning
def available_memory_gb() -> float | None:
    """MemAvailable from /proc/meminfo in GiB (None where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def bounded_workers(requested: int, n_cases: int, cores: int | None = None, mem_gb: float | None = None) -> int:
    """Workers actually used: at most ``requested``, the cores, the cases, and what memory allows."""
    cores = cores or os.cpu_count() or 1
    n = max(1, min(int(requested), cores, max(n_cases, 1)))
    if mem_gb is not None:
        n = min(n, max(1, int(mem_gb // WORKER_MEMORY_GB)))
    return n


def sort_key(r: dict):
    """Worst first: failed before passed, then by score (inf first), then id."""
    score = math.inf if r.get("score_is_inf") else (r.get("score") or 0.0)
    return (r["passed"], -score, r["id"])


def feature_counts(results: list[dict]) -> list[dict]:
    """Per feature tag: cases, passed, failed; most failures first."""
    table: dict[str, dict] = {}
    for r in results:
        for tag in r["features"]:
            row = table.setdefault(tag, {"feature": tag, "cases": 0, "passed": 0, "failed": 0})
            row["cases"] += 1
            row["passed" if r["passed"] else "failed"] += 1
    return sorted(table.values(), key=lambda row: (-row["failed"], -row["cases"], row["feature"]))


# ------------------------------------------------------------------------------------------ one case
def _failed_result(case, reason: str, dtype, device) -> dict:
    return {"id": case.id, "summary": case.summary, "features": list(case.features), "expect_error": case.is_error,
            "verdict": "fail", "passed": False, "reasons": [reason], "score": None, "score_is_inf": True,
            "outputs": [], "py_wall_s": None, "c_wall_s": case.wall_s, "c_wall_s_source": "recorded",
            "py_run": None, "c_run": None, "dtype": dtype, "device": device, "images": {}}


def run_one(corpus_root: str, case_id: str, opts: dict) -> dict:
    """Evaluate one case and draw its pictures; a JSON-able dict. Runs in a worker process."""
    corpus = load_corpus(corpus_root)
    case = next(c for c in corpus.cases if c.id == case_id)
    try:
        c_bin = opts["c_bin"]
        if isinstance(c_bin, dict):  # issue 14: one binary per program of the C suite
            c_bin = c_bin.get(case.program)
        res: CaseResult = evaluate_case(
            corpus, case, dtype=opts["dtype"], device=opts["device"], py_cmd=opts["py_cmd"],
            timeout=opts["timeout"], c_bin=c_bin, threads=opts["threads"], keep_images=opts["images"])
        out = res.to_json()
        out["images"] = _draw(res, Path(opts["outdir"])) if opts["images"] else {}
    except Exception as e:  # a harness bug on one case must not stop the others
        out = _failed_result(case, f"harness error: {type(e).__name__}: {e}", opts["dtype"], opts["device"])
    return out


def _draw(res: CaseResult, outdir: Path) -> dict:
    """PNG of C / PyTorch / difference and a line-profile PNG when both float images exist."""
    if not res.images or res.images[1] is None:
        return {}
    from tools.compare_images import write_compare_png, write_profile_png

    c, py = res.images
    verdict = "PASS" if res.passed else "FAIL"
    rel = {}
    try:
        p = write_compare_png(c, py, outdir / "cases" / f"{res.id}.png", title=f"{res.id} [{verdict}]")
        rel["compare"] = str(p.relative_to(outdir))
        if c.shape == py.shape and c.size > 1:
            p = write_profile_png(c, py, outdir / "cases" / f"{res.id}_profile.png", title=f"{res.id}: line profiles")
            rel["profile"] = str(p.relative_to(outdir))
    except Exception as e:  # a picture that cannot be drawn is noted, the verdict stands
        rel["error"] = f"{type(e).__name__}: {e}"
    return rel


# ------------------------------------------------------------------------------------------ reports
def _fmt(x, spec=".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, spec)


def _float_metrics(r: dict) -> dict:
    for o in r["outputs"]:
        if o["kind"] == "floatfile":
            return o["metrics"]
    return {}


def _score_text(r: dict) -> str:
    return "inf" if r.get("score_is_inf") else _fmt(r.get("score"))


def write_index_md(path: Path, meta: dict, summary: dict, features: list[dict], results: list[dict]) -> None:
    lines = [f"# Parity matrix {meta['stamp']}", "",
             f"{summary['passed']}/{summary['cases']} cases pass ({summary['failed']} fail); dtype {meta['dtype']}, "
             f"device {meta['device'] or 'default'}, reference "
             f"{'live C: ' + str(meta['c_bin']) if meta['live'] else 'recorded'}"
             f", corpus `{meta['corpus']}`.", "",
             "Score = worst observed/allowed ratio over the thresholds (> 1 fails; inf: crash, wrong exit status, "
             "missing file or header mismatch).", "",
             f"Times are wall-clock seconds of whole processes (start-up included): {_TIME_NOTE[bool(meta['live'])]}",
             "",
             "## Per feature", "", "| feature | cases | passed | failed |", "| --- | --- | --- | --- |"]
    lines += [f"| {f['feature']} | {f['cases']} | {f['passed']} | {f['failed']} |" for f in features]
    lines += ["", "## Cases (worst first)", "",
              "| case | verdict | score | r | sum ratio | max\\|d\\|/max(C) | ours, whole run s | "
              f"C, whole run s ({'live' if meta['live'] else 'recorded'}) | reasons |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        m = _float_metrics(r)
        img = r.get("images", {}).get("compare")
        name = f"[{r['id']}]({img})" if img else r["id"]
        reasons = "; ".join(r["reasons"]).replace("|", "\\|")
        lines.append(f"| {name} | {r['verdict']} | {_score_text(r)} | {_fmt(m.get('correlation'), '.9f')} | "
                     f"{_fmt(m.get('sum_ratio'), '.8f')} | {_fmt(m.get('max_abs_diff_rel'))} | "
                     f"{_fmt(r.get('py_wall_s'), '.2f')} | {_fmt(r.get('c_wall_s'), '.3f')} | {reasons} |")
    atomic_write(path, "\n".join(lines) + "\n")


def _thumb_data_uri(png: Path) -> str | None:
    try:
        from PIL import Image

        with Image.open(png) as im:
            im = im.convert("RGB")
            if im.width > THUMB_WIDTH:
                im = im.resize((THUMB_WIDTH, round(im.height * THUMB_WIDTH / im.width)))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:
        return None


_TIME_NOTE = {
    False: "ours measured now on this machine; C's as recorded with the corpus (another run, maybe another "
           "machine), so compare them only roughly.",
    True: "ours and C's both measured now, on this machine, one after the other.",
}

_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}th{background:#f0f0f0}
tr.fail td.v{background:#f8d0d0;font-weight:bold}tr.pass td.v{background:#d6f0d6}
.reasons{max-width:34em;font-size:12px}img.thumb{display:block;max-width:540px}.num{text-align:right}
.summary{font-size:16px;margin:0.5em 0 1em}"""


def write_index_html(path: Path, meta: dict, summary: dict, features: list[dict], results: list[dict]) -> None:
    outdir = path.parent
    e = html.escape
    ref = f"live C ({e(str(meta['c_bin']))})" if meta["live"] else "recorded C outputs"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Parity matrix {e(meta['stamp'])}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>Parity matrix {e(meta['stamp'])}</h1>",
             f"<p class='summary'><b>{summary['passed']}/{summary['cases']}</b> cases pass, "
             f"<b>{summary['failed']}</b> fail. dtype {e(meta['dtype'])}, "
             f"device {e(str(meta['device'] or 'default'))}, "
             f"reference: {ref}; corpus <code>{e(meta['corpus'])}</code>; {meta['workers']} worker(s), "
             f"{meta['wall_s']:.1f} s.</p>",
             "<p>Score = worst observed/allowed ratio over the thresholds (&gt; 1 fails; inf: crash, wrong exit "
             "status, missing file or header mismatch). Thresholds: "
             f"<code>{e(json.dumps(meta['thresholds']))}</code></p>",
             f"<p>Times are wall-clock seconds of whole processes (start-up included): "
             f"{e(_TIME_NOTE[bool(meta['live'])])}</p>",
             "<h2>Per feature</h2><table><tr><th>feature</th><th>cases</th><th>passed</th><th>failed</th></tr>"]
    for f in features:
        cls = "fail" if f["failed"] else "pass"
        parts.append(f"<tr class='{cls}'><td>{e(f['feature'])}</td><td class='num'>{f['cases']}</td>"
                     f"<td class='num'>{f['passed']}</td><td class='num v'>{f['failed']}</td></tr>")
    parts.append("</table><h2>Cases, worst first</h2><table><tr><th>case</th><th>verdict</th><th>score</th>"
                 "<th>r</th><th>sum ratio</th><th>max|d|/max(C)</th><th>ours, whole run s</th>"
                 f"<th>C, whole run s ({'live' if meta['live'] else 'recorded'})</th>"
                 "<th>reasons</th><th>C / PyTorch / PyTorch&minus;C</th></tr>")
    for r in results:
        m = _float_metrics(r)
        imgs = r.get("images", {})
        cell = ""
        if imgs.get("compare"):
            uri = _thumb_data_uri(outdir / imgs["compare"])
            if uri:
                cell += f"<a href='{e(imgs['compare'])}'><img class='thumb' src='{uri}' alt='{e(r['id'])}'></a>"
            if imgs.get("profile"):
                cell += f"<a href='{e(imgs['profile'])}'>line profiles</a>"
        reasons = "<br>".join(e(x) for x in r["reasons"]) or ""
        run = r.get("py_run") or {}
        if not r["passed"] and run.get("stderr"):
            tail = "\n".join(run["stderr"].strip().splitlines()[-6:])
            reasons += f"<details><summary>stderr</summary><pre>{e(tail)}</pre></details>"
        parts.append(
            f"<tr class='{'pass' if r['passed'] else 'fail'}'><td><b>{e(r['id'])}</b><br><small>{e(r['summary'])}"
            f"<br>{e(', '.join(r['features']))}</small></td><td class='v'>{r['verdict'].upper()}</td>"
            f"<td class='num'>{_score_text(r)}</td><td class='num'>{_fmt(m.get('correlation'), '.9f')}</td>"
            f"<td class='num'>{_fmt(m.get('sum_ratio'), '.8f')}</td>"
            f"<td class='num'>{_fmt(m.get('max_abs_diff_rel'))}</td>"
            f"<td class='num'>{_fmt(r.get('py_wall_s'), '.2f')}</td>"
            f"<td class='num'>{_fmt(r.get('c_wall_s'), '.3f')}</td>"
            f"<td class='reasons'>{reasons}</td><td>{cell}</td></tr>")
    parts.append("</table></body></html>")
    atomic_write(path, "\n".join(parts))


def _git_commit() -> str | None:
    r = cmdlog.run(["git", "rev-parse", "HEAD"], cwd=REPO, timeout_s=10, merge_stderr=False)
    return (r.stdout.strip() or None) if r.exit_code == 0 else None


# ------------------------------------------------------------------------------------------ driver
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.matrix.parity_matrix", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=None, help="corpus directory (default $NB_GOLDEN_DIR or ../shared/golden)")
    p.add_argument("--live", action="store_true",
                   help="re-run the C program for every case (binary: --c-bin or $NB_C_BIN)")
    p.add_argument("--c-bin", default=None, help="C executable for --live (default $NB_C_BIN; for a case whose "
                   "'program' is noisify, $NB_NOISIFY_BIN)")
    p.add_argument("--select", nargs="+", action="extend", default=None, metavar="ID_OR_TAG",
                   help="case ids or feature tags (comma lists allowed); default: every case")
    p.add_argument("--exclude", nargs="+", action="extend", default=None, metavar="TAG",
                   help="drop cases carrying any of these feature tags")
    p.add_argument("--dtype", choices=th.DTYPES, default="float64")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="passed as -device (default: not passed)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="parallel cases (bounded by cores and memory)")
    p.add_argument("--outdir", default=None, help="bundle directory (default reports/parity/<UTC STAMP>/)")
    p.add_argument("--py-cmd", default=None,
                   help="command running our simulator (default $NB_PY_CMD or 'python -m nanobrag_torch')")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it counts as failed")
    p.add_argument("--no-images", action="store_true", help="skip the PNGs (faster)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _usage(msg: str) -> int:
    print(f"parity_matrix: {msg}", file=sys.stderr)
    return 2


def _plan(args) -> tuple:
    """(corpus, cases, C binary or None) for the arguments; raises ValueError with a one-line usage message."""
    if args.jobs < 1:
        raise ValueError("-j must be >= 1")
    try:
        corpus = load_corpus(Path(args.corpus) if args.corpus else default_corpus_dir())
        cases = select_cases(corpus.cases, args.select, exclude_tags=args.exclude or ())
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    if not cases:
        raise ValueError("the selection leaves no case to run")
    c_bin = None
    if args.live:
        c_bin = _resolve_c_bins(args.c_bin, cases)
    return corpus, cases, c_bin


def _resolve_c_bins(explicit: str | None, cases) -> str | dict:
    """issue 14: the C binary of every program the cases run (a path for nanoBragg alone, as before; else
    {program: path}); ``--c-bin`` names it when the cases run one program. Raises ValueError naming what is
    missing."""
    from tools.cbin import resolve_c_binary
    from tools.matrix.corpus import PROGRAMS

    programs = sorted({c.program for c in cases})
    if explicit and len(programs) > 1:
        raise ValueError(f"--c-bin: the selection runs several C programs ({', '.join(programs)}); "
                         "give each one's binary in its environment variable instead")
    found = {}
    for name in programs:
        prog = PROGRAMS[name]
        cb = resolve_c_binary(explicit, env_var=prog.c_bin_env, program=prog.c_name)
        if not cb.ok:
            raise ValueError(f"--live: {cb.problem}")
        found[name] = str(cb.path)
    return found["nanoBragg"] if programs == ["nanoBragg"] else found


def _outdir(args) -> Path:
    """A directory no earlier matrix used: ``--outdir`` must not exist yet; the default takes a new stamp."""
    if args.outdir:
        out = Path(args.outdir)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            out.mkdir()
        except FileExistsError:
            raise ValueError(f"--outdir {out} already exists; a report directory is never reused") from None
        return out
    return fresh_dir(REPO / "reports" / "parity")


def run_cases(corpus, cases, opts: dict, workers: int, progress: bool) -> list[dict]:
    """Every case's result dict, in one process or ``workers`` spawned ones; a dead worker fails its case."""
    from tqdm import tqdm

    results = []
    bar = tqdm(total=len(cases), desc="parity", unit="case", disable=not progress, file=sys.stderr)
    if workers == 1:
        for case in cases:
            bar.set_postfix_str(case.id)
            results.append(run_one(str(corpus.root), case.id, opts))
            bar.update(1)
    else:
        # spawn: no fork of a process holding threads (tqdm's monitor); workers import run_one by module name
        from tools.matrix.parity_matrix import run_one as worker

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futs = {pool.submit(worker, str(corpus.root), c.id, opts): c for c in cases}
            for fut in as_completed(futs):
                case = futs[fut]
                try:
                    results.append(fut.result())
                except Exception as e:  # a dead worker process: record, keep going
                    results.append(_failed_result(case, f"harness error: {type(e).__name__}: {e}", opts["dtype"],
                                                  opts["device"]))
                bar.set_postfix_str(case.id)
                bar.update(1)
    bar.close()
    return sorted(results, key=sort_key)


def write_reports(outdir: Path, meta: dict, results: list[dict]) -> dict:
    """matrix.json, index.md and index.html (each written atomically); return the pass/fail summary."""
    summary = {"cases": len(results), "passed": sum(r["passed"] for r in results),
               "failed": sum(not r["passed"] for r in results)}
    features = feature_counts(results)
    atomic_write(outdir / "matrix.json", json.dumps(
        {"meta": meta, "summary": summary, "features": features, "cases": results}, indent=1, default=str) + "\n")
    write_index_md(outdir / "index.md", meta, summary, features, results)
    write_index_html(outdir / "index.html", meta, summary, features, results)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        corpus, cases, c_bin = _plan(args)
        outdir = _outdir(args)
    except ValueError as e:
        return _usage(str(e))
    py_cmd = shlex.split(args.py_cmd) if args.py_cmd else default_py_cmd()
    cores = os.cpu_count() or 1
    workers = bounded_workers(args.jobs, len(cases), cores, available_memory_gb())
    opts = {"dtype": args.dtype, "device": args.device, "py_cmd": py_cmd, "timeout": args.timeout, "c_bin": c_bin,
            "threads": max(1, cores // workers) if workers > 1 else None, "images": not args.no_images,
            "outdir": str(outdir)}
    t0 = time.perf_counter()
    results = run_cases(corpus, cases, opts, workers, progress=not args.no_progress)
    meta = {"stamp": outdir.name, "corpus": str(corpus.root.resolve()), "corpus_reference": corpus.reference,
            "live": bool(args.live), "c_bin": c_bin, "dtype": args.dtype, "device": args.device,
            "py_cmd": py_cmd, "select": args.select, "exclude": args.exclude, "jobs_requested": args.jobs,
            "workers": workers, "threads_per_run": opts["threads"], "timeout_s": args.timeout,
            "wall_s": time.perf_counter() - t0, "thresholds": th.tolerances(args.dtype).as_dict(),
            "git_commit": _git_commit(), "host": {"platform": platform.platform(), "cpus": cores,
                                                   "python": sys.version.split()[0]}}
    summary = write_reports(outdir, meta, results)
    worst = next((r for r in results if not r["passed"]), None)
    print(f"parity matrix: {summary['passed']}/{summary['cases']} cases pass"
          + (f"; worst: {worst['id']} ({'; '.join(worst['reasons'])[:200]})" if worst else "")
          + f"\nreport: {outdir / 'index.html'}")
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
