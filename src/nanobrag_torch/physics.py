"""Pure physics functions: tensor in, tensor out, broadcasting, dtype/device-neutral, differentiable."""
from __future__ import annotations

import math

import torch

ROUND_XTAL_SCALE = 0.723601254558268  # C: sqrt of the cube/sphere volume ratio
GAUSS_WIDTH = 0.63
TOPHAT_RADIUS_SQR = 0.3969


def sincg(x: torch.Tensor, n) -> torch.Tensor:
    """C sincg(x, N) = sin(N x)/sin(x), and N at x == 0 (grating function of N cells)."""
    den = torch.sin(x)
    zero = den == 0  # only at x == 0 in floating point (sin(k*pi) is never exactly 0 for k != 0)
    return torch.where(zero, n, torch.sin(n * x) / torch.where(zero, 1.0, den))


def sinc3(x: torch.Tensor) -> torch.Tensor:
    """C sinc3(x) = 3 (sin x / x - cos x) / x^2, and 1 at x == 0 (Fourier transform of a sphere).

    float64 evaluates C's closed form (bit parity); lower precisions use the Taylor series for |x| < 0.5,
    where the closed form cancels catastrophically.
    """
    zero = x == 0
    xs = torch.where(zero, 1.0, x)
    closed = torch.where(zero, 1.0, 3.0 * (torch.sin(xs) / xs - torch.cos(xs)) / (xs * xs))
    if x.dtype == torch.float64:
        return closed
    x2 = x * x
    series = 1.0 - x2 / 10.0 * (1.0 - x2 / 28.0 * (1.0 - x2 / 54.0 * (1.0 - x2 / 88.0)))
    return torch.where(x.abs() < 0.5, series, closed)


def sincg_reduced(h: torch.Tensor, n) -> torch.Tensor:
    """sincg(pi h, N) from the offset d = h - round(h): (-1)^(h0 (N-1)) sin(N pi d)/sin(pi d).

    Mathematically C's sincg; numerically stable near integer h (used below float64 precision).
    """
    h0 = torch.round(h)
    x = math.pi * (h - h0)
    den = torch.sin(x)
    zero = den == 0
    r = torch.where(zero, n, torch.sin(n * x) / torch.where(zero, 1.0, den))
    return (1.0 - 2.0 * torch.remainder(h0 * (n - 1), 2.0)) * r


def nearest_index(h: torch.Tensor) -> torch.Tensor:
    """C's h0 = ceil(h - 0.5): nearest integer with exact halves rounded down."""
    return torch.ceil(h - 0.5)


def lattice_factor_square(hkl: torch.Tensor, N: tuple[int, int, int]) -> torch.Tensor:
    """Parallelepiped F_latt = prod sincg(pi h_i, N_i) over axes with N_i > 1 (C SQUARE shape).

    float64 evaluates sin(N pi h)/sin(pi h) as C does; lower precisions use the reduced form.
    """
    axes = [i for i, n in enumerate(N) if n > 1]
    if not axes:
        return torch.ones_like(hkl[..., 0])
    if len(axes) < 3:
        hkl = hkl[..., axes]
    n = torch.as_tensor([N[i] for i in axes], dtype=hkl.dtype, device=hkl.device)
    if hkl.dtype == torch.float64:
        return sincg(math.pi * hkl, n).prod(-1)  # C's evaluation, for bit parity
    return sincg_reduced(hkl, n).prod(-1)


def lattice_factor_round(hkl: torch.Tensor, N: tuple[int, int, int], fudge: float) -> torch.Tensor:
    """Ellipsoidal F_latt = Na Nb Nc 0.7236 sinc3(pi sqrt(hrad^2 fudge)) (C ROUND shape)."""
    d = hkl - nearest_index(hkl)
    Nt = torch.as_tensor(N, dtype=hkl.dtype, device=hkl.device)
    hrad_sqr = (d * d * Nt * Nt).sum(-1)
    r2 = hrad_sqr * fudge
    zero = r2 == 0  # double where: sqrt has no finite derivative at 0
    x = torch.where(zero, 0.0, math.pi * torch.sqrt(torch.where(zero, 1.0, r2)))
    return N[0] * N[1] * N[2] * ROUND_XTAL_SCALE * sinc3(x)


def reciprocal_distance_sqr(hkl: torch.Tensor, recip: torch.Tensor, N: tuple[int, int, int]) -> torch.Tensor:
    """|(h-h0)a* + (k-k0)b* + (l-l0)c*|^2 Na^2 Nb^2 Nc^2 with the static a*,b*,c* in 1/A (rows of recip)."""
    d = hkl - nearest_index(hkl)
    dx = d @ recip  # (..., 3)
    n2 = float(N[0] * N[0] * N[1] * N[1] * N[2] * N[2])
    return (dx * dx).sum(-1) * n2


def lattice_factor_gauss(hkl, recip, N, fudge) -> torch.Tensor:
    """Gaussian F_latt = Na Nb Nc exp(-(r*^2/0.63) fudge) (C GAUSS shape)."""
    r2 = reciprocal_distance_sqr(hkl, recip, N)
    return N[0] * N[1] * N[2] * torch.exp(-(r2 / GAUSS_WIDTH * fudge))


def lattice_factor_tophat(hkl, recip, N, fudge) -> torch.Tensor:
    """Top-hat F_latt = Na Nb Nc inside r*^2 fudge < 0.3969, else 0 (C TOPHAT shape)."""
    r2 = reciprocal_distance_sqr(hkl, recip, N)
    return torch.where(r2 * fudge < TOPHAT_RADIUS_SQR, torch.full_like(r2, float(N[0] * N[1] * N[2])),
                       torch.zeros_like(r2))


