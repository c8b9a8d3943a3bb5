"""Unit tests of nanobrag_torch.physics: the pure functions the kernel is built from (docs/c-behaviour.md §6.6-§6.9).

Every expected value is either a closed form worked out by hand in the comment next to it, or a
mathematical identity the C formula must satisfy (symmetry, limits, polynomial exactness).
"""

from __future__ import annotations

import math

import pytest
import torch

from nanobrag_torch import physics as P
from tools.thresholds import tolerances

DTYPES = [torch.float64, torch.float32]
# float32 results are checked to a few ulps of the closed form; float64 to ~1e-12 (the one table).
RTOL = {d: tolerances(d).tensor_rtol for d in DTYPES}


def t(x, dtype=torch.float64, grad=False):
    return torch.tensor(x, dtype=dtype, requires_grad=grad)


# ----------------------------------------------------------------------------------------------- sincg
class TestSincg:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("n", [1, 2, 5, 17])
    def test_value_at_zero_is_n(self, dtype, n):
        # sin(N x)/sin(x) -> N as x -> 0; C returns exactly N at x == 0 instead of 0/0.
        out = P.sincg(torch.zeros(3, dtype=dtype), n)
        assert torch.equal(out, torch.full((3,), float(n), dtype=dtype))

    @pytest.mark.parametrize("n", [3, 4])
    @pytest.mark.parametrize("h", [1.0, 2.0, -1.0])
    def test_nonzero_integer_h_gives_plus_minus_n(self, n, h):
        # At x = pi*h (h integer != 0) C evaluates the 0/0 ratio as is; the tiny sines give
        # lim = N cos(N pi h)/cos(pi h) = N (-1)^(h (N-1)): +N for odd N, (-1)^h N for even N.
        # (Conditioning is poor for large N*h - the C program has the same values - so small N, h only.)
        expected = n * (-1) ** int(abs(h) * (n - 1))
        out = P.sincg(t(math.pi * h), n)
        assert float(out) == pytest.approx(expected, rel=1e-9)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("n", [3, 4])
    def test_near_integer_h_limit(self, dtype, n):
        # Just off an integer the ratio is well conditioned and close to the limit above:
        # sincg(pi (1 + e), N) = N (-1)^(N-1) (1 - (N^2 - 1) (pi e)^2 / 6 + ...); e = 1e-3 -> 1e-5 relative.
        e = 1e-3
        expected = n * (-1) ** (n - 1) * (1 - (n * n - 1) * (math.pi * e) ** 2 / 6)
        out = P.sincg(t(math.pi * (1 + e), dtype), n)
        assert float(out) == pytest.approx(expected, rel=1e-6 if dtype == torch.float64 else 1e-3)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_even_symmetry(self, dtype):
        # sin(-N x)/sin(-x) = sin(N x)/sin(x): the lattice factor is the same for h and -h.
        x = torch.linspace(0.05, 3.0, 37, dtype=dtype)
        assert torch.allclose(P.sincg(-x, 6), P.sincg(x, 6), rtol=RTOL[dtype], atol=0)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_hand_values(self, dtype):
        # h = 1/4, N = 2: sin(pi/2)/sin(pi/4) = sqrt(2);  h = 1/2, N = 3: sin(3pi/2)/sin(pi/2) = -1.
        out = P.sincg(
            torch.tensor([math.pi / 4, math.pi / 2], dtype=dtype), torch.tensor([2.0, 3.0], dtype=dtype)
        )
        assert torch.allclose(
            out, torch.tensor([math.sqrt(2.0), -1.0], dtype=dtype), rtol=RTOL[dtype], atol=1e-6
        )

    def test_gradient_finite_at_zero_and_integer(self):
        # d/dx sin(Nx)/sin(x) = 0 at x = 0 (even function): the double-where trick must give 0, not NaN.
        x = t([0.0, math.pi], grad=True)
        (g,) = torch.autograd.grad(P.sincg(x, 3).sum(), x)
        assert torch.isfinite(g).all(), g
        assert float(g[0]) == 0.0
        # at x = pi the true derivative is also 0 (symmetric about every integer h); the 0/0 evaluation
        # gives a finite value there, which is all C-style evaluation can promise.

    def test_gradient_matches_finite_differences(self):
        # Away from the singular points the autograd derivative is the analytic one.
        x = t([0.3, 1.1, 2.9, -0.7], grad=True)
        assert torch.autograd.gradcheck(lambda v: P.sincg(v, 5), (x,))


