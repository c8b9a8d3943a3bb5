"""Unit tests of nanobrag_torch.crystal: -cell and -mat construction, misset, N from size, phi/mosaic stacks.

Expected values: textbook crystallography written out here with numpy (independent of the package), and the
C program's printed cell for the triclinic -cell case (docs/c-behaviour.md §4.2: its non-textbook c* z component).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nanobrag_torch import config_from_argv, load_model
from nanobrag_torch.crystal import (
    build_crystal,
    cell_parameters,
    crystal_counts,
    orientation_stack,
    reciprocal_from_cell,
)
from nanobrag_torch.geometry import DBL_MIN, rotate_xyz
from nanobrag_torch.crystal import crystal_geometry

F64 = torch.float64
RAD = math.pi / 180


def cell_crystal(a, b, c, al, be, ga, misset=None, dtype=F64):
    """The -cell path exactly as the simulator takes it."""
    cell = (a, b, c, al * RAD, be * RAD, ga * RAD)
    ast, bst, cst, V = reciprocal_from_cell(cell, dtype, "cpu")
    return build_crystal((ast, bst, cst), 1e-10, misset, (a, b, c, V), dtype, "cpu")


def textbook_volume(a, b, c, al, be, ga):
    ca, cb, cg = (math.cos(x * RAD) for x in (al, be, ga))
    return a * b * c * math.sqrt(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg)


def textbook_real(a, b, c, al, be, ga):
    """Real-space basis (rows a, b, c) in A with a along x and b in the xy plane."""
    ca, cb, cg = (math.cos(x * RAD) for x in (al, be, ga))
    sg = math.sin(ga * RAD)
    cx = c * cb
    cy = c * (ca - cb * cg) / sg
    cz = math.sqrt(c * c - cx * cx - cy * cy)
    return np.array([[a, 0, 0], [b * cg, b * sg, 0], [cx, cy, cz]], dtype=np.float64)


class TestCell:
    def test_cubic_cell(self):
        # -cell 100: a = (100, 0, 0) A etc (stored in metres), a* = (0.01, 0, 0) 1/A, V = 1e6 A^3.
        cr = cell_crystal(100, 100, 100, 90, 90, 90)
        assert torch.allclose(
            torch.stack((cr.a0, cr.b0, cr.c0)), torch.eye(3, dtype=F64) * 100e-10, atol=1e-24
        )
        assert torch.allclose(
            torch.stack((cr.a_star, cr.b_star, cr.c_star)), torch.eye(3, dtype=F64) * 0.01, atol=1e-17
        )
        assert float(cr.volume) == pytest.approx(1e6, rel=1e-14)

    def test_cell_flag_fills_missing_values(self):
        # -cell 100 alone: b, c default to a, angles to 90 deg (docs/c-behaviour.md §1.3).
        cfg = config_from_argv(["-cell", "100", "-default_F", "1"])
        assert cfg.crystal.cell == pytest.approx((100, 100, 100, math.pi / 2, math.pi / 2, math.pi / 2))
        cfg = config_from_argv(["-cell", "50", "60", "-default_F", "1"])
        assert cfg.crystal.cell[:3] == (50, 60, 50)

    def test_triclinic_cell_matches_c_print(self):
        # -cell 70 80 90 75 85 95: lengths exact, angles as C prints them (%g): 75.0391 85.0136 95.0081
        # - not 75 85 95, because C's c* z component is not the textbook one (§4.2).
        cr = cell_crystal(70, 80, 90, 75, 85, 95)
        real, _ = cell_parameters(cr)
        assert real[:3] == pytest.approx([70, 80, 90], rel=1e-13)
        assert [f"{x:g}" for x in real[3:]] == ["75.0391", "85.0136", "95.0081"]
        # the volume C reports (and divides by) is the textbook one
        V = textbook_volume(70, 80, 90, 75, 85, 95)
        assert float(cr.volume) == pytest.approx(V, rel=1e-13)

    @pytest.mark.parametrize("dtype", [F64, torch.float32])
    def test_reciprocal_duality_when_alpha_beta_are_90(self, dtype):
        # With alpha = beta = 90 deg C's construction is exact (§4.2): a*.a = 1, a*.b = 0, ... (§4.4).
        cr = cell_crystal(50, 60, 70, 90, 90, 105, dtype=dtype)
        real = torch.stack((cr.a0, cr.b0, cr.c0)).double() * 1e10
        recip = torch.stack((cr.a_star, cr.b_star, cr.c_star)).double()
        tol = 1e-12 if dtype == F64 else 1e-5
        assert torch.allclose(recip @ real.T, torch.eye(3, dtype=F64), atol=tol)
        assert float(real[0] @ torch.linalg.cross(real[1], real[2])) == pytest.approx(
            textbook_volume(50, 60, 70, 90, 90, 105), rel=1e-5 if dtype != F64 else 1e-12
        )

    def test_triclinic_quirk_volume_is_imposed_not_spanned(self):
        # For a general triclinic -cell, C rescales the cross products to the requested lengths and divides by
        # the textbook V, but the skewed vectors span a slightly larger volume; the regenerated reciprocal
        # vectors are then dual up to that same ratio: a*.a = b*.b = c*.c = (a.(b x c))/V (here ~1.0002).
        cr = cell_crystal(70, 80, 90, 75, 85, 95)
        real = torch.stack((cr.a0, cr.b0, cr.c0)) * 1e10
        recip = torch.stack((cr.a_star, cr.b_star, cr.c_star))
        spanned = float(real[0] @ torch.linalg.cross(real[1], real[2]))
        ratio = spanned / textbook_volume(70, 80, 90, 75, 85, 95)
        assert 1.0001 < ratio < 1.0003
        assert torch.allclose(recip @ real.T, torch.eye(3, dtype=F64) * ratio, atol=1e-12)

    def test_degenerate_cell_volume_is_dbl_min(self):
        # alpha + beta + gamma = 360 deg: sin(sigma - gamma)... = 0 -> V = 0 -> C sets V = DBL_MIN.
        _, _, _, V = reciprocal_from_cell((10.0, 10.0, 10.0, math.pi / 2, math.pi / 2, math.pi), F64, "cpu")
        assert float(V) == DBL_MIN

    def test_misset_rotates_the_crystal(self):
        # -misset 10 20 30 rotates a*, b*, c* by R = Rz Ry Rx; regenerated real vectors rotate the same way.
        ang = (10 * RAD, 20 * RAD, 30 * RAD)
        plain = cell_crystal(70, 80, 90, 75, 85, 95)
        mis = cell_crystal(70, 80, 90, 75, 85, 95, misset=ang)
        for p, m in ((plain.a0, mis.a0), (plain.b0, mis.b0), (plain.c0, mis.c0)):
            assert torch.allclose(m, rotate_xyz(p, *ang), rtol=0, atol=1e-22)
        assert float(mis.volume) == pytest.approx(float(plain.volume), rel=1e-13)


class TestMatrixFile:
    def write_mat(self, path, real_rows, lam):
        """A MOSFLM A matrix: reciprocal vectors (columns a*, b*, c*) times lambda, rows x, y, z."""
        recip = np.linalg.inv(real_rows).T  # rows a*, b*, c* (1/A)
        A = (recip * lam).T  # column j = lambda * (j-th reciprocal vector)
        path.write_text(
            "".join(" ".join(f"{v:.15e}" for v in row) + "\n" for row in A) + "trailing text ignored\n"
        )

    def sim(self, tmp_path, lam):
        cfg = config_from_argv(
            ["-mat", "test.mat", "-lambda", str(lam), "-default_F", "1", "-detpixels", "8"]
        )
        return load_model(cfg, workdir=tmp_path)

    def test_rotated_orthorhombic_cell(self, tmp_path):
        # A 50 x 60 x 70 cell rotated by R(0.3, -0.2, 1.1), lambda 1.5 A: the matrix scaled by 1/lambda gives
        # back a = R (50, 0, 0) A etc.
        R = rotate_xyz(torch.eye(3, dtype=F64), 0.3, -0.2, 1.1).T  # columns: rotated x, y, z unit vectors
        real = (R @ torch.diag(torch.tensor([50.0, 60.0, 70.0], dtype=F64))).T.numpy()  # rows a, b, c
        self.write_mat(tmp_path / "test.mat", real, 1.5)
        cr = crystal_geometry(self.sim(tmp_path, 1.5))
        got = torch.stack((cr.a0, cr.b0, cr.c0)) * 1e10
        assert torch.allclose(got, torch.from_numpy(real), atol=1e-9)

    def test_textbook_triclinic_matrix_gives_exact_angles(self, tmp_path):
        # Unlike -cell (75.0391...), a matrix built from the textbook basis reproduces 75/85/95 exactly:
        # the -mat path has no special z component.
        real = textbook_real(70, 80, 90, 75, 85, 95)
        self.write_mat(tmp_path / "test.mat", real, 0.9)
        cr = crystal_geometry(self.sim(tmp_path, 0.9))
        params, _ = cell_parameters(cr)
        assert params == pytest.approx([70, 80, 90, 75, 85, 95], rel=1e-9)


class TestCountsAndStacks:
    def test_crystal_counts_from_size(self):
        # N = ceil(size/|a|) for sizes > 0: 1.05 um / 100 A = 105; 0.234 um / 100 A = 23.4 -> 24;
        # size 0 keeps -N (7).
        cr = cell_crystal(100, 100, 100, 90, 90, 90)
        assert crystal_counts(cr, 3, 3, 7, 1.05e-6, 0.234e-6, 0.0) == (105, 24, 7)

    def test_crystal_counts_clamp_to_one(self):
        # Any N <= 1 becomes 1 (so -N 0 means one cell, §2.6).
        cr = cell_crystal(100, 100, 100, 90, 90, 90)
        assert crystal_counts(cr, 0, -3, 1, 0.0, 0.0, 0.0) == (1, 1, 1)

    def test_phi_rotation_about_spindle(self):
        # phi = 0, 90, 180 deg about z: a = (100,0,0) A -> (0,100,0) -> (-100,0,0); c along z unchanged.
        # At phi = 0 exactly the unrotated vectors are used (project decision, §6.5).
        cr = cell_crystal(100, 100, 100, 90, 90, 90)
        phis = torch.tensor([0.0, math.pi / 2, math.pi], dtype=F64)
        st = orientation_stack(cr, torch.tensor([0.0, 0.0, 1.0], dtype=F64), phis, None)
        assert st.shape == (3, 3, 3)
        assert torch.equal(st[0], torch.stack((cr.a0, cr.b0, cr.c0)))
        assert torch.allclose(st[1, 0] * 1e8, torch.tensor([0.0, 1.0, 0.0], dtype=F64), atol=1e-15)
        assert torch.allclose(st[2, 0] * 1e8, torch.tensor([-1.0, 0.0, 0.0], dtype=F64), atol=1e-15)
        assert torch.allclose(
            st[:, 2] * 1e8, torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(3, 3), atol=1e-15
        )

    def test_mosaic_applied_after_phi_domain_inner(self):
        # rows are (phi step) x (domain), domain fastest; each domain matrix multiplies the
        # phi-rotated vectors.
        cr = cell_crystal(100, 100, 100, 90, 90, 90)
        Ux = rotate_xyz(torch.eye(3, dtype=F64), math.pi / 2, 0, 0).T  # 90 deg about x, as a matrix
        umats = torch.stack((torch.eye(3, dtype=F64), Ux))
        phis = torch.tensor([0.0, math.pi / 2], dtype=F64)
        st = orientation_stack(cr, torch.tensor([0.0, 0.0, 1.0], dtype=F64), phis, umats)
        assert st.shape == (4, 3, 3)
        # phi 90: a -> +y; domain 1 (90 deg about x) then takes +y -> +z
        assert torch.allclose(st[3, 0] * 1e8, torch.tensor([0.0, 0.0, 1.0], dtype=F64), atol=1e-15)
        # domain 0 is the identity: same as the phi-only stack
        plain = orientation_stack(cr, torch.tensor([0.0, 0.0, 1.0], dtype=F64), phis, None)
        assert torch.allclose(st[0::2], plain, atol=0)
