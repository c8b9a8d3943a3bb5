"""tools.perf.bench: the benchmark bundle (timings recorded, never asserted; parity of every output checked).

Most tests run a fake simulator (no torch) on both sides: it writes C's default outputs from a fixed pattern
and prints a "rendered in" time proportional to pixels x sources x domains, so the fitted exponents are known.
"""
from __future__ import annotations

import json
import os
import stat
import statistics
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tools.perf import bench

ROOT = Path(__file__).resolve().parents[2]

FAKE = textwrap.dedent(f'''\
    """Fake simulator: default outputs of C (float, SMV, PGM, noise) from a pattern; argv as C's."""
    import sys
    from pathlib import Path
    sys.path.insert(0, {str(ROOT)!r})
    import numpy as np
    from tests.helpers.synthetic import pattern, pgm_bytes, smv_bytes

    args = sys.argv[1:]
    if "-h" in args:
        print("usage: fake"); raise SystemExit(0)
    def val(flag, default):
        return type(default)(args[args.index(flag) + 1]) if flag in args else default
    scale = float(Path(__file__).with_name("scale.txt").read_text()) if "--c" in args else 1.0
    n = val("-detpixels", 8)
    img = pattern(n) * np.float32(val("-default_F", 1.0) * scale)
    img.astype("<f4").tofile("floatimage.bin")
    Path("intimage.img").write_bytes(smv_bytes(np.floor(img * 100 + 40)))
    if "-nopgm" not in args:
        Path("image.pgm").write_bytes(pgm_bytes(np.minimum(img * 200, 255), 200.0))
    if "-nonoise" not in args:
        Path("noiseimage.img").write_bytes(smv_bytes(np.floor(img * 7 + val("-seed", 0))))
    src = val("-sourcefile", "")
    sources = len(Path(src).read_text().splitlines()) if src else 1
    print(f"rendered in {{n * n * sources * val('-mosaic_domains', 1) * 1e-5:.6g}} s")
    ''')


def _fakes(tmp_path: Path, c_scale: float = 1.0) -> tuple[Path, Path]:
    """(fake simulator script, fake 'C binary' running it with --c and a brightness factor)."""
    sim = tmp_path / "fake_sim.py"
    sim.write_text(FAKE)
    (tmp_path / "scale.txt").write_text(str(c_scale))
    exe = tmp_path / "fake_nanoBragg"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {sim} --c "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return sim, exe


def _config(tmp_path: Path, sim: Path, body: str, repeats: int = 2) -> Path:
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f'threads = 1\nrepeats = {repeats}\nimport_probe = "import json"\n'
                   f'py_command = [{json.dumps(sys.executable)}, {json.dumps(str(sim))}]\n' + body)
    return cfg


CASES = '''
[[case]]
id = "plain"
argv = "-default_F 10 -detpixels 16 -nonoise -nopgm"
[[case]]
id = "defaults"
argv = "-default_F 10 -detpixels 16 -seed 3"
'''

SCALING = '''
[scaling]
dtype = "float32"
sizes = [8, 16, 32]
pixels_argv = "-detpixels {n} -pixel {pixel} -nonoise -nopgm"
sources_domains = [[1, 1], [2, 2]]
sources_domains_argv = "-detpixels 8 -sourcefile src{sources}.txt -mosaic_domains {domains} -nonoise -nopgm"
[[target]]
what = "linear in pixels"
metric = "pixels_exponent"
max = 1.1
[[target]]
what = "impossible ratio"
case = "plain"
dtype = "float32"
metric = "ratio"
max = 0.0001
'''


