"""Golden-corpus harness: load a corpus, select cases, run one case hermetically, compare its outputs.

A corpus is any directory in the format of ``../shared/golden`` (``cases.json`` with ``cases`` and
optionally ``c_behaviour_records``, ``inputs/``, ``out/<id>/``). This is the one implementation used by
``tests/parity/test_golden_parity.py`` and ``tools/matrix/parity_matrix.py``; metrics and thresholds come from
``tools.metrics`` and ``tools.thresholds``.

Typical use::

    corpus = load_corpus(default_corpus_dir())
    for case in select_cases(corpus.cases, exclude_tags=RNG_TAGS):
        result = evaluate_case(corpus, case, dtype="float64")
        print(result.id, result.passed, result.reasons)
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tools import REPO, cmdlog
from tools import thresholds as th
from tools.cmdlog import RunResult
from tools.hermetic import prepare_run_dir
from tools.metrics import compare_images, read_float_image, verdict

# Feature tags of cases whose images depend on C's random-number streams.
RNG_TAGS = ("mosaic_domains", "misset_random", "noise")
# Output kinds a case may list, in the order they are compared and reported.
OUTPUT_KINDS = ("floatfile", "intfile", "noisefile", "pgmfile", "dumpfile")
# SMV header keys that carry a date or time and are not compared.
_DATE_KEY = re.compile(r"DATE|TIME", re.IGNORECASE)


# ----------------------------------------------------------------------------------- programs of the C suite
# A case's optional "program" field names the C program it runs (default nanoBragg): our side runs the same
# argv after ``subcommand`` (python -m nanobrag_torch <subcommand> ...), the live C side the binary that
# ``c_bin_env`` names (tools.cbin.resolve_c_binary), and only programs with ``engine_flags`` get -dtype/-device;
# ``quirks`` are defects of the C program's files that the comparison allows (e.g. "pgm_trailing_bytes").
@dataclass(frozen=True)
class Program:
    subcommand: tuple[str, ...]
    c_bin_env: str
    c_name: str
    engine_flags: bool
    quirks: frozenset[str] = frozenset()


PROGRAMS = {
    "nanoBragg": Program((), "NB_C_BIN", "nanoBragg", True),
    "noisify": Program(("noisify",), "NB_NOISIFY_BIN", "noisify", False),
    # nonBragg writes its PGM with two bytes per pixel: whatever memory follows the image trails it (§12.6)
    "nonBragg": Program(("nonbragg",), "NB_NONBRAGG_BIN", "nonBragg", True, frozenset({"pgm_trailing_bytes"})),
}
DEFAULT_PROGRAM = "nanoBragg"


# --------------------------------------------------------------------------------------------- corpus
@dataclass(frozen=True)
class Case:
    """One entry of ``cases`` (or ``c_behaviour_records``) of cases.json."""

    id: str
    argv: tuple[str, ...]
    exit_code: int
    features: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: dict = field(default_factory=dict)  # kind -> file name under out/<id>/
    shape: tuple[int, int] | None = None
    summary: str = ""
    wall_s: float | None = None  # recorded C wall time
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    program: str = DEFAULT_PROGRAM  # a key of PROGRAMS

    @property
    def is_error(self) -> bool:
        """C refused the input (non-zero exit, no image)."""
        return self.exit_code != 0

    @property
    def rng_dependent(self) -> bool:
        return any(t in self.features for t in RNG_TAGS)

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1] if self.shape else 0

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        for key in ("id", "argv", "exit_code"):
            if key not in d:
                raise ValueError(f"case {d.get('id', '?')!r} has no {key!r}")
        shape = d.get("shape")
        program = str(d.get("program") or DEFAULT_PROGRAM)
        if program not in PROGRAMS:
            raise ValueError(f"case {d['id']!r}: unknown program {program!r} (known: {', '.join(PROGRAMS)})")
        return cls(
            id=str(d["id"]),
            argv=tuple(str(a) for a in d["argv"]),
            exit_code=int(d["exit_code"]),
            features=tuple(d.get("features") or ()),
            inputs=tuple(d.get("inputs") or ()),
            outputs=dict(d.get("outputs") or {}),
            shape=(int(shape[0]), int(shape[1])) if shape else None,
            summary=d.get("summary", ""),
            wall_s=d.get("wall_s"),
            raw=d,
            program=program,
        )


@dataclass
class Corpus:
    root: Path
    cases: list[Case]
    records: list[Case]
    reference: dict

    def input_path(self, name: str) -> Path:
        return self.root / "inputs" / name

    def ref_dir(self, case: Case) -> Path:
        return self.root / "out" / case.id

    @property
    def c_env(self) -> dict:
        """Environment the reference C runs used (e.g. OMP_NUM_THREADS)."""
        return {str(k): str(v) for k, v in (self.reference.get("env") or {}).items()}


def default_corpus_dir() -> Path:
    """$NB_GOLDEN_DIR, else ``../shared/golden`` relative to the repository root."""
    env = os.environ.get("NB_GOLDEN_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "golden")


def load_corpus(root: str | Path) -> Corpus:
    """Read ``root/cases.json``; raise FileNotFoundError / ValueError with a one-line message."""
    root = Path(root)
    manifest = root / "cases.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such file (not a golden corpus directory)")
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{manifest}: invalid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ValueError(f"{manifest}: expected an object with a 'cases' list")
    cases = [Case.from_dict(d) for d in data["cases"]]
    records = [Case.from_dict(d) for d in data.get("c_behaviour_records") or []]
    ids = [c.id for c in cases + records]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{manifest}: duplicate case ids {dup}")
    return Corpus(root=root, cases=cases, records=records, reference=data.get("reference") or {})


def _tokens(select) -> list[str]:
    if select is None:
        return []
    if isinstance(select, str):
        select = [select]
    return [t.strip() for item in select for t in str(item).split(",") if t.strip()]


def select_cases(cases: list[Case], select=None, exclude_tags=()) -> list[Case]:
    """Cases matching any of ``select`` (ids or feature tags; comma-separated strings allowed; none = all),
    minus those carrying any tag of ``exclude_tags``. Order of ``cases`` is kept.
    An unknown token raises ValueError (a typo must not silently select nothing)."""
    tokens = _tokens(select)
    ids = {c.id for c in cases}
    tags = {t for c in cases for t in c.features}
    unknown = [t for t in tokens if t not in ids and t not in tags]
    if unknown:
        raise ValueError(f"--select: {', '.join(unknown)} is neither a case id nor a feature tag of this corpus")
    excl = set(_tokens(exclude_tags) if isinstance(exclude_tags, str) else exclude_tags)
    out = []
    for c in cases:
        if tokens and not (c.id in tokens or any(t in c.features for t in tokens)):
            continue
        if excl & set(c.features):
            continue
        out.append(c)
    return out


# ---------------------------------------------------------------------------------------------- runs
# A ``py_cmd`` whose first word is IN_PROCESS calls our CLI's entry point in this process (the remaining words
# come before the case's argv) instead of starting ``python -m nanobrag_torch``; see ``cmdlog.run_in_process``.
IN_PROCESS = cmdlog.IN_PROCESS


def default_py_cmd() -> list[str]:
    """Command that runs our simulator: $NB_PY_CMD (shell-split) or ``<this python> -m nanobrag_torch``."""
    env = os.environ.get("NB_PY_CMD")
    return shlex.split(env) if env else [sys.executable, "-m", "nanobrag_torch"]


def stage_inputs(corpus: Corpus, case: Case, workdir: Path) -> list[dict]:
    """Create the fresh ``workdir`` (it must not exist) holding a copy of ``inputs/<name>`` for every name
    the case lists, and nothing else; return the copies' names and checksums (tools.hermetic)."""
    missing = [n for n in case.inputs if not corpus.input_path(n).is_file()]
    if missing:
        raise FileNotFoundError(f"case {case.id}: input(s) {missing} missing from {corpus.root / 'inputs'}")
    return prepare_run_dir(workdir, [corpus.input_path(n) for n in case.inputs])