# ----------------------------------------------------------------------------------------------- sinc3
class TestSinc3:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_one_at_zero(self, dtype):
        # 3 (sin x/x - cos x)/x^2 -> 1 as x -> 0 (the sphere transform is normalised to 1 at the centre).
        assert float(P.sinc3(torch.zeros((), dtype=dtype))) == 1.0

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_hand_values(self, dtype):
        # x = pi/2: 3 (2/pi - 0)/(pi^2/4) = 24/pi^3;  x = pi: 3 (0 + 1)/pi^2 = 3/pi^2.
        out = P.sinc3(torch.tensor([math.pi / 2, math.pi], dtype=dtype))
        expected = torch.tensor([24 / math.pi**3, 3 / math.pi**2], dtype=dtype)
        assert torch.allclose(out, expected, rtol=RTOL[dtype] * 10, atol=0)

    def test_small_x_series_float64(self):
        # Taylor: sinc3(x) = 1 - x^2/10 + x^4/280; at x = 0.01 the C formula is still accurate in float64.
        x = 0.01
        assert float(P.sinc3(t(x))) == pytest.approx(1 - x * x / 10 + x**4 / 280, rel=1e-9)

    def test_gradient_finite_at_zero(self):
        # sinc3 is even, so d/dx = 0 at 0; the masked branch must not leak NaN into the gradient.
        x = t([0.0, 0.5], grad=True)
        (g,) = torch.autograd.grad(P.sinc3(x).sum(), x)
        assert torch.isfinite(g).all()
        assert float(g[0]) == 0.0
        # d/dx at 0.5 from the series: -x/5 + x^3/70 = -0.0982143 (next term x^5/... < 1e-5)
        assert float(g[1]) == pytest.approx(-0.5 / 5 + 0.5**3 / 70, abs=2e-5)


# ------------------------------------------------------------------------------------------ rounding
def test_nearest_index_rounds_exact_halves_down():
    # C: h0 = ceil(h - 0.5): 0.5 -> 0, -0.5 -> -1, 1.5 -> 1, 2.5 -> 2; otherwise round to nearest.
    h = torch.tensor([0.5, -0.5, 1.5, 2.5, 0.49, 0.51, -0.51, -1.2, 3.0], dtype=torch.float64)
    expected = [0.0, -1.0, 1.0, 2.0, 0.0, 1.0, -1.0, -1.0, 3.0]
    assert P.nearest_index(h).tolist() == expected


