"""The eager render kernel: one batched function over (pixels x layers x sub-pixels x sources x crystals x
phi steps x mosaic domains).

This is the reference path, the GPU path and the autograd path. It has no Python loop over pixels, sources,
phi steps, domains or crystals, no host synchronisation, and no data-dependent Python control flow: every
branch is on static settings in ``KernelSettings``. ``render`` calls it on chunks of pixels in raster order.

Scalars in ``KernelInputs`` are 0-dim float64 tensors: like Python floats they enter every product in the
render precision after one rounding of their double value (what the C program's double setup gives), and
they may carry gradients. Per-crystal scalars of a batch are (B, 1) tensors in the render precision.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import physics


@dataclass(frozen=True)
class KernelSettings:
    """Static (hashable) settings: they select code paths and sizes, never depend on pixel data."""

    shape: str  # square | round | gauss | tophat
    lattice_axes: tuple[int, ...]  # square shape: axes with N > 1 (C skips the others)
    c_form: bool  # N integral: C's sin(N x)/sin(x) evaluation (else the smooth form)
    kahn: bool  # a Kahn factor is applied (non-zero or differentiated)
    nopolar: bool
    point_pixel: bool
    thick: bool  # detector thickness modelled (capture fraction)
    dmin: float  # m; 0 = off
    water: bool  # a water background is present (terms with F_latt == 0 still count)
    interpolate: bool  # tricubic F requested (subject to the run-time shut-off)
    has_table: bool
    hkl_mins: tuple[int, int, int]
    hkl_maxs: tuple[int, int, int]
    oversample_thick: bool
    oversample_polar: bool
    oversample_omega: bool
    weighted: bool = False  # per-source weights other than 1
    batch: int = 1  # crystals rendered together (leading axis of the orientations)


@dataclass
class KernelInputs:
    """Tensors shared by every chunk (one device; vectors in the render dtype, scalars 0-dim float64)."""

    odet: torch.Tensor  # (3,)
    close_distance: torch.Tensor  # ()
    incident: torch.Tensor  # (NS, 3) unit incident directions
    wavelengths: torch.Tensor  # (NS,) m
    weights: torch.Tensor  # (NS,)
    orientations: torch.Tensor  # (B, K, 3, 3) rows a, b, c (m) per crystal, phi step x mosaic domain
    recip: torch.Tensor  # (3, 3) rows a*, b*, c* (1/A), or (B, 1, 3, 3) for a batch
    polar_axis: torch.Tensor  # (3,)
    F_grid: torch.Tensor  # (h_range+1, k_range+1, l_range+1) for tricubic interpolation
    F_padded: torch.Tensor  # the table inside its default_F border (physics.pad_structure_factors)
    default_F: torch.Tensor  # ()
    N: torch.Tensor  # (3,) or (B, 1, 3), render dtype
    shape_scale: torch.Tensor  # round: Na Nb Nc 0.7236; gauss/tophat: Na Nb Nc — () or (B, 1)
    n2: torch.Tensor  # (Na Nb Nc)^2 — () or (B, 1)
    fudge: torch.Tensor  # ()
    kahn: torch.Tensor  # ()
    pixel_area: torch.Tensor  # () pixel_size^2
    thick_mu: torch.Tensor  # () layer step x attenuation (1/m x m)
    I_bg: torch.Tensor  # () water background start value
    scale: torch.Tensor  # () or (B, 1): r_e^2 fluence / steps x crystal scale


def _lattice_factor(hkl: torch.Tensor, inp: KernelInputs, s: KernelSettings) -> torch.Tensor:
    """C's F_latt for the crystal shape."""
    if s.shape == "square":
        return physics.lattice_factor_square(hkl, inp.N, s.lattice_axes, s.c_form)
    if s.shape == "round":
        return physics.lattice_factor_round(hkl, inp.N, inp.fudge, inp.shape_scale)
    if s.shape == "gauss":
        return physics.lattice_factor_gauss(hkl, inp.recip, inp.N, inp.fudge, inp.n2, inp.shape_scale)
    return physics.lattice_factor_tophat(hkl, inp.recip, inp.N, inp.fudge, inp.n2, inp.shape_scale)