def run_in_dir(cmd: list[str], workdir: Path, *, timeout: float, env: dict | None = None) -> RunResult:
    """Run ``cmd`` in ``workdir`` with a timeout; stdout and stderr kept apart; the files it created listed."""
    return cmdlog.run(cmd, cwd=workdir, env=env, timeout_s=timeout, merge_stderr=False)


def thread_env(threads: int | None = None) -> dict:
    """Environment overrides for our simulator: a thread cap when several cases run at once."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


def run_py_case(corpus: Corpus, case: Case, workdir: Path, *, dtype: str | None = "float64",
                device: str | None = None, py_cmd: list[str] | None = None, timeout: float = 600.0,
                threads: int | None = None) -> RunResult:
    """Run our simulator on ``case`` in the fresh ``workdir`` (created here): inputs staged, exact argv + our flags."""
    stage_inputs(corpus, case, workdir)
    program = PROGRAMS[case.program]
    cmd = list(py_cmd or default_py_cmd()) + list(program.subcommand) + list(case.argv)
    if dtype and program.engine_flags:
        cmd += ["-dtype", dtype]
    if device and program.engine_flags:
        cmd += ["-device", device]
    if cmd[0] == IN_PROCESS:
        return cmdlog.run_in_process(cmd[1:], workdir)
    return run_in_dir(cmd, workdir, timeout=timeout, env=thread_env(threads))


def run_c_case(corpus: Corpus, case: Case, workdir: Path, c_bin: str | Path, *, timeout: float = 600.0) -> RunResult:
    """Re-run the C program on ``case`` in the fresh ``workdir`` (created here) with the corpus's recorded env."""
    stage_inputs(corpus, case, workdir)
    env = {"OMP_NUM_THREADS": "2"}
    env.update(corpus.c_env)
    return run_in_dir([str(c_bin)] + list(case.argv), workdir, timeout=timeout, env=env)


