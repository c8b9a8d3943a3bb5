"""Crystal: cell or MOSFLM matrix -> real/reciprocal vectors, misset, size, phi and mosaic rotations (§4)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import UsageError
from .geometry import DBL_MIN, rotate_axis, rotate_xyz
from .model import setup_tensor


@dataclass
class CrystalGeometry:
    """The phi=0, unmosaiced crystal: real vectors a0,b0,c0 (m), reciprocal a*,b*,c* (1/A), volume (A^3)."""

    a0: torch.Tensor
    b0: torch.Tensor
    c0: torch.Tensor
    a_star: torch.Tensor
    b_star: torch.Tensor
    c_star: torch.Tensor
    volume: torch.Tensor


def reciprocal_from_cell(cell, dtype=None, device=None):
    """C's -cell construction, incl. its non-textbook c* z component; returns (a*, b*, c*, V).

    ``cell``: (a, b, c, alpha, beta, gamma) in A and rad — six numbers or a (..., 6) tensor (a batch of
    cells gives (..., 3) vectors and (...) volumes). A zero volume becomes DBL_MIN, as in C.
    """
    if isinstance(cell, torch.Tensor):
        cell = cell if dtype is None else cell.to(dtype)
        a, b, c, al, be, ga = cell.unbind(-1)
    else:
        a, b, c, al, be, ga = (torch.as_tensor(x, dtype=dtype, device=device) for x in cell)
    s = (al + be + ga) / 2
    skew = torch.abs(torch.sin(s) * torch.sin(s - al) * torch.sin(s - be) * torch.sin(s - ga))
    V = 2.0 * a * b * c * torch.sqrt(skew)
    V = torch.where(V <= 0, torch.full_like(V, DBL_MIN), V)
    Vs = 1.0 / V
    ast = b * c * torch.sin(al) * Vs
    bst = c * a * torch.sin(be) * Vs
    cst = a * b * torch.sin(ga) * Vs
    sin_gs = torch.clamp(c * Vs / ast / bst, -1.0, 1.0)
    cos_as = (torch.cos(be) * torch.cos(ga) - torch.cos(al)) / (torch.sin(be) * torch.sin(ga))
    cos_bs = (torch.cos(ga) * torch.cos(al) - torch.cos(be)) / (torch.sin(ga) * torch.sin(al))
    cos_gs = (torch.cos(al) * torch.cos(be) - torch.cos(ga)) / (torch.sin(al) * torch.sin(be))
    one = torch.ones_like(cos_as)
    cos_as, cos_bs, cos_gs = (torch.where(x * x > 1.0, one, x) for x in (cos_as, cos_bs, cos_gs))
    zero = torch.zeros_like(ast)
    a_star = torch.stack((ast, zero, zero), dim=-1)
    b_star = torch.stack((bst * cos_gs, bst * sin_gs, zero), dim=-1)
    c_star = torch.stack((cst * cos_bs, cst * (cos_as - cos_bs * cos_gs) / sin_gs,
                          cst * V / (a * b * c * sin_gs)), dim=-1)
    return a_star, b_star, c_star, V


def _rescale(v: torch.Tensor, length) -> torch.Tensor:
    """C vector_rescale(): v scaled to the given length."""
    return v * (length / torch.linalg.vector_norm(v, dim=-1))[..., None]


def build_crystal(reciprocal, wavelength: float | None, misset, cell_lengths_volume, dtype=None,
                  device=None) -> CrystalGeometry:
    """Misset the reciprocal vectors and regenerate real/reciprocal space exactly as C does.

    ``reciprocal``: (a*, b*, c*) in 1/A (already divided by lambda for a MOSFLM matrix), each (..., 3).
    ``misset``: (rx, ry, rz) rad, a (..., 3) tensor, or None. ``cell_lengths_volume``: (a, b, c, V) from
    -cell, imposed on the result (None for -mat only). C applies the misset to a*, b*, c*, derives the real
    vectors from cross products and the volume, rescales them to the -cell lengths, then re-derives a*, b*, c*.
    """
    a_star, b_star, c_star = (torch.as_tensor(v, dtype=dtype, device=device) for v in reciprocal)
    if misset is not None:
        if isinstance(misset, torch.Tensor):
            rx, ry, rz = misset.unbind(-1)
        else:
            rx, ry, rz = misset
        a_star, b_star, c_star = (rotate_xyz(v, rx, ry, rz) for v in (a_star, b_star, c_star))
    axb = torch.cross(a_star, b_star, dim=-1)
    bxc = torch.cross(b_star, c_star, dim=-1)
    cxa = torch.cross(c_star, a_star, dim=-1)
    V_star = (a_star * bxc).sum(-1)
    if cell_lengths_volume is not None:
        la, lb, lc, V = cell_lengths_volume
        bxc = _rescale(bxc, la / V)
        cxa = _rescale(cxa, lb / V)
        axb = _rescale(axb, lc / V)
        V_star = 1.0 / V
    V_cell = 1.0 / V_star
    a = bxc * V_cell[..., None] if isinstance(V_cell, torch.Tensor) else bxc * V_cell
    b = cxa * V_cell[..., None] if isinstance(V_cell, torch.Tensor) else cxa * V_cell
    c = axb * V_cell[..., None] if isinstance(V_cell, torch.Tensor) else axb * V_cell
    Vs = V_star[..., None] if isinstance(V_star, torch.Tensor) else V_star
    a_star = torch.cross(b, c, dim=-1) * Vs
    b_star = torch.cross(c, a, dim=-1) * Vs
    c_star = torch.cross(a, b, dim=-1) * Vs
    return CrystalGeometry(a0=a * 1e-10, b0=b * 1e-10, c0=c * 1e-10, a_star=a_star, b_star=b_star,
                           c_star=c_star, volume=V_cell)


def cell_parameters(cr: CrystalGeometry) -> tuple[list[float], list[float]]:
    """(a, b, c, alpha, beta, gamma) real (A, deg) and reciprocal (1/A, deg) for the report."""
    def params(x, y, z):
        lx, ly, lz = (float(torch.linalg.vector_norm(v)) for v in (x, y, z))
        ang = lambda u, v, lu, lv: math.degrees(math.acos(max(-1.0, min(1.0, float((u * v).sum()) / lu / lv))))  # noqa: E731
        return [lx, ly, lz, ang(y, z, ly, lz), ang(x, z, lx, lz), ang(x, y, lx, ly)]

    real = params(cr.a0 * 1e10, cr.b0 * 1e10, cr.c0 * 1e10)
    recip = params(cr.a_star, cr.b_star, cr.c_star)
    return real, recip


def crystal_counts(cr: CrystalGeometry, Na: int, Nb: int, Nc: int, sample_x: float, sample_y: float,
                   sample_z: float) -> tuple[int, int, int]:
    """§2.6: sizes > 0 set N = ceil(size/|a|); then every N <= 1 becomes 1."""
    out = []
    for n, size, v in ((Na, sample_x, cr.a0), (Nb, sample_y, cr.b0), (Nc, sample_z, cr.c0)):
        if size > 0:
            n = math.ceil(size / float(torch.linalg.vector_norm(v)))
        out.append(max(int(n), 1))
    return tuple(out)


def orientation_stack(cr: CrystalGeometry, spindle: torch.Tensor, phis: torch.Tensor,
                      umats: torch.Tensor | None) -> torch.Tensor:
    """Real-space cell vectors for every (phi step, mosaic domain): (..., NPHI*NMOS, 3, 3), rows a, b, c (m).

    Phi rotation about the spindle first, then the mosaic matrix, domain index fastest, as in C's loops;
    at phi = 0 no rotation is applied (the C program reuses a stale rotation there; we do not - see README).
    A leading batch axis of the crystal vectors carries through.
    """
    abc = torch.stack((cr.a0, cr.b0, cr.c0), dim=-2)  # (..., 3 vectors, 3)
    rot = rotate_axis(abc[..., None, :, :], spindle, phis[:, None])  # (..., NPHI, 3, 3)
    if umats is not None:
        rot = torch.einsum("mij,...pvj->...pmvi", umats, rot)  # (..., NPHI, NMOS, 3, 3)
    else:
        rot = rot[..., None, :, :]
    return rot.reshape(*rot.shape[:-4], -1, 3, 3)


def mosaic_umats_from_draws(axes: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (D, 3, 3) about unit ``axes`` (D, 3) by ``angles`` (D,), in the component form of
    C's mosaic_rotation_umat (cos/sin of the angle and products of the axis components)."""
    v1, v2, v3 = axes.unbind(-1)
    t1 = torch.cos(angles)
    t2 = 1.0 - t1
    t8 = torch.sin(angles)
    t6 = t2 * v1
    t7 = t6 * v2
    t9 = t8 * v3
    t11 = t6 * v3
    t12 = t8 * v2
    t19 = t2 * v2 * v3
    t20 = t8 * v1
    rows = (
        (t1 + t2 * (v1 * v1), t7 - t9, t11 + t12),
        (t7 + t9, t1 + t2 * (v2 * v2), t19 - t20),
        (t11 - t12, t19 + t20, t1 + t2 * (v3 * v3)),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def crystal_geometry(model) -> CrystalGeometry:
    """Real and reciprocal vectors after the misset, as C derives them from -cell and/or -mat (float64)."""
    c = model.crystal
    dev = model.device
    cell_lv = None
    if c.cell is not None:
        cell = setup_tensor(c.cell, dev)
        a_star, b_star, c_star, V = reciprocal_from_cell(cell)
        cell_lv = (cell[..., 0], cell[..., 1], cell[..., 2], V)
    if c.matrix is not None:
        a_star, b_star, c_star = setup_tensor(c.matrix, dev).unbind(-2)
    elif c.cell is None:
        raise UsageError("the crystal needs a cell or a reciprocal matrix")
    misset = setup_tensor(c.misset, dev)
    if misset.dim() == 1 and not (misset.requires_grad or bool((misset != 0).any())):
        misset = None  # C applies no misset rotation at all
    cr = build_crystal((a_star, b_star, c_star), None, misset, cell_lv)
    batch = c.batch_shape
    if batch and cr.a0.shape[:-1] != batch:  # a batch given only through N or scale
        cr = CrystalGeometry(*(v.expand(*batch, 3) for v in (cr.a0, cr.b0, cr.c0, cr.a_star, cr.b_star, cr.c_star)),
                             volume=cr.volume.expand(batch))
    return cr