def _structure_factor(hkl, evaluated, inp: KernelInputs, s: KernelSettings, interp_enabled):
    """F per term, with C's global tricubic shut-off: the first out-of-range lookup in loop order (pixel,
    layer, sub-pixel, source, phi, domain) switches tricubic off for it and everything after it, per crystal.

    Returns (F (…, B, K), interpolation still enabled after this chunk (B,)).
    """
    if s.has_table:
        F_near = physics.structure_factor_nearest(physics.nearest_index(hkl), inp.F_padded, s.hkl_mins)
    else:
        F_near = inp.default_F.to(hkl.dtype).expand(hkl.shape[:-1])
    if not s.interpolate:
        return F_near, interp_enabled
    in_range = physics.interpolation_in_range(hkl, s.hkl_mins, s.hkl_maxs)
    oor = (evaluated & ~in_range).movedim(-2, 0)  # (B, P, T, S, NS, K): C's loop order per crystal
    B = oor.shape[0]
    oor = oor.reshape(B, -1)
    n = oor.shape[1]
    hit = oor.any(1)
    first = torch.where(hit, torch.argmax(oor.to(torch.uint8), dim=1), torch.full_like(hit, n, dtype=torch.long))
    order = torch.arange(n, device=hkl.device)
    use = (order[None, :] < first[:, None]) & interp_enabled[:, None]
    use = use.reshape(B, *in_range.shape[:-2], in_range.shape[-1]).movedim(0, -2)
    F_tri = physics.structure_factor_tricubic(hkl, inp.F_grid, s.hkl_mins, use)
    return torch.where(use, F_tri, F_near), interp_enabled & ~hit


def _solid_angle_and_capture(pos, d, R, inp: KernelInputs, s: KernelSettings):
    """Per sub-pixel: C's solid angle (pixel area x obliquity / R^2, or 1/R^2 for -point_pixel) and the
    sensor's capture fraction per layer, exp(-k t mu/rho) - exp(-(k+1) t mu/rho) (1 without a sensor)."""
    if s.point_pixel:
        omega = 1.0 / (R * R)
    else:
        omega = inp.pixel_area / (R * R) * inp.close_distance / R
    if s.thick or s.oversample_thick:
        # C recomputes the capture fraction per sub-pixel under -oversample_thick even with no thickness:
        # exp(0) - exp(0) = 0, so that combination renders an all-zero image
        rho = (d * inp.odet).sum(-1)
        k = torch.arange(pos.shape[1], dtype=pos.dtype, device=pos.device)[None, :, None]
        depth = inp.thick_mu / rho
        capture = torch.exp(-k * depth) - torch.exp(-(k + 1) * depth)
    else:
        capture = torch.ones_like(R)
    return omega, capture


def _scattering(d, inp: KernelInputs, s: KernelSettings):
    """Per (sub-pixel, source): the scattering vector (d - i)/lambda, C's dmin cut (stol > 0 and
    dmin > 1/(2 stol)) and the polarization factor."""
    inc = inp.incident  # (NS, 3)
    Svec = (d[..., None, :] - inc) / inp.wavelengths[:, None]  # (P, T, S, NS, 3)
    if s.dmin > 0:
        stol = 0.5 * torch.linalg.vector_norm(Svec, dim=-1)
        culled = (stol > 0) & (s.dmin > 0.5 / torch.where(stol > 0, stol, 1.0))
    else:
        culled = torch.zeros(Svec.shape[:-1], dtype=torch.bool, device=d.device)
    if s.nopolar:
        polar = torch.ones_like(culled, dtype=d.dtype)
    else:
        polar = physics.polarization_factor(inc, d[..., None, :], inp.polar_axis, inp.kahn, s.kahn)
    return Svec, culled, polar