# ----------------------------------------------------------------------------------- lattice factors
class TestLatticeFactors:
    N = (2, 3, 4)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_square_peak_is_product_of_n(self, dtype):
        # At h = k = l = 0 every sincg is exactly N_i: F_latt = Na Nb Nc = 24.
        out = P.lattice_factor_square(torch.zeros(1, 3, dtype=dtype), self.N)
        assert out.tolist() == [24.0]

    def test_square_integer_peak(self):
        # At h = (1, 2, -1) with N = (3, 3, 3) each factor is +3 (odd N): 27 (sincg limit, see above).
        out = P.lattice_factor_square(t([[1.0, 2.0, -1.0]]), (3, 3, 3))
        assert float(out[0]) == pytest.approx(27.0, rel=1e-9)

    def test_square_hand_value_and_unit_axes_ignored(self):
        # h = 1/4 (N=2): sqrt 2;  k = 1/2 (N=3): -1;  l = 0 (N=4): 4  ->  -4 sqrt 2.
        out = P.lattice_factor_square(t([[0.25, 0.5, 0.0]]), self.N)
        assert float(out[0]) == pytest.approx(-4 * math.sqrt(2), rel=1e-12)
        # An axis with N <= 1 contributes exactly 1 whatever its index (C skips it).
        out = P.lattice_factor_square(t([[0.37, 0.5, 0.0]]), (1, 3, 1))
        assert float(out[0]) == pytest.approx(-1.0, rel=1e-12)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_round_peak_and_hand_value(self, dtype):
        # Integer hkl: hrad = 0, sinc3(0) = 1 -> Na Nb Nc sqrt(pi/6) (C's 0.7236: the square root of the
        # volume ratio of a sphere of diameter 1 to the unit cube).
        # hkl = (1.1, 2, -3), N = (5, 2, 3): hrad^2 = (0.1*5)^2 = 0.25 -> x = pi/2 -> 30 * 0.7236 * 24/pi^3.
        # fudge 4 multiplies hrad^2 -> x = pi -> 30 * 0.7236 * 3/pi^2.
        N = (5, 2, 3)
        hkl = torch.tensor([[3.0, -2.0, 7.0], [1.1, 2.0, -3.0]], dtype=dtype)
        out = P.lattice_factor_round(hkl, N, 1.0)
        s = 30 * math.sqrt(math.pi / 6)
        assert torch.allclose(
            out,
            torch.tensor([s, s * 24 / math.pi**3], dtype=dtype),
            rtol=1e-5 if dtype == torch.float32 else 1e-12,
        )
        out4 = P.lattice_factor_round(hkl[1:], N, 4.0)
        assert float(out4[0]) == pytest.approx(s * 3 / math.pi**2, rel=1e-5)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_gauss_peak_and_hand_values(self, dtype):
        # r^2 = |(h-h0) a* + (k-k0) b* + (l-l0) c*|^2 (Na Nb Nc)^2, a* etc in 1/A.
        recip = torch.tensor([[0.01, 0, 0], [0, 0.02, 0], [0, 0, 0.05]], dtype=dtype)
        hkl = torch.tensor([[4.0, -1.0, 2.0], [3.1, 0.0, 0.0], [0.0, 1.2, -0.9]], dtype=dtype)
        out = P.lattice_factor_gauss(hkl, recip, self.N, 1.0)
        # (1) integer: 24;  (2) delta = 0.1 a* -> |delta|^2 = 1e-6 -> r^2 = 1e-6 * 576;
        # (3) (k-k0, l-l0) = (0.2, 0.1) -> delta = (0, 0.004, 0.005) -> |delta|^2 = 4.1e-5
        #     -> r^2 = 4.1e-5 * 576.
        r2 = torch.tensor([0.0, 1e-6 * 576, 4.1e-5 * 576], dtype=torch.float64)
        expected = 24 * torch.exp(-r2 / 0.63)
        assert torch.allclose(out.double(), expected, rtol=1e-6 if dtype == torch.float32 else 1e-12)

    def test_gauss_uses_product_of_all_n_squared(self):
        # C multiplies r^2 by Na^2 Nb^2 Nc^2 (not per-axis N^2): an a-offset depends on Nc too.
        recip = torch.eye(3, dtype=torch.float64) * 0.1
        hkl = t([[0.1, 0.0, 0.0]])
        f1 = P.lattice_factor_gauss(hkl, recip, (2, 1, 1), 1.0) / 2
        f2 = P.lattice_factor_gauss(hkl, recip, (2, 1, 3), 1.0) / 6
        # |delta|^2 = 1e-4; r^2 = 4e-4 vs 36e-4
        assert float(f1[0]) == pytest.approx(math.exp(-4e-4 / 0.63), rel=1e-12)
        assert float(f2[0]) == pytest.approx(math.exp(-36e-4 / 0.63), rel=1e-12)

    def test_tophat_threshold(self):
        # N = (2,1,1), a* = (1,0,0): r^2 = (h-h0)^2 * 4. h = 0.3 -> 0.36 < 0.3969 -> Na Nb Nc = 2;
        # h = 0.32 -> 0.4096 >= 0.3969 -> 0; with fudge 0.5 -> 0.2048 -> inside again.
        recip = torch.eye(3, dtype=torch.float64)
        hkl = t([[0.3, 0, 0], [0.32, 0, 0], [5.0, 1.0, 0]])
        assert P.lattice_factor_tophat(hkl, recip, (2, 1, 1), 1.0).tolist() == [2.0, 0.0, 2.0]
        assert P.lattice_factor_tophat(hkl[1:2], recip, (2, 1, 1), 0.5).tolist() == [2.0]


