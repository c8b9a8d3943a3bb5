"""Checked-in Phase D fixtures (configs/fixtures/) and the MOSFLM matrix writer that made A.mat."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tools import REPO
from tools import mosflm_matrix as mm
from tools.evidence.case import load_case

FIXTURES = REPO / "configs" / "fixtures" / "source_weights"
GOLDEN = Path(os.environ.get("NB_GOLDEN_DIR") or REPO.parent / "shared" / "golden")


def test_a_mat_is_what_the_recorded_parameters_give():
    # configs/phase_d_source_weights.toml [fixtures.amat] records how A.mat was made; regenerating it must
    # give the same bytes, so the file has a known provenance.
    amat = load_case().fixtures["amat"]
    A = mm.a_matrix(amat["cell"], amat["wavelength"], amat["misset"])
    assert (REPO / amat["path"]).read_text() == mm.format_a_matrix(A)


def test_a_mat_holds_the_requested_cell():
    # Read back as C does (first nine numbers, divided by lambda), A.mat gives the cell it was made from,
    # to the precision of 8 decimals in the file.
    amat = load_case().fixtures["amat"]
    cell = mm.cell_from_a_matrix(mm.read_a_matrix(REPO / amat["path"]), amat["wavelength"])
    np.testing.assert_allclose(cell[:3], amat["cell"][:3], atol=2e-4)
    np.testing.assert_allclose(cell[3:], amat["cell"][3:], atol=2e-3)


@pytest.mark.skipif(not (GOLDEN / "inputs" / "A.mat").is_file(), reason="golden corpus not available")
def test_cell_reader_agrees_with_the_corpus_readme():
    # The golden README states that its A.mat at -lambda 0.9768 is the cell 26.75 31.31 33.67 88.69 71.53 68.14
    # (as C prints it, 2 decimals): an independent check of cell_from_a_matrix.
    cell = mm.cell_from_a_matrix(mm.read_a_matrix(GOLDEN / "inputs" / "A.mat"), 0.9768)
    np.testing.assert_allclose(cell, [26.75, 31.31, 33.67, 88.69, 71.53, 68.14], atol=0.005 + 1e-9)


def test_writer_round_trips_a_triclinic_cell_with_misset():
    cell = (40.0, 55.0, 70.0, 80.0, 95.0, 105.0)
    A = mm.a_matrix(cell, 1.2, (11.0, -23.0, 37.0))
    np.testing.assert_allclose(mm.cell_from_a_matrix(A, 1.2), cell, atol=1e-9)
    # The misset is a rotation: it changes the matrix but not the cell; and a* . a = 1, a* . b = 0.
    assert not np.allclose(A, mm.a_matrix(cell, 1.2))
    real = mm.real_basis(cell)
    np.testing.assert_allclose(mm.reciprocal_basis(real) @ real.T, np.eye(3), atol=1e-12)
    R = mm.rotation_xyz(11.0, -23.0, 37.0)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_rotation_order_is_x_then_y_then_z():
    # 90 deg about x then 90 deg about z sends y -> z -> z (x-rotation first), x -> x -> y.
    R = mm.rotation_xyz(90, 0, 90)
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_mosflm_cli_writes_and_reads(tmp_path, capsys):
    out = tmp_path / "A.mat"
    assert mm.main(["--cell", "50", "60", "70", "90", "90", "90", "--wavelength", "1.0", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert mm.main(["--read", str(out), "--wavelength", "1.0"]) == 0
    assert capsys.readouterr().out.split() == ["50.0000", "60.0000", "70.0000", "90.0000", "90.0000", "90.0000"]


def _sources(path):
    return [ln.split() for ln in path.read_text().splitlines() if not ln.startswith("#")]


def test_two_source_fixture_is_what_the_checklist_describes():
    # Two '#' header lines, then two sources at the same position (10 m along +Z) with weights 1.0 and 0.2
    # and wavelength 6.2e-10 m.
    text = (FIXTURES / "two_sources.txt").read_text()
    assert [ln.startswith("#") for ln in text.splitlines()] == [True, True, False, False]
    rows = _sources(FIXTURES / "two_sources.txt")
    assert [[float(v) for v in r] for r in rows] == [[0, 0, 10, 1.0, 6.2e-10], [0, 0, 10, 0.2, 6.2e-10]]
    assert text.endswith("\n") and "\r" not in text  # C mis-reads CRLF or an unterminated last line


def test_comment_free_copy_is_the_same_sources():
    nc = (FIXTURES / "two_sources_nc.txt").read_text()
    assert "#" not in nc
    assert _sources(FIXTURES / "two_sources_nc.txt") == _sources(FIXTURES / "two_sources.txt")