def _accumulate(term, evaluated, capture, polar, omega, inp: KernelInputs, s: KernelSettings):
    """The per-pixel sum in C's loop order, (B, P). Under the -oversample_thick/-polar/-omega flags C
    multiplies the running sum after every evaluated term, I_n = (I_{n-1} + t_n) f_n, written here as the
    sum of each term times the product of the factors from it on."""
    B, P = s.batch, term.shape[0]
    flat = lambda t: t.movedim(4, 0).reshape(B, P, -1)  # noqa: E731
    if not (s.oversample_thick or s.oversample_polar or s.oversample_omega):
        return inp.I_bg + flat(term).sum(2)
    f = torch.ones_like(term)
    if s.oversample_thick:
        f = f * capture[..., None, None, None]
    if s.oversample_polar:
        f = f * polar[..., None, None]
    if s.oversample_omega:
        f = f * omega[..., None, None, None]
    f = flat(torch.where(evaluated, f, 1.0))
    tail = torch.flip(torch.cumprod(torch.flip(f, [2]), dim=2), [2])  # prod_{m >= n} f_m
    return inp.I_bg * tail[..., 0] + (flat(term) * tail).sum(2)


def _pixel_factors(value, culled, capture, polar, omega, s: KernelSettings):
    """C's per-pixel factors where no -oversample_* flag applies them per term: the LAST layer's capture
    fraction of the first sub-pixel, the polarization of the first (layer, sub-pixel, source) evaluation
    that survives the dmin cut (0 if none does), and the first sub-pixel's solid angle."""
    P = value.shape[1]
    if not s.oversample_thick:
        value = value * capture[:, -1, 0]
    if not s.oversample_polar:
        if s.nopolar:
            polar_px = torch.ones_like(value)
        else:
            alive = (~culled).reshape(P, -1)
            first_alive = torch.argmax(alive.to(torch.uint8), dim=1)
            polar_px = torch.gather(polar.reshape(P, -1), 1, first_alive[:, None])[:, 0]
            polar_px = torch.where(alive.any(1), polar_px, torch.zeros_like(polar_px))
        value = value * polar_px
    if not s.oversample_omega:
        value = value * omega[:, 0, 0]
    return value


def render_chunk(pos: torch.Tensor, inp: KernelInputs, s: KernelSettings,
                 interp_enabled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render pixels whose sub-pixel positions are ``pos`` (P, T, S, 3), in raster order.

    Returns (values (B, P), omega_sum per pixel (P,), interpolation still enabled after this chunk (B,)).
    ``interp_enabled`` (B,) is the C program's global tricubic flag of each crystal, carried chunk to chunk.
    """
    P, T, S, _ = pos.shape
    R = torch.linalg.vector_norm(pos, dim=-1)  # (P, T, S)
    d = pos / R[..., None]
    omega, capture = _solid_angle_and_capture(pos, d, R, inp, s)
    Svec, culled, polar = _scattering(d, inp, s)

    # Miller indices for every crystal x phi step x mosaic domain.
    Kb = inp.orientations.shape[-3]
    hkl = torch.einsum("kvj,ptsnj->ptsnkv", inp.orientations.reshape(-1, 3, 3), Svec)
    hkl = hkl.reshape(P, T, S, Svec.shape[3], s.batch, Kb, 3)

    F_latt = _lattice_factor(hkl, inp, s)  # (P, T, S, NS, B, K)
    evaluated = ~culled[..., None, None]
    if not s.water:
        evaluated = evaluated & (F_latt != 0)
    F_cell, interp_next = _structure_factor(hkl, evaluated, inp, s, interp_enabled)

    term = F_cell * F_cell * F_latt * F_latt
    if s.weighted:
        term = term * inp.weights[:, None, None]
    if s.dmin > 0 or s.interpolate or s.water:
        # culled sources add nothing; so do F_latt == 0 terms without water (already 0 unless F is not finite)
        term = torch.where(evaluated, term, 0.0)

    value = inp.scale * _accumulate(term, evaluated, capture, polar, omega, inp, s)  # (B, P)
    value = _pixel_factors(value, culled, capture, polar, omega, s)
    omega_sum = omega[:, 0, 0] * (T * S) if not s.oversample_omega else omega.reshape(P, -1).sum(1)
    return value, omega_sum, interp_next