# ------------------------------------------------------------------------------------- polarization
class TestPolarization:
    # MOSFLM geometry: beam along +x, E-vector axis e = +z.
    inc = (1.0, 0.0, 0.0)
    axis = (0.0, 0.0, 1.0)

    def pf(self, diffracted, kahn, dtype=torch.float64, inc=None, axis=None):
        d = torch.tensor(diffracted, dtype=dtype)
        d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        i = torch.tensor(inc or self.inc, dtype=dtype).expand_as(d)
        a = torch.tensor(axis or self.axis, dtype=dtype)
        return P.polarization_factor(i, d, a, kahn)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_unpolarized(self, dtype):
        # K = 0: (1 + cos^2 2theta)/2. Forward: 1; 90 deg: 1/2; 2theta = 60 deg: (1 + 1/4)/2 = 0.625.
        d = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, math.sqrt(3) / 2, 0]]
        out = self.pf(d, 0.0, dtype)
        assert torch.allclose(out, torch.tensor([1.0, 0.5, 0.5, 0.625], dtype=dtype), rtol=1e-6, atol=1e-7)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_fully_polarized_geometry(self, dtype):
        # K = 1 reduces to 1 - (d.e)^2 (Thomson: no scattering along the E-vector).
        # along e (0,0,1): 0;  along B = e x i = (0,1,0): 1;  forward: 1;
        # in the i-e plane at 30 deg from i: 1 - sin^2 30 = 0.75 (K = 0 would give (1 + 3/4)/2 = 0.875).
        d = [[0, 0, 1.0], [0, 1.0, 0], [1.0, 0, 0], [math.sqrt(3) / 2, 0, 0.5]]
        out = self.pf(d, 1.0, dtype)
        assert torch.allclose(out, torch.tensor([0.0, 1.0, 1.0, 0.75], dtype=dtype), atol=1e-6)

    def test_kahn_factor_is_linear(self):
        # polar(K) = (1 + c^2)/2 - K cos(2 psi) sin^2/2: K = 0.5 is the mean of K = 0 and K = 1, and the
        # general K = 1 value equals 1 - (d.e)^2 for an arbitrary direction.
        g = torch.Generator().manual_seed(3)
        d = torch.randn(20, 3, generator=g, dtype=torch.float64)
        d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        i = torch.tensor(self.inc, dtype=torch.float64).expand_as(d)
        e = torch.tensor(self.axis, dtype=torch.float64)
        p0, p1, ph = (P.polarization_factor(i, d, e, k) for k in (0.0, 1.0, 0.5))
        assert torch.allclose(ph, (p0 + p1) / 2, atol=1e-14)
        assert torch.allclose(p1, 1 - d[:, 2] ** 2, atol=1e-14)

    def test_axis_parallel_to_beam_is_finite(self):
        # e x i = 0 -> B, E normalise to zero vectors -> psi = atan2(0, 0) = 0 (C): (1 + c^2 - K s^2)/2.
        # For d at 90 deg: c = 0, s^2 = 1 -> (1 - K)/2 = 0.25 with K = 0.5.
        out = self.pf([[0, 1.0, 0]], 0.5, axis=(1.0, 0.0, 0.0))
        assert torch.isfinite(out).all()
        assert float(out[0]) == pytest.approx(0.25, abs=1e-15)