def polarization_factor(incident: torch.Tensor, diffracted: torch.Tensor, axis: torch.Tensor,
                        kahn: float) -> torch.Tensor:
    """C polarization_factor(): 1/2 (1 + cos^2 2t - K cos(2 psi) sin^2 2t) for unit incident/diffracted."""
    cos2t = (incident * diffracted).sum(-1)
    cos2t_sqr = cos2t * cos2t
    sin2t_sqr = 1.0 - cos2t_sqr
    if kahn == 0.0:
        return 0.5 * (1.0 + cos2t_sqr)
    B = torch.cross(axis.expand_as(incident), incident, dim=-1)
    nB = torch.linalg.vector_norm(B, dim=-1, keepdim=True)
    B = B / torch.where(nB == 0, 1.0, nB)  # C unitize(): a zero vector stays zero
    E = torch.cross(incident, B, dim=-1)
    nE = torch.linalg.vector_norm(E, dim=-1, keepdim=True)
    E = E / torch.where(nE == 0, 1.0, nE)
    psi = -torch.atan2((diffracted * B).sum(-1), (diffracted * E).sum(-1))
    return 0.5 * (1.0 + cos2t_sqr - kahn * torch.cos(2.0 * psi) * sin2t_sqr)


_LAGRANGE_DENOM = (-6.0, 2.0, -2.0, 6.0)  # prod_{b != a} (x_a - x_b) for nodes -1, 0, 1, 2


def lagrange_weights(t: torch.Tensor) -> torch.Tensor:
    """Cubic Lagrange weights for nodes at -1, 0, 1, 2 evaluated at t (offset from floor): (..., 4)."""
    nodes = (-1.0, 0.0, 1.0, 2.0)
    ws = []
    for a in range(4):
        num = torch.ones_like(t)
        for b in range(4):
            if b != a:
                num = num * (t - nodes[b])
        ws.append(num / _LAGRANGE_DENOM[a])
    return torch.stack(ws, dim=-1)


def structure_factor_nearest(hkl0: torch.Tensor, grid: torch.Tensor, mins, maxs, default_F: float,
                             has_table: bool) -> torch.Tensor:
    """F at the nearest indices (h0,k0,l0): grid value inside [min, max] per axis, else default_F (C).

    Implemented as one gather from the table padded by a default_F border, with indices clamped onto it.
    """
    if not has_table:
        return torch.full(hkl0.shape[:-1], default_F, dtype=grid.dtype, device=grid.device)
    span = [mx - mn for mn, mx in zip(mins, maxs)]
    side = max(span) + 3  # a cube with a default_F border at least one cell wide on every side
    padded = torch.full((side, side, side), default_F, dtype=grid.dtype, device=grid.device)
    padded[1 : span[0] + 2, 1 : span[1] + 2, 1 : span[2] + 2] = grid[: span[0] + 1, : span[1] + 1, : span[2] + 1]
    rel = hkl0 - torch.as_tensor(mins, dtype=hkl0.dtype, device=hkl0.device)
    # outside the table -> the border; NaN (an undefined index, as C treats it) -> the border too
    idx = torch.nan_to_num(rel, nan=-1.0).clamp_(-1.0, side - 2.0) + 1.0
    strides = torch.as_tensor([side * side, side, 1], dtype=hkl0.dtype, device=hkl0.device)
    return padded.reshape(-1)[(idx @ strides).long()]


def interpolation_in_range(hkl: torch.Tensor, mins, maxs) -> torch.Tensor:
    """C's tricubic range test on fractional indices: min+2 <= h and h - min + 3 <= max - min + 1."""
    lo = torch.as_tensor(mins, dtype=hkl.dtype, device=hkl.device)
    hi = torch.as_tensor(maxs, dtype=hkl.dtype, device=hkl.device)
    rng = hi - lo + 1
    return (~((hkl - lo + 3 > rng) | (hkl - 2 < lo))).all(-1)


def structure_factor_tricubic(hkl: torch.Tensor, grid: torch.Tensor, mins, ok: torch.Tensor) -> torch.Tensor:
    """Tensor-product cubic Lagrange interpolation of F on the 4x4x4 nodes floor-1..floor+2 (C polin3).

    Entries where ``ok`` is False are computed on clamped indices and must be masked by the caller.
    """
    lo = torch.as_tensor(mins, dtype=hkl.dtype, device=hkl.device)
    base = torch.floor(hkl)
    t = hkl - base  # fractional offsets
    w = lagrange_weights(t)  # (..., 3 axes, 4)
    start = torch.where(ok[..., None], base - 1 - lo, torch.zeros_like(base)).long()  # (..., 3)
    offs = torch.arange(4, device=hkl.device)
    ih = (start[..., 0:1] + offs).clamp(0, grid.shape[0] - 1)  # (..., 4)
    ik = (start[..., 1:2] + offs).clamp(0, grid.shape[1] - 1)
    il = (start[..., 2:3] + offs).clamp(0, grid.shape[2] - 1)
    block = grid[ih[..., :, None, None], ik[..., None, :, None], il[..., None, None, :]]  # (..., 4, 4, 4)
    return torch.einsum("...a,...b,...c,...abc->...", w[..., 0, :], w[..., 1, :], w[..., 2, :], block)


def water_background(water_size: float, r_e_sqr: float, fluence: float, avogadro: float, water_F: float) -> float:
    """C's I_bg = F_bg^2 r_e^2 fluence (w^3 1e6 N_A / 18) (carries r_e^2 fluence twice, as in C)."""
    return water_F * water_F * r_e_sqr * fluence * (water_size ** 3 * 1e6 * avogadro / 18.0)