# ----------------------------------------------------------------------------------------- file readers
# Deliberately independent of nanobrag_torch.io: the harness must not judge our files with our own readers.
def read_smv(path: str | Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Read an SMV image: (header items in order as (KEY, VALUE) without ';', pixels [slow][fast]: uint16, or
    uint32 for TYPE=long_integer)."""
    raw = Path(path).read_bytes()
    if not raw.startswith(b"{"):
        raise ValueError(f"{path}: not an SMV image (no '{{' at byte 0)")
    end = raw.find(b"}")
    if end < 0:
        raise ValueError(f"{path}: SMV header has no closing '}}'")
    items = []
    for line in raw[1:end].decode("ascii", "replace").splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"{path}: malformed SMV header line {line!r}")
        key, value = line.split("=", 1)
        items.append((key.strip(), value.strip().rstrip(";").strip()))
    hdr = dict(items)
    try:
        nbytes = int(hdr["HEADER_BYTES"])
        fast, slow = int(hdr["SIZE1"]), int(hdr["SIZE2"])
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: SMV header lacks a valid HEADER_BYTES/SIZE1/SIZE2 ({e})") from None
    order = ">" if hdr.get("BYTE_ORDER", "little_endian").startswith("big") else "<"
    width = {"unsigned_short": 2, "long_integer": 4}.get(hdr.get("TYPE", "unsigned_short"))  # 4: noisify -bits 32
    if width is None:
        raise ValueError(f"{path}: SMV TYPE {hdr['TYPE']!r} not supported")
    # C writes its header text as is when it is longer than HEADER_BYTES (no truncation; e.g. 515 bytes for the
    # Phase D geometry at 4096x4096): the pixels then start right after the closing "}" and its form feed.
    nbytes = max(nbytes, end + 1 + (raw[end + 1:end + 2] == b"\f"))
    body = len(raw) - nbytes
    if body != width * fast * slow:
        raise ValueError(f"{path}: {body} bytes after the header, expected {slow}x{fast} {width}-byte pixels")
    data = np.frombuffer(raw, dtype=f"{order}u{width}", offset=nbytes)
    return items, data.reshape(slow, fast)


def read_pgm(path: str | Path, trailing_ok: bool = False) -> tuple[list[str], np.ndarray]:
    """Read a binary PGM (P5, maxval <= 255): (header lines incl. comments, uint8 pixels [rows][cols]).
    ``trailing_ok``: bytes after the pixels are ignored (C nonBragg writes twice the image's size)."""
    raw = Path(path).read_bytes()
    lines, pos, fields = [], 0, []
    while len(fields) < 4:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise ValueError(f"{path}: truncated PGM header")
        line = raw[pos:nl].decode("ascii", "replace")
        pos = nl + 1
        lines.append(line)
        if not line.startswith("#"):
            fields += line.split()
    if fields[0] != "P5":
        raise ValueError(f"{path}: not a binary PGM (magic {fields[0]!r})")
    try:
        w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    except ValueError:
        raise ValueError(f"{path}: malformed PGM size/maxval {fields[1:4]}") from None
    if maxval > 255:
        raise ValueError(f"{path}: 16-bit PGM not supported")
    data = np.frombuffer(raw, dtype=np.uint8, offset=pos)
    if trailing_ok and data.size > w * h:
        data = data[: w * h]
    if data.size != w * h:
        raise ValueError(f"{path}: {data.size} pixels after the header, expected {w}x{h}")
    return lines, data.reshape(h, w)


def read_fdump(path: str | Path) -> tuple[bytes, np.ndarray]:
    """Read an Fdump.bin: (ASCII header up to and including the form feed, float64 values)."""
    raw = Path(path).read_bytes()
    ff = raw.find(b"\f")
    if ff < 0:
        raise ValueError(f"{path}: Fdump header has no form feed")
    body = raw[ff + 1 :]
    if len(body) % 8:
        raise ValueError(f"{path}: Fdump body of {len(body)} bytes is not a whole number of doubles")
    return raw[: ff + 1], np.frombuffer(body, dtype="<f8")


# ----------------------------------------------------------------------------------------- comparisons
@dataclass
class OutputCheck:
    """Comparison of one output file (kind) with its reference."""

    kind: str
    file: str
    passed: bool
    reasons: list[str]
    metrics: dict
    score: float  # worst observed/allowed ratio over the checked quantities; > 1 fails; inf = unusable


def _ratio(observed: float, allowed: float) -> float:
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        return math.inf
    if allowed == 0:
        return 0.0 if observed == 0 else math.inf
    return float(observed) / float(allowed)


def float_score(metrics: dict, t: th.Thresholds) -> float:
    """Worst of (1-r)/(1-r_min), |sum_ratio-1|/limit, max|d|rel/limit; NaN-count mismatch = inf."""
    if metrics["nan_c"] != metrics["nan_py"]:
        return math.inf
    parts = [
        _ratio(1.0 - metrics["correlation"], 1.0 - t.min_correlation),
        _ratio(abs(metrics["sum_ratio"] - 1.0), t.max_sum_ratio_dev),
    ]
    if t.max_abs_diff_rel is not None:
        parts.append(_ratio(metrics["max_abs_diff_rel"], t.max_abs_diff_rel))
    return max(parts)


def _values_match(a: str, b: str, rtol: float) -> bool:
    """Header values equal as text, or as numbers (comma-separated lists too) within ``rtol``."""
    if a == b:
        return True
    pa, pb = a.split(","), b.split(",")
    if len(pa) != len(pb):
        return False
    try:
        return all(math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=1e-12) for x, y in zip(pa, pb))
    except ValueError:
        return False


def compare_float(ref: Path, ours: Path, shape, dtype: str) -> tuple[dict, list[str], float, tuple]:
    c = read_float_image(ref, tuple(shape) if shape else None)
    try:
        py = read_float_image(ours, tuple(shape) if shape else None)
    except ValueError as e:
        return {}, [f"floatfile: {e}"], math.inf, (c, None)
    if c.shape != py.shape:
        return {}, [f"floatfile: {py.size} floats, C wrote {c.size}"], math.inf, (c, None)
    t = th.for_dtype(dtype)
    m = compare_images(c, py)
    ok, reasons = verdict(m, t)
    return m, [f"floatfile: {r}" for r in reasons], float_score(m, t), (c, py)


def compare_smv(ref: Path, ours: Path, kind: str, dtype: str) -> tuple[dict, list[str], float]:
    items_c, px_c = read_smv(ref)
    items_p, px_p = read_smv(ours)
    hc = [(k, v) for k, v in items_c if not _DATE_KEY.search(k)]
    hp = [(k, v) for k, v in items_p if not _DATE_KEY.search(k)]
    reasons = []
    kc, kp = [k for k, _ in hc], [k for k, _ in hp]
    if set(kc) != set(kp):
        missing, extra = sorted(set(kc) - set(kp)), sorted(set(kp) - set(kc))
        reasons.append(f"{kind}: header keys differ (missing {missing}, extra {extra})")
    elif kc != kp:
        reasons.append(f"{kind}: header key order differs from C")
    dp, diffs = dict(hp), []
    for k, v in hc:
        if k in dp and not _values_match(v, dp[k], th.tolerances(dtype).smv_header_rtol):
            diffs.append(f"{k}: C {v!r} vs {dp[k]!r}")
    if diffs:
        reasons.append(f"{kind}: header values differ: " + "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else ""))
    metrics = {"header_value_diffs": len(diffs)}
    if px_c.shape == px_p.shape:
        metrics.update(sum_c=int(px_c.sum(dtype=np.int64)), sum_py=int(px_p.sum(dtype=np.int64)))
    return _judge_pixels(kind, px_c, px_p, th.tolerances(dtype).smv_max_pixel_diff, metrics, reasons)


def _judge_pixels(kind: str, px_c: np.ndarray, px_p: np.ndarray, allowed: int, metrics: dict,
                  reasons: list[str]) -> tuple[dict, list[str], float]:
    """Integer images (SMV, PGM): pixels within ``allowed`` counts; header ``reasons`` make the score inf."""
    if px_c.shape != px_p.shape:
        reasons.append(f"{kind}: image {px_p.shape[0]}x{px_p.shape[1]}, C {px_c.shape[0]}x{px_c.shape[1]}")
        return metrics, reasons, math.inf
    d = np.abs(px_p.astype(np.int64) - px_c.astype(np.int64))
    mx = int(d.max()) if d.size else 0
    metrics.update(max_pixel_diff=mx, pixels_differing=int((d > 0).sum()),
                   pixels_over_limit=int((d > allowed).sum()))
    if mx > allowed:
        s, f = np.unravel_index(int(np.argmax(d)), d.shape)
        reasons.append(f"{kind}: {metrics['pixels_over_limit']} pixels differ by more than {allowed} "
                       f"(max {mx} at [{s}, {f}])")
    score = _ratio(mx, allowed)
    if reasons and score <= 1.0:
        score = math.inf  # header problems: not a matter of degree
    return metrics, reasons, score


_PGM_SCALE = re.compile(r"^#\s*pixels scaled by\s+(\S+)\s*$")


def compare_pgm(ref: Path, ours: Path, dtype: str, trailing_ok: bool = False) -> tuple[dict, list[str], float]:
    """PGM pixels and scale line; ``trailing_ok``: the reference may carry bytes after its pixels."""
    lines_c, px_c = read_pgm(ref, trailing_ok)
    lines_p, px_p = read_pgm(ours)
    reasons = []
    metrics: dict = {}
    if len(lines_c) != len(lines_p):
        reasons.append(f"pgmfile: {len(lines_p)} header lines, C has {len(lines_c)}")
    rtol = th.tolerances(dtype).pgm_scale_rtol
    for lc, lp in zip(lines_c, lines_p):
        mc, mp = _PGM_SCALE.match(lc), _PGM_SCALE.match(lp)
        if mc and mp:
            try:
                sc, sp = float(mc.group(1)), float(mp.group(1))
            except ValueError:
                reasons.append(f"pgmfile: unparsable scale line {lp!r}")
                continue
            metrics["pgm_scale_c"], metrics["pgm_scale_py"] = sc, sp
            if not math.isclose(sc, sp, rel_tol=rtol, abs_tol=0.0):
                reasons.append(f"pgmfile: pixels scaled by {sp:g}, C {sc:g} (rel tol {rtol:g})")
        elif lc != lp:
            reasons.append(f"pgmfile: header line {lp!r}, C {lc!r}")
    return _judge_pixels("pgmfile", px_c, px_p, th.tolerances(dtype).pgm_max_pixel_diff, metrics, reasons)


def compare_fdump(ref: Path, ours: Path) -> tuple[dict, list[str], float]:
    hc, vc = read_fdump(ref)
    hp, vp = read_fdump(ours)
    reasons = []
    if hc != hp:
        reasons.append(f"dumpfile: header {hp!r}, C {hc!r}")
    metrics = {"values_c": int(vc.size), "values_py": int(vp.size)}
    if vc.size != vp.size:
        reasons.append(f"dumpfile: {vp.size} values, C {vc.size}")
    else:
        same = (vc == vp) | (np.isnan(vc) & np.isnan(vp))
        n = int((~same).sum())
        metrics["values_differing"] = n
        if n:
            d = np.abs(vp - vc)
            metrics["max_abs_diff"] = float(np.nanmax(d)) if np.isfinite(d).any() else float("nan")
            reasons.append(f"dumpfile: {n} of {vc.size} values differ (max |d| {metrics['max_abs_diff']:.3g})")
    return metrics, reasons, (math.inf if reasons else 0.0)


def compare_outputs(case: Case, ref_dir: Path, py_dir: Path, dtype: str, *, ref_outputs: dict | None = None,
                    keep_images: bool = False) -> tuple[list[OutputCheck], tuple | None]:
    """Compare every output the case lists (``ref_outputs`` overrides the case's map, e.g. for live C runs).
    Returns the checks and, with ``keep_images``, the (C, PyTorch) float images (PyTorch None if unreadable)."""
    outputs = case.outputs if ref_outputs is None else ref_outputs
    checks, images = [], None
    for kind in sorted(outputs, key=lambda k: OUTPUT_KINDS.index(k) if k in OUTPUT_KINDS else len(OUTPUT_KINDS)):
        name = outputs[kind]
        ref, ours = ref_dir / name, py_dir / name
        if not ours.is_file():
            checks.append(OutputCheck(kind, name, False, [f"{kind}: {name} not written"], {}, math.inf))
            continue
        try:
            if kind == "floatfile":
                m, reasons, score, imgs = compare_float(ref, ours, case.shape, dtype)
                if keep_images:
                    images = imgs
            elif kind in ("intfile", "noisefile"):
                m, reasons, score = compare_smv(ref, ours, kind, dtype)
            elif kind == "pgmfile":
                m, reasons, score = compare_pgm(ref, ours, dtype, "pgm_trailing_bytes" in PROGRAMS[case.program].quirks)
            elif kind == "dumpfile":
                m, reasons, score = compare_fdump(ref, ours)
            else:
                m, reasons, score = {}, [f"{kind}: unknown output kind, not compared"], math.inf
        except (ValueError, OSError) as e:
            m, reasons, score = {}, [f"{kind}: {e}"], math.inf
        checks.append(OutputCheck(kind, name, not reasons, reasons, m, score))
    return checks, images


# ----------------------------------------------------------------------------------------- one case
@dataclass
class CaseResult:
    """Verdict of one case: PyTorch run (and live C run) plus every output comparison."""

    id: str
    features: list[str]
    summary: str
    expect_error: bool
    passed: bool
    reasons: list[str]
    score: float  # worst output score (> 1 fails; inf for crashes, missing files, wrong exit status)
    checks: list[OutputCheck]
    py_run: RunResult | None
    c_run: RunResult | None  # only with a live C binary
    py_wall_s: float | None
    c_wall_s: float | None  # live run, else the corpus's recorded wall_s
    dtype: str | None
    device: str | None
    images: tuple | None = field(default=None, repr=False)  # (C, PyTorch) float images with keep_images

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "summary": self.summary,
            "features": self.features,
            "expect_error": self.expect_error,
            "verdict": "pass" if self.passed else "fail",
            "passed": self.passed,
            "reasons": self.reasons,
            "score": None if math.isinf(self.score) else self.score,
            "score_is_inf": math.isinf(self.score),
            "outputs": [asdict(c) | {"score": None if math.isinf(c.score) else c.score} for c in self.checks],
            "py_wall_s": self.py_wall_s,
            "c_wall_s": self.c_wall_s,
            "c_wall_s_source": "live" if self.c_run else "recorded",
            "py_run": self.py_run.summary() if self.py_run else None,
            "c_run": self.c_run.summary() if self.c_run else None,
            "dtype": self.dtype,
            "device": self.device,
        }


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _judge_error_case(run: RunResult) -> list[str]:
    """Our side must refuse: non-zero exit, exactly one line on stderr, and no file written."""
    reasons = []
    if run.timed_out:
        return [f"timed out after {run.wall_s:.0f} s (expected a refusal)"]
    if run.exit_code == 0:
        reasons.append("exit 0, expected a non-zero exit (C refuses this input)")
    lines = [ln for ln in run.stderr.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        reasons.append(f"stderr has {len(lines)} lines, expected one message line"
                       + (f" (last: {lines[-1].strip()[:160]!r})" if lines else ""))
    if run.new_files:
        reasons.append(f"wrote {run.new_files} although it refused the input")
    return reasons


def evaluate_case(corpus: Corpus, case: Case, *, dtype: str = "float64", device: str | None = None,
                  py_cmd: list[str] | None = None, timeout: float = 600.0, c_bin: str | Path | None = None,
                  threads: int | None = None, keep_images: bool = False, workroot: str | Path | None = None
                  ) -> CaseResult:
    """Run ``case`` with our simulator (and, with ``c_bin``, the C program) in fresh temp dirs and judge it.

    Never raises for a failure of the simulator or of a file; problems become ``reasons``."""
    reasons: list[str] = []
    checks: list[OutputCheck] = []
    images = None
    c_run = None
    with tempfile.TemporaryDirectory(prefix=f"nb_{case.id}_", dir=workroot) as tmp:
        py_dir, c_dir = Path(tmp) / "py", Path(tmp) / "c"
        expect_error = case.is_error
        ref_dir, ref_outputs = corpus.ref_dir(case), None
        missing = [n for n in case.inputs if not corpus.input_path(n).is_file()]
        if missing:
            reasons.append(f"input(s) {missing} missing from {corpus.root / 'inputs'}")
            c_bin = None
        if c_bin is not None:
            c_run = run_c_case(corpus, case, c_dir, c_bin, timeout=timeout)
            expect_error = c_run.timed_out or c_run.exit_code != 0
            if expect_error != case.is_error:
                reasons.append(f"live C exit {c_run.exit_code}, corpus records {case.exit_code}")
            ref_dir = c_dir
            ref_outputs = {k: v for k, v in case.outputs.items() if (c_dir / v).is_file()}
            for k in sorted(set(case.outputs) - set(ref_outputs)):
                reasons.append(f"live C did not write {case.outputs[k]} ({k})")
        run = None if missing else run_py_case(corpus, case, py_dir, dtype=dtype, device=device, py_cmd=py_cmd,
                                               timeout=timeout, threads=threads)
        if run is not None:
            if expect_error:
                reasons += _judge_error_case(run)
            elif run.timed_out:
                reasons.append(f"timed out after {timeout:g} s")
            elif run.exit_code != 0:
                msg = _last_line(run.stderr) or _last_line(run.stdout)
                reasons.append(f"exit {run.exit_code}: {msg[:300]}")
            else:
                checks, images = compare_outputs(case, ref_dir, py_dir, dtype, ref_outputs=ref_outputs,
                                                 keep_images=keep_images)
                for chk in checks:
                    reasons += chk.reasons
    check_reasons = sum(len(c.reasons) for c in checks)
    if len(reasons) > check_reasons:
        score = math.inf  # crash, timeout, wrong exit status, live-C mismatch: not a matter of degree
    elif checks:
        score = max(c.score for c in checks)
    else:
        score = 0.0  # an error case refused properly
    return CaseResult(
        id=case.id, features=list(case.features), summary=case.summary, expect_error=expect_error,
        passed=not reasons, reasons=reasons, score=score, checks=checks, py_run=run,
        c_run=c_run, py_wall_s=run.wall_s if run else None,
        c_wall_s=c_run.wall_s if c_run else case.wall_s, dtype=dtype, device=device, images=images,
    )
