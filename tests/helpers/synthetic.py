"""A tiny synthetic corpus in the golden format, plus a fake simulator, for harness tests.

The fake simulator (``python tests/helpers/synthetic.py <argv>``) understands a handful of C-style flags:
``-detpixels N`` (square image), ``-default_F F`` (image = F * pattern(N)), ``-floatfile/-intfile/-pgmfile
NAME``, ``-hkl FILE`` (refuses with one stderr line and exit 1 when FILE is missing), ``-crash`` (a Python
traceback, exit 1) and our ``-dtype/-device`` (ignored). References are written with the same functions,
so a case passes exactly when its reference was made from the same flags.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def pattern(n: int) -> np.ndarray:
    """A spot on a weak background, [slow][fast], float32: max 1 at (n//2, n//2)."""
    s, f = np.mgrid[0:n, 0:n].astype(np.float64)
    c = n // 2
    return (0.01 + 0.99 * np.exp(-((s - c) ** 2 + (f - c) ** 2) / 4.0)).astype(np.float32)


def write_float(path, img) -> None:
    np.asarray(img, dtype="<f4").tofile(path)


def smv_bytes(px: np.ndarray, extra: list[tuple[str, str]] | None = None) -> bytes:
    """SMV with C nanoBragg's header layout (subset of keys): 512-byte header, uint16 little endian."""
    slow, fast = px.shape
    items = [("HEADER_BYTES", "512"), ("DIM", "2"), ("BYTE_ORDER", "little_endian"), ("TYPE", "unsigned_short"),
             ("SIZE1", str(fast)), ("SIZE2", str(slow)), ("PIXEL_SIZE", "0.1")] + (extra or [])
    text = "{\n" + "".join(f"{k}={v};\n" for k, v in items) + "}\f"
    return text.encode().ljust(512, b" ") + np.asarray(px, dtype="<u2").tobytes()


def write_smv(path, px, extra=None) -> None:
    Path(path).write_bytes(smv_bytes(px, extra))


def pgm_bytes(px: np.ndarray, scale: float) -> bytes:
    h, w = px.shape
    return f"P5\n{w} {h}\n# pixels scaled by {scale:.10g}\n255\n".encode() + np.asarray(px, dtype=np.uint8).tobytes()


def fdump_bytes(values: np.ndarray, ranges=(-1, 1, -1, 1, -1, 1)) -> bytes:
    return ("%d %d %d %d %d %d\n\f" % ranges).encode() + np.asarray(values, dtype="<f8").tobytes()


def render(argv: list[str], cwd: Path) -> int:
    """The fake simulator proper; returns the exit status."""
    opts, flags, i = {}, set(), 0
    while i < len(argv):
        a = argv[i]
        if a in ("-crash", "-nonoise", "-nopgm"):
            flags.add(a)
            i += 1
        else:
            opts[a] = argv[i + 1]
            i += 2
    if "-crash" in flags:
        raise RuntimeError("fake simulator crashed on purpose")
    if "-hkl" in opts and not (cwd / opts["-hkl"]).is_file():
        print(f"error: -hkl {opts['-hkl']}: no such file", file=sys.stderr)
        return 1
    n = int(opts.get("-detpixels", 8))
    img = pattern(n) * np.float32(opts.get("-default_F", 1))
    if "-floatfile" in opts:
        write_float(cwd / opts["-floatfile"], img)
    if "-intfile" in opts:
        scale = 55000.0 / float(img.max())
        write_smv(cwd / opts["-intfile"], np.floor(img * scale + 40.5).clip(0, 65535))
    if "-pgmfile" in opts:
        write_pgm_scale = 250.0 / (5 * float(img.std()))
        (cwd / opts["-pgmfile"]).write_bytes(pgm_bytes(np.minimum(img * write_pgm_scale, 255), write_pgm_scale))
    return 0


def fake_sim_cmd() -> list[str]:
    return [sys.executable, str(HERE)]


def make_case(root: Path, case_id: str, argv: list[str], *, features, exit_code=0, ref_argv=None,
              ref_factor=1.0, inputs=()) -> dict:
    """Write ``out/<case_id>/`` by running the fake renderer on ``ref_argv`` (default ``argv``), times
    ``ref_factor`` for the float image, and return the case entry."""
    out = root / "out" / case_id
    out.mkdir(parents=True)
    outputs, shape = {}, None
    if exit_code == 0:
        render(list(ref_argv or argv), out)
        for kind, flag in (("floatfile", "-floatfile"), ("intfile", "-intfile"), ("pgmfile", "-pgmfile")):
            if flag in argv:
                outputs[kind] = argv[argv.index(flag) + 1]
        n = int(argv[argv.index("-detpixels") + 1])
        shape = [n, n]
        if ref_factor != 1.0 and "floatfile" in outputs:
            p = out / outputs["floatfile"]
            write_float(p, np.fromfile(p, dtype="<f4") * np.float32(ref_factor))
    (out / "stdout.log").write_text("synthetic\n")
    return {"id": case_id, "summary": f"synthetic {case_id}", "features": list(features), "inputs": list(inputs),
            "argv": list(argv), "cmdline": " ".join(argv), "exit_code": exit_code, "outputs": outputs,
            "shape": shape, "wall_s": 0.01}


def make_corpus(root: Path, cases: list[dict], records: list[dict] | None = None) -> Path:
    (root / "inputs").mkdir(parents=True, exist_ok=True)
    (root / "cases.json").write_text(json.dumps(
        {"reference": {"program": "synthetic", "env": {"OMP_NUM_THREADS": "1"}}, "cases": cases,
         "c_behaviour_records": records or []}, indent=1))
    return root


def standard_corpus(root: Path) -> Path:
    """Three cases: ``spots_ok`` (passes), ``sum_off`` (reference 1% brighter: fails sum ratio and max
    difference), ``refused`` (C exit 9, we refuse with one line: passes)."""
    root.mkdir(parents=True, exist_ok=True)
    return make_corpus(root, [
        make_case(root, "spots_ok", ["-default_F", "10", "-detpixels", "16", "-floatfile", "floatimage.bin",
                                     "-intfile", "intimage.img", "-nonoise"], features=["default_F", "intfile"]),
        make_case(root, "sum_off", ["-default_F", "3", "-detpixels", "12", "-floatfile", "floatimage.bin",
                                    "-nonoise"], features=["default_F"], ref_factor=1.01),
        make_case(root, "refused", ["-hkl", "missing.hkl", "-detpixels", "8", "-floatfile", "floatimage.bin"],
                  features=["error", "hkl"], exit_code=9),
    ])


def strip_our_flags(argv: list[str]) -> list[str]:
    """argv without our ``-dtype X`` / ``-device X`` pairs."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in ("-dtype", "-device"):
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


if __name__ == "__main__":
    sys.exit(render(strip_our_flags(sys.argv[1:]), Path.cwd()))
