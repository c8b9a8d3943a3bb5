"""Unit tests of nanobrag_torch.io: HKL text, Fdump.bin, source files, MOSFLM matrices, SMV, PGM, raw float.

Byte layouts are those of docs/c-behaviour.md §4.1, §4.5, §5.1, §8.1, §8.4, §8.6-§8.8. Files are written by hand in
each test so the expected content is visible next to the assertion. The intentional differences from C
(comments skipped, clear errors for malformed files) are tested as specified in docs/c-behaviour.md §5.1.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from nanobrag_torch.errors import InputError
from nanobrag_torch.io.hkl import HKLTable, read_fdump, read_hkl, write_fdump
from nanobrag_torch.io.images import write_float_image, write_pgm
from nanobrag_torch.io.mat import read_mat, write_mat
from nanobrag_torch.io.smv import HEADER_BYTES, format_header, header_value, read_smv, write_smv
from nanobrag_torch.io.sourcefile import read_sourcefile

GOLDEN = Path(os.environ.get("NB_GOLDEN_DIR", "/work/shared/golden"))


def write(tmp_path, name, text):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        with open(p, "w", newline="") as fh:  # keep \r\n as written
            fh.write(text)
    return p


class Warnings:
    """Collects warning messages (a plain callable: the readers take ``warn=callable``)."""

    def __init__(self):
        self.msgs = []

    def __call__(self, msg):
        self.msgs.append(msg)


# ------------------------------------------------------------------------------------------------ HKL
class TestReadHKL:
    def test_comments_and_blank_lines_skipped(self, tmp_path):
        # '#' lines, blank lines and trailing '# ...' are skipped
        # (unlike C, which stops at the first non-number).
        p = write(tmp_path, "a.hkl", "# h k l F\n\n1 2 3 10.5\n   # indented\n-1 0 2 3 # trailing\n\n")
        w = Warnings()
        t = read_hkl(p, warn=w)
        assert t.count == 2 and not w.msgs
        assert (t.mins, t.maxs) == ((-1, 0, 2), (1, 2, 3))
        assert t.grid[1 - (-1), 2 - 0, 3 - 2] == 10.5 and t.grid[0, 0, 0] == 3.0

    def test_extra_columns_warn_once(self, tmp_path):
        # Columns after F (sigma, phase) are ignored with ONE warning for the whole file naming the count.
        p = write(tmp_path, "a.hkl", "0 0 0 5 0.1\n0 0 1 6 0.2 90\n0 1 0 7\n")
        w = Warnings()
        t = read_hkl(p, warn=w)
        assert len(w.msgs) == 1 and "2 lines" in w.msgs[0]
        assert t.count == 3 and t.grid[0, 0, 1] == 6.0

    @pytest.mark.parametrize(
        "text, match",
        [
            ("1.5 0 0 10\n", "integers"),  # non-integer Miller index
            ("1 0 0 ten\n", "not a number"),  # non-numeric F
            ("1 0 0\n", "expected 'h k l F'"),  # too few columns
            ("# only a comment\n\n", "no reflections"),
            ("", "no reflections"),
        ],
    )
    def test_malformed_files_raise_input_error(self, tmp_path, text, match):
        p = write(tmp_path, "bad.hkl", text)
        with pytest.raises(InputError, match=match) as exc:
            read_hkl(p, warn=Warnings())
        assert "bad.hkl" in str(exc.value)  # the message names the file

    def test_missing_file(self, tmp_path):
        with pytest.raises(InputError, match="-hkl: file not found"):
            read_hkl(tmp_path / "nope.hkl")

    def test_default_F_fills_grid_and_padding_is_zero(self, tmp_path):
        # Indices h in 0..2, k in 0..1, l = 0: grid (3+1, 2+1, 1+1) - C's extra last slab per axis stays 0 -
        # with the in-range part pre-filled with default_F before the file values are stored.
        p = write(tmp_path, "a.hkl", "0 0 0 1\n2 1 0 9\n")
        t = read_hkl(p, default_F=4.0)
        assert t.grid.shape == (4, 3, 2)
        inside = t.grid[:3, :2, :1]
        assert inside[0, 0, 0] == 1.0 and inside[2, 1, 0] == 9.0
        assert (inside == 4.0).sum() == inside.size - 2
        assert not t.grid[3].any() and not t.grid[:, 2].any() and not t.grid[:, :, 1].any()

    def test_duplicates_last_wins(self, tmp_path):
        p = write(tmp_path, "a.hkl", "0 0 0 1\n1 1 1 2\n0 0 0 3\n")
        t = read_hkl(p)
        assert t.grid[0, 0, 0] == 3.0 and t.count == 3


# --------------------------------------------------------------------------------------------- Fdump
def table(grid, mins):
    g = np.zeros(tuple(s + 1 for s in grid.shape))
    g[: grid.shape[0], : grid.shape[1], : grid.shape[2]] = grid
    maxs = tuple(m + s - 1 for m, s in zip(mins, grid.shape))
    return HKLTable(g, mins[0], maxs[0], mins[1], maxs[1], mins[2], maxs[2], count=grid.size)


class TestFdump:
    def test_byte_layout_and_round_trip(self, tmp_path):
        # '%d %d %d %d %d %d\n\f' (h_min h_max k_min k_max l_min l_max) then float64 little-endian, l fastest,
        # including the zero padding slabs: indices -1..1 x 0..0 x 2..4 -> (3+1)(1+1)(3+1) = 32 doubles.
        grid = np.arange(1, 10, dtype=np.float64).reshape(3, 1, 3)
        t = table(grid, (-1, 0, 2))
        p = tmp_path / "Fdump.bin"
        write_fdump(p, t)
        data = p.read_bytes()
        head = b"-1 1 0 0 2 4\n\f"
        assert data.startswith(head)
        body = data[len(head) :]
        assert len(body) == 8 * 32
        vals = struct.unpack("<32d", body)
        assert vals[:4] == (1.0, 2.0, 3.0, 0.0)  # l fastest: F(-1,0,2..4) then the l padding
        back = read_fdump(p)
        assert (back.mins, back.maxs) == ((-1, 0, 2), (1, 0, 4))
        assert np.array_equal(back.grid, t.grid)
        assert back.count == 9  # C's "initialized hkls" from a dump: h_range*k_range*l_range

    def test_whitespace_first_byte_is_not_misread(self, tmp_path):
        # 100.00000000000045 starts with byte 0x20: C's scanf would skip it and misalign;
        # we read up to the \f.
        assert struct.pack("<d", 100.00000000000045)[0:1] == b" "
        t = table(np.array([[[100.00000000000045, 2.0]]]), (0, 0, 0))
        write_fdump(tmp_path / "F.bin", t)
        assert read_fdump(tmp_path / "F.bin").grid[0, 0, 0] == 100.00000000000045

    @pytest.mark.parametrize(
        "data, match",
        [
            (b"0 0 0 0 0 0\n" + b"\x00" * 8, "no header terminator"),
            (b"0 0 x 0 0 0\n\f" + b"\x00" * 64, "malformed"),
            (b"0 0 0 0 0\n\f" + b"\x00" * 64, "expected 6 integers"),
            (b"0 1 0 1 0 1\n\f" + b"\x00" * 63, "truncated"),
        ],
    )
    def test_malformed_dump(self, tmp_path, data, match):
        with pytest.raises(InputError, match=match):
            read_fdump(write(tmp_path, "Fdump.bin", data))

    def test_hkl_to_dump_round_trip(self, tmp_path):
        # What the CLI does with -hkl: read the text, write the dump; reading the dump gives the same grid.
        p = write(tmp_path, "a.hkl", "-2 0 1 5\n1 3 1 6\n0 0 0 7\n")
        t = read_hkl(p, default_F=1.5)
        write_fdump(tmp_path / "Fdump.bin", t)
        back = read_fdump(tmp_path / "Fdump.bin")
        assert np.array_equal(back.grid, t.grid) and back.mins == t.mins and back.maxs == t.maxs

    def test_corpus_dump_matches_its_hkl(self):
        # The corpus Fdump.bin was written by C from toy25.hkl (-12..12 on every axis):
        # same grid, 26^3 doubles.
        dump, hkl = GOLDEN / "inputs" / "Fdump.bin", GOLDEN / "inputs" / "toy25.hkl"
        if not dump.is_file() or not hkl.is_file():
            pytest.skip(f"golden corpus inputs not found under {GOLDEN}")
        d = read_fdump(dump)
        assert (d.mins, d.maxs, d.grid.shape) == ((-12,) * 3, (12,) * 3, (26, 26, 26))
        assert np.array_equal(d.grid, read_hkl(hkl, warn=Warnings()).grid)


# ---------------------------------------------------------------------------------------- source file
class TestSourcefile:
    def test_comments_skipped_with_one_warning(self, tmp_path):
        # Lines 1 and 4 are comments: skipped, one warning naming both line numbers; missing columns are NaN
        # (the simulator fills C's defaults: -10 m * beam, weight 1, lambda0).
        p = write(tmp_path, "s.txt", "# X Y Z w lambda\n-10 0 0\n\n# second\n-10 1 0 0.5 1.2e-10\n")
        w = Warnings()
        rows = read_sourcefile(p, warn=w)
        assert len(rows) == 2
        assert rows[0][:3] == (-10.0, 0.0, 0.0) and all(math.isnan(x) for x in rows[0][3:])
        assert rows[1] == (-10.0, 1.0, 0.0, 0.5, 1.2e-10)
        assert len(w.msgs) == 1 and "1, 4" in w.msgs[0]

    def test_crlf_and_unterminated_last_line(self, tmp_path):
        # C zeroes weight and lambda after a CRLF or on an unterminated last line; we read them as missing.
        p = write(tmp_path, "s.txt", "0 0 10\r\n-10 0 0")
        rows = read_sourcefile(p, warn=Warnings())
        assert [r[:3] for r in rows] == [(0.0, 0.0, 10.0), (-10.0, 0.0, 0.0)]
        assert all(math.isnan(x) for r in rows for x in r[3:])

    def test_c_delimiters(self, tmp_path):
        # space, tab , ; : ! all separate tokens.
        p = write(tmp_path, "s.txt", "1,0;0:2!3e-10\n\t-1\t0\t0\n")
        assert read_sourcefile(p)[0] == (1.0, 0.0, 0.0, 2.0, 3e-10)

    @pytest.mark.parametrize(
        "text, match",
        [
            ("-10 0 abc\n", "line 1: not a number"),
            ("", "no sources"),
            ("\n\n   \n", "no sources"),
            ("# only\n", "no sources"),
        ],
    )
    def test_malformed(self, tmp_path, text, match):
        with pytest.raises(InputError, match=match):
            read_sourcefile(write(tmp_path, "s.txt", text), warn=Warnings())

    def test_missing_file(self, tmp_path):
        with pytest.raises(InputError, match="-sourcefile: file not found"):
            read_sourcefile(tmp_path / "none.txt")


# ------------------------------------------------------------------------------------------- matrix
class TestMat:
    def test_nine_numbers_columns_are_reciprocal_vectors(self, tmp_path):
        # Rows x, y, z; columns a*, b*, c*: a* = (n1, n4, n7), b* = (n2, n5, n8), c* = (n3, n6, n9).
        # Layout is irrelevant and anything after the ninth number is ignored.
        p = write(tmp_path, "A.mat", "1 2 3 4\n5 6\n7 8 9 trailing words 10\n")
        assert read_mat(p) == ((1, 4, 7), (2, 5, 8), (3, 6, 9))

    def test_write_read_round_trip(self, tmp_path):
        a, b, c = (0.01, 0.002, -0.003), (0.0, 0.0125, 0.001), (0.004, 0.0, 0.02)
        write_mat(tmp_path / "A.mat", a, b, c)
        got = read_mat(tmp_path / "A.mat")
        assert np.allclose(got, (a, b, c), atol=1e-8)  # written with %14.8f

    @pytest.mark.parametrize(
        "text, match",
        [
            ("1 2 3 4 5 6 7 8\n", "found 8"),
            ("1 2 3 x 5 6 7 8 9\n", "found 'x' after 3"),
            ("", "found 0"),
        ],
    )
    def test_malformed(self, tmp_path, text, match):
        with pytest.raises(InputError, match=match):
            read_mat(write(tmp_path, "A.mat", text))

    def test_missing_file(self, tmp_path):
        with pytest.raises(InputError, match="-mat: file not found"):
            read_mat(tmp_path / "none.mat")


# ------------------------------------------------------------------------------------------------ SMV
FIELDS = [
    ("SIZE1", "5"),
    ("SIZE2", "3"),
    ("PIXEL_SIZE", "0.1"),
    ("DISTANCE", "100"),
    ("DIALS_ORIGIN", "1,2,3"),
    ("CLOSE_DISTANCE", "90"),
    ("BEAMLINE", "fake"),
]


class TestSMV:
    def test_header_layout(self):
        # '{' newline, fixed keys, KEY=VALUE; lines (DIALS_ORIGIN without ';'), '}' form feed, spaces to 512.
        h = format_header(FIELDS)
        assert len(h) == HEADER_BYTES == 512
        text = h.decode("ascii")
        byteorder = "little_endian" if sys.byteorder == "little" else "big_endian"
        assert text.startswith(
            f"{{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER={byteorder};\nTYPE=unsigned_short;\nSIZE1=5;\n"
        )
        assert "\nDIALS_ORIGIN=1,2,3\n" in text
        assert text.rstrip(" ").endswith("BEAMLINE=fake;\n}\f")

    def test_long_header_is_not_truncated(self):
        # C never truncates: a header text over 512 bytes is written whole (HEADER_BYTES still says 512).
        h = format_header([(f"KEY{i}", "1.23456789012345") for i in range(40)])
        assert len(h) > 512 and h.endswith(b"}\f")

    def test_round_trip(self, tmp_path):
        px = (np.arange(15, dtype=np.uint16) * 4000).reshape(3, 5)
        write_smv(tmp_path / "a.img", px, FIELDS)
        assert (tmp_path / "a.img").stat().st_size == 512 + 2 * 15
        header, img = read_smv(tmp_path / "a.img", "-img")
        assert np.array_equal(img, px) and img.dtype == np.uint16
        assert header["SIZE1"] == "5" and header["PIXEL_SIZE"] == "0.1"

    def test_header_value_last_substring_rule(self, tmp_path):
        # C's lookup takes the LAST occurrence of 'KEY=' as a substring: DISTANCE matches CLOSE_DISTANCE=90
        # because that line comes later (docs/c-behaviour.md §8.8).
        write_smv(tmp_path / "a.img", np.zeros((3, 5), np.uint16), FIELDS)
        header, _ = read_smv(tmp_path / "a.img", "-img")
        assert header_value(header, "DISTANCE") == 90.0
        assert header_value(header, "PIXEL_SIZE") == 0.1
        assert header_value(header, "WAVELENGTH") is None
        # with CLOSE_DISTANCE before DISTANCE the plain key wins
        assert header_value("CLOSE_DISTANCE=90;\nDISTANCE=100;\n", "DISTANCE") == 100.0

    @pytest.mark.parametrize(
        "data, match",
        [
            (b"P5\n5 3\n255\n" + b"\x00" * 15, "not an SMV image"),
            (b"{\nHEADER_BYTES=512;\nSIZE1=5;\n}\f".ljust(512) + b"\x00" * 30, "lacks"),
            (format_header(FIELDS) + b"\x00" * 29, "truncated"),
        ],
    )
    def test_malformed(self, tmp_path, data, match):
        with pytest.raises(InputError, match=match) as exc:
            read_smv(write(tmp_path, "m.img", data), "-mask")
        assert str(exc.value).startswith("-mask: ")  # names the flag

    def test_missing_file(self, tmp_path):
        with pytest.raises(InputError, match="-img: file not found"):
            read_smv(tmp_path / "none.img", "-img")


# -------------------------------------------------------------------------------------- PGM and float
def test_write_pgm_header_and_bytes(tmp_path):
    # 'P5\n<fast> <slow>\n# pixels scaled by <scale %g>\n255\n' then one byte per pixel, [slow][fast].
    px = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_pgm(tmp_path / "a.pgm", px, 2.5)
    head = b"P5\n4 3\n# pixels scaled by 2.5\n255\n"
    assert (tmp_path / "a.pgm").read_bytes() == head + px.tobytes()


def test_write_float_image_is_raw_float32(tmp_path):
    # No header, native float32, row-major [slow][fast] (C -floatfile): a float64 input is rounded to float32.
    img = np.array([[1.0, 2.5], [1e-40, 1 / 3]], dtype=np.float64)
    write_float_image(tmp_path / "f.bin", img)
    data = (tmp_path / "f.bin").read_bytes()
    assert data == img.astype(np.float32).tobytes() and len(data) == 16


def test_write_atomically_refuses_one_target_twice(tmp_path):
    # two entries for one file would rename the first and fail on the second, leaving a file behind
    from nanobrag_torch.errors import UsageError
    from nanobrag_torch.io.atomic import write_atomically

    target = tmp_path / "same.img"
    with pytest.raises(UsageError, match="same.img"):
        write_atomically([(target, b"a", None), (str(tmp_path / "." / "same.img"), b"b", None)])
    assert list(tmp_path.iterdir()) == []
