"""Property-based tests (hypothesis) of the input readers in nanobrag_torch.io (issue 12).

Every input -- random bytes, truncated valid files, huge numbers, NaN/Inf text, CRLF line ends, a UTF-8
byte-order mark -- must either parse to what the small independent reference parser below says, or raise
InputError with one line naming the file; never any other exception. The reference parsers follow the
formats of the readers' docstrings and docs/c-behaviour.md: ASCII white-space-split decimal columns.
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
from nanobrag_torch.io.hkl import HKLTable, read_fdump, read_hkl, write_fdump
from nanobrag_torch.io.mat import read_mat
from nanobrag_torch.io.smv import read_smv, write_smv
from nanobrag_torch.io.sourcefile import read_sourcefile

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_counter = itertools.count()

# ---------------------------------------------------------------- reference parsers (independent of src)

_DEC = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")


class Bad(Exception):
    """The reference says: this file must be refused."""


def ref_num(tok: str) -> float:
    if not _DEC.match(tok):
        raise Bad(tok)
    v = float(tok)
    if v in (math.inf, -math.inf):
        raise Bad(tok)
    return v


def ref_lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return [ln.removesuffix("\r") for ln in text.split("\n")]


def ref_hkl(data: bytes) -> dict[tuple[int, int, int], float]:
    out: dict[tuple[int, int, int], float] = {}
    for ln in ref_lines(data):
        cols = [c for c in re.split(r"[ \t\r\f\v,]", ln.split("#")[0]) if c]
        if not cols:
            continue
        if len(cols) < 4:
            raise Bad(ln)
        h, k, l, F = (ref_num(c) for c in cols[:4])
        if not all(float(x).is_integer() for x in (h, k, l)):
            raise Bad(ln)
        if max(abs(h), abs(k), abs(l)) > 2**31 - 1:  # C's int
            raise Bad(ln)
        out[int(h), int(k), int(l)] = F
    if not out:
        raise Bad("empty")
    keys = np.array(list(out), dtype=object)
    cells = math.prod(int(hi - lo) + 2 for lo, hi in zip(keys.min(axis=0), keys.max(axis=0)))
    if cells > 2**28:  # read_hkl's documented grid limit (MAX_CELLS)
        raise Bad("grid too large")
    return out


def ref_mat(data: bytes) -> list[float]:
    toks = [t for ln in ref_lines(data) for t in re.split(r"[ \t\r\f\v]", ln) if t][:9]
    if len(toks) < 9:
        raise Bad("short")
    return [ref_num(t) for t in toks]


def ref_sources(data: bytes) -> list[tuple[float, ...]]:
    rows = []
    for ln in ref_lines(data):
        cols = [c for c in re.split(r"[ \t,;:!\r\n]", ln) if c]
        if not cols or cols[0].startswith("#"):
            continue
        vals = [ref_num(c) for c in cols[:5]]
        rows.append(tuple(vals + [math.nan] * (5 - len(vals))))
    if not rows:
        raise Bad("empty")
    return rows


# ---------------------------------------------------------------- helpers

def write(tmp_path_factory, name: str, data: bytes):
    p = tmp_path_factory.getbasetemp() / f"fuzz{next(_counter)}_{name}"
    p.write_bytes(data)
    return p


def outcome(fn, path):
    """fn(path), or None when it raised InputError -- checked to be one line naming the file."""
    try:
        return fn(path)
    except InputError as exc:
        msg = str(exc)
        assert "\n" not in msg and "\r" not in msg, msg
        assert str(path) in msg, msg
        return None


def reference(fn, data):
    try:
        return fn(data)
    except Bad:
        return None


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_hkl(table: HKLTable | None, ref) -> None:
    if ref is None:
        assert table is None, "reader accepted a file the reference refuses"
        return
    assert table is not None, f"reader refused a file the reference reads: {ref}"
    keys = np.array(list(ref))
    assert table.mins == tuple(int(v) for v in keys.min(axis=0))
    assert table.maxs == tuple(int(v) for v in keys.max(axis=0))
    for (h, k, l), F in ref.items():
        assert table.grid[h - table.h_min, k - table.k_min, l - table.l_min] == F
    listed = np.zeros(table.grid.shape, dtype=bool)
    for h, k, l in ref:
        listed[h - table.h_min, k - table.k_min, l - table.l_min] = True
    assert (table.grid[~listed] == 0).all()
    assert table.count >= len(ref)


# ---------------------------------------------------------------- strategies

NUM_TEXT = st.one_of(
    st.integers(-60, 60).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e400", "1e308", "1_0", "0x10",
                     "\uff11", "\u0661", "1.", ".5", "+3", "1e", "--1", "", "abc", "1\xa02", "\ufffd"]),
)
SEP = st.sampled_from([" ", "  ", "\t", ",", " , ", "\f", "\v", "\xa0"])
EOL = st.sampled_from(["\n", "\r\n", "\r", "\n\n", " # c\n", "\u2028", "\x0c\n"])


@st.composite
def text_file(draw, cols: tuple[int, int], nums=NUM_TEXT, rows=(0, 6)):
    lines = []
    for _ in range(draw(st.integers(*rows))):
        n = draw(st.integers(*cols))
        toks = [draw(nums) for _ in range(n)]
        line = toks[0] if toks else ""
        for t in toks[1:]:
            line += draw(SEP) + t
        lines.append(line + draw(EOL))
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.rstrip("\n")  # no final newline
    data = text.encode("utf-8")
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data  # UTF-8 BOM
    return data


@st.composite
def valid_hkl(draw):
    n = draw(st.integers(1, 8))
    lines = []
    for _ in range(n):
        h, k, l = (draw(st.integers(-5, 5)) for _ in range(3))
        F = draw(st.floats(0, 1e4, allow_nan=False))
        lines.append(f"{h} {k} {l} {F!r}")
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    data = eol.join(lines).encode() + draw(st.sampled_from([b"", eol.encode()]))
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + data


def truncations(data: bytes):
    return st.integers(0, len(data)).map(lambda n: data[:n])


def mutated(data: bytes):
    """data with one byte replaced / deleted / inserted."""
    return st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255),
                     st.sampled_from(["set", "del", "ins"])).map(lambda t: _mutate(data, *t))


def _mutate(data, i, b, how):
    if not data:
        return bytes([b])
    if how == "set":
        return data[:i] + bytes([b]) + data[i + 1 :]
    if how == "del":
        return data[:i] + data[i + 1 :]
    return data[:i] + bytes([b]) + data[i:]


# ---------------------------------------------------------------- HKL text

HKL_INPUTS = st.one_of(
    st.binary(max_size=200),
    text_file((0, 6)),
    valid_hkl(),
    valid_hkl().flatmap(truncations),
    valid_hkl().flatmap(mutated),
)


@FUZZ
@given(data=HKL_INPUTS)
@example(data=b"0 0 nan 1\n")  # int(nan): ValueError outside the reader's try
@example(data=b"0 0 inf 1\n")  # int(inf): OverflowError
@example(data=b"0 0 0 1_0\n")  # Python's float takes underscores
@example(data="0 0 \uff11 1\n".encode())  # and full-width digits
@example(data=b"0 0 0 nan\n1 0 0 1e999\n")
@example(data=b"\xef\xbb\xbf1 2 3 4\r\n")
@example(data=b"1 2 3\f4 5 6 7\n")  # str.splitlines() splits at the form feed; C does not
def test_read_hkl_fuzz(tmp_path_factory, data):
    p = write(tmp_path_factory, "in.hkl", data)
    check_hkl(outcome(lambda q: read_hkl(q, warn=lambda m: None), p), reference(ref_hkl, data))


@FUZZ
@given(data=valid_hkl())
def test_read_hkl_valid_files_always_parse(tmp_path_factory, data):
    p = write(tmp_path_factory, "ok.hkl", data)
    table = read_hkl(p, warn=lambda m: None)
    check_hkl(table, ref_hkl(data))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(big=st.sampled_from(["1e9", "-3000000000", "2147483648", "1e300", "99999999999999999999", "1e18"]),
       col=st.integers(0, 2), other=st.booleans())
def test_read_hkl_huge_indices_are_refused(tmp_path_factory, big, col, other):
    # One reflection with a huge index, maybe plus one at the origin: beyond C's int, or (with the second
    # reflection) a grid that cannot be allocated, must be an InputError, not MemoryError/OverflowError;
    # a single reflection at an index that fits an int is a 2x2x2 grid and reads.
    idx = ["0", "0", "0"]
    idx[col] = big
    text = " ".join(idx) + " 1.0\n" + ("0 0 0 2.0\n" if other else "")
    p = write(tmp_path_factory, "big.hkl", text.encode())
    got = outcome(lambda q: read_hkl(q, warn=lambda m: None), p)
    if other or abs(float(big)) > 2**31 - 1:
        assert got is None
    else:
        assert got is not None and got.mins[col] == int(float(big)) and got.grid.shape == (2, 2, 2)


# ---------------------------------------------------------------- Fdump.bin

@st.composite
def fdump_bytes(draw):
    mins = [draw(st.integers(-3, 3)) for _ in range(3)]
    maxs = [m + draw(st.integers(0, 3)) for m in mins]
    shape = tuple(b - a + 2 for a, b in zip(mins, maxs))
    grid = np.array(draw(st.lists(st.floats(width=64), min_size=int(np.prod(shape)),
                                  max_size=int(np.prod(shape))))).reshape(shape)
    table = HKLTable(grid, mins[0], maxs[0], mins[1], maxs[1], mins[2], maxs[2], count=0)
    p = write_fdump_bytes(table)
    return p, table


def write_fdump_bytes(table) -> bytes:
    """What write_fdump writes for ``table`` (a strategy cannot take the tmp_path_factory fixture)."""
    with tempfile.TemporaryDirectory() as d:
        write_fdump(Path(d) / "Fdump.bin", table)
        return (Path(d) / "Fdump.bin").read_bytes()


def ref_fdump(data: bytes):
    ff = data.find(b"\f")
    if ff < 0:
        raise Bad("no ff")
    toks = data[:ff].split()
    if len(toks) != 6 or not all(re.fullmatch(rb"[+-]?[0-9]+", t) for t in toks):
        raise Bad("header")
    v = [int(t) for t in toks]
    shape = (v[1] - v[0] + 2, v[3] - v[2] + 2, v[5] - v[4] + 2)
    if min(shape) < 1:
        raise Bad("range")
    n = shape[0] * shape[1] * shape[2]
    if len(data) - ff - 1 < 8 * n:
        raise Bad("short")
    return v, np.frombuffer(data[ff + 1 : ff + 1 + 8 * n], dtype="<f8").reshape(shape)


def _fdump_header(toks, bad, i, how, body):
    toks = list(toks)
    if bad is not None:
        toks[i] = bad
    if how == "drop":
        del toks[i]
    elif how == "add":
        toks.insert(i, "0")
    return " ".join(toks).encode("utf-8") + b"\n\f" + body + bytes(8 * 27)  # always long enough


FDUMP_INPUTS = st.one_of(
    st.binary(max_size=200),
    fdump_bytes().map(lambda t: t[0]),
    fdump_bytes().flatmap(lambda t: truncations(t[0])),
    fdump_bytes().flatmap(lambda t: mutated(t[0][:60]).map(lambda head, d=t[0]: head + d[60:])),
    # hand-made headers over a body of up to 3x3x3 doubles: Python's int() would take '0_0' and b'+0'
    st.builds(_fdump_header, st.lists(st.sampled_from(["0", "-0", "+0", "1"]), min_size=6, max_size=6),
              st.sampled_from([None, "0_0", "1_0", "x", "2.5", "\xb2", "\u0660", "0x0", "99999999999",
                               "-2147483649"]),
              st.integers(0, 5), st.sampled_from(["keep", "drop", "add"]), st.binary(max_size=16)),
)


@FUZZ
@given(data=FDUMP_INPUTS)
@example(data=b"0 0 0 0 0 0_0\n\f" + bytes(64))  # Python's int(b"0_0") is 0; not an integer to C
@example(data=b"0 0 0 0 0 +0\n\f" + bytes(64))
@example(data=b"0 0 0 0 0 99999999999999999999\n\f" + bytes(64))
@example(data=b"0 -5 0 0 0 0\n\f" + bytes(64))
def test_read_fdump_fuzz(tmp_path_factory, data):
    p = write(tmp_path_factory, "Fdump.bin", data)
    got = outcome(read_fdump, p)
    ref = reference(ref_fdump, data)
    if ref is None:
        assert got is None, "reader accepted a file the reference refuses"
        return
    assert got is not None, "reader refused a file the reference reads"
    v, grid = ref
    assert [got.h_min, got.h_max, got.k_min, got.k_max, got.l_min, got.l_max] == v
    np.testing.assert_array_equal(got.grid, grid)


@FUZZ
@given(t=fdump_bytes())
def test_read_fdump_roundtrip(tmp_path_factory, t):
    data, table = t
    got = read_fdump(write(tmp_path_factory, "Fdump.bin", data))
    assert got.mins == table.mins and got.maxs == table.maxs
    np.testing.assert_array_equal(got.grid, table.grid)


# ---------------------------------------------------------------- MOSFLM matrix

MAT_NUM = st.one_of(st.floats(-1, 1, allow_nan=False).map(repr), NUM_TEXT)


@st.composite
def valid_mat(draw):
    vals = [draw(st.floats(-1, 1, allow_nan=False)) for _ in range(9)]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(" ".join(repr(v) for v in vals[3 * i : 3 * i + 3]) for i in range(3)) + eol
    text += draw(st.sampled_from(["", "     0.0 0.0 0.0" + eol, "trailing text\n"]))
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode()


MAT_INPUTS = st.one_of(
    st.binary(max_size=200),
    text_file((0, 4), MAT_NUM, rows=(0, 4)),
    valid_mat(),
    valid_mat().flatmap(truncations),
    valid_mat().flatmap(mutated),
)


@FUZZ
@given(data=MAT_INPUTS)
@example(data=b"1 0 0\n0 1 0\n0 0 nan\n")
@example(data="1 0 0\n0 1 0\n0 0 \u0661\n".encode())
@example(data=b"\xef\xbb\xbf1 0 0\r\n0 1 0\r\n0 0 1\r\n")
@example(data="1 0 0\u20030 1 0\n0 0 1\n".encode())  # em space: not white space to C
def test_read_mat_fuzz(tmp_path_factory, data):
    p = write(tmp_path_factory, "in.mat", data)
    got = outcome(read_mat, p)
    ref = reference(ref_mat, data)
    if ref is None:
        assert got is None, "reader accepted a file the reference refuses"
        return
    assert got is not None, "reader refused a file the reference reads"
    n = ref
    assert got == ((n[0], n[3], n[6]), (n[1], n[4], n[7]), (n[2], n[5], n[8]))


# ---------------------------------------------------------------- source file

SRC_SEP = st.sampled_from([" ", "\t", ",", ";", ":", "!", " , ", "\xa0", "\f"])


@st.composite
def valid_sources(draw):
    lines = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 6))
        vals = [repr(draw(st.floats(-100, 100, allow_nan=False))) for _ in range(n)]
        lines.append(draw(SRC_SEP).join(vals))
        if draw(st.integers(0, 5)) == 0:
            lines.append("# a comment")
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + (eol.join(lines) + eol).encode()


SRC_INPUTS = st.one_of(
    st.binary(max_size=200),
    text_file((0, 7)),
    valid_sources(),
    valid_sources().flatmap(truncations),
    valid_sources().flatmap(mutated),
)


@FUZZ
@given(data=SRC_INPUTS)
@example(data=b"0 0 10 1 nan\n")  # an explicit NaN would read as 'column missing'
@example(data=b"\xef\xbb\xbf0 0 10\r\n")
@example(data=b"0 0 1_0\n")
def test_read_sourcefile_fuzz(tmp_path_factory, data):
    p = write(tmp_path_factory, "src.txt", data)
    got = outcome(lambda q: read_sourcefile(q, warn=lambda m: None), p)
    ref = reference(ref_sources, data)
    if ref is None:
        assert got is None, "reader accepted a file the reference refuses"
        return
    assert got is not None, "reader refused a file the reference reads"
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert len(a) == 5 and all(same(x, y) for x, y in zip(a, b)), (a, b)


# ---------------------------------------------------------------- SMV

@st.composite
def smv_file(draw):
    w, h = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pix = np.array(draw(st.lists(st.integers(0, 65535), min_size=w * h, max_size=w * h)),
                   dtype=np.uint16).reshape(h, w)
    return pix


def smv_bytes(tmp_path_factory, pix, fields=()):
    p = write(tmp_path_factory, "tmp.img", b"")
    write_smv(p, pix, [("SIZE1", str(pix.shape[1])), ("SIZE2", str(pix.shape[0])), *fields])
    return p.read_bytes()


@FUZZ
@given(pix=smv_file(), cut=st.floats(0, 1), how=st.sampled_from(["whole", "cut", "extra"]))
def test_read_smv_valid_and_truncated(tmp_path_factory, pix, cut, how):
    data = smv_bytes(tmp_path_factory, pix)
    need = 512 + pix.size * 2
    if how == "cut":
        data = data[: int(cut * (need - 1))]
    elif how == "extra":
        data += b"\0" * 7
    p = write(tmp_path_factory, "img.smv", data)
    got = outcome(lambda q: read_smv(q, "-mask"), p)
    if how == "cut":
        assert got is None
    else:
        assert got is not None
        np.testing.assert_array_equal(got[1], pix)


SMV_VALUE = st.sampled_from(["4", "0", "-4", "nan", "inf", "-inf", "1e400", "1e30", "abc", "", "3.7", "-512",
                             "99999999999999999999", "512", "1_0"])


@FUZZ
@given(pix=smv_file(), key=st.sampled_from(["SIZE1", "SIZE2", "HEADER_BYTES"]), value=SMV_VALUE)
def test_read_smv_bad_header_values(tmp_path_factory, pix, key, value):
    # The last occurrence of a key wins, so an extra field overrides the header's own value.
    data = smv_bytes(tmp_path_factory, pix, [(key, value)])
    p = write(tmp_path_factory, "img.smv", data)
    got = outcome(lambda q: read_smv(q, "-mask"), p)
    h, w = pix.shape
    dims = {"SIZE1": w, "SIZE2": h, "HEADER_BYTES": 512}
    try:
        v = float(value)
        dims[key] = int(v)
    except (ValueError, OverflowError):
        assert got is None
        return
    ok = dims["HEADER_BYTES"] >= 0 and dims["SIZE1"] > 0 and dims["SIZE2"] > 0 and \
        dims["HEADER_BYTES"] + 2 * dims["SIZE1"] * dims["SIZE2"] <= len(data)
    if not ok:
        assert got is None
        return
    assert got is not None
    hb, w2, h2 = dims["HEADER_BYTES"], dims["SIZE1"], dims["SIZE2"]
    expect = np.frombuffer(data[hb : hb + 2 * w2 * h2], dtype=np.uint16).reshape(h2, w2)
    np.testing.assert_array_equal(got[1], expect)


@FUZZ
@example(data=b"{\nHEADER_BYTES=-4;\nSIZE1=1;\nSIZE2=1;\n}" + bytes(8))  # negative offset: reshape error
@example(data=b"{\nHEADER_BYTES=512;\nSIZE1=inf;\nSIZE2=1;\n}" + bytes(8))  # int(inf)
@given(data=st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: b"{\nHEADER_BYTES=" + b)))
def test_read_smv_random_bytes(tmp_path_factory, data):
    p = write(tmp_path_factory, "rand.smv", data)
    got = outcome(lambda q: read_smv(q, "-mask"), p)
    if not data.startswith(b"{\nHEADER_BYT"):
        assert got is None
    elif got is not None:  # whatever parsed must be consistent with the header it reports
        hdr, img = got
        assert img.dtype == np.uint16 and img.size > 0


@pytest.mark.parametrize("reader", [read_hkl, read_mat, read_sourcefile, read_fdump,
                                    lambda p: read_smv(p, "-mask")])
def test_missing_file_and_directory(tmp_path, reader):
    for p in (tmp_path / "absent", tmp_path):
        with pytest.raises(InputError) as exc:
            reader(p)
        assert str(p) in str(exc.value) and "\n" not in str(exc.value)

