"""Unit tests of nanobrag_torch.geometry: rotations, detector placement per convention/pivot, pixel positions.

Expected values come from docs/c-behaviour.md §3 (conventions, pivots, the re-derived reported values) and from
closed forms worked out in the comments. Detectors are built through ``config_from_argv`` so each test
reads like the command line it models.
"""

from __future__ import annotations

import math

import pytest
import torch

from nanobrag_torch import config_from_argv
from nanobrag_torch.geometry import build_detector, pixel_positions, rotate_axis, rotate_xyz, unitize

F64 = torch.float64
BASE = ["-cell", "100", "-default_F", "1"]


def detector(argv: str, dtype=F64):
    cfg = config_from_argv(BASE + argv.split())
    return cfg, build_detector(cfg.detector, cfg.beam.beam_vector, dtype, "cpu")


def vec(*x):
    return torch.tensor(x, dtype=F64)


def close(a, b, tol=1e-12):
    return torch.allclose(torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64), rtol=0, atol=tol)


# ------------------------------------------------------------------------------------------- rotations
def rx_m(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=F64)


def ry_m(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=F64)


def rz_m(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=F64)


class TestRotations:
    def test_rotate_xyz_is_rz_ry_rx(self):
        # C rotate(): fixed lab axes, x first, then y, then z: v' = Rz Ry Rx v (right-handed matrices, §3.3).
        g = torch.Generator().manual_seed(1)
        v = torch.randn(7, 3, generator=g, dtype=F64)
        ax, ay, az = 0.3, -1.1, 2.0
        expected = v @ (rz_m(az) @ ry_m(ay) @ rx_m(ax)).T
        assert close(rotate_xyz(v, ax, ay, az), expected)

    def test_rotate_xyz_single_axes(self):
        # 90 deg about z takes x to y; about x takes y to z; about y takes z to x (right-handed).
        h = math.pi / 2
        assert close(rotate_xyz(vec(1, 0, 0), 0, 0, h), vec(0, 1, 0))
        assert close(rotate_xyz(vec(0, 1, 0), h, 0, 0), vec(0, 0, 1))
        assert close(rotate_xyz(vec(0, 0, 1), 0, h, 0), vec(1, 0, 0))

    def test_rotate_axis_right_handed_and_length_preserving(self):
        # x about +z by 90 deg -> +y (right-hand rule); a rotation keeps |v|.
        assert close(rotate_axis(vec(1, 0, 0), vec(0, 0, 1), math.pi / 2), vec(0, 1, 0))
        g = torch.Generator().manual_seed(2)
        v = torch.randn(5, 3, generator=g, dtype=F64)
        axis = unitize(vec(1, 2, -0.5))
        out = rotate_axis(v, axis, 0.77)
        assert close(torch.linalg.vector_norm(out, dim=-1), torch.linalg.vector_norm(v, dim=-1))
        # the component along the axis is unchanged
        assert close(out @ axis, v @ axis)

    def test_rotate_axis_matches_rotate_xyz_about_z(self):
        # About the lab z axis both primitives are the same rotation.
        v = vec(0.3, -0.2, 0.9)
        assert close(rotate_axis(v, vec(0, 0, 1), 0.4), rotate_xyz(v, 0, 0, 0.4))

    def test_rotate_axis_broadcasts_angles(self):
        # One vector, several angles (how phi steps are built): shape (n, 3).
        out = rotate_axis(
            vec(1, 0, 0)[None], vec(0, 0, 1), torch.tensor([0.0, math.pi / 2, math.pi], dtype=F64)[:, None]
        )
        assert close(out.reshape(3, 3), torch.tensor([[1, 0, 0], [0, 1, 0], [-1, 0, 0]], dtype=F64))


