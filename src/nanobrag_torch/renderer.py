"""``render(model)``: the model's tensors -> a float image. Pure: no file is read or written here.

The derived geometry (placed detector, crystal vectors per phi step and mosaic domain, source list) is
computed from the model's parameters in float64, as the C program sets up in double, and the kernel runs in
``model.dtype``; every step is differentiable in the model's continuous parameters. Pixels are rendered in
chunks sized by a memory budget; with gradients, chunks are recomputed in the backward pass when keeping
them all would exceed the budget, so the backward fits the same budget as the forward.
"""
from __future__ import annotations

import importlib
import math
import sys
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from . import kernel as K
from . import physics
from .config import R_E_SQR
from .crystal import CrystalGeometry, build_crystal, mosaic_umats_from_draws, orientation_stack, reciprocal_from_cell
from .errors import UsageError
from .geometry import DetectorGeometry, pixel_positions, place_detector, unitize
from .model import SETUP_DTYPE, Model, check_discrete
from .validate import check_memory, validate_model

AVOGADRO = 6.02214179e23
WATER_F = 2.57
# Rough bytes of intermediates per evaluation (pixel x layer x sub-pixel x source x crystal x phi x domain).
_BYTES_PER_EVAL = 8 * 48
_BYTES_PER_EVAL_INTERP = 8 * (48 + 3 * 64 + 64)
# What autograd keeps for the backward, per evaluation: measured ~115 B (nearest F, gradient w.r.t. the
# orientation matrix and the distance, 1024² x 10 domains: 1.16 GB peak), kept with a margin; tricubic F keeps
# its 64 neighbours and their weights as well.
_BYTES_PER_EVAL_GRAD = 8 * 20
_BYTES_PER_EVAL_GRAD_INTERP = 8 * (20 + 3 * 64 + 64)
# Whole-image buffers per pixel besides the image and its chunks: the pixel index (int64, in torch and in the
# fused kernel), the rendered mask and the fused kernel's two per-pixel flags (bool).
_BYTES_PER_PIXEL = 8 + 8 + 1 + 2
# Evaluations per chunk on the CPU: intermediates of a few MB stay in cache and in malloc's reused heap.
_CPU_CHUNK_EVALS = 1 << 18
KERNELS = ("auto", "torch", "numba")


@dataclass
class RenderResult:
    """A render: ``image`` (spixels, fpixels) — or (B, spixels, fpixels) for a batch of crystals — in the
    model's dtype (0 outside the ROI/mask), the summed solid angle of the rendered pixels (C's report, before
    division by ``steps``), whether C's tricubic shut-off happened (per crystal), and the kernel used."""

    image: torch.Tensor
    omega_sum: float
    interpolation_disabled: torch.Tensor
    kernel: str


@dataclass
class Prepared:
    """The derived geometry and kernel arguments of a model (see ``prepare``)."""

    detector: DetectorGeometry  # placed, in the render dtype
    crystal: CrystalGeometry  # float64
    inputs: K.KernelInputs
    settings: K.KernelSettings


def _needs_grad(model: Model) -> bool:
    if not torch.is_grad_enabled():
        return False
    parts = (model.crystal, model.detector, model.beam, model.structure_factors)
    return any(isinstance(v, torch.Tensor) and v.requires_grad for p in parts for v in vars(p).values())


def _f64(x, device) -> torch.Tensor:
    return torch.as_tensor(x, dtype=SETUP_DTYPE, device=device)


