"""Pure physics functions: tensor in, tensor out, broadcasting, dtype/device-neutral, differentiable."""
from __future__ import annotations

import math

import torch

from .constants import AVOGADRO, R_E_SQR, WATER_F

ROUND_XTAL_SCALE = 0.723601254558268  # C: sqrt of the cube/sphere volume ratio
GAUSS_WIDTH = 0.63
TOPHAT_RADIUS_SQR = 0.3969


def _needs_grad(*tensors) -> bool:
    """True when autograd is recording and any of ``tensors`` requires a gradient."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def value_with_grad_of(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` bit for bit, differentiated as ``surrogate`` (the same function, written to be smooth).

    ``value.detach() + (surrogate - surrogate.detach())``: the bracket is exactly 0 for a finite surrogate,
    so the value keeps C's arithmetic while the derivative comes from a form without 0/0.
    """
    return value.detach() + (surrogate - surrogate.detach())


def sincg(x: torch.Tensor, n) -> torch.Tensor:
    """C sincg(x, N) = sin(N x)/sin(x), and N at x == 0 (grating function of N cells)."""
    den = torch.sin(x)
    zero = den == 0  # only at x == 0 in floating point (sin(k*pi) is never exactly 0 for k != 0)
    return torch.where(zero, n, torch.sin(n * x) / torch.where(zero, 1.0, den))


def grating_smooth(h: torch.Tensor, n) -> torch.Tensor:
    """sin(N pi h)/sin(pi h) from d = h - round(h), with a series where |N pi d| < 1e-2: finite derivatives.

    The sign (-1)^(round(h)(N-1)) is taken at the nearest integer N, so N may vary continuously: the peak shape of
    every reflection is sin(N pi d)/sin(pi d), which is C's function wherever N is an integer.
    """
    h0 = torch.round(h.detach())
    x = math.pi * (h - h0)
    n = torch.as_tensor(n, dtype=h.dtype, device=h.device)
    sign = 1.0 - 2.0 * torch.remainder(h0 * (torch.round(n.detach()) - 1), 2.0)
    small = (n.detach() * x.detach()).abs() < 1e-2
    xs = torch.where(small, torch.ones_like(x), x)
    closed = torch.sin(n * xs) / torch.sin(xs)
    x2, n2 = x * x, n * n
    series = n * (1.0 - (n2 - 1.0) * x2 / 6.0 * (1.0 - (3.0 * n2 - 7.0) * x2 / 60.0))
    return sign * torch.where(small, series, closed)