# ------------------------------------------------------------------------------------------- detector
class TestDetectorPlacement:
    def test_mosflm_default_beam_centre(self):
        # MOSFLM default Xbeam = (Ds + px)/2, Ybeam = (Df + px)/2, Fbeam = Ybeam + px/2: for 100 px of 0.1 mm
        # Fbeam = Sbeam = 5.05 + 0.05 = 5.1 mm, one full pixel past the centre (§3.1).
        cfg, g = detector("-detpixels 100 -pixel 0.1 -distance 100")
        assert cfg.detector.pivot == "beam"
        assert float(g.fbeam) == pytest.approx(5.1e-3, abs=1e-15)
        assert float(g.sbeam) == pytest.approx(5.1e-3, abs=1e-15)
        # pix0 = distance*b - Fbeam*f - Sbeam*s with b=(1,0,0), f=(0,0,1), s=(0,-1,0)
        assert close(g.pix0, vec(0.1, 5.1e-3, -5.1e-3), 1e-15)
        assert close(g.fdet, vec(0, 0, 1)) and close(g.sdet, vec(0, -1, 0)) and close(g.odet, vec(1, 0, 0))
        assert float(g.distance) == pytest.approx(0.1) and float(g.close_distance) == pytest.approx(0.1)

    def test_xds_sample_pivot_with_orgx_orgy(self):
        # XDS: Fclose = (ORGX - 0.5) px, Sclose = (ORGY - 0.5) px; pix0 = -Fclose f - Sclose s + close o with
        # f=(1,0,0), s=(0,1,0), o=(0,0,1); the pivot is forced to SAMPLE even after -distance.
        cfg, g = detector("-xds -detpixels 100 -pixel 0.1 -distance 120 -ORGX 40 -ORGY 60")
        assert cfg.detector.pivot == "sample"
        assert cfg.detector.fclose == pytest.approx(39.5e-4) and cfg.detector.sclose == pytest.approx(59.5e-4)
        assert close(g.pix0, vec(-39.5e-4, -59.5e-4, 0.12), 1e-15)
        # reported ORGX/ORGY round-trip: Fclose/px + 0.5
        assert float(g.orgx) == pytest.approx(40.0) and float(g.orgy) == pytest.approx(60.0)

    def test_beam_pivot_keeps_beam_spot_under_twotheta(self):
        # MOSFLM -twotheta 30 on 32 px: the beam still hits (1.7 mm, 1.7 mm) at 100 mm along the beam, but
        # C re-derives distance = close_distance/ratio with ratio = b.o WITHOUT 2theta (= 1 here): it
        # reports distance = 100 cos 30 = 86.6 mm and Sbeam = 0.1 sin30 (1 - cos30) + 1.7 mm = 8.4 mm (§3.4).
        cfg, g = detector("-detpixels 32 -twotheta 30")
        assert cfg.detector.pivot == "beam"  # MOSFLM forces BEAM even though -twotheta asks for SAMPLE
        b, o = g.beam, g.odet
        t = (g.pix0 @ o) / (b @ o)
        spot = t * b - g.pix0
        assert float(t) == pytest.approx(0.1, rel=1e-12)
        assert float(spot @ g.fdet) == pytest.approx(1.7e-3, rel=1e-12)
        assert float(spot @ g.sdet) == pytest.approx(1.7e-3, rel=1e-12)
        c30, s30 = math.cos(math.radians(30)), math.sin(math.radians(30))
        assert float(g.distance) == pytest.approx(0.1 * c30, rel=1e-12)
        assert float(g.close_distance) == pytest.approx(0.1 * c30, rel=1e-12)
        assert float(g.sbeam) == pytest.approx(0.1 * s30 * (1 - c30) + 1.7e-3, rel=1e-12)
        assert float(g.fbeam) == pytest.approx(1.7e-3, rel=1e-12)
        # the 2theta axis (0,0,-1) swings s and o about -z: o = (cos30, -sin30, 0)
        assert close(g.odet, vec(c30, -s30, 0))

    def test_beam_pivot_with_detector_rotations(self):
        # BEAM pivot: after any rotation the point distance*b lies in the detector plane at (Fbeam, Sbeam).
        cfg, g = detector("-detpixels 64 -detector_rotx 5 -detector_roty 3 -detector_rotz 2")
        w = 0.1 * g.beam - g.pix0
        assert float(w @ g.odet) == pytest.approx(0.0, abs=1e-15)
        assert float(w @ g.fdet) == pytest.approx(cfg.detector.fbeam, rel=1e-12)
        assert float(w @ g.sdet) == pytest.approx(cfg.detector.sbeam, rel=1e-12)
        # and the axes are the XYZ-rotated MOSFLM axes
        r = [math.radians(x) for x in (5, 3, 2)]
        assert close(g.fdet, rotate_xyz(vec(0, 0, 1), *r))

    def test_sample_pivot_keeps_near_point(self):
        # SAMPLE pivot: rotations move the whole detector about the sample; the re-derived Fclose, Sclose
        # and close_distance equal the requested ones (pix0 is built in the unrotated frame, then rotated).
        _, g = detector(
            "-xds -detpixels 64 -ORGX 20 -ORGY 30 -close_distance 80 -detector_rotx 4 -twotheta 10"
        )
        assert float(g.fclose) == pytest.approx(19.5e-4, rel=1e-12)
        assert float(g.sclose) == pytest.approx(29.5e-4, rel=1e-12)
        assert float(g.close_distance) == pytest.approx(0.08, rel=1e-12)

    def test_non_unit_odet_is_regenerated(self):
        # CUSTOM -odet_vector of length 1.5: C replaces it by unit(f x s) = (0,0,1)x(0,-1,0) = (1,0,0),
        # not by the normalised input (-1,0,0).
        _, g = detector("-odet_vector -1.5 0 0")
        assert g.odet_regenerated
        assert close(g.odet, vec(1, 0, 0))
        # a unit vector is kept as given
        _, g = detector("-odet_vector -1 0 0")
        assert not g.odet_regenerated
        assert close(g.odet, vec(-1, 0, 0))

    def test_twotheta_axis_is_not_normalised(self):
        # CUSTOM -twotheta_axis 0 0 -2: the axis formula a(a.v)(1-c) + v c + (a x v) s is applied
        # with |a| = 2,
        # which scales and skews the detector axes (§3.2: C never normalises t).
        cfg, g = detector("-twotheta_axis 0 0 -2 -twotheta 30")
        assert cfg.detector.convention == "CUSTOM" and cfg.detector.twotheta_axis == (0.0, 0.0, -2.0)
        a = vec(0, 0, -2)
        ang = math.radians(30)
        s0 = vec(0, -1, 0)
        expected = (
            a * (a @ s0) * (1 - math.cos(ang))
            + s0 * math.cos(ang)
            + torch.linalg.cross(a, s0) * math.sin(ang)
        )
        assert close(g.sdet, expected)
        assert float(torch.linalg.vector_norm(g.sdet)) == pytest.approx(
            math.sqrt(math.cos(ang) ** 2 + 4 * math.sin(ang) ** 2)
        )

    def test_zero_ratio_becomes_dbl_min(self):
        # A detector normal perpendicular to the beam: ratio = 0 -> DBL_MIN, so distance = close/DBL_MIN
        # is huge but finite (no division by zero).
        _, g = detector("-detector_roty 90 -close_distance 100")
        assert torch.isfinite(g.pix0).all()
        assert float(g.close_distance) == pytest.approx(0.1)