def _value(x) -> float:
    """A scalar parameter's value (for decisions only; never a path for gradients)."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def crystal_geometry(model: Model) -> CrystalGeometry:
    """Real and reciprocal vectors after the misset, as C derives them from -cell and/or -mat (float64)."""
    c = model.crystal
    dev = model.device
    cell_lv = None
    if c.cell is not None:
        cell = _f64(c.cell, dev)
        a_star, b_star, c_star, V = reciprocal_from_cell(cell)
        cell_lv = (cell[..., 0], cell[..., 1], cell[..., 2], V)
    if c.matrix is not None:
        a_star, b_star, c_star = _f64(c.matrix, dev).unbind(-2)
    elif c.cell is None:
        raise UsageError("the crystal needs a cell or a reciprocal matrix")
    misset = _f64(c.misset, dev)
    if misset.dim() == 1 and not (misset.requires_grad or bool((misset != 0).any())):
        misset = None  # C applies no misset rotation at all
    cr = build_crystal((a_star, b_star, c_star), None, misset, cell_lv)
    batch = c.batch_shape
    if batch and cr.a0.shape[:-1] != batch:  # a batch given only through N or scale
        cr = CrystalGeometry(*(v.expand(*batch, 3) for v in (cr.a0, cr.b0, cr.c0, cr.a_star, cr.b_star, cr.c_star)),
                             volume=cr.volume.expand(batch))
    return cr


def mosaic_matrices(model: Model) -> torch.Tensor | None:
    """(D, 3, 3) mosaic domain rotations: C's matrices at the drawn spread; other spreads scale the angles."""
    c = model.crystal
    if c.mosaic_umats is None:
        return None
    dev = model.device
    spread = _f64(c.mosaic_spread, dev)
    ref = c.mosaic_reference_spread
    umats = _f64(c.mosaic_umats, dev)
    axes, angles = _f64(c.mosaic_axes, dev), _f64(c.mosaic_angles, dev)
    if ref > 0 and _value(spread) == ref:
        if spread.requires_grad and torch.is_grad_enabled():
            return physics.value_with_grad_of(umats, mosaic_umats_from_draws(axes, angles * (spread / ref)))
        return umats
    if ref <= 0:
        raise UsageError("mosaic domains drawn at zero spread cannot be rescaled; draw them at a finite spread")
    return mosaic_umats_from_draws(axes, angles * (spread / ref))


def orientations(model: Model, cr: CrystalGeometry) -> torch.Tensor:
    """(B, K, 3, 3) real-space vectors per crystal, phi step and mosaic domain (B = 1 for one crystal)."""
    c = model.crystal
    dev = model.device
    phis = _f64(c.phi0, dev) + _f64(c.phistep, dev) * torch.arange(c.phisteps, dtype=SETUP_DTYPE, device=dev)
    spindle = unitize(_f64(c.spindle_axis, dev))
    o = orientation_stack(cr, spindle, phis, mosaic_matrices(model))
    return o.reshape(-1, *o.shape[-3:]) if o.dim() > 3 else o[None]


def _water_background(water_size, fluence) -> torch.Tensor:
    """C's I_bg = F_bg^2 r_e^2 fluence (w^3 1e6 N_A / 18) (it carries r_e^2 fluence twice, as in C).

    The value is computed in Python doubles exactly as C's expression; gradients from the same formula.
    """
    def formula(w, f):
        return WATER_F * WATER_F * R_E_SQR * f * (w ** 3 * 1e6 * AVOGADRO / 18.0)

    value = torch.as_tensor(formula(_value(water_size), _value(fluence)), dtype=SETUP_DTYPE,
                            device=water_size.device)
    if (water_size.requires_grad or fluence.requires_grad) and torch.is_grad_enabled():
        return physics.value_with_grad_of(value, formula(water_size, fluence))
    return value


