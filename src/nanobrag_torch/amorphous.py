"""Amorphous scattering (the C program nonBragg): pure torch physics and its render (§12).

A disordered sample (water, air, ice, a protein solution) scatters with a structure factor F that depends only
on sin(theta)/lambda, given as a table (a ``.stol`` file, ``io.stol``). Every pixel collects
``sign(F) F^2 x polarization x solid angle x source weight``, summed over sub-pixels and sources and scaled
by ``r_e^2 x fluence x scatterers / steps`` (photons per pixel).

``render_amorphous(detector, beam, sample, oversample)`` renders onto any ``model.Detector``/``model.Beam``
(the same geometry code as the Bragg render); ``render_background(model, sample)`` renders onto a Bragg
model's detector and beam, so that ``render(model) + render_background(model, water)`` is the Bragg image
with its amorphous background, in the same units, before noise.

Arithmetic follows C's order (the norms as x*x + y*y + z*z, the interpolation term by term, the pixel sum
term by term in C's loop order), so float64 images match the C program's. The table search and the
interpolation always run in float64: C pads the table with +-1e98, which float32 cannot hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import AVOGADRO, R_E_SQR
from .engine import compiled_kernel
from .geometry import DetectorGeometry, pixel_positions, place_detector
from .model import SETUP_DTYPE, Beam, Detector, setup_tensor
from .physics import polarization_factor, polarization_frame, walk_node

# Units of the table's abscissa -> sin(theta)/lambda in 1/m, by the flag naming the file (§12.2).
STOL_UNITS = {"stol": 1e10, "4stol": 1e10 / 4, "Q": 1e10 / math.pi / 4}
# C's table padding: two nodes far below and two far above the file's values.
PAD_LOW = (-1e99, -1e98)
PAD_HIGH = (1e98, 1e99)
_EVALS_PER_CHUNK = 1 << 18  # (pixel x sub-pixel x source) evaluations per chunk


# ----------------------------------------------------------------------------------------- physics
def norm_c(v: torch.Tensor) -> torch.Tensor:
    """C magnitude(): sqrt(x*x + y*y + z*z), summed left to right, of (..., 3) (torch sums three terms in order)."""
    return torch.sqrt((v * v).sum(-1))


def unitize_c(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """C unitize(): (v/|v|, |v|) with C's norm; a zero vector stays zero."""
    n = norm_c(v)
    nz = (n != 0)[..., None]
    return torch.where(nz, v / torch.where(nz, n[..., None], torch.ones_like(n[..., None])), torch.zeros_like(v)), n


def unitize_fixed_point(v: torch.Tensor, limit: int = 8) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """C's repeated in-place unitize() of one vector: the sequence v, unit(v), unit(unit(v)), ... up to the
    first repeat (at most ``limit`` steps). Returns (the fixed point, the sequence without v)."""
    seq = []
    cur = v
    for _ in range(limit):
        nxt, _ = unitize_c(cur)
        seq.append(nxt)
        if bool((nxt == cur).all()):
            break
        cur = nxt
    return seq[-1], seq


