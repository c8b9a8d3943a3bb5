"""``render(model)``: the model's tensors -> a float image. Pure: no file is read or written here.

The derived geometry (placed detector, crystal vectors per phi step and mosaic domain, source list) is
computed from the model's parameters in float64, as the C program sets up in double, and the kernel runs in
``model.dtype``; every step is differentiable in the model's continuous parameters. Pixels are rendered in
chunks sized by a memory budget; with gradients, chunks are recomputed in the backward pass when keeping
them all would exceed the budget, so the backward fits the same budget as the forward.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from . import kernel as K
from . import physics
from .budget import check_memory, chunk_pixels
from .constants import R_E_SQR
from .engine import KERNELS, compiled_kernel
from .crystal import CrystalGeometry, crystal_geometry, mosaic_umats_from_draws, orientation_stack
from .errors import UsageError
from .geometry import DetectorGeometry, pixel_positions, unitize
from .model import SETUP_DTYPE, Model, check_discrete, setup_tensor
from .panels import Panels, place
from .validate import validate_model

# Rough bytes of intermediates per evaluation (pixel x layer x sub-pixel x source x crystal x phi x domain).


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




def _value(x) -> float:
    """A scalar parameter's value (for decisions only; never a path for gradients)."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def mosaic_matrices(model: Model) -> torch.Tensor | None:
    """(D, 3, 3) mosaic domain rotations: C's matrices at the drawn spread; other spreads scale the angles."""
    c = model.crystal
    if c.mosaic_umats is None:
        return None
    dev = model.device
    spread = setup_tensor(c.mosaic_spread, dev)
    ref = c.mosaic_reference_spread
    umats = setup_tensor(c.mosaic_umats, dev)
    axes, angles = setup_tensor(c.mosaic_axes, dev), setup_tensor(c.mosaic_angles, dev)
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
    steps = torch.arange(c.phisteps, dtype=SETUP_DTYPE, device=dev)
    phis = setup_tensor(c.phi0, dev) + setup_tensor(c.phistep, dev) * steps
    spindle = unitize(setup_tensor(c.spindle_axis, dev))
    o = orientation_stack(cr, spindle, phis, mosaic_matrices(model))
    return o.reshape(-1, *o.shape[-3:]) if o.dim() > 3 else o[None]


def _water_background(water_size, fluence) -> torch.Tensor:
    """C's I_bg = F_bg^2 r_e^2 fluence (w^3 1e6 N_A / 18) (it carries r_e^2 fluence twice, as in C).

    The value is computed in Python doubles exactly as C's expression; gradients from the same formula.
    """
    formula = physics.water_background
    value = torch.as_tensor(formula(_value(water_size), _value(fluence)), dtype=SETUP_DTYPE,
                            device=water_size.device)
    if (water_size.requires_grad or fluence.requires_grad) and torch.is_grad_enabled():
        return physics.value_with_grad_of(value, formula(water_size, fluence))
    return value


def _crystal_terms(model: Model, cr, orient: torch.Tensor):
    """The crystal's kernel terms in the render dtype: N, the shape-factor scale, N^2, the overall scale, the
    reciprocal vectors (per crystal (B, 1, ...) for a batch), whether N is integral (C's form of the grating)
    and the axes whose grating is not 1."""
    dtype, dev = model.dtype, model.device
    c, beam = model.crystal, model.beam
    B = orient.shape[0]
    N = setup_tensor(c.N, dev).expand(*orient.shape[:-3], 3) if B > 1 else setup_tensor(c.N, dev).reshape(3)
    nprod = N.prod(-1)
    shape_scale = nprod * physics.ROUND_XTAL_SCALE if c.shape == "round" else nprod
    n2 = nprod * nprod
    scale = R_E_SQR * setup_tensor(beam.fluence, dev) / model.steps * setup_tensor(c.scale, dev)
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
    return N_k, shape_scale, n2, scale, recip, n_integral, axes


