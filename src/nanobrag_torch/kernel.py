"""The render kernel: one batched function over (pixels x layers x sub-pixels x sources x phi x mosaic).

This is the only hot path. It has no Python loop over pixels, sources, phi steps or domains, no host
synchronisation, and no data-dependent Python control flow: every branch is on static settings in
``KernelSettings``. The simulator calls it on chunks of pixels in raster order.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import physics


@dataclass(frozen=True)
class KernelSettings:
    """Static (hashable) settings: they select code paths, never depend on data."""

    shape: str  # square | round | gauss | tophat
    N: tuple[int, int, int]
    fudge: float
    kahn: float
    nopolar: bool
    point_pixel: bool
    pixel_size: float
    thick: bool  # detector thickness modelled (capture fraction)
    thickstep: float
    mu: float
    dmin: float  # m; 0 = off
    water: bool  # a water background is present (terms with F_latt == 0 still count)
    interpolate: bool  # tricubic F requested (subject to the run-time shut-off)
    has_table: bool
    default_F: float
    hkl_mins: tuple[int, int, int]
    hkl_maxs: tuple[int, int, int]
    oversample_thick: bool
    oversample_polar: bool
    oversample_omega: bool


@dataclass
class KernelInputs:
    """Tensors shared by every chunk (all on one device, one dtype)."""

    odet: torch.Tensor  # (3,)
    close_distance: torch.Tensor  # ()
    incident: torch.Tensor  # (NS, 3) unit incident directions
    wavelengths: torch.Tensor  # (NS,) m
    orientations: torch.Tensor  # (K, 3, 3) rows a, b, c (m) per phi step x mosaic domain
    recip: torch.Tensor  # (3, 3) rows a*, b*, c* (1/A), static
    polar_axis: torch.Tensor  # (3,)
    F_grid: torch.Tensor  # (h_range+1, k_range+1, l_range+1)
    I_bg: torch.Tensor  # () water background start value
    scale: torch.Tensor  # () r_e^2 fluence / steps


def render_chunk(pos: torch.Tensor, inp: KernelInputs, s: KernelSettings,
                 interp_enabled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render pixels whose sub-pixel positions are ``pos`` (P, T, S, 3), in raster order.

    Returns (values (P,), omega_sum per pixel (P,), interpolation still enabled after this chunk ()).
    ``interp_enabled`` is the C program's global tricubic flag, carried from chunk to chunk: the first
    out-of-range lookup (in raster/loop order) switches tricubic interpolation off for everything after it.
    """
    P, T, S, _ = pos.shape
    R = torch.linalg.vector_norm(pos, dim=-1)  # (P, T, S)
    d = pos / R[..., None]

    # Solid angle (C §6.2) and capture fraction (§6.3) per sub-pixel.
    if s.point_pixel:
        omega = 1.0 / (R * R)
    else:
        omega = s.pixel_size * s.pixel_size / (R * R) * inp.close_distance / R
    if s.thick or s.oversample_thick:
        # C recomputes the capture fraction per sub-pixel under -oversample_thick even with no thickness:
        # exp(0) - exp(0) = 0, so that combination renders an all-zero image (c-reference §6.10)
        rho = (d * inp.odet).sum(-1)
        k = torch.arange(T, dtype=pos.dtype, device=pos.device)[None, :, None]
        depth = s.thickstep * s.mu / rho
        capture = torch.exp(-k * depth) - torch.exp(-(k + 1) * depth)
    else:
        capture = torch.ones_like(R)

    # Scattering vectors per source (§6.4).
    inc = inp.incident  # (NS, 3)
    lam = inp.wavelengths
    Svec = (d[..., None, :] - inc) / lam[:, None]  # (P, T, S, NS, 3)
    if s.dmin > 0:
        stol = 0.5 * torch.linalg.vector_norm(Svec, dim=-1)
        culled = (stol > 0) & (s.dmin > 0.5 / torch.where(stol > 0, stol, 1.0))
    else:
        culled = torch.zeros(Svec.shape[:-1], dtype=torch.bool, device=pos.device)
    if s.nopolar:
        polar = torch.ones_like(culled, dtype=pos.dtype)
    else:
        polar = physics.polarization_factor(inc, d[..., None, :], inp.polar_axis, s.kahn)  # (P, T, S, NS)

    # Miller indices for every phi step x mosaic domain (§6.7).
    hkl = torch.einsum("kvj,ptsnj->ptsnkv", inp.orientations, Svec)  # (P, T, S, NS, K, 3)

    # Lattice factor (§6.8).
    if s.shape == "square":
        F_latt = physics.lattice_factor_square(hkl, s.N)
    elif s.shape == "round":
        F_latt = physics.lattice_factor_round(hkl, s.N, s.fudge)
    elif s.shape == "gauss":
        F_latt = physics.lattice_factor_gauss(hkl, inp.recip, s.N, s.fudge)
    else:
        F_latt = physics.lattice_factor_tophat(hkl, inp.recip, s.N, s.fudge)
    evaluated = ~culled[..., None]
    if not s.water:
        evaluated = evaluated & (F_latt != 0)

    # Structure factor (§6.9), with C's global tricubic shut-off in raster order.
    hkl0 = physics.nearest_index(hkl)
    F_near = physics.structure_factor_nearest(hkl0, inp.F_grid, s.hkl_mins, s.hkl_maxs, s.default_F, s.has_table)
    if s.interpolate:
        in_range = physics.interpolation_in_range(hkl, s.hkl_mins, s.hkl_maxs)
        oor = (evaluated & ~in_range).reshape(-1)
        n = oor.numel()
        order = torch.arange(n, device=pos.device)
        first = torch.where(oor.any(), torch.argmax(oor.to(torch.uint8)), torch.full((), n, device=pos.device))
        use_interp = ((order < first) & interp_enabled).reshape(in_range.shape)
        F_tri = physics.structure_factor_tricubic(hkl, inp.F_grid, s.hkl_mins, use_interp)
        F_cell = torch.where(use_interp, F_tri, F_near)
        interp_next = interp_enabled & ~oor.any()
    else:
        F_cell = F_near
        interp_next = interp_enabled

    term = F_cell * F_cell * F_latt * F_latt
    if s.dmin > 0 or s.interpolate or s.water:
        # culled sources add nothing; so do F_latt == 0 terms without water (already 0 unless F is not finite)
        term = torch.where(evaluated, term, 0.0)

    # Accumulation (§6.10).
    any_os = s.oversample_thick or s.oversample_polar or s.oversample_omega
    if any_os:
        # C multiplies the running sum after every evaluated term: I_n = (I_{n-1} + t_n) f_n.
        f = torch.ones_like(term)
        if s.oversample_thick:
            f = f * capture[..., None, None]
        if s.oversample_polar:
            f = f * polar[..., None]
        if s.oversample_omega:
            f = f * omega[..., None, None]
        f = torch.where(evaluated, f, 1.0).reshape(P, -1)
        tail = torch.flip(torch.cumprod(torch.flip(f, [1]), dim=1), [1])  # prod_{m >= n} f_m
        I = inp.I_bg * tail[:, 0] + (term.reshape(P, -1) * tail).sum(1)
    else:
        I = inp.I_bg + term.reshape(P, -1).sum(1)

    value = inp.scale * I
    if not s.oversample_thick:
        value = value * capture[:, -1, 0]  # capture of the LAST layer, first sub-pixel
    if not s.oversample_polar:
        if s.nopolar:
            polar_px = torch.ones_like(value)
        else:
            # polarization from the first (layer, sub-pixel, source) evaluation surviving the dmin cut
            alive = (~culled).reshape(P, -1)
            first_alive = torch.argmax(alive.to(torch.uint8), dim=1)
            polar_px = torch.gather(polar.reshape(P, -1), 1, first_alive[:, None])[:, 0]
            polar_px = torch.where(alive.any(1), polar_px, torch.zeros_like(polar_px))
        value = value * polar_px
    if not s.oversample_omega:
        value = value * omega[:, 0, 0]
        omega_sum = omega[:, 0, 0] * (T * S)
    else:
        omega_sum = omega.reshape(P, -1).sum(1)
    return value, omega_sum, interp_next