def prepare(model: Model) -> Prepared:
    """Derived geometry and kernel arguments for ``model`` (float64 setup, vectors cast to the render dtype);
    a quantity outside its physical domain is refused first (``validate.validate_model``)."""
    check_discrete(model)
    validate_model(model)
    dtype, dev = model.dtype, model.device
    cr = crystal_geometry(model)
    orient = orientations(model, cr)  # (B, K, 3, 3)
    B = orient.shape[0]
    c, det, beam, sf = model.crystal, model.detector, model.beam, model.structure_factors
    g = place_detector(det, _f64(beam.beam_vector, dev))
    g_render = DetectorGeometry(**{k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in vars(g).items()})

    N = _f64(c.N, dev).expand(*orient.shape[:-3], 3) if B > 1 else _f64(c.N, dev).reshape(3)
    nprod = N.prod(-1)
    shape_scale = nprod * physics.ROUND_XTAL_SCALE if c.shape == "round" else nprod
    n2 = nprod * nprod
    scale = R_E_SQR * _f64(beam.fluence, dev) / model.steps * _f64(c.scale, dev)
    recip = torch.stack((cr.a_star, cr.b_star, cr.c_star), dim=-2)
    if B > 1:  # per-crystal values in the render dtype, broadcasting as (B, 1)
        N_k = N[:, None, :].to(dtype)
        shape_scale, n2 = shape_scale[:, None].to(dtype), n2[:, None].to(dtype)
        scale = scale.expand(B)[:, None].to(dtype)
        recip = recip.expand(B, 3, 3)[:, None].to(dtype)
    else:
        N_k = N.to(dtype)
        scale = scale.reshape(())
        recip = recip.reshape(3, 3).to(dtype)
    n_integral = bool((N.detach() == torch.round(N.detach())).all())
    N_grad = isinstance(c.N, torch.Tensor) and c.N.requires_grad
    axes = tuple(range(3)) if N_grad else tuple(i for i in range(3) if bool((N.detach()[..., i] > 1).any()))

    table = sf.effective_table()
    if table is not None:
        grid = _f64(table, dev)
        padded = physics.pad_structure_factors(grid, sf.mins, sf.maxs, _f64(sf.default_F, dev)).to(dtype)
        grid = grid.to(dtype)
    else:
        grid = padded = torch.zeros((1, 1, 1), dtype=dtype, device=dev)
    weights = _f64(beam.source_weights, dev)
    kahn = _f64(beam.kahn, dev)
    thickstep = _f64(det.thickstep, dev)
    inputs = K.KernelInputs(
        odet=g_render.odet, close_distance=g.close_distance,
        incident=(-unitize(_f64(beam.source_directions, dev))).to(dtype),
        wavelengths=beam.wavelengths().to(dtype), weights=weights.to(dtype), orientations=orient.to(dtype),
        recip=recip, polar_axis=unitize(_f64(beam.polar_vector, dev)).to(dtype), F_grid=grid, F_padded=padded,
        default_F=_f64(sf.default_F, dev), N=N_k, shape_scale=shape_scale, n2=n2, fudge=_f64(c.fudge, dev),
        kahn=kahn, pixel_area=_f64(det.pixel_size, dev) ** 2, thick_mu=thickstep * _f64(det.mu, dev),
        I_bg=_water_background(_f64(beam.water_size, dev), _f64(beam.fluence, dev)), scale=scale,
    )
    sm = model.sampling
    settings = K.KernelSettings(
        shape=c.shape, lattice_axes=axes, c_form=n_integral, kahn=kahn.requires_grad or _value(kahn) != 0.0,
        nopolar=beam.nopolar, point_pixel=det.point_pixel, thick=_value(det.thickness) > 0.0,
        dmin=_value(beam.dmin), water=_value(beam.water_size) != 0.0, interpolate=sf.interpolate,
        has_table=table is not None, hkl_mins=tuple(sf.mins), hkl_maxs=tuple(sf.maxs),
        oversample_thick=sm.oversample_thick, oversample_polar=sm.oversample_polar,
        oversample_omega=sm.oversample_omega, weighted=weights.requires_grad or bool((weights != 1).any()),
        batch=B,
    )
    return Prepared(detector=g_render, crystal=cr, inputs=inputs, settings=settings)


def _evaluations_per_pixel(model: Model) -> int:
    """Kernel evaluations per pixel: layers x sub-pixels x sources x crystals x phi steps x mosaic domains."""
    batch = math.prod(model.crystal.batch_shape)
    return (model.detector.thicksteps * model.sampling.oversample ** 2 * model.beam.sources * batch
            * model.crystal.phisteps * model.crystal.mosaic_domains)


