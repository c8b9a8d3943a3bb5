"""Hermetic run directories and the input checks that flag what would change C's result silently."""
from __future__ import annotations

import pytest

from tools import hermetic

BASE = ["-mat", "A.mat", "-default_F", "100", "-oversample", "1"]


def _dir(tmp_path, **files):
    d = tmp_path / "run"
    d.mkdir()
    for name, data in files.items():
        (d / name.replace("_", ".")).write_bytes(data if isinstance(data, bytes) else data.encode())
    return d


def codes(argv, run_dir):
    return [h.code for h in hermetic.scan_hazards(argv, run_dir)]


def test_clean_command_has_no_hazard(tmp_path):
    d = _dir(tmp_path, A_mat="1 0 0 0 1 0 0 0 1\n", s_txt="0 0 10 1.0 6.2e-10\n")
    assert codes([*BASE, "-sourcefile", "s.txt"], d) == []


def test_implicit_oversample_is_flagged(tmp_path):
    # Without -oversample C picks the sub-pixel count from the spot size.
    d = _dir(tmp_path, A_mat="1 0 0 0 1 0 0 0 1\n")
    assert codes(["-mat", "A.mat", "-default_F", "100"], d) == ["oversample_implicit"]


def test_stale_fdump_and_missing_structure_factors(tmp_path):
    # A Fdump.bin in the directory is read when no -hkl is given; with neither, C only prints usage.
    d = _dir(tmp_path, A_mat="1 0 0 0 1 0 0 0 1\n", Fdump_bin=b"0 0 0 0 0 0\n\f")
    assert codes(["-mat", "A.mat", "-oversample", "1"], d) == ["fdump_present"]
    (d / "Fdump.bin").unlink()
    assert codes(["-mat", "A.mat", "-oversample", "1"], d) == ["no_structure_factors"]
    assert codes(["-mat", "A.mat", "-oversample", "1", "-default_F", "0"], d) == ["no_structure_factors"]


def test_comment_lines_in_source_and_hkl_files(tmp_path):
    # '#' lines: extra phantom sources for C in a source file (lines 1 and 2 here); exit 9 in an HKL file.
    d = _dir(tmp_path, A_mat="1 0 0 0 1 0 0 0 1\n", s_txt="# a\n  # b\n0 0 10 1 6.2e-10\n",
             P1_hkl="# h k l F\n0 0 1 10\n")
    found = hermetic.scan_hazards([*BASE, "-sourcefile", "s.txt", "-hkl", "P1.hkl"], d)
    assert [h.code for h in found] == ["hkl_comments", "source_comments"]
    assert "[1, 2]" in found[1].message


def test_crlf_and_missing_final_newline_in_source_file(tmp_path):
    # C's tokenizer sets weight and wavelength to 0 on a CRLF line and on an unterminated last line.
    d = _dir(tmp_path, A_mat="1 0 0 0 1 0 0 0 1\n", s_txt=b"0 0 10 1 6.2e-10\r\n0 0 10 1 6.2e-10")
    assert codes([*BASE, "-sourcefile", "s.txt"], d) == ["source_crlf", "source_no_final_newline"]


def test_missing_mat_is_flagged(tmp_path):
    # C skips an unreadable -mat silently: an all-NaN image, exit 0 (golden record rec_missing_mat_nan_image).
    assert codes(BASE, _dir(tmp_path)) == ["mat_missing"]


def test_last_flag_occurrence_wins_like_c(tmp_path):
    d = _dir(tmp_path, A_mat="1 0 0 0 1 0 0 0 1\n", a_txt="# x\n0 0 10\n", b_txt="0 0 10\n")
    assert codes([*BASE, "-sourcefile", "a.txt", "-sourcefile", "b.txt"], d) == []


def test_prepare_run_dir_copies_only_the_inputs_and_refuses_reuse(tmp_path):
    (tmp_path / "A.mat").write_text("m\n")
    (tmp_path / "Fdump.bin").write_text("stale\n")  # next to the input, must not follow it
    run = tmp_path / "run"
    info = hermetic.prepare_run_dir(run, [tmp_path / "A.mat"])
    assert sorted(p.name for p in run.iterdir()) == ["A.mat"]
    assert info[0]["name"] == "A.mat" and info[0]["bytes"] == 2 and len(info[0]["sha256"]) == 64
    with pytest.raises(FileExistsError):
        hermetic.prepare_run_dir(run, [tmp_path / "A.mat"])
    with pytest.raises(FileNotFoundError):
        hermetic.prepare_run_dir(tmp_path / "r2", [tmp_path / "missing.txt"])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "A.mat").write_text("other\n")
    with pytest.raises(ValueError, match="basename"):
        hermetic.prepare_run_dir(tmp_path / "r3", [tmp_path / "A.mat", tmp_path / "sub" / "A.mat"])


def test_finish_run_dir_keeps_the_float_image_and_records_the_rest(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name, data in (("A.mat", b"m"), ("img.bin", b"\0" * 8), ("intimage.img", b"i" * 3), ("image.pgm", b"p")):
        (run / name).write_bytes(data)
    out = hermetic.finish_run_dir(run, {"A.mat"}, "img.bin", tmp_path / "c_img.bin")
    assert (tmp_path / "c_img.bin").read_bytes() == b"\0" * 8
    assert sorted(p.name for p in run.iterdir()) == ["A.mat"]  # inputs stay, outputs moved/removed
    assert set(out["written"]) == {"img.bin", "intimage.img", "image.pgm"}
    assert out["written"]["intimage.img"]["bytes"] == 3 and sorted(out["removed"]) == ["image.pgm", "intimage.img"]


def test_reported_sampling_from_c_and_from_our_cli():
    # C prints its counts on separate lines; our CLI on one line. Both must parse to the same numbers.
    c_out = "  2 sources\n  1 mosaic domains over mosaic spread of 0 degrees\n  1x1 pixel oversample steps\n"
    py_out = "  2 sources, 1 mosaic domains, 1 phi steps, 1x1 pixel oversample steps, 1 detector layers\n"
    assert hermetic.reported(c_out) == hermetic.reported(py_out) == {"oversample": 1, "sources": 2}
    assert hermetic.reported("nothing") == {"oversample": None, "sources": None}