# ------------------------------------------------------------------------------------- pixel positions
class TestPixelPositions:
    def test_pixel_centres_half_a_pixel_in(self):
        # P = pix0 + (f + 1/2) px fdet + (s + 1/2) px sdet
        # (pix0 is the outer corner of pixel (0,0), §3.5-3.6).
        _, g = detector("-detpixels 10 -pixel 0.2")
        f = torch.tensor([0, 3, 9])
        s = torch.tensor([0, 7, 2])
        pos = pixel_positions(g, f, s, 2e-4, 1, 0.0, 1, False)
        assert pos.shape == (3, 1, 1, 3)
        fd, sd = f.to(F64), s.to(F64)
        expected = g.pix0 + ((fd + 0.5) * 2e-4)[:, None] * g.fdet + ((sd + 0.5) * 2e-4)[:, None] * g.sdet
        assert close(pos[:, 0, 0], expected, 1e-15)

    def test_subpixel_order_and_layers(self):
        # Sub-pixel j = subS*os + subF (subS outer, subF inner): with os = 2 sub-pixel 1 is a quarter pixel
        # further along fast, sub-pixel 2 along slow. Layer k sits k*thickstep along odet.
        _, g = detector("-detpixels 10 -pixel 0.1")
        px, step = 1e-4, 3e-5
        pos = pixel_positions(g, torch.tensor([4]), torch.tensor([5]), px, 2, step, 3, False)
        assert pos.shape == (1, 3, 4, 3)
        base = g.pix0 + (4 * px + px / 4) * g.fdet + (5 * px + px / 4) * g.sdet
        offs = [(0, 0), (1, 0), (0, 1), (1, 1)]  # (subF, subS) for j = 0..3
        for j, (sf, ss) in enumerate(offs):
            assert close(pos[0, 0, j], base + sf * px / 2 * g.fdet + ss * px / 2 * g.sdet, 1e-15)
        for k in range(3):
            assert close(pos[0, k] - pos[0, 0], (k * step * g.odet).expand(4, 3), 1e-15)

    def test_curved_detector_radius_is_distance(self):
        # Curved: every pixel is at |P| = distance; a pixel in the P_z = 0 column sits at the angle P_y/d from
        # the beam (arc length = flat offset). -Ybeam 1.6 puts Fbeam = 1.65 mm at the centre of fast pixel 16.
        _, g = detector("-detpixels 32 -Ybeam 1.6 -curved_det")
        f = torch.arange(32).repeat(32)
        s = torch.arange(32).repeat_interleave(32)
        pos = pixel_positions(g, f, s, 1e-4, 1, 0.0, 1, True)
        r = torch.linalg.vector_norm(pos, dim=-1)
        assert torch.allclose(r, torch.full_like(r, 0.1), rtol=1e-13)
        flat = pixel_positions(g, torch.tensor([16]), torch.tensor([3]), 1e-4, 1, 0.0, 1, False)[0, 0, 0]
        assert float(flat[2]) == pytest.approx(0.0, abs=1e-15)
        curved = pixel_positions(g, torch.tensor([16]), torch.tensor([3]), 1e-4, 1, 0.0, 1, True)[0, 0, 0]
        angle = math.acos(float(curved @ g.beam) / 0.1)
        assert angle == pytest.approx(abs(float(flat[1])) / 0.1, rel=1e-10)

    def test_float32_positions_agree(self):
        # Same positions in float32 to float32 precision (relative 1e-6 of the 0.1 m distance).
        _, g64 = detector("-detpixels 16 -twotheta 5")
        _, g32 = detector("-detpixels 16 -twotheta 5", torch.float32)
        f = torch.arange(16)
        p64 = pixel_positions(g64, f, f, 1e-4, 2, 0.0, 1, False)
        p32 = pixel_positions(g32, f, f, 1e-4, 2, 0.0, 1, False)
        assert p32.dtype == torch.float32
        assert torch.allclose(p32.double(), p64, atol=1e-7)