# ------------------------------------------------------------------------------------ interpolation
class TestLagrange:
    NODES = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_weights_sum_to_one(self, dtype):
        # Lagrange weights reproduce the constant 1 exactly (partition of unity).
        tt = torch.linspace(-0.5, 1.5, 41, dtype=dtype)
        assert torch.allclose(P.lagrange_weights(tt).sum(-1), torch.ones_like(tt), atol=RTOL[dtype] * 10)

    def test_weights_at_nodes_are_unit_vectors(self):
        # At t = 0 (node index 1) and t = 1 (node index 2) the interpolant is the node value itself.
        w = P.lagrange_weights(t([0.0, 1.0]))
        assert w.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_reproduces_a_cubic(self, dtype):
        # A 4-point Lagrange interpolant is exact for polynomials of degree <= 3.
        p = lambda x: 2 * x**3 - x**2 + 3 * x - 5
        tt = torch.linspace(0.0, 1.0, 11, dtype=dtype)
        approx = (P.lagrange_weights(tt) * p(self.NODES.to(dtype))).sum(-1)
        assert torch.allclose(approx, p(tt), atol=1e-12 if dtype == torch.float64 else 1e-5)


MINS, MAXS = (-4, -3, -5), (4, 3, 5)


def cubic_grid(dtype=torch.float64):
    """F(h,k,l) cubic in each index, on C's grid (range+1 per axis: the last slab is C's zero padding)."""
    h = torch.arange(MINS[0], MAXS[0] + 1, dtype=dtype)[:, None, None]
    k = torch.arange(MINS[1], MAXS[1] + 1, dtype=dtype)[None, :, None]
    l = torch.arange(MINS[2], MAXS[2] + 1, dtype=dtype)[None, None, :]
    F = poly(h, k, l)
    grid = torch.zeros(tuple(b - a + 2 for a, b in zip(MINS, MAXS)), dtype=dtype)
    grid[:-1, :-1, :-1] = F
    return grid


def poly(h, k, l):
    return 50 + 2 * h - 0.5 * h * h * k + 0.1 * h**3 + 0.01 * k * k * l**3 - l + h * k * l


class TestTricubic:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_reproduces_tricubic_polynomial(self, dtype):
        # The tensor-product cubic Lagrange interpolant is exact for polynomials of degree <= 3 per index.
        g = torch.Generator().manual_seed(0)
        lo = torch.tensor([MINS[0] + 2, MINS[1] + 2, MINS[2] + 2], dtype=torch.float64)
        hi = torch.tensor([MAXS[0] - 2, MAXS[1] - 2, MAXS[2] - 2], dtype=torch.float64)
        hkl = (lo + (hi - lo) * torch.rand(50, 3, generator=g, dtype=torch.float64)).to(dtype)
        ok = P.interpolation_in_range(hkl, MINS, MAXS)
        assert ok.all()
        out = P.structure_factor_tricubic(hkl, cubic_grid(dtype), MINS, ok)
        hd = hkl.double()
        expected = poly(hd[:, 0], hd[:, 1], hd[:, 2])
        assert torch.allclose(out.double(), expected, rtol=1e-10 if dtype == torch.float64 else 1e-4)

    def test_at_integer_node_returns_grid_value(self):
        # At an integer index every weight but one vanishes: the result is the tabulated F.
        hkl = t([[1.0, -1.0, 2.0], [MINS[0] + 2.0, MINS[1] + 2.0, MAXS[2] - 2.0]])
        ok = P.interpolation_in_range(hkl, MINS, MAXS)
        out = P.structure_factor_tricubic(hkl, cubic_grid(), MINS, ok)
        expected = poly(hkl[:, 0], hkl[:, 1], hkl[:, 2])
        assert torch.allclose(out, expected, atol=1e-12)