def stol_table(x: torch.Tensor, F: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """C's interpolation table from a .stol file (§12.2): abscissae x*scale (1/m) between two nodes at -1e99,
    -1e98 and two at 1e98, 1e99; a missing F (NaN) is 0, and the end nodes repeat the first and the last F
    given in the file. Differentiable in ``x`` and ``F``."""
    given = ~torch.isnan(F)
    idx = torch.arange(F.shape[0], device=F.device)
    first = int(idx[given].min())
    last = int(idx[given].max())
    F0 = torch.where(given, F, torch.zeros_like(F))
    lo = torch.as_tensor(PAD_LOW, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(PAD_HIGH, dtype=x.dtype, device=x.device)
    xa = torch.cat((lo, x * scale, hi))
    ya = torch.cat((F[first].expand(2), F0, F[last].expand(2)))
    return xa, ya


def stol_index(stol: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
    """C's table search for an increasing table: the last node at or below ``stol`` (C never leaves
    [1, len - 3]); the cubic then goes through nodes index-1 .. index+2."""
    i = torch.searchsorted(xa, stol.contiguous(), right=True) - 1
    return i.clamp(1, xa.shape[0] - 3)


def _walk_py(xa: np.ndarray, stols: np.ndarray, start: int, out: np.ndarray) -> int:
    n = start
    for k in range(stols.shape[0]):
        n = walk_node(xa, stols[k], n)
        out[k] = n
    return n


def stol_walk(xa: np.ndarray, stols: np.ndarray, start: int) -> tuple[np.ndarray, int]:
    """C's stateful table search, for any table: from the previous position, step up while stol is above the
    node and down while it is below (not under index 1); ``stols`` in C's loop order. Returns (indices, the
    position the next search starts from). For an increasing table it equals ``stol_index``. Compiled
    (``fused_amorphous.walk_table``) when numba imports."""
    try:
        from .fused_amorphous import walk_table
    except ImportError:  # pragma: no cover - numba missing
        walk_table = _walk_py
    out = np.empty(stols.shape[0], dtype=np.int64)
    end = walk_table(np.ascontiguousarray(xa, dtype=np.float64), np.ascontiguousarray(stols, dtype=np.float64),
                     int(start), out)
    return out, int(end)


def polint4(xa: torch.Tensor, ya: torch.Tensor, x: torch.Tensor, den: torch.Tensor | None = None) -> torch.Tensor:
    """C polint(): the cubic through the four points (xa[..., k], ya[..., k]) at x, Lagrange terms in C's order.
    ``den``: the four denominators prod_{j != k} (xa_k - xa_j) when already computed (``node_denominators``)."""
    a0, a1, a2, a3 = xa.unbind(-1)
    y0, y1, y2, y3 = ya.unbind(-1)
    if den is None:
        den = node_denominators(xa)
    D0, D1, D2, D3 = den.unbind(-1)
    d0, d1, d2, d3 = x - a0, x - a1, x - a2, x - a3
    return d1 * d2 * d3 * y0 / D0 + d0 * d2 * d3 * y1 / D1 + d0 * d1 * d3 * y2 / D2 + d0 * d1 * d2 * y3 / D3


def node_denominators(xa: torch.Tensor) -> torch.Tensor:
    """(..., 4) Lagrange denominators of four nodes (..., 4), each product taken in C's order."""
    a0, a1, a2, a3 = xa.unbind(-1)
    return torch.stack(((a0 - a1) * (a0 - a2) * (a0 - a3), (a1 - a0) * (a1 - a2) * (a1 - a3),
                        (a2 - a0) * (a2 - a1) * (a2 - a3), (a3 - a0) * (a3 - a1) * (a3 - a2)), dim=-1)


def table_windows(xa: torch.Tensor, ya: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every table index i, the four nodes i-1 .. i+2 C's cubic uses, their F and denominators:
    three (len, 4) tensors (rows outside 1 .. len-3 repeat the nearest valid one; C never uses them)."""
    n = xa.shape[0]
    start = torch.arange(n, device=xa.device).clamp(1, n - 3)[:, None] + torch.arange(-1, 3, device=xa.device)
    nodes = xa[start]
    return nodes, ya[start], node_denominators(nodes)


def interpolate_F(stol: torch.Tensor, xa: torch.Tensor, ya: torch.Tensor, index: torch.Tensor,
                  windows: tuple | None = None) -> torch.Tensor:
    """F at ``stol`` by C's cubic through table nodes index-1 .. index+2 (§12.3); ``windows``: the table's
    ``table_windows`` when already computed."""
    nodes, F, den = windows if windows is not None else table_windows(xa, ya)
    return polint4(nodes[index], F[index], stol, den[index])


def scattering_stol(diffracted: torch.Tensor, incident: torch.Tensor, wavelength: torch.Tensor) -> torch.Tensor:
    """sin(theta)/lambda = |(d - i)/lambda| / 2 for unit diffracted d and incident i (C's order). On the beam
    (d = i) the value is 0 and the derivative is taken as 0 (|S| has none there)."""
    S = (diffracted - incident) / wavelength[..., None]
    s2 = (S * S).sum(-1)
    zero = s2 == 0
    return 0.5 * torch.where(zero, torch.zeros_like(s2), torch.sqrt(torch.where(zero, torch.ones_like(s2), s2)))


def pixel_solid_angle(airpath: torch.Tensor, pixel_size, close_distance, point_pixel: bool) -> torch.Tensor:
    """C's solid angle of a (sub-)pixel at distance R: pixel^2/R/R*close/R (the whole pixel's area, with
    obliquity), or 1/R/R with -point_pixel (§12.3)."""
    if point_pixel:
        return 1.0 / airpath / airpath
    return pixel_size * pixel_size / airpath / airpath * close_distance / airpath


def signed_intensity(F: torch.Tensor) -> torch.Tensor:
    """C's sign(F) F^2: a negative F gives a negative intensity."""
    sign = torch.where(F < 0, -torch.ones_like(F), torch.ones_like(F))
    return sign * F * F


def scatterer_count(volume, density, molecular_weight):
    """Molecules in the illuminated volume: volume (m^3) x density (g/m^3) x Avogadro / molecular weight."""
    return volume * density * AVOGADRO / molecular_weight


def density_from_molecules(molecules, volume, molecular_weight):
    """C's inverse of ``scatterer_count`` for -molecules: the density (g/m^3) that gives that many."""
    return molecules / volume / AVOGADRO * molecular_weight


# ----------------------------------------------------------------------------------------- the sample
@dataclass
class AmorphousSample:
    """An amorphous sample: C's padded table (``stol`` in 1/m, ``F``; see ``stol_table``) and the number of
    scatterers in the beam (``molecules``). ``increasing``: the table's abscissae increase (a binary search
    finds C's nodes); otherwise C's stateful table walk is reproduced (CPU, no batching across pixels)."""

    stol: torch.Tensor
    F: torch.Tensor
    molecules: torch.Tensor | float
    increasing: bool = True

    def to(self, device) -> AmorphousSample:
        m = self.molecules
        return AmorphousSample(self.stol.to(device), self.F.to(device),
                               m.to(device) if isinstance(m, torch.Tensor) else m, self.increasing)


def sample_volume(thickness: float, width: float, height: float, beamsize: float | None = None) -> float:
    """C's illuminated volume (m^3): thickness x width x height, width and height clipped to the beam size."""
    if beamsize is not None and beamsize >= 0:
        width, height = min(width, beamsize), min(height, beamsize)
    return thickness * width * height


def amorphous_sample(table, *, unit: str = "stol", thickness: float = 1e-4, width: float = 1e-4,
                     height: float = 1e-4, density: float = 1.0, molecular_weight: float = 18.0,
                     molecules: float | None = None, beamsize: float | None = 1e-4, device=None) -> AmorphousSample:
    """An ``AmorphousSample`` from a .stol table (an ``io.stol.StolFile`` or a path) and nonBragg's sample
    flags: sizes in m (width and height clipped to ``beamsize``, as C), ``density`` in g/cm^3,
    ``molecular_weight`` in g/mol; ``molecules`` (if given) fixes the count instead of the density.
    ``unit``: what the file's first column holds — "stol" (sin(theta)/lambda), "4stol" or "Q" (1/A)."""
    from .io.stol import read_stol

    if not hasattr(table, "x"):
        table = read_stol(table, "-" + unit)
    if unit not in STOL_UNITS:
        raise ValueError(f"unit: expected one of {', '.join(STOL_UNITS)}, got {unit!r}")
    volume = sample_volume(thickness, width, height, beamsize)
    dens = density * 1e6
    if molecules:
        dens = density_from_molecules(molecules, volume, molecular_weight)
    x = torch.as_tensor(table.x, dtype=SETUP_DTYPE, device=device)
    F = torch.as_tensor(table.F, dtype=SETUP_DTYPE, device=device)
    xa, ya = stol_table(x, F, STOL_UNITS[unit])
    count = scatterer_count(volume, dens, molecular_weight)
    return AmorphousSample(xa, ya, torch.as_tensor(count, dtype=SETUP_DTYPE, device=device), table.increasing)


# ----------------------------------------------------------------------------------------- the render
@dataclass
class AmorphousResult:
    """A render: ``image`` (spixels, fpixels), 0 outside the ROI; ``omega_sum``: the summed solid angle of
    every evaluated sub-pixel (C's report); ``last``: per rendered pixel (raster order), the values of its last
    (sub-pixel, source) evaluation — stol (1/m), table index, polarization, solid angle — which C's -img
    analysis uses; ``steps``: sources x oversample^2."""

    image: torch.Tensor
    omega_sum: float
    steps: int
    last: dict | None = None


def _chunk_terms(pos, g: DetectorGeometry, inc, lam, weights, polar_axis, kahn, nopolar, sample: AmorphousSample,
                 point_pixel: bool, pixel_size, walk_state, windows):
    """(term per (pixel, sub-pixel, source), F, stol, index, polarization, solid angle, walk state) for one chunk.

    ``pos`` (P, S, 3) sub-pixel positions; ``inc`` (NS, 3) unit incident directions after C's first unitize.
    With polarization on, C re-normalises the diffracted vector in place once per source (inside its
    polarization function), and the next source's scattering vector uses the re-normalised one.
    """
    d0, R = unitize_c(pos)
    omega = pixel_solid_angle(R, pixel_size, g.close_distance, point_pixel)  # (P, S)
    NS = inc.shape[0]
    if nopolar:
        d_scatter = d0[..., None, :].expand(*d0.shape[:-1], NS, 3)
        polar = None
    else:
        seq = [d0]  # d_k: the diffracted vector after k re-normalisations (k = 0 .. NS)
        while len(seq) < NS + 1:
            nxt, _ = unitize_c(seq[-1])
            seq.append(nxt)
            if bool(((nxt == seq[-2]) | (torch.isnan(nxt) & torch.isnan(seq[-2]))).all()):
                break  # a fixed point: every later re-normalisation gives the same vector
        k = torch.arange(NS + 1, device=pos.device).clamp(max=len(seq) - 1)
        d_all = torch.stack(seq, dim=-2).index_select(-2, k)
        d_scatter, d_polar = d_all[..., :NS, :], d_all[..., 1:, :]
        inc2, _ = unitize_c(inc)
        with_kahn = (isinstance(kahn, torch.Tensor) and kahn.requires_grad) or float(kahn) != 0.0
        polar = polarization_factor(inc2.to(pos.dtype), d_polar, polar_axis.to(pos.dtype), kahn, with_kahn)
    stol = scattering_stol(d_scatter, inc.to(pos.dtype), lam.to(pos.dtype))  # (P, S, NS)
    stol64 = stol.to(SETUP_DTYPE)
    if sample.increasing:
        index = stol_index(stol64, sample.stol)
    else:
        flat, walk_state = stol_walk(sample.stol.detach().cpu().numpy(), stol64.detach().reshape(-1).cpu().numpy(),
                                     walk_state)
        index = torch.as_tensor(flat, device=pos.device).reshape(stol.shape)
    F = interpolate_F(stol64, sample.stol, sample.F, index, windows).to(pos.dtype)
    term = signed_intensity(F)
    if polar is not None:
        term = term * polar
    term = term * omega[..., None] * weights.to(pos.dtype)
    return term, F, stol64, index, polar, omega, walk_state


def _requires_grad(*parts) -> bool:
    """Some tensor of these dataclasses requires a gradient (and autograd is on)."""
    return torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad
                                           for p in parts for v in vars(p).values())


def fused_kernel(kernel: str, device: torch.device, grad: bool):
    """The fused CPU module (``fused_amorphous``) when it renders, else None (the eager kernel): "auto" uses it
    on the CPU when numba imports and no gradient is needed; "numba" insists (a one-line usage error saying
    why not); "torch" never (``engine.compiled_kernel``)."""
    return compiled_kernel(kernel, "autograd" if grad else device.type if device.type != "cpu" else None,
                           "fused_amorphous")


def render_amorphous(detector: Detector, beam: Beam, sample: AmorphousSample, oversample: int = 1, *,
                     dtype: torch.dtype = torch.float64, fmap: bool = False, keep_last: bool = False,
                     max_evals: int = _EVALS_PER_CHUNK, kernel: str = "auto") -> AmorphousResult:
    """Render the amorphous scattering of ``sample`` onto ``detector`` lit by ``beam`` (§12.3), in photons per
    pixel: sum over sub-pixels and sources of sign(F) F^2 x polarization x solid angle x source weight, times
    r_e^2 x fluence x molecules / (sources x oversample^2). Pure; differentiable in the continuous parameters
    (detector placement, wavelengths, fluence, the table's F, molecules).

    Source directions need not be unit vectors (C's source positions work as they are). ``fmap``: each pixel
    holds F of its last evaluation instead (C's -Fmap). ``keep_last``: fill ``AmorphousResult.last``.
    The sensor thickness, if the detector has one, is ignored (nonBragg models none). ``kernel``: "auto" (the
    compiled CPU kernel ``fused_amorphous`` when it is available and no gradient is needed, else the eager
    torch one), "torch" or "numba" (see ``fused_kernel``).
    """
    g, inc, lam, weights, polar_axis = _setup(detector, beam, dtype)
    fused = fused_kernel(kernel, torch.device(detector.pixel_size.device), _requires_grad(detector, beam, sample))
    if fused is not None:
        return _render_fused(fused, detector, beam, sample, g, inc, lam, weights, polar_axis, oversample,
                             dtype, fmap, keep_last)
    return _render_eager(detector, beam, sample, g, inc, lam, weights, polar_axis, oversample, dtype, fmap,
                         keep_last, max_evals)


def _setup(detector: Detector, beam: Beam, dtype: torch.dtype):
    """The placed detector (in ``dtype``), C's incident unit vectors, the wavelengths, the source weights and the
    polarization axis at C's fixed point: (geometry, incident, wavelengths, weights, polar axis)."""
    dev = detector.pixel_size.device
    g = place_detector(detector, setup_tensor(beam.beam_vector, dev))
    g = DetectorGeometry(**{k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in vars(g).items()})
    inc, _ = unitize_c(-setup_tensor(beam.source_directions, dev))
    lam = beam.wavelengths().to(SETUP_DTYPE)
    weights = setup_tensor(beam.source_weights, dev)
    # C normalises the axis once at set-up and again, in place, in every polarization call: its fixed point
    polar_axis, _ = unitize_fixed_point(unitize_c(setup_tensor(beam.polar_vector, dev))[0])
    return g, inc, lam, weights, polar_axis


def _render_eager(detector: Detector, beam: Beam, sample: AmorphousSample, g: DetectorGeometry, inc, lam, weights,
                  polar_axis, oversample: int, dtype, fmap: bool, keep_last: bool, max_evals: int) -> AmorphousResult:
    """``render_amorphous`` in eager torch: the rendered pixels in chunks of at most ``max_evals`` evaluations,
    each pixel's terms summed in C's order."""
    dev = detector.pixel_size.device
    steps = inc.shape[0] * oversample * oversample
    rendered = detector.rendered_mask().reshape(-1)
    idx = torch.nonzero(rendered).reshape(-1)
    chunk = max(1, max_evals // max(1, steps))
    values, lasts = [], []
    omega_sum = torch.zeros((), dtype=dtype, device=dev)
    walk_state = 0
    windows = table_windows(sample.stol, sample.F)
    px = setup_tensor(detector.pixel_size, dev)
    for start in range(0, idx.numel(), chunk):
        sel = idx[start:start + chunk]
        pos = pixel_positions(g, sel % detector.fpixels, sel // detector.fpixels, px.to(dtype), oversample, 0.0, 1,
                              detector.curved)[:, 0]  # (P, S, 3)
        term, F, stol, index, polar, omega, walk_state = _chunk_terms(
            pos, g, inc.to(dtype), lam, weights, polar_axis, setup_tensor(beam.kahn, dev), beam.nopolar, sample,
            detector.point_pixel, px.to(dtype), walk_state, windows)
        omega_sum = omega_sum + omega.detach().sum()
        if fmap:
            v = F[:, -1, -1]
        else:
            I_bg = torch.cumsum(term.reshape(term.shape[0], -1), dim=1)[:, -1]  # C's order: term by term
            fluence = setup_tensor(beam.fluence, dev).to(dtype)
            v = I_bg * R_E_SQR * fluence * setup_tensor(sample.molecules, dev).to(dtype) / steps
        values.append(v)
        if keep_last:
            lasts.append((stol[:, -1, -1], index[:, -1, -1],
                          polar[:, -1, -1] if polar is not None else torch.ones_like(omega[:, -1]), omega[:, -1]))
    flat = torch.zeros(rendered.numel(), dtype=dtype, device=dev)
    if values:
        flat = flat.index_copy(0, idx, torch.cat(values))
    last = None
    if keep_last:
        last = {name: torch.cat([t[i] for t in lasts]) if lasts else torch.zeros(0)
                for i, name in enumerate(("stol", "index", "polar", "omega"))}
        last["pixels"] = idx
    return AmorphousResult(flat.reshape(detector.spixels, detector.fpixels), float(omega_sum), steps, last)


def _render_fused(fused, detector: Detector, beam: Beam, sample: AmorphousSample, g: DetectorGeometry, inc, lam,
                  weights, polar_axis, oversample: int, dtype, fmap: bool, keep_last: bool) -> AmorphousResult:
    """``render_amorphous`` on the fused CPU kernel: the per-source vectors as the eager render derives them."""
    dev = detector.pixel_size.device
    npix = detector.fpixels * detector.spixels
    full = detector.renders_every_pixel()
    idx = None if full else torch.nonzero(detector.rendered_mask().reshape(-1)).reshape(-1)
    NS = inc.shape[0]
    inc2, _ = unitize_c(inc.to(dtype))  # C unitizes the incident vector again in its polarization function
    kahn = setup_tensor(beam.kahn, dev)
    B, E, _ = polarization_frame(inc2, polar_axis.to(dtype))
    prm = {"pixel_size": float(detector.pixel_size), "close_distance": float(g.close_distance),
           "kahn": float(kahn), "distance": float(g.distance), "r_e_sqr": R_E_SQR,
           "fluence": float(setup_tensor(beam.fluence, dev)), "molecules": float(setup_tensor(sample.molecules, dev))}
    values, omega_sum, last = fused.render(
        g, idx, inc.to(dtype), inc2, lam.to(dtype), weights.to(dtype), torch.cat((B, E), dim=-1),
        table_windows(sample.stol, sample.F), sample.stol, prm, fpixels=detector.fpixels, npix=npix,
        oversample=oversample, point_pixel=detector.point_pixel, curved=detector.curved, nopolar=beam.nopolar,
        kahn=float(kahn) != 0.0, fmap=fmap, increasing=sample.increasing, keep_last=keep_last, dtype=dtype)
    flat = values
    if not full:
        flat = torch.zeros(npix, dtype=dtype)
        flat[idx] = values
    if last is not None:
        last["pixels"] = torch.arange(npix) if full else idx
    return AmorphousResult(flat.reshape(detector.spixels, detector.fpixels), omega_sum, NS * oversample ** 2, last)


def render_background(model, sample: AmorphousSample, **kw) -> torch.Tensor:
    """The amorphous scattering of ``sample`` on a Bragg ``model``'s detector and beam (photons per pixel, the
    units of ``render(model)``): ``render(model) + render_background(model, water)`` is the image with its
    background, ready for ``write_c_outputs`` (noise included). Normalised by the model's sources x
    oversample^2 (mosaic domains and phi steps do not apply to an amorphous sample)."""
    return render_amorphous(model.detector, model.beam, sample.to(model.device), model.sampling.oversample,
                            dtype=model.dtype, **kw).image
