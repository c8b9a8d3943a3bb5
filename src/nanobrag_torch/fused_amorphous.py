"""The fused CPU render of amorphous scattering (nonBragg): one compiled pass (numba) over pixels x sub-pixels x
sources, in the engine dtype, multi-threaded over tiles of pixels (``fused._run_tiles``).

Same arithmetic in the same order as the eager torch render (``amorphous.render_amorphous``), which stays the
reference, the GPU path and the autograd path: sub-pixel position, C's unitize() and solid angle, per source the
scattering vector and sin(theta)/lambda, C's table search, the cubic through four table nodes (float64, with the
node denominators of ``amorphous.table_windows``), the in-place re-normalisation of the diffracted vector inside
C's polarization function, sign(F) F^2 x polarization x solid angle x weight added term by term (sub-pixel S,
sub-pixel F, source) from 0, then x r_e^2 x fluence x molecules / steps. The float64 image is the C program's
bit for bit wherever the eager one is.

Table search: for a strictly increasing table every evaluation's node is the last one at or below its
sin(theta)/lambda (clamped to [1, len - 3]); each pixel walks to it from its previous node (a step or none
between neighbouring evaluations), NaN takes C's clamp of the binary search. Any other table follows C's one
stateful walk across all evaluations in C's loop order: one pixel at a time, on one thread.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .physics import walk_node
from .fused import TILE, _curve, _jit, _pixel_list, _raster_cell, _run_tiles, _sub_pixel_position, _tiles, num_threads

# Floating parameters (engine dtype), by index into ``prm``.
A_PX, A_CLOSE, A_KAHN, A_DIST, A_RE2, A_FLUENCE, A_MOLECULES = range(7)
N_APRM = 7
# Integer settings, by index into ``ipr``.
J_FPIXELS, J_OS, J_POINT, J_CURVED, J_NOPOLAR, J_KAHN, J_FMAP, J_WALK, J_LAST, J_TILE, J_NPIX = range(11)
N_AIPR = 11


@_jit(cache=True, nogil=True)
def _render_amorphous_tiles(t0, t1, idx, geo, inc, inc2, lam, wts, be, xa, nodes, Fw, den, prm, ipr, walk,
                            values, omsum, lstol, lindex, lpolar, lomega):
    """Render tiles t0..t1-1 (``ipr[J_TILE]`` consecutive entries of ``idx``, flat raster indices; empty: every
    pixel 0 .. ``ipr[J_NPIX]`` - 1) into ``values`` (per pixel) and ``omsum`` (the summed solid angle per tile,
    float64); with ``ipr[J_LAST]`` also each pixel's last evaluation (stol, node index, polarization, solid
    angle).

    ``geo`` rows: pix0, fdet, sdet, odet, beam. ``inc``: unit incident vectors (C's first unitize), ``inc2``:
    the same unitized again (C's polarization function), ``be`` (NS, 6): the Kahn factor's B and E vectors
    per source. ``xa``: the padded table's abscissae; ``nodes``, ``Fw``, ``den`` (len, 4): per node index the
    cubic's four nodes, their F and Lagrange denominators (float64). ``walk[0]``: C's table position (the
    stateful walk of a non-increasing table; ``ipr[J_WALK]``).
    One function for the whole per-tile evaluation, as ``fused._render_tiles``, so that the stage loops share
    their tile-sized scratch arrays.
    """
    T = values.dtype.type
    listed = idx.size > 0
    n_pix = idx.size if listed else ipr[J_NPIX]
    tile = ipr[J_TILE]
    fpix_f = np.float64(ipr[J_FPIXELS])
    inv_fpixels = 1.0 / fpix_f
    os_ = ipr[J_OS]
    osT = T(os_)
    point = ipr[J_POINT] != 0
    curved = ipr[J_CURVED] != 0
    nopolar = ipr[J_NOPOLAR] != 0
    kahn_on = ipr[J_KAHN] != 0
    fmap = ipr[J_FMAP] != 0
    walk_mode = ipr[J_WALK] != 0
    keep_last = ipr[J_LAST] != 0
    px = prm[A_PX]
    sub = px / osT
    subhalf = sub / T(2)
    close = prm[A_CLOSE]
    kahn = prm[A_KAHN]
    dist = prm[A_DIST]
    NS = lam.size
    steps = T(os_ * os_ * NS)
    odet0 = T(0) * T(0)  # C's Odet of its only sensor layer
    nx = xa.size
    top = nx - 1
    hi_clamp = nx - 3

    fp = np.empty(tile, values.dtype)
    sp = np.empty(tile, values.dtype)
    I = np.empty(tile, values.dtype)
    om_acc = np.empty(tile, np.float64)
    dx = np.empty(tile, values.dtype)
    dy = np.empty(tile, values.dtype)
    dz = np.empty(tile, values.dtype)
    om = np.empty(tile, values.dtype)
    st = np.empty(tile, values.dtype)
    s64 = np.empty(tile, np.float64)
    kn = np.empty(tile, np.int64)
    kprev = np.empty(tile, np.int64)
    Fv = np.empty(tile, values.dtype)
    pol = np.empty(tile, values.dtype)
    for tl in range(t0, t1):
        start = tl * tile
        n = min(tile, n_pix - start)
        for i in range(n):
            # slow, fast = divmod(q, fpixels) in exact double arithmetic (as fused._render_tiles)
            row, col = _raster_cell(np.float64(idx[start + i] if listed else start + i), fpix_f, inv_fpixels)
            fp[i] = T(col)
            sp[i] = T(row)
            I[i] = T(0)
            om_acc[i] = 0.0
            kprev[i] = 1
        for ss in range(os_):
            for sf in range(os_):
                last_sub = ss == os_ - 1 and sf == os_ - 1
                # position, C's unitize(), solid angle
                for i in range(n):
                    dx[i], dy[i], dz[i] = _sub_pixel_position(fp[i], sp[i], T(sf), T(ss), odet0, geo, sub, subhalf,
                                                              osT)
                if curved:
                    for i in range(n):
                        dx[i], dy[i], dz[i] = _curve(dx[i], dy[i], dz[i], geo, dist)
                for i in range(n):
                    dx[i], dy[i], dz[i], R = _unitize_c(dx[i], dy[i], dz[i])
                    om[i] = T(1) / R / R if point else px * px / R / R * close / R
                    om_acc[i] += np.float64(om[i])
                for j in range(NS):
                    ix = inc[j, 0]
                    iy = inc[j, 1]
                    iz = inc[j, 2]
                    lj = lam[j]
                    wj = wts[j]
                    # sin(theta)/lambda = |(d - i)/lambda| / 2
                    for i in range(n):
                        Sx = (dx[i] - ix) / lj
                        Sy = (dy[i] - iy) / lj
                        Sz = (dz[i] - iz) / lj
                        s2 = Sx * Sx + Sy * Sy + Sz * Sz
                        st[i] = T(0.5) * (math.sqrt(s2) if s2 != T(0) else T(0))
                        s64[i] = np.float64(st[i])
                    # C's table search
                    if walk_mode:
                        w = walk[0]
                        for i in range(n):
                            w = _walk_node(xa, s64[i], w)
                            kn[i] = w
                        walk[0] = w
                    else:
                        for i in range(n):
                            s = s64[i]
                            w = kprev[i]
                            if s != s:
                                w = hi_clamp
                            else:
                                while w < top and s >= xa[w + 1]:
                                    w += 1
                                while w > 1 and s < xa[w]:
                                    w -= 1
                                w = hi_clamp if w > hi_clamp else w
                            kn[i] = w
                            kprev[i] = w
                    # the cubic through nodes k-1 .. k+2, Lagrange terms in C's order (float64)
                    for i in range(n):
                        k = kn[i]
                        x = s64[i]
                        d0 = x - nodes[k, 0]
                        d1 = x - nodes[k, 1]
                        d2 = x - nodes[k, 2]
                        d3 = x - nodes[k, 3]
                        Fv[i] = T(d1 * d2 * d3 * Fw[k, 0] / den[k, 0] + d0 * d2 * d3 * Fw[k, 1] / den[k, 1]
                                  + d0 * d1 * d3 * Fw[k, 2] / den[k, 2] + d0 * d1 * d2 * Fw[k, 3] / den[k, 3])
                    # polarization: C re-normalises the diffracted vector in place first
                    if not nopolar:
                        jx = inc2[j, 0]
                        jy = inc2[j, 1]
                        jz = inc2[j, 2]
                        for i in range(n):
                            dx[i], dy[i], dz[i], _ = _unitize_c(dx[i], dy[i], dz[i])
                        if not kahn_on:
                            for i in range(n):
                                c2t = jx * dx[i] + jy * dy[i] + jz * dz[i]
                                pol[i] = T(0.5) * (T(1) + c2t * c2t)
                        else:
                            for i in range(n):
                                c2t = jx * dx[i] + jy * dy[i] + jz * dz[i]
                                c2 = c2t * c2t
                                s2 = T(1) - c2
                                yb = dx[i] * be[j, 0] + dy[i] * be[j, 1] + dz[i] * be[j, 2]
                                xe = dx[i] * be[j, 3] + dy[i] * be[j, 4] + dz[i] * be[j, 5]
                                psi = -math.atan2(yb, xe)
                                pol[i] = T(0.5) * (T(1) + c2 - kahn * math.cos(T(2) * psi) * s2)
                    # sign(F) F^2 x polarization x solid angle x weight, added in C's order
                    for i in range(n):
                        F = Fv[i]
                        t = (T(-1) if F < T(0) else T(1)) * F * F
                        if not nopolar:
                            t = t * pol[i]
                        I[i] = I[i] + t * om[i] * wj
                    if keep_last and last_sub and j == NS - 1:
                        for i in range(n):
                            lstol[start + i] = s64[i]
                            lindex[start + i] = kn[i]
                            lpolar[start + i] = T(1) if nopolar else pol[i]
                            lomega[start + i] = om[i]
        om_tile = 0.0
        for i in range(n):
            if fmap:
                values[start + i] = Fv[i]
            else:
                values[start + i] = I[i] * prm[A_RE2] * prm[A_FLUENCE] * prm[A_MOLECULES] / steps
            om_tile += om_acc[i]
        omsum[tl] = om_tile


@_jit
def _unitize_c(x, y, z):
    """C unitize(): (x, y, z)/R and R = sqrt(x*x + y*y + z*z); a zero vector stays zero."""
    T = type(x)
    R = math.sqrt(x * x + y * y + z * z)
    Rd = R if R != T(0) else T(1)
    return (x / Rd if R != T(0) else T(0), y / Rd if R != T(0) else T(0), z / Rd if R != T(0) else T(0), R)


_walk_node = _jit(walk_node)


@_jit(cache=True)
def walk_table(xa, stols, start, out):
    """``amorphous.stol_walk`` compiled: C's table walk over ``stols`` from node ``start``; returns the last node."""
    n = start
    for k in range(stols.shape[0]):
        n = _walk_node(xa, stols[k], n)
        out[k] = n
    return n


def _np(t, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=dtype)


def render(g, idx: torch.Tensor | None, inc, inc2, lam, weights, be, windows, xa, prm: dict, *, fpixels: int,
           npix: int, oversample: int, point_pixel: bool, curved: bool, nopolar: bool, kahn: bool, fmap: bool,
           increasing: bool, keep_last: bool, dtype: torch.dtype):
    """Render the pixels ``idx`` (flat raster indices, ascending; None: every pixel 0 .. ``npix`` - 1) on the
    CPU: (values, omega_sum, last).

    ``g``: the placed detector (``geometry.DetectorGeometry``) in the render dtype; ``inc``/``inc2`` (NS, 3),
    ``lam``, ``weights`` (NS,), ``be`` (NS, 6) as ``amorphous.render_amorphous`` prepares them; ``windows``:
    ``amorphous.table_windows`` of the padded table ``xa``; ``prm``: pixel size, close distance, Kahn factor,
    detector distance, r_e^2, fluence and molecules. ``last``: the arrays of ``AmorphousResult.last`` (or None).
    """
    dt = np.float32 if dtype == torch.float32 else np.float64
    geo = np.stack([_np(v, dt) for v in (g.pix0, g.fdet, g.sdet, g.odet, g.beam)])
    p = np.zeros(N_APRM, dtype=dt)
    for key, pos in (("pixel_size", A_PX), ("close_distance", A_CLOSE), ("kahn", A_KAHN), ("distance", A_DIST),
                     ("r_e_sqr", A_RE2), ("fluence", A_FLUENCE), ("molecules", A_MOLECULES)):
        p[pos] = prm[key]
    xa64 = _np(xa, np.float64)
    walk_mode = not (increasing and bool(np.all(np.diff(xa64) > 0)))
    tile = 1 if walk_mode else TILE
    ipr = np.zeros(N_AIPR, dtype=np.int64)
    ipr[J_FPIXELS], ipr[J_OS], ipr[J_POINT], ipr[J_CURVED] = fpixels, oversample, point_pixel, curved
    ipr[J_NOPOLAR], ipr[J_KAHN], ipr[J_FMAP], ipr[J_WALK] = nopolar, kahn, fmap, walk_mode
    pix = _pixel_list(idx)
    n = pix.size if idx is not None else npix
    ipr[J_LAST], ipr[J_TILE], ipr[J_NPIX] = keep_last, tile, n
    nodes, Fw, den = (_np(w, np.float64) for w in windows)
    args = (geo, _np(inc, dt).reshape(-1, 3), _np(inc2, dt).reshape(-1, 3), _np(lam, dt).reshape(-1),
            _np(weights, dt).reshape(-1), _np(be, dt).reshape(-1, 6), xa64, nodes, Fw, den, p, ipr,
            np.zeros(1, dtype=np.int64))
    m = n if keep_last else 0
    out = (np.empty(n, dt), np.empty(_tiles(n, tile), np.float64), np.empty(m, np.float64), np.empty(m, np.int64),
           np.empty(m, dt), np.empty(m, dt))
    _run_tiles(pix, args, out, 1 if walk_mode else num_threads(), kernel=_render_amorphous_tiles, tile=tile,
               npix=n)
    last = None
    if keep_last:
        last = {name: torch.from_numpy(a) for name, a in zip(("stol", "index", "polar", "omega"), out[2:])}
    return torch.from_numpy(out[0]), float(out[1].sum()), last