def test_bundle_timings_parity_scaling_and_targets(tmp_path):
    sim, exe = _fakes(tmp_path)
    out = tmp_path / "bundle"
    code = bench.main(["--config", str(_config(tmp_path, sim, CASES + SCALING)), "--outdir", str(out),
                       "--c-bin", str(exe)])
    assert code == 0, (out / "bench.md").read_text()
    data = json.loads((out / "bench.json").read_text())
    assert [c["id"] for c in data["cases"]] == ["plain", "defaults"]
    for row in data["cases"]:
        for side in ("c", "float32", "float64"):
            s = row["sides"][side]
            assert s["exit"] == [0, 0], "two repeats, alternating"
            assert s["median_wall_s"] == pytest.approx(statistics.median(s["wall_s"]), rel=1e-5)
            assert s["peak_rss_mb"] > 1.0, "a Python process holds more than a megabyte"
    plain = data["cases"][0]["sides"]
    assert plain["float32"]["median_render_s"] == pytest.approx(16 * 16 * 1e-5), "parsed from 'rendered in'"
    assert [p["output"] for p in plain["float32"]["parity"]] == ["floatimage.bin", "intimage.img"]
    defaults = data["cases"][1]["sides"]
    status = {dt: {p["output"]: p["status"] for p in defaults[dt]["parity"]} for dt in ("float32", "float64")}
    assert status["float64"] == dict.fromkeys(["floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img"],
                                              "PASS")
    assert status["float32"]["noiseimage.img"] == "SKIP", "float32 noise images are not comparable pixel by pixel"
    probe = data["cases"][1]["noise_probe"]
    assert probe["pixels"] == 16 * 16 and probe["median_warm_s"] > 0, "our generator timed on our float image"
    # the fake's in-process time is 1e-5 s x pixels x sources x domains: exponent 1 in both scans
    assert data["scaling"]["pixels"]["exponents"]["ours_in_process"] == pytest.approx(1.0, abs=0.01)
    assert data["scaling"]["sources_domains"]["exponents"]["ours_in_process"] == pytest.approx(1.0, abs=0.01)
    assert [p["x"] for p in data["scaling"]["pixels"]["points"]] == [64, 256, 1024]
    assert [(t["status"]) for t in data["targets"]] == ["MET", "MISSED"]
    md = (out / "bench.md").read_text()
    assert "| plain | float32 |" in md and "| linear in pixels | 1.0 | 1.1 | MET |" in md
    # ours runs from compiled bytecode, as after `pip install`, even where PYTHONDONTWRITEBYTECODE is set
    assert data["env"]["bytecode"].endswith("nanobrag_torch compiled") and "bytecode: " in md
    assert (out / "scaling.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".bundle.part")), "assembled under a temporary name, then renamed"


def test_ours_may_write_bytecode(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    runner = bench.Runner({"threads": 2, "py_command": ["{python}"]}, None, tmp_path)
    assert "PYTHONDONTWRITEBYTECODE" not in runner.env and runner.env["OMP_NUM_THREADS"] == "2"


PANELS = '''
[panels]
pixels = 32
panels = [1, 4]
repeats = 1
kernels = ["torch"]
[[target]]
what = "4 panels cost at most 10x one"
metric = "panels_overhead"
kernel = "torch"
panels = 4
max = 9.0
[[target]]
what = "4 panels faster than nothing"
metric = "panels_overhead"
kernel = "torch"
panels = 4
max = -1.0
'''


def test_panels_section_times_the_real_renders(tmp_path):
    # issue 24's panel cost in the report: the real panels_timing in a fresh interpreter (tiny here); its
    # images agree with C's single panel to rounding, and the overhead targets are judged from its times.
    sim, exe = _fakes(tmp_path)
    out = tmp_path / "bundle"
    assert bench.main(["--config", str(_config(tmp_path, sim, CASES + PANELS, repeats=1)), "--outdir", str(out),
                       "--c-bin", str(exe), "--select", "plain", "panels", "--dtype", "float32"]) == 0
    data = json.loads((out / "bench.json").read_text())
    k = data["panels"]["kernels"]["torch"]
    assert k["detector"] > 0 and set(k["panels"]) == {"1", "4"} and max(k["max_rel_diff"].values()) < 1e-9
    assert [t["status"] for t in data["targets"]] == ["MET", "MISSED"]
    assert data["targets"][0]["value"] == pytest.approx(k["panels"]["4"] / k["detector"] - 1, abs=1e-3)
    assert "| torch | 4 |" in (out / "bench.md").read_text()


def test_a_fast_wrong_image_fails(tmp_path):
    # C's image 2% brighter: |sum ratio - 1| = 0.02 is over both dtypes' limits, so the run fails however fast.
    sim, exe = _fakes(tmp_path, c_scale=1.02)
    out = tmp_path / "bundle"
    code = bench.main(["--config", str(_config(tmp_path, sim, CASES, repeats=1)), "--outdir", str(out),
                       "--c-bin", str(exe), "--select", "plain"])
    assert code == 1
    data = json.loads((out / "bench.json").read_text())
    for dt in ("float32", "float64"):
        floats = data["cases"][0]["sides"][dt]["parity"][0]
        assert floats["output"] == "floatimage.bin" and floats["status"] == "FAIL"
        assert any("sum_ratio" in r for r in floats["reasons"])
    assert data["passed"] is False and "FAIL: floatfile: |sum_ratio-1|" in (out / "bench.md").read_text()


def _cli_as_c(tmp_path: Path) -> Path:
    """A 'C binary' that runs our CLI."""
    exe = tmp_path / "fake_nanoBragg"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m nanobrag_torch "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_real_cli_against_itself(tmp_path):
    # Our CLI on both sides (the 'C binary' runs it too): every output is identical. (The noise image's
    # comparison is exercised with the fake above; the CLI's noise image is checked against C by the golden tests.)
    exe = _cli_as_c(tmp_path)
    cfg = tmp_path / "bench.toml"
    cfg.write_text('threads = 1\nrepeats = 1\nimport_probe = "import json"\n[[case]]\nid = "tiny"\n'
                   'argv = "-cell 100 100 100 90 90 90 -default_F 100 -N 3 -detpixels 16 -oversample 1 -nonoise"\n')
    out = tmp_path / "bundle"
    assert bench.main(["--config", str(cfg), "--outdir", str(out), "--c-bin", str(exe), "--dtype", "float64"]) == 0
    data = json.loads((out / "bench.json").read_text())
    side = data["cases"][0]["sides"]["float64"]
    assert {p["output"]: p["status"] for p in side["parity"]} == dict.fromkeys(
        ["floatimage.bin", "intimage.img", "image.pgm"], "PASS")
    assert side["parity"][0]["metrics"]["correlation"] == 1.0
    assert side["median_render_s"] > 0 and data["imports"]["help_s"] > 0
    # numba's start is timed on top of the import probe (a fresh interpreter each): it costs something
    assert data["imports"]["numba_probe_s"] > data["imports"]["import_probe_s"] > 0
    assert "numba's start (import and first cached call)" in (out / "bench.md").read_text()


def test_without_a_binary_still_times_ours(tmp_path, monkeypatch):
    monkeypatch.delenv("NB_C_BIN", raising=False)
    monkeypatch.setenv("PATH", os.defpath)  # no nanoBragg on PATH
    sim, _ = _fakes(tmp_path)
    out = tmp_path / "bundle"
    assert bench.main(["--config", str(_config(tmp_path, sim, CASES, repeats=1)), "--outdir", str(out),
                       "--select", "plain", "--dtype", "float32"]) == 0
    data = json.loads((out / "bench.json").read_text())
    assert data["env"]["c_binary"] is None and data["env"]["c_binary_problem"]
    sides = data["cases"][0]["sides"]
    assert list(sides) == ["float32"] and "parity" not in sides["float32"]


@pytest.mark.parametrize("argv, needle", [(["--select", "nope"], "--select: unknown case id(s) nope"),
                                          (["--repeats", "0"], "--repeats 0"),
                                          (["--c-bin", "/no/such/binary"], "--c-bin /no/such/binary")])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    sim, _ = _fakes(tmp_path)
    out = tmp_path / "bundle"
    assert bench.main(["--config", str(_config(tmp_path, sim, CASES)), "--outdir", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and not out.exists()


def test_fit_exponent():
    # t = 3 x^2 exactly: slope 2 on log-log axes; fewer than two distinct points: no fit.
    assert bench.fit_exponent([1, 2, 4, 8], [3, 12, 48, 192]) == 2.0
    assert bench.fit_exponent([5], [1.0]) is None and bench.fit_exponent([2, 2], [1.0, 2.0]) is None


def test_measure_reports_exit_code_and_peak_rss(tmp_path):
    # A child that fills 150 MiB and exits 3: its peak RSS is at least 150 MiB. While this process holds 300 MiB,
    # a child that allocates nothing reports less than 100 MiB: the benchmark's own size does not leak in.
    work = tmp_path / "w"
    work.mkdir()
    r = bench.measure([sys.executable, "-c", "b = b'x' * (150 << 20); raise SystemExit(3)"], work, dict(os.environ),
                      60)
    assert r.exit == 3 and r.peak_rss_mb >= 150 and r.wall_s > 0
    held = b"y" * (300 << 20)
    small = bench.measure([sys.executable, "-c", "pass"], work, dict(os.environ), 60)
    assert small.exit == 0 and small.peak_rss_mb < 100 and len(held) == 300 << 20
    slow = bench.measure([sys.executable, "-c", "import time; time.sleep(60)"], work, dict(os.environ), 0.5)
    assert slow.exit == -9 and slow.wall_s is None, "killed at the timeout"


def test_phase_d_case_at_another_size():
    # The Phase D case's argv with its detector size replaced, and its input files (the two-source fixture).
    from tools.evidence.case import load_case

    cfg = load_case(None)
    argv, inputs = bench.phase_d_run(None, 4096)
    assert argv[-2:] == ["-detpixels", "4096"] and "-detpixels_x" not in argv and "-detpixels_y" not in argv
    assert argv[argv.index("-floatfile") + 1] == "floatimage.bin"
    src = argv[argv.index("-sourcefile") + 1]
    assert src in {p.name for p in inputs} and all(p.is_file() for p in inputs)
    assert len(argv) == len(cfg.argv) - 4 + 2, "only the two detector-size pairs were replaced"


def test_smv_judge_reads_a_header_longer_than_header_bytes(tmp_path):
    # C's SMV header for the Phase D geometry at 4096^2 is 515 bytes ("}" at 513, then a form feed) although it
    # says HEADER_BYTES=512, and C writes it as is: the pixels follow the form feed. Ours writes the same bytes.
    from tools.matrix import corpus

    text = "{\nHEADER_BYTES=512;\nSIZE1=3;\nSIZE2=2;\nTYPE=unsigned_short;\n" + "PAD=" + "x" * 470 + ";\n}\f"
    assert len(text) > 512
    pixels = bytes(range(12))  # six little-endian uint16: 256, 770, 1284, 1798, 2312, 2826
    path = tmp_path / "long.img"
    path.write_bytes(text.encode() + pixels)
    _, px = corpus.read_smv(path)
    assert px.tolist() == [[256, 770, 1284], [1798, 2312, 2826]]
    short = tmp_path / "short.img"  # the usual case: text padded with spaces to HEADER_BYTES
    short.write_bytes("{\nHEADER_BYTES=512;\nSIZE1=3;\nSIZE2=2;\n}\f".encode().ljust(512, b" ") + pixels)
    assert corpus.read_smv(short)[1].tolist() == px.tolist()


def test_series_case_times_c_per_frame_and_ours_in_one_run(tmp_path):
    # A [[series]] with our CLI on both sides (the 'C binary' runs it once per frame with -phi phi+i*osc and
    # -seed seed+i): the launches are summed, ours runs once, and every frame's files match.
    exe = _cli_as_c(tmp_path)
    cfg = tmp_path / "bench.toml"
    cfg.write_text('threads = 1\nrepeats = 1\nimport_probe = "import json"\n[[series]]\nid = "tiny-series"\n'
                   'argv = "-cell 100 100 100 90 90 90 -default_F 100 -N 3 -detpixels 16 -oversample 1 -osc 0.5 '
                   '-nopgm"\nframes = 2\nphi = 2.0\nseed = 4\nworkers = [0]\n'
                   '[[target]]\nwhat = "series"\ncase = "tiny-series"\nmetric = "series_ratio"\nworkers = 0\n'
                   'max = 100\n')
    out = tmp_path / "bundle"
    assert bench.main(["--config", str(cfg), "--outdir", str(out), "--c-bin", str(exe), "--no-scaling"]) == 0
    data = json.loads((out / "bench.json").read_text())
    row = data["series"][0]
    assert row["c"]["exit"] == [0, 0] and row["c"]["median_total_wall_s"] > 0, "one launch per frame, summed"
    assert row["ours"]["0"]["exit"] == [0] and row["ours"]["0"]["median_frames_per_s"] > 0
    assert row["parity"] == {"status": "PASS", "files_checked": 6, "reasons": []}, "float, int, noise per frame"
    assert data["targets"][0]["status"] == "MET" and data["passed"] is True
    assert "| tiny-series | 2 |" in (out / "bench.md").read_text()


PROGRAMS_CASES = '''
[[case]]
id = "nb"
program = "nonBragg"
argv = "-stol water.stol -detpixels 16 -nonoise"
[[case]]
id = "nz"
program = "noisify"
argv = "-floatfile spots16.bin -seed 2"
[[case]]
id = "base"
argv = "-default_F 10 -detpixels 16 -nonoise -nopgm"
[[case]]
id = "with-noise"
argv = "-default_F 10 -detpixels 16 -nopgm -seed 3"
[[target]]
what = "noise"
case = "with-noise"
baseline = "base"
dtype = "float64"
metric = "delta_ratio"
max = 1e-9
or_within_s = 1000
'''


def test_every_program_of_the_suite_against_its_own_binary(tmp_path):
    # nonBragg and noisify cases run their C binaries (here the fake, given by --nonbragg-bin / --noisify-bin)
    # and our subcommand; noisify has no -dtype, so ours runs once (side "ours") and is judged like float64.
    sim, exe = _fakes(tmp_path)
    out = tmp_path / "bundle"
    code = bench.main(["--config", str(_config(tmp_path, sim, PROGRAMS_CASES, repeats=1)), "--outdir", str(out),
                       "--c-bin", str(exe), "--nonbragg-bin", str(exe), "--noisify-bin", str(exe), "--no-scaling"])
    assert code == 0, (out / "bench.md").read_text()
    data = json.loads((out / "bench.json").read_text())
    rows = {r["id"]: r for r in data["cases"]}
    assert list(rows["nb"]["sides"]) == ["c", "float32", "float64"] and rows["nb"]["program"] == "nonBragg"
    assert list(rows["nz"]["sides"]) == ["c", "ours"]
    # one untimed warm-up run of ours per program and dtype before any timing (numba's cache may be stale)
    assert set(data["warm_up"]) == {"nonBragg float32", "nonBragg float64", "noisify ours", "nanoBragg float32",
                                    "nanoBragg float64"} and all(v > 0 for v in data["warm_up"].values())
    assert {p["output"]: p["status"] for p in rows["nz"]["sides"]["ours"]["parity"]}["noiseimage.img"] == "PASS"
    md = (out / "bench.md").read_text()
    assert "| nz [noisify] | ours |" in md and "| nb [nonBragg] | float64 |" in md
    # the noise target: a tiny ratio limit, but ours adds well under or_within_s seconds: MET, with both deltas
    noise = data["targets"][0]
    assert noise["status"] == "MET" and noise["ours_s"] is not None and noise["c_s"] is not None


def test_inputs_for_the_other_programs(tmp_path):
    # water.stol: increasing sin(theta)/lambda with F; spots<N>.bin: N x N float32 photons for each case naming one
    assert bench.spot_images([{"argv": "-floatfile spots16.bin"}, {"argv": "-floatfile spots32.bin -seed 1"},
                              {"phase_d": "x"}]) == [16, 32]
    bench.write_inputs(tmp_path, (3,), [16])
    table = np.loadtxt(tmp_path / "water.stol")
    assert table.shape[1] == 2 and np.all(np.diff(table[:, 0]) > 0) and table[0, 1] == pytest.approx(2.57, abs=0.01)
    img = np.fromfile(tmp_path / "spots16.bin", dtype="<f4")
    assert img.size == 16 * 16 and img.min() > 1.0 and img.max() > 10.0


def test_delta_target_status():
    # delta_ratio: (ours on case - ours on baseline) / (C on case - C on baseline); or_within_s: MET when ours adds
    # no more than that; a C delta of 0 or less has no ratio (NOT MEASURED unless or_within_s holds)
    def rows(c_case, c_base, o_case, o_base):
        return {"case": {"sides": {"c": {"median_wall_s": c_case}, "float64": {"median_wall_s": o_case}}},
                "base": {"sides": {"c": {"median_wall_s": c_base}, "float64": {"median_wall_s": o_base}}}}
    t = {"what": "t", "case": "case", "baseline": "base", "dtype": "float64", "metric": "delta_ratio", "max": 2.0}
    cfg = {"target": [t, {**t, "or_within_s": 0.3}]}
    out = bench.evaluate_targets(cfg, rows(1.5, 1.0, 3.0, 2.0), {}, {})
    assert [(o["value"], o["status"], o["c_s"], o["ours_s"]) for o in out] == [(2.0, "MET", 0.5, 1.0),
                                                                               (2.0, "MET", 0.5, 1.0)]
    out = bench.evaluate_targets(cfg, rows(1.1, 1.0, 2.25, 2.0), {}, {})
    assert [(o["value"], o["status"]) for o in out] == [(2.5, "MISSED"), (2.5, "MET")]
    out = bench.evaluate_targets(cfg, rows(1.0, 1.1, 2.5, 2.0), {}, {})
    assert [(o["value"], o["status"]) for o in out] == [(None, "NOT MEASURED"), (None, "NOT MEASURED")]


def test_gpu_section_dry_run(tmp_path):
    # --dry-run: every step of the GPU section on the CPU at 64^2 (no C binary, no command-line runs here): a
    # single image per dtype, a batch of two stills whose first equals that still rendered alone, a series.
    from tools.perf import bench_gpu

    out = tmp_path / "gpu"
    env_c = os.environ.pop("NB_C_BIN", None)
    try:
        code = bench_gpu.main(["--dry-run", "--no-cli", "--cases", "still-1024", "--outdir", str(out)])
    finally:
        if env_c is not None:
            os.environ["NB_C_BIN"] = env_c
    assert code == 0, (out / "bench_gpu.md").read_text()
    data = json.loads((out / "bench_gpu.json").read_text())
    assert data["dry_run"] and [(r["case"], r["dtype"]) for r in data["single"]] == [
        ("still-1024", "float32"), ("still-1024", "float64")]
    assert all(r["median_s"] > 0 and r["parity"]["status"] == "-" for r in data["single"])
    modes = [(r["mode"], r["dtype"]) for r in data["throughput"]]
    assert modes == [("batch of stills", "float32"), ("rotation series", "float32"),
                     ("batch of stills", "float64"), ("rotation series", "float64")]
    batches = [r for r in data["throughput"] if r["mode"] == "batch of stills"]
    assert all(r["batch"] == 2 and r["first_vs_alone_ok"] and r["images_per_s"] > 0 for r in batches)
    assert all(r["frames"] == 3 for r in data["throughput"] if r["mode"] == "rotation series")
    md = (out / "bench_gpu.md").read_text()
    assert "dry run on the CPU" in md and "| still-1024 | float64 |" in md and "images/s" in md


def test_gpu_section_against_c_on_all_cores(tmp_path):
    # The whole-run comparison: the 'C binary' (our CLI here) on every core and our command line, the float image
    # judged against C's with the parity thresholds.
    from tools.perf import bench_gpu

    out = tmp_path / "gpu"
    code = bench_gpu.main(["--dry-run", "--cases", "still-1024", "--dtype", "float64", "--outdir", str(out),
                           "--c-bin", str(_cli_as_c(tmp_path))])
    assert code == 0, (out / "bench_gpu.md").read_text()
    data = json.loads((out / "bench_gpu.json").read_text())
    row = data["single"][0]
    assert row["parity"]["status"] == "PASS" and row["parity"]["metrics"]["correlation"] == 1.0
    assert row["c_median_s"] > 0 and row["ours_median_s"] > 0 and data["c_still_images_per_s"] > 0


def test_gpu_section_needs_cuda_without_dry_run(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal cannot happen here")
    assert bench.main(["--device", "cuda", "--outdir", str(tmp_path / "gpu")]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and err.count("\n") == 1