class TestNearestAndRange:
    def grid(self):
        # a distinct value in every cell, so a wrong index cannot go unnoticed
        return torch.arange(10 * 8 * 12, dtype=torch.float64).reshape(10, 8, 12)

    def test_in_range_reads_grid(self):
        # grid index = hkl - mins; (h,k,l) = (-4,-3,-5) is the first cell, (4,3,5) is [8, 6, 10].
        grid = self.grid()
        hkl0 = t([[-4.0, -3.0, -5.0], [4.0, 3.0, 5.0], [0.0, 0.0, 0.0]])
        out = P.structure_factor_nearest(hkl0, P.pad_structure_factors(grid, MINS, MAXS, 7.0), MINS)
        assert out.tolist() == [float(grid[0, 0, 0]), float(grid[8, 6, 10]), float(grid[4, 3, 5])]

    def test_out_of_range_and_nan_give_default_F(self):
        # Outside [min, max] on any axis -> default_F (the padding slab at max+1 is never read);
        # NaN indices (C: INT_MIN) are outside too.
        hkl0 = t([[5.0, 0.0, 0.0], [0.0, -4.0, 0.0], [0.0, 0.0, 6.0], [math.nan, 0.0, 0.0]])
        out = P.structure_factor_nearest(hkl0, P.pad_structure_factors(self.grid(), MINS, MAXS, 7.0), MINS)
        assert out.tolist() == [7.0] * 4

    def test_padded_table_is_the_grid_inside_a_default_border(self):
        # The cube has side max(span) + 3 = 13 (spans 8, 6, 10): the grid's [min..max] block sits at offset 1,
        # every other cell holds default_F (the C padding slab at max+1 is not copied).
        padded = P.pad_structure_factors(self.grid(), MINS, MAXS, 3.5)
        assert padded.shape == (13, 13, 13)
        assert torch.equal(padded[1:10, 1:8, 1:12], self.grid()[:9, :7, :11])
        inside = torch.zeros(13, 13, 13, dtype=torch.bool)
        inside[1:10, 1:8, 1:12] = True
        assert (padded[~inside] == 3.5).all()

    def test_interpolation_range_boundaries(self):
        # C: out of range if h - h_min + 3 > h_range or h - 2 < h_min, i.e. in range for
        # h_min + 2 <= h <= h_max - 2 (here -2..2 for h, -1..1 for k, -3..3 for l), boundaries inclusive.
        eps = 1e-9
        hkl = t(
            [
                [-2.0, 0.0, 0.0],
                [2.0, 0.0, 0.0],
                [-2.0 - eps, 0.0, 0.0],
                [2.0 + eps, 0.0, 0.0],
                [0.0, -1.0, 0.0],
                [0.0, 1.0 + eps, 0.0],
                [0.0, 0.0, -3.0],
                [0.0, 0.0, 3.0 + eps],
            ]
        )
        ok = P.interpolation_in_range(hkl, MINS, MAXS)
        assert ok.tolist() == [True, True, False, False, True, False, True, False]


# ------------------------------------------------------------------------- float32 accuracy (known bugs)
# The C formulas evaluated in float32 lose all precision exactly where the intensity is largest: at the
# centre of a spot. Each test compares float32 with float64 evaluated on the SAME float32 input, so only the
# function's own rounding is measured. strict=True: when a fix lands these XPASS and fail, so the marker
# must be removed then.
def test_sinc3_float32_accurate_near_zero():
    # sinc3(1e-3) = 1 - 1e-7 (series); float32 closed form gives 1.0729.
    x32 = torch.tensor([1e-4, 1e-3, 3e-3, 1e-2], dtype=torch.float32)
    ref = P.sinc3(x32.double())
    assert torch.allclose(P.sinc3(x32).double(), ref, rtol=1e-5, atol=0)


def test_square_lattice_factor_float32_accurate_near_integer_h():
    # A spot centre: h within 1e-4..1e-5 of an integer, N = 5.
    # k = l = 0 contribute exactly 5 each, so the expected values are ~ +-125.
    h32 = torch.tensor([[20.00001, 0.0, 0.0], [5.0001, 0.0, 0.0], [1.00001, 0.0, 0.0]], dtype=torch.float32)
    ref = P.lattice_factor_square(h32.double(), (5, 5, 5))
    assert torch.allclose(P.lattice_factor_square(h32, (5, 5, 5)).double(), ref, rtol=1e-4, atol=0)
