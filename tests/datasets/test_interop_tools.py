"""The DIALS interop tooling's own logic (tools/interop), without DIALS: the random structure factors, how a
crystal DIALS found is compared with the truth (basis change, cell and orientation errors), the verdict, and
the one line said when DIALS is missing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tools.interop import dials_metrics
from tools.interop.run import check_dials, judge, main, write_random_hkl

THRESHOLDS = {"cell_err_pct": 0.5, "orientation_err_deg": 0.1, "distance_err_mm": 0.3, "rmsd_px": 0.5,
              "intensity_r": 0.85}


def test_random_hkl_is_friedel_symmetric_wilson_and_complete_to_dmin(tmp_path):
    cell, dmin = (40.0, 50.0, 60.0), 4.0
    n = write_random_hkl(tmp_path / "f.hkl", cell, dmin, seed=1)
    table = {tuple(int(x) for x in ln.split()[:3]): float(ln.split()[3])
             for ln in (tmp_path / "f.hkl").read_text().splitlines()}
    assert len(table) == n and (0, 0, 0) not in table
    # every index with d >= dmin and no other: counted here by brute force over a generous box
    want = {(h, k, l) for h in range(-20, 21) for k in range(-20, 21) for l in range(-20, 21)
            if (h, k, l) != (0, 0, 0) and (h / cell[0]) ** 2 + (k / cell[1]) ** 2 + (l / cell[2]) ** 2 <= dmin ** -2}
    assert set(table) == want
    assert all(table[(-h, -k, -l)] == f for (h, k, l), f in table.items())  # Friedel mates equal
    # |F| = 100 sqrt(E), E exponential with mean 1: <F^2> = 10^4 (over ~n/2 independent values, a few % off)
    assert np.mean(np.array(list(table.values())) ** 2) == pytest.approx(1e4, rel=0.1)


class _Crystal:
    def __init__(self, real):  # real: 3x3, rows a, b, c
        self.real = np.asarray(real, dtype=float)

    def get_real_space_vectors(self):
        return [tuple(v) for v in self.real]


def _rotation(axis, deg):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = math.radians(deg)
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def test_compare_crystals_undoes_dials_choice_of_axes():
    truth = np.diag([40.0, 50.0, 60.0]) @ _rotation((1, 2, 3), 30).T  # rows a, b, c in a general orientation
    # DIALS's crystal: the 2-fold about b (a -> -a, c -> -c, an equally valid basis of the lattice), turned by
    # 0.05 deg about (0, 1, 1) and 0.1 % larger
    R = _rotation((0, 1, 1), 0.05)
    found = 1.001 * (np.diag([-1.0, 1.0, -1.0]) @ truth) @ R.T
    out = dials_metrics.compare_crystals(_Crystal(truth), _Crystal(found))
    assert out["basis_det"] == 1 and np.array_equal(out["M"], np.diag([-1, 1, -1]))
    assert out["cell_err_pct"] == pytest.approx(0.1, rel=1e-9)
    assert out["orientation_err_deg"] == pytest.approx(0.05, rel=1e-6)
    assert out["angle_err_deg"] == pytest.approx(0.0, abs=1e-9)


def test_judge_names_each_missed_threshold():
    good = {"cell_err_pct": 0.5, "orientation_err_deg": 0.01, "distance_err_mm": 0.1, "rmsd_x_px": 0.2,
            "rmsd_y_px": 0.2, "intensity_r": 0.85}  # limits themselves pass
    assert judge(good, THRESHOLDS) == []
    bad = {**good, "orientation_err_deg": 0.2, "intensity_r": None}
    missed = judge(bad, THRESHOLDS)
    assert [m.split()[0] for m in missed] == ["orientation_err_deg", "intensity_r"]


def test_without_dials_the_check_is_one_line_and_the_run_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dials.import anywhere
    monkeypatch.delenv("NB_DIALS_PYTHON", raising=False)
    line = check_dials()
    assert line.startswith("DIALS not found") and "apt-get install python3-dials bitshuffle" in line
    assert main(["--outdir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interop: DIALS not found")
    assert not (tmp_path / "out").exists()