def _structure_factor_grids(model: Model):
    """(F grid, F grid padded for interpolation, the table or None) in the render dtype; a placeholder grid
    without a table."""
    dtype, dev, sf = model.dtype, model.device, model.structure_factors
    table = sf.effective_table()
    if table is None:
        grid = torch.zeros((1, 1, 1), dtype=dtype, device=dev)
        return grid, grid, None
    grid = setup_tensor(table, dev)
    padded = physics.pad_structure_factors(grid, sf.mins, sf.maxs, setup_tensor(sf.default_F, dev)).to(dtype)
    return grid.to(dtype), padded, table


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
    g = place(det, setup_tensor(beam.beam_vector, dev))
    g_render = DetectorGeometry(**{k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in vars(g).items()})

    N_k, shape_scale, n2, scale, recip, n_integral, axes = _crystal_terms(model, cr, orient)
    grid, padded, table = _structure_factor_grids(model)
    weights = setup_tensor(beam.source_weights, dev)
    kahn = setup_tensor(beam.kahn, dev)
    thickstep = setup_tensor(det.thickstep, dev)
    inputs = K.KernelInputs(
        odet=g_render.odet, close_distance=g_render.close_distance if isinstance(det, Panels) else g.close_distance,
        incident=(-unitize(setup_tensor(beam.source_directions, dev))).to(dtype),
        wavelengths=beam.wavelengths().to(dtype), weights=weights.to(dtype), orientations=orient.to(dtype),
        recip=recip, polar_axis=unitize(setup_tensor(beam.polar_vector, dev)).to(dtype), F_grid=grid, F_padded=padded,
        default_F=setup_tensor(sf.default_F, dev), N=N_k, shape_scale=shape_scale, n2=n2,
        fudge=setup_tensor(c.fudge, dev),
        kahn=kahn, pixel_area=setup_tensor(det.pixel_size, dev) ** 2, thick_mu=thickstep * setup_tensor(det.mu, dev),
        I_bg=_water_background(setup_tensor(beam.water_size, dev), setup_tensor(beam.fluence, dev)), scale=scale,
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


def backward_gap(model: Model, prep: Prepared) -> str | None:
    """What the fused backward (``fused_grad``) does not cover for this model (None: it renders it with gradients);
    the eager kernel's autograd renders those: other crystal shapes, tricubic F, the
    -oversample_thick/-polar/-omega flags, the curved detector, and gradients w.r.t. the sources, wavelengths,
    polarization or the sensor (the reciprocal vectors and fudge enter only other shapes)."""
    s, inp, det = prep.settings, prep.inputs, model.detector
    others = [name for name in ("incident", "wavelengths", "weights", "polar_axis", "kahn", "thick_mu")
              if getattr(inp, name).requires_grad]
    return ("a crystal shape other than square" if s.shape != "square" else
            "tricubic F" if s.interpolate and s.has_table else
            "the -oversample_thick/-polar/-omega flags" if s.oversample_thick or s.oversample_polar
            or s.oversample_omega else
            "a curved detector" if det.curved else
            f"gradients w.r.t. {', '.join(others)}" if others else None)


def _fused_module(kernel: str, model: Model, prep: Prepared, grad: bool):
    """The fused CPU kernel module when it renders this model, else None (the eager kernel).

    auto: fused on the CPU when numba imports, for one crystal with integer N and unweighted sources (the cases
    it implements); with gradients, ``fused_grad`` (the same forward and a compiled backward) where
    ``backward_gap`` finds nothing it lacks; numba: the same or a one-line usage error saying why not.
    """
    if kernel == "torch":
        return None
    s = prep.settings
    why = (model.device.type if model.device.type != "cpu" else
           "a batch of crystals" if s.batch > 1 else "non-integer N" if not s.c_form else
           "weighted sources" if s.weighted else None)
    if grad and why is None:
        gap = backward_gap(model, prep)
        why = None if gap is None else gap if gap.startswith("gradients") else f"{gap} with gradients"
    return compiled_kernel(kernel, why, "fused_grad" if grad else "fused")


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
    npix = math.prod(det.shape)  # every panel's pixels
    per = det.fpixels * det.spixels if isinstance(det, Panels) else 0  # pixels of one panel (0: one Detector)
    full = det.renders_every_pixel()  # no index list to search, no scatter
    rendered = None if full else det.rendered_mask().reshape(-1)
    os_ = model.sampling.oversample
    if fused is not None:
        idx = None if full else torch.nonzero(rendered).reshape(-1)
        bar = _progress(npix if full else idx.numel(), progress)
        try:
            pixel = setup_tensor(det.pixel_size, dev) if grad else _value(det.pixel_size)
            v, om, still = fused.render(prep.detector, idx, prep.inputs, prep.settings, det.fpixels, pixel, os_,
                                        _value(det.thickstep), det.thicksteps, det.curved,
                                        progress=bar.update if bar is not None else None, npix=npix, panel_pixels=per)
        finally:  # also on Ctrl-C: the bar is cleared, so the CLI's one line stays the only one
            if bar is not None:
                bar.close()
        values, omega_sum, interp = [v[None]], om, still.reshape(1)
    else:
        idx = torch.arange(npix, device=dev) if full else torch.nonzero(rendered).reshape(-1)
        values, omega_sum, interp = _render_eager(model, prep, idx, per, max_memory_gb, grad, progress)
    image = values[0] if full and len(values) == 1 else torch.zeros(B, npix, dtype=model.dtype, device=dev)
    if not full and values:
        image = image.index_copy(1, idx, torch.cat(values, dim=1))
    elif full and len(values) > 1:
        image = torch.cat(values, dim=1)
    image = image.reshape(B, *det.shape)
    if not model.crystal.batch_shape:
        image, interp = image[0], interp[0]
    return RenderResult(image=image, omega_sum=float(omega_sum), interpolation_disabled=~interp,
                        kernel="torch" if fused is None else "numba")


def _render_eager(model: Model, prep: Prepared, idx: torch.Tensor, per: int, max_memory_gb: float, grad: bool,
                  progress):
    """The eager kernel over chunks of ``idx`` in raster order (``per``: pixels of one panel, 0 for C's
    single Detector): (values per chunk (B, P), omega sum, interpolation still enabled (B,)). Chunks are
    recomputed in the backward when the budget needs it."""
    det = model.detector
    dev = model.device
    chunk, limit, recompute = chunk_pixels(model, max_memory_gb, grad)
    sub = setup_tensor(det.pixel_size, dev)
    thickstep = setup_tensor(det.thickstep, dev)
    os_ = model.sampling.oversample

    whole = per and idx.numel() == det.panels * per  # every pixel (idx = arange)
    if whole:  # one panel's (fast, slow) pixel indices, shared by every chunk of whole panels
        local = torch.arange(per, device=dev)
        panel_fs = (local % det.fpixels, local // det.fpixels)
    bounds = _chunk_bounds(idx.numel(), chunk, per if whole else 0, limit)
    spans = [(0, 0)] * len(bounds)
    if per:  # the panel of each chunk's first and last pixel (idx ascends), one copy to the host for all chunks
        ends = (idx[[a for a, _ in bounds]] // per, idx[[b - 1 for _, b in bounds]] // per)
        spans = list(zip(ends[0].tolist(), ends[1].tolist()))

    def one_chunk(sel, interp, first: int, last: int):
        geom, inputs = prep.detector, prep.inputs
        if per and first == last:  # a chunk inside one panel: that panel's vectors, as for a single panel
            sel = sel - first * per
            geom = replace(geom, **{k: getattr(geom, k)[first] for k in ("pix0", "fdet", "sdet", "odet")})
            inputs = replace(inputs, odet=geom.odet, close_distance=inputs.close_distance[first])
        elif whole and sel.numel() == (last - first + 1) * per:  # whole panels: their vectors broadcast
            return K.render_chunk(_whole_panels(prep, det, first, last, panel_fs, sub, os_, thickstep), replace(
                inputs, odet=_per_pixel(prep.detector.odet, first, last, per)[:, None, None, :],
                close_distance=_per_pixel(inputs.close_distance, first, last, per)[:, None, None]),
                prep.settings, interp)
        elif per:  # across panels: each pixel's panel vectors, gathered and broadcast per pixel
            panel, sel = sel // per, sel % per
            geom = panel_pixels(geom, panel)
            inputs = replace(inputs, odet=geom.odet, close_distance=inputs.close_distance[panel][:, None, None])
        pos = pixel_positions(geom, sel % det.fpixels, sel // det.fpixels, sub, os_, thickstep,
                              det.thicksteps, det.curved)
        return K.render_chunk(pos, inputs, prep.settings, interp)

    interp = torch.ones(prep.settings.batch, dtype=torch.bool, device=dev)
    omega_sum = torch.zeros((), dtype=model.dtype, device=dev)
    bar = _progress(idx.numel(), progress)
    values = []
    try:
        for (start, stop), (first, last) in zip(bounds, spans):
            sel = idx[start:stop]
            if recompute:
                v, om, interp = _checkpoint(one_chunk, sel, interp, first, last, use_reentrant=False)
            else:
                v, om, interp = one_chunk(sel, interp, first, last)
            values.append(v)
            omega_sum = omega_sum + om.detach().sum()
            if bar is not None:
                bar.update(sel.numel())
    finally:  # also on Ctrl-C: the bar is cleared, so the CLI's one line stays the only one
        if bar is not None:
            bar.close()
    return values, omega_sum, interp


def _chunk_bounds(n: int, chunk: int, per: int, limit: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) of each chunk of ``n`` pixels, each as near ``chunk`` pixels as whole units allow (never over
    ``limit``, default ``chunk``), the sizes differing by at most one unit (no small tail chunk). With panels of
    ``per`` pixels (0: none to respect; ``n`` is then a whole number of panels) the units are whole panels, or
    pixels of one panel: a chunk never holds parts of two. Each chunk costs a fixed Python and dispatch overhead,
    so e.g. 64 panels of 4096 pixels aiming at 13107 go three or so to a chunk, not one."""
    if n <= 0:
        return []
    limit = chunk if limit is None else max(limit, 1)
    chunk = max(1, min(chunk, limit))
    if per and n % per:
        raise ValueError(f"{n} pixels are not a whole number of panels of {per}")
    if per and per <= chunk:  # whole panels, ~chunk/per to a chunk
        panels = n // per
        groups = -(-panels // max(1, min(round(chunk / per), limit // per)))
        return [(per * a, per * b) for a, b in _even(panels, groups)]
    whole = per or n  # parts of one panel (or of the whole image)
    parts = max(1, round(whole / chunk), -(-whole // limit))
    return [(p + a, p + b) for p in range(0, n, whole) for a, b in _even(whole, parts)]


def _even(count: int, parts: int) -> list[tuple[int, int]]:
    """``count`` units cut into ``parts`` consecutive runs whose lengths differ by at most one."""
    q, r = divmod(count, parts)
    edges = [k * q + min(k, r) for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _whole_panels(prep: Prepared, det: Panels, first: int, last: int, panel_fs, sub, os_: int,
                  thickstep) -> torch.Tensor:
    """Positions (n, T, S, 3) of every pixel of panels first .. last: each panel's vectors broadcast over its
    own pixels (``panel_fs``: one panel's fast and slow indices, raster order; none gathered per pixel), panel
    by panel."""
    geom = replace(prep.detector, **{k: getattr(prep.detector, k)[first:last + 1][:, None, None, None, :]
                                     for k in ("pix0", "fdet", "sdet", "odet")})
    return pixel_positions(geom, *panel_fs, sub, os_, thickstep, det.thicksteps, det.curved).flatten(0, 1)


def _per_pixel(per_panel: torch.Tensor, first: int, last: int, per: int) -> torch.Tensor:
    """The rows first .. last of a per-panel tensor, each repeated for the ``per`` pixels of its panel."""
    rows = per_panel[first:last + 1, None]
    return rows.expand(rows.shape[0], per, *per_panel.shape[1:]).reshape(-1, *per_panel.shape[1:])


def panel_pixels(geom: DetectorGeometry, panel: torch.Tensor) -> DetectorGeometry:
    """The panel vectors of each pixel of a chunk, (n, 1, 1, 3) — the shape ``pixel_positions`` and the
    kernel broadcast against (pixel, layer, sub-pixel)."""
    return replace(geom, **{k: getattr(geom, k)[panel][:, None, None, :] for k in ("pix0", "fdet", "sdet", "odet")})


def render(model: Model, **kw) -> torch.Tensor:
    """The float image of ``model``: (spixels, fpixels), or (B, spixels, fpixels) for a batch of crystals;
    a ``Panels`` detector gives (P, spixels, fpixels) (or (B, P, spixels, fpixels)), panel 0 first."""
    return render_details(model, **kw).image


def _progress(total: int, progress: bool | None):
    """A tqdm bar on stderr counting pixels (``total`` of them): always when asked, never when refused, else only
    for renders over ~2 s."""
    if progress is False or total <= 1:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc="rendering", unit="pixel", unit_scale=True, file=sys.stderr,
                delay=0 if progress else 2.0, leave=False)


__all__ = ["render", "render_details", "prepare", "RenderResult", "Prepared"]