def memory_needs(model: Model) -> tuple[int, int]:
    """(bytes of the whole-image buffers, bytes of the eager kernel's intermediates per pixel) of a render:
    the image and its chunks, the pixel index and mask; every evaluation of a pixel at once."""
    det = model.detector
    item = torch.finfo(model.dtype).bits // 8
    batch = math.prod(model.crystal.batch_shape)
    image = det.fpixels * det.spixels * (_BYTES_PER_PIXEL + 2 * item * batch)
    per = _BYTES_PER_EVAL_INTERP if model.structure_factors.interpolate else _BYTES_PER_EVAL
    if model.dtype == torch.float32:
        per //= 2
    return image, _evaluations_per_pixel(model) * per


def chunk_pixels(model: Model, prep: Prepared, max_memory_gb: float, grad: bool) -> tuple[int, bool]:
    """(pixels per chunk, recompute chunks in the backward) from what the budget leaves beside the image."""
    det = model.detector
    evals = _evaluations_per_pixel(model)
    image, per_pixel = memory_needs(model)
    budget = max_memory_gb * 2**30 - image
    n = budget // max(1, per_pixel)
    if model.device.type == "cpu":
        n = min(n, _CPU_CHUNK_EVALS // max(1, evals))
    pixels = det.fpixels * det.spixels
    per_grad = _BYTES_PER_EVAL_GRAD_INTERP if model.structure_factors.interpolate else _BYTES_PER_EVAL_GRAD
    recompute = grad and pixels * evals * per_grad > budget
    return int(max(1, min(pixels, n))), recompute


def _fused_module(kernel: str, model: Model, prep: Prepared, grad: bool):
    """The fused CPU kernel module when it renders this model, else None (the eager kernel).

    auto: fused on the CPU when numba imports and no gradient is needed, for one crystal with integer N and
    unweighted sources (the cases it implements); numba: the same or a one-line usage error saying why not.
    """
    if kernel == "torch":
        return None
    s = prep.settings
    why = ("autograd" if grad else model.device.type if model.device.type != "cpu" else
           "a batch of crystals" if s.batch > 1 else "non-integer N" if not s.c_form else
           "weighted sources" if s.weighted else None)
    return compiled_kernel(kernel, why, "fused")


def compiled_kernel(kernel: str, why: str | None, module: str):
    """The compiled CPU kernel module ``module`` of this package (numba) when ``kernel`` ("auto" or "numba")
    may use it and nothing rules it out (``why``: the reason it cannot render, or None), else None: the eager
    kernel. With "numba" a reason (or numba missing) is a one-line usage error."""
    if kernel not in KERNELS:
        raise UsageError(f"-kernel: expected one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "torch":
        return None
    if why is None:
        try:
            return importlib.import_module(f".{module}", __package__)
        except ImportError:
            why = "numba is not installed (pip install numba)"
    if kernel == "numba":
        raise UsageError(f"-kernel numba: the fused CPU kernel does not render {why}; use -kernel torch"
                         if not why.startswith("numba") else f"-kernel numba: {why}")
    return None


def render_details(model: Model, *, kernel: str = "auto", max_memory_gb: float = 2.0,
                   progress: bool | None = None) -> RenderResult:
    """Render ``model``; see ``RenderResult``. ``kernel``: "auto" (the compiled CPU kernel when it is
    available and no gradient is needed, else the eager one), "torch" (eager) or "numba" (compiled)."""
    if kernel not in KERNELS:
        raise UsageError(f"-kernel: expected one of {', '.join(KERNELS)}, got {kernel!r}")
    grad = _needs_grad(model)
    prep = prepare(model)
    det = model.detector
    dev = model.device
    B = prep.settings.batch
    fused = _fused_module(kernel, model, prep, grad)
    check_memory(model, max_memory_gb, eager=fused is None)  # before any buffer of the image's size
    npix = det.fpixels * det.spixels
    full = det.renders_every_pixel()  # no index list to search, no scatter
    rendered = None if full else det.rendered_mask().reshape(-1)
    os_ = model.sampling.oversample
    if fused is not None:
        idx = None if full else torch.nonzero(rendered).reshape(-1)
        bar = _progress(npix if full else idx.numel(), progress)
        try:
            v, om, still = fused.render(prep.detector, idx, prep.inputs, prep.settings, det.fpixels,
                                        _value(det.pixel_size), os_, _value(det.thickstep), det.thicksteps,
                                        det.curved, progress=bar.update if bar is not None else None, npix=npix)
        finally:  # also on Ctrl-C: the bar is cleared, so the CLI's one line stays the only one
            if bar is not None:
                bar.close()
        values, omega_sum, interp = [v[None]], om, still.reshape(1)
    else:
        idx = torch.arange(npix, device=dev) if full else torch.nonzero(rendered).reshape(-1)
        values, omega_sum, interp = _render_eager(model, prep, idx, max_memory_gb, grad, progress)
    image = values[0] if full and len(values) == 1 else torch.zeros(B, npix, dtype=model.dtype, device=dev)
    if not full and values:
        image = image.index_copy(1, idx, torch.cat(values, dim=1))
    elif full and len(values) > 1:
        image = torch.cat(values, dim=1)
    image = image.reshape(B, det.spixels, det.fpixels)
    if not model.crystal.batch_shape:
        image, interp = image[0], interp[0]
    return RenderResult(image=image, omega_sum=float(omega_sum), interpolation_disabled=~interp,
                        kernel="torch" if fused is None else "numba")


def _render_eager(model: Model, prep: Prepared, idx: torch.Tensor, max_memory_gb: float, grad: bool, progress):
    """The eager kernel over chunks of ``idx`` in raster order: (values per chunk (B, P), omega sum,
    interpolation still enabled (B,)). Chunks are recomputed in the backward when the budget needs it."""
    det = model.detector
    dev = model.device
    chunk, recompute = chunk_pixels(model, prep, max_memory_gb, grad)
    sub = _f64(det.pixel_size, dev)
    thickstep = _f64(det.thickstep, dev)
    os_ = model.sampling.oversample

    def one_chunk(sel, interp):
        pos = pixel_positions(prep.detector, sel % det.fpixels, sel // det.fpixels, sub, os_, thickstep,
                              det.thicksteps, det.curved)
        return K.render_chunk(pos, prep.inputs, prep.settings, interp)

    interp = torch.ones(prep.settings.batch, dtype=torch.bool, device=dev)
    omega_sum = torch.zeros((), dtype=model.dtype, device=dev)
    starts = range(0, idx.numel(), chunk)
    bar = _progress(len(starts), progress)
    values = []
    try:
        for start in starts:
            sel = idx[start:start + chunk]
            if recompute:
                v, om, interp = _checkpoint(one_chunk, sel, interp, use_reentrant=False)
            else:
                v, om, interp = one_chunk(sel, interp)
            values.append(v)
            omega_sum = omega_sum + om.detach().sum()
            if bar is not None:
                bar.update(1)
    finally:  # also on Ctrl-C: the bar is cleared, so the CLI's one line stays the only one
        if bar is not None:
            bar.close()
    return values, omega_sum, interp


def render(model: Model, **kw) -> torch.Tensor:
    """The float image of ``model``: (spixels, fpixels), or (B, spixels, fpixels) for a batch of crystals."""
    return render_details(model, **kw).image


def _progress(total: int, progress: bool | None):
    """A tqdm bar on stderr: always when asked, never when refused, else only for renders over ~2 s."""
    if progress is False or total <= 1:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc="rendering", unit="chunk", file=sys.stderr, delay=0 if progress else 2.0,
                leave=False)


__all__ = ["render", "render_details", "prepare", "RenderResult", "Prepared", "crystal_geometry"]