def _over_rows(n: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``n`` (broadcasting against ``h``'s trailing axes) laid out over them, its last two at least, contiguous:
    an elementwise op between h (..., K, 3) and a 3-vector then runs over rows of 3 K values, not of 3 (on the
    CPU a broadcast row of 3 costs ~3x a plain pass)."""
    k = max(n.dim(), 2)
    return n.expand(h.shape[-k:]).contiguous() if h.dim() >= k and n.shape != h.shape[-k:] else n


def grating_derivatives(h: torch.Tensor, n: torch.Tensor, need_n: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d/dh, d/dN) of ``grating_smooth``: closed forms away from integer h, their series within |N pi d| < 1e-2
    (where the closed d/dh cancels catastrophically and d/dN is 0/0 at d = 0). d/dN is None unless
    ``need_n`` (N rarely carries a gradient; skipping it saves a fifth of the backward).

    ``n`` broadcasts against ``h``. This runs in the backward pass only (never differentiated itself), so it
    works in place and with fused multiply-adds: each whole-size pass is a round trip through memory, each
    new buffer fresh pages. Per-axis constants are computed at N's own size.
    """
    n = _over_rows(n, h)
    n2 = n * n
    k = n * (n2 - 1.0)
    h0 = torch.round(h)
    x = torch.sub(h, h0).mul_(math.pi)
    # -pi (-1)^(h0 (round(N) - 1)) = 4 pi |frac(h0 (round(N) - 1) / 2)| - pi: -pi or pi, exact
    neg_sign = h0.mul_(0.5 * (torch.round(n) - 1.0)).frac_().abs_().mul_(4.0 * math.pi).sub_(math.pi)
    nx = n * x
    x2 = x * x
    small = x2 < 1e-4 / n2  # |N x| < 1e-2
    s, sn = torch.sin(x), torch.sin(nx)
    dn = None
    if need_n:
        cn = torch.cos(nx)
        series_n = 1.0 - (3.0 * n2 - 1.0) / 6.0 * x2 + (15.0 * n2 * n2 - 30.0 * n2 + 7.0) / 360.0 * x2 * x2
        dn = torch.where(small, series_n, x * cn / s).mul_(neg_sign).div_(-math.pi)
    # minus the series of d/dx below: x N (N^2 - 1) (1/3 - (3 N^2 - 7) x^2 / 90)
    neg_series = x2.mul_(k * (3.0 * n2 - 7.0) / -90.0).add_(k / 3.0).mul_(x)
    c, cn = x.cos_(), nx.cos_()
    # minus (N cos(Nx) sin x - sin(Nx) cos x) / sin^2 x (0/0 at x == 0, where the series is taken)
    neg_closed = sn.mul_(c).div_(s).addcmul_(cn, n, value=-1.0).div_(s)
    return torch.where(small, neg_series, neg_closed, out=neg_closed).mul_(neg_sign), dn


def _sum_to(g: torch.Tensor, shape) -> torch.Tensor:
    """``g`` summed over the axes that were broadcast from ``shape``."""
    while g.dim() > len(shape):
        g = g.sum(0)
    for i, size in enumerate(shape):
        if size == 1 and g.shape[i] != 1:
            g = g.sum(i, keepdim=True)
    return g


def _grating_values(h: torch.Tensor, n: torch.Tensor, c_form: bool) -> torch.Tensor:
    """Per-axis grating values sin(N pi h)/sin(pi h): C's evaluation in float64 with integer N (bit parity),
    the reduced form below float64, the smooth form for non-integer N."""
    if h.dtype == torch.float64 and c_form:
        return sincg(math.pi * h, n)
    if c_form:
        return sincg_reduced(h, n)
    return grating_smooth(h, n)


class _Grating(torch.autograd.Function):
    """C's square-crystal F_latt = prod_i v_i, v_i = sin(N_i pi h_i)/sin(pi h_i), differentiated as
    ``grating_smooth``.

    One node for the product: d F/d v_i = F / v_i, a division instead of products of strided axes. It is
    exact: v_i is never 0 for finite h and N > 0 (the sine of a non-zero double is never 0, and v_i = N
    where sin(pi h_i) is 0), and F / v_i differs from the product of the other two by rounding only.
    """

    @staticmethod
    def forward(ctx, h, n, c_form: bool):
        value = _grating_values(h, _over_rows(n, h), c_form)
        F = value.prod(-1)
        ctx.save_for_backward(h, n, value, F)
        return F

    @staticmethod
    @torch.autograd.function.once_differentiable  # in place (grating_derivatives): no second derivatives
    def backward(ctx, g):
        h, n, v, F = ctx.saved_tensors
        need_h, need_n = ctx.needs_input_grad[:2]
        dh, dn = grating_derivatives(h, n, need_n=need_n)
        gF = (g * F)[..., None]
        gh = dh.mul_(gF).div_(v) if need_h else None
        gn = _sum_to(gF / v * dn, n.shape) if need_n else None
        return gh, gn, None


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


def sinc3_of_square(u: torch.Tensor) -> torch.Tensor:
    """sinc3(sqrt(u)) as a function of u = x^2: a series in u below 0.25, so u = 0 has a finite derivative."""
    small = u.detach() < 0.25
    us = torch.where(small, torch.ones_like(u), u)
    x = torch.sqrt(us)
    closed = 3.0 * (torch.sin(x) / x - torch.cos(x)) / us
    series = 1.0 - u / 10.0 * (1.0 - u / 28.0 * (1.0 - u / 54.0 * (1.0 - u / 88.0 * (1.0 - u / 130.0))))
    return torch.where(small, series, closed)


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


def _cells(N, like: torch.Tensor) -> torch.Tensor:
    """N (three cell counts, a tuple or a (..., 3) tensor) as a tensor next to ``like``."""
    return N if isinstance(N, torch.Tensor) else torch.as_tensor(N, dtype=like.dtype, device=like.device)


def lattice_factor_square(hkl: torch.Tensor, N, axes=None, c_form: bool = True) -> torch.Tensor:
    """Parallelepiped F_latt = prod sincg(pi h_i, N_i) over ``axes`` (C SQUARE shape; C skips N_i = 1 axes,
    the default for ``axes``).

    ``N`` (..., 3) broadcasts against ``hkl`` (..., 3). float64 with integer N (``c_form``) evaluates
    sin(N pi h)/sin(pi h) as C does; otherwise the reduced form. Derivatives always are those of
    ``grating_smooth`` (finite at integer h and continuous in N), computed in the backward pass only.
    """
    N = _cells(N, hkl)
    if axes is None:
        axes = tuple(i for i in range(3) if bool((N[..., i] > 1).any()))
    if not axes:
        return torch.ones_like(hkl[..., 0])
    if len(axes) < 3:
        hkl = hkl[..., list(axes)]
        N = N[..., list(axes)]
    if _needs_grad(hkl, N):
        return _Grating.apply(hkl, N, c_form)
    return _grating_values(hkl, _over_rows(N, hkl), c_form).prod(-1)


def lattice_factor_round(hkl: torch.Tensor, N, fudge, scale=None) -> torch.Tensor:
    """Ellipsoidal F_latt = Na Nb Nc 0.7236 sinc3(pi sqrt(hrad^2 fudge)) (C ROUND shape); ``scale``: the
    prefactor Na Nb Nc 0.7236 when already computed (in double, as C)."""
    N = _cells(N, hkl)
    if scale is None:
        scale = N.prod(-1) * ROUND_XTAL_SCALE
    d = hkl - nearest_index(hkl)
    hrad_sqr = (d * d * N * N).sum(-1)
    r2 = hrad_sqr * fudge
    zero = r2 == 0  # double where: sqrt has no finite derivative at 0
    x = torch.where(zero, 0.0, math.pi * torch.sqrt(torch.where(zero, 1.0, r2)))
    value = scale * sinc3(x)
    if _needs_grad(hkl, N, scale, fudge):
        return value_with_grad_of(value, scale * sinc3_of_square(math.pi * math.pi * r2))
    return value


def reciprocal_distance_sqr(hkl: torch.Tensor, recip: torch.Tensor, n2) -> torch.Tensor:
    """|(h-h0)a* + (k-k0)b* + (l-l0)c*|^2 Na^2 Nb^2 Nc^2, a*,b*,c* (1/A) the rows of ``recip``.

    ``recip`` is (3, 3) or, for a batch of crystals, (B, 1, 3, 3) against hkl (..., B, K, 3); ``n2`` is
    (Na Nb Nc)^2 (computed once in double, as C), broadcasting like hkl[..., 0].
    """
    d = hkl - nearest_index(hkl)
    if recip.dim() == 2:
        dx = d @ recip
    else:
        dx = (d.unsqueeze(-2) @ recip).squeeze(-2)
    return (dx * dx).sum(-1) * n2


def _n2_nprod(N, like, n2, nprod):
    if n2 is None or nprod is None:
        nprod = _cells(N, like).prod(-1) if not isinstance(N, tuple) else float(N[0] * N[1] * N[2])
        n2 = nprod * nprod
    return n2, nprod


def lattice_factor_gauss(hkl, recip, N, fudge, n2=None, nprod=None) -> torch.Tensor:
    """Gaussian F_latt = Na Nb Nc exp(-(r*^2/0.63) fudge) (C GAUSS shape)."""
    n2, nprod = _n2_nprod(N, hkl, n2, nprod)
    r2 = reciprocal_distance_sqr(hkl, recip, n2)
    return nprod * torch.exp(-(r2 / GAUSS_WIDTH * fudge))


def lattice_factor_tophat(hkl, recip, N, fudge, n2=None, nprod=None) -> torch.Tensor:
    """Top-hat F_latt = Na Nb Nc inside r*^2 fudge < 0.3969, else 0 (C TOPHAT shape)."""
    n2, nprod = _n2_nprod(N, hkl, n2, nprod)
    r2 = reciprocal_distance_sqr(hkl, recip, n2)
    inside = r2 * fudge < TOPHAT_RADIUS_SQR
    return torch.where(inside, nprod * torch.ones_like(r2), torch.zeros_like(r2))


def polarization_factor(incident: torch.Tensor, diffracted: torch.Tensor, axis: torch.Tensor,
                        kahn, with_kahn: bool | None = None) -> torch.Tensor:
    """C polarization_factor(): 1/2 (1 + cos^2 2t - K cos(2 psi) sin^2 2t) for unit incident/diffracted.

    ``with_kahn=False`` is the K = 0 shortcut (the default for a Python 0). The value keeps C's atan2 form;
    its derivative comes from the equal algebraic form K ((d.E)^2 - (d.B)^2) = K cos(2 psi) sin^2 2t, which
    has no singularity at the on-beam pixel (atan2(0, 0)).
    """
    cos2t = (incident * diffracted).sum(-1)
    cos2t_sqr = cos2t * cos2t
    sin2t_sqr = 1.0 - cos2t_sqr
    if with_kahn is None:
        with_kahn = isinstance(kahn, torch.Tensor) or kahn != 0.0
    if not with_kahn:
        return 0.5 * (1.0 + cos2t_sqr)
    B, E, degenerate = polarization_frame(incident, axis)
    y, x = (diffracted * B).sum(-1), (diffracted * E).sum(-1)
    psi = -torch.atan2(y, x)
    value = 0.5 * (1.0 + cos2t_sqr - kahn * torch.cos(2.0 * psi) * sin2t_sqr)
    if not _needs_grad(incident, diffracted, axis, kahn):
        return value
    aniso = torch.where(degenerate, sin2t_sqr, x * x - y * y)
    return value_with_grad_of(value, 0.5 * (1.0 + cos2t_sqr - kahn * aniso))


def polarization_frame(incident: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor]:
    """C polarization_factor()'s B = unit(axis x incident) and E = unit(incident x B) (a zero vector stays
    zero, as C unitize()); ``degenerate`` marks where either is zero (C's psi = atan2(0, 0) = 0 there)."""
    B = torch.cross(axis.expand_as(incident), incident, dim=-1)
    nB = torch.linalg.vector_norm(B, dim=-1, keepdim=True)
    B = B / torch.where(nB == 0, 1.0, nB)
    E = torch.cross(incident, B, dim=-1)
    nE = torch.linalg.vector_norm(E, dim=-1, keepdim=True)
    E = E / torch.where(nE == 0, 1.0, nE)
    return B, E, (nB == 0)[..., 0] | (nE == 0)[..., 0]


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


def pad_structure_factors(grid: torch.Tensor, mins, maxs, default_F) -> torch.Tensor:
    """The F table [min..max] per axis inside a default_F border one cell wide or more: a cube of side
    max(span) + 3, so that every nearest-index lookup is one gather (C: default_F outside the table)."""
    span = [mx - mn for mn, mx in zip(mins, maxs)]
    side = max(span) + 3
    inner = grid[: span[0] + 1, : span[1] + 1, : span[2] + 1]
    pads = (1, side - span[2] - 2, 1, side - span[1] - 2, 1, side - span[0] - 2)
    body = torch.nn.functional.pad(inner, pads)
    inside = torch.nn.functional.pad(torch.ones_like(inner), pads) > 0
    default_F = torch.as_tensor(default_F, dtype=grid.dtype, device=grid.device)
    return torch.where(inside, body, default_F)


def structure_factor_nearest(hkl0: torch.Tensor, padded: torch.Tensor, mins) -> torch.Tensor:
    """F at the nearest indices (h0,k0,l0) from ``pad_structure_factors``' cube: the table value inside
    [min, max] per axis, default_F outside it and for NaN indices (as C treats an undefined index)."""
    side = padded.shape[0]
    rel = hkl0 - torch.as_tensor(mins, dtype=hkl0.dtype, device=hkl0.device)
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


def water_background(water_size, fluence):
    """C's -water background I_bg = F_bg^2 r_e^2 fluence (w^3 1e6 N_A / 18) (r_e^2 fluence carried twice, as C);
    floats or tensors, evaluated in C's order."""
    return WATER_F * WATER_F * R_E_SQR * fluence * (water_size ** 3 * 1e6 * AVOGADRO / 18.0)


def walk_node(xa, s, n: int) -> int:
    """One step of C's stateful table search: from node ``n``, up while ``s`` is above the node (not past the
    last), then down while it is below (not under index 1)."""
    last = xa.shape[0] - 1
    while n < last and s > xa[n]:
        n += 1
    while n >= 2 and s < xa[n]:
        n -= 1
    return n
