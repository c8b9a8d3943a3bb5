"""The .stol table reader (io/stol.py, docs/c-behaviour.md §12.2): what it reads like C, what it refuses.

Refusals are InputError with one line naming the flag, the file and (where there is one) the line. The
property tests follow tests/unit/test_readers_fuzz.py: random and mutated files either parse to what an
independent reference parser says, or are refused with one line -- never another exception.
"""
from __future__ import annotations

import itertools
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nanobrag_torch.errors import InputError
from nanobrag_torch.io.stol import read_stol

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_counter = itertools.count()


def _write(tmp_path: Path, data: bytes | str, name: str = "t.stol") -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _read(path, flag="-stol"):
    warnings: list[str] = []
    table = read_stol(path, flag, warnings.append)
    return table, warnings


def test_two_columns_in_file_order(tmp_path):
    t, w = _read(_write(tmp_path, "0 2.57\n0.05 2.6\n0.1 3.1\n"))
    assert t.x.tolist() == [0.0, 0.05, 0.1] and t.F.tolist() == [2.57, 2.6, 3.1]
    assert t.increasing and w == []


def test_c_delimiters_extra_columns_crlf_and_bom(tmp_path):
    # C splits at white space and ',;:!'; it reads two values per line and ignores the rest of it.
    text = "\ufeff0, 1.5 extra\r\n0.1;2.5\r\n0.2 : 3.5 9 9\r\n0.3!4.5\r\n0.4\t5.5\r\n"
    t, w = _read(_write(tmp_path, text))
    assert t.x.tolist() == [0.0, 0.1, 0.2, 0.3, 0.4] and t.F.tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]
    assert w == []


def test_comments_and_blank_lines_are_skipped(tmp_path):
    # C would read '#x y type' as the point (0, 0): we skip it (docs/c-behaviour.md §12.2).
    t, _ = _read(_write(tmp_path, "#Curve 0, 3 points\n#x y\n\n0 1.3\n   \n0.002 0.48 i\n0.004 0.11 i\n"))
    assert t.x.tolist() == [0.0, 0.002, 0.004] and t.F.tolist() == [1.3, 0.48, 0.11]


def test_one_column_line_has_no_F_and_warns(tmp_path):
    t, w = _read(_write(tmp_path, "0\n0.1 2\n0.2 3\n0.3\n"))
    assert np.isnan(t.F[0]) and np.isnan(t.F[3]) and t.F[1:3].tolist() == [2.0, 3.0]
    assert len(w) == 1 and "lines 1, 4" in w[0] and "F = 0" in w[0]


def test_non_increasing_abscissae_are_read_with_a_warning(tmp_path):
    t, w = _read(_write(tmp_path, "0 1\n0.1 2\n0.2 3\n0.18 3.2\n0.3 4\n"))
    assert not t.increasing and t.x.tolist() == [0.0, 0.1, 0.2, 0.18, 0.3]
    assert len(w) == 1 and "line 4" in w[0] and "walk" in w[0]


def test_equal_abscissae_more_than_three_lines_apart_are_allowed(tmp_path):
    # C's cubic goes through 4 consecutive entries; equal x five lines apart never meet in one window.
    t, _ = _read(_write(tmp_path, "0.1 1\n0.2 2\n0.3 3\n0.4 4\n0.1 5\n"))
    assert t.x.size == 5


@pytest.mark.parametrize("text, needle", [
    ("", "no data"),
    ("# only a comment\n\n", "no data"),
    ("0\n0.1\n", "no F values"),
    ("0 1\n0.1 two\n", "line 2: not a number"),
    ("0 1\nnan 2\n", "line 2: not a number"),
    ("0 1\n0.1 inf\n", "line 2: not a number"),
    ("0 1\n0.1 1e999\n", "line 2: not a number"),
    ("0 1\n0.1_0 2\n", "line 2: not a number"),
    ("0 1\n0.1 2\n0.1 3\n", "lines 2 and 3"),
    ("0 1\n0.1 2\n0.2 3\n0 4\n", "lines 1 and 4"),
    ("0 1\n1e70 2\n", "line 2: abscissa"),
])
def test_malformed_tables_are_one_line_input_errors(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        read_stol(path, "-Q", lambda m: None)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("-Q: ") and str(path) in msg and needle in msg


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="-stol: file not found"):
        read_stol(tmp_path / "nope.stol")
    with pytest.raises(InputError, match="not a regular file"):
        read_stol(tmp_path)


# ------------------------------------------------------------------------------------ property tests
_DEC = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")


class Bad(Exception):
    """The reference says: this file must be refused."""


def ref_stol(data: bytes) -> tuple[list[float], list[float]]:
    """An independent reading of §12.2: LF lines (CR, BOM dropped), '#'/blank skipped, columns split at
    white space or ',;:!', two finite decimals (or one: F missing), no equal x within four lines."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    xs, Fs = [], []
    for ln in text.split("\n"):
        ln = ln.removesuffix("\r").strip(" \t,;:!\r\f\v")
        if not ln or ln.startswith("#"):
            continue
        cols = [c for c in re.split(r"[ \t,;:!]+", ln) if c][:2]
        vals = []
        for c in cols:
            if not _DEC.match(c) or not math.isfinite(float(c)):
                raise Bad(c)
            vals.append(float(c))
        if abs(vals[0]) > 1e60:
            raise Bad(cols[0])
        xs.append(vals[0])
        Fs.append(vals[1] if len(vals) > 1 else math.nan)
    if not xs or all(math.isnan(f) for f in Fs):
        raise Bad("empty")
    for i in range(len(xs)):
        if any(xs[i] == xs[j] for j in range(i + 1, min(i + 4, len(xs)))):
            raise Bad("repeat")
    return xs, Fs


def _check(data: bytes) -> None:
    path = Path(tempfile.gettempdir()) / f"stolfuzz_{next(_counter)}.stol"
    path.write_bytes(data)
    try:
        try:
            expected = ref_stol(data)
        except Bad:
            expected = None
        try:
            t = read_stol(path, "-stol", lambda m: None)
        except InputError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            assert expected is None, f"refused a file the reference reads: {exc}"
            return
        assert expected is not None, "read a file the reference refuses"
        xs, Fs = expected
        assert t.x.tolist() == xs
        assert [None if math.isnan(f) else f for f in t.F.tolist()] == [None if math.isnan(f) else f for f in Fs]
    finally:
        path.unlink(missing_ok=True)


_NUM = st.one_of(st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: f"{v:.6g}"),
                 st.sampled_from(["nan", "inf", "-inf", "1e400", "x", "", "1,5", "0.5e", ".5", "+1", "1_0"]))
_LINE = st.one_of(st.tuples(_NUM, _NUM).map(" ".join), _NUM, st.just("# comment"), st.just(""),
                  st.tuples(_NUM, _NUM, _NUM).map(lambda t: "\t".join(t)))


@FUZZ
@given(st.lists(_LINE, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans())
@example(["0 1", "0.1 2", "0.1 3"], "\n", False)
@example(["0", "0.5"], "\r\n", True)
def test_fuzz_structured_tables(lines, eol, bom):
    data = eol.join(lines).encode()
    _check((b"\xef\xbb\xbf" if bom else b"") + data)


@FUZZ
@given(st.binary(max_size=200))
@example(b"\xff\xfe0 1\n")
@example(b"0 1\x00\n")
def test_fuzz_random_bytes(data):
    _check(data)
