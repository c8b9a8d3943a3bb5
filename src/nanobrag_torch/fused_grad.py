"""The fused CPU backward: gradients of the fused render (numba) in one compiled pass, for the common case.

The forward is ``fused``'s render, bit for bit. The backward renders each pixel again and applies the chain rule
per evaluation by hand: dI/dF_latt and dI/dF from the term F^2 F_latt^2, the grating factor's derivatives (those
of ``physics.grating_smooth``: its closed forms away from integer h, its series within |N pi d| < 1e-2), then
h = a.S to the real-space vectors of every orientation and to the scattering vector, S = (d - i)/lambda to the
unit diffracted direction, d = p/|p| to the sub-pixel position, and p = Fdet f + Sdet s + Odet o + pix0 to the
panel vectors (Odet: the sensor layer's depth); the solid angle and the polarization of C's first evaluation and
the capture fraction of the last layer's first sub-pixel are chained at the end of each pixel.
What it returns are gradients w.r.t. the kernel's inputs (panel vectors, close distance, pixel size and area,
the orientations, N, the scale, the water background, the F table and default_F); autograd carries them to the
model's parameters through the small setup tensors (``renderer.prepare``).

Memory is not O(evaluations): every thread accumulates into its own arrays (per lane of a tile, in double; a
copy of the F table when it needs a gradient), summed in a fixed order afterwards.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import fused as _f
from .fused import TILE, _divmod_exact, _jit, _raster_cell, _unit3, sinpi_small

# the kernel inputs that carry gradients here, in the order of _FusedRender.apply's tensors
GRAD_INPUTS = ("pix0", "fdet", "sdet", "odet", "close_distance", "pixel_size", "orientations", "N", "scale",
               "I_bg", "pixel_area", "F_grid", "default_F")


@_jit(inline="always")  # numba inlines it; LLVM's inliner finds it too big, and a call stops vectorisation
def _grating_and_derivatives(h, n, nm1, pi):
    """(v, dv/dh, dv/dN) of C's sin(N pi h)/sin(pi h): the value as ``fused._sincg_reduced``, the derivatives as
    ``physics.grating_derivatives`` (closed forms; series where |N pi d| < 1e-2). cos(pi x) = sin(pi (1/2 - |x|))."""
    T = type(h)
    h0 = np.floor(h + T(0.5))
    d = h - h0
    y = n * d
    m = np.floor(y + T(0.5))
    e = y - m
    sd = sinpi_small(d)
    se = sinpi_small(e)
    cd = sinpi_small(T(0.5) - abs(d))
    ce = sinpi_small(T(0.5) - abs(e))
    q = h0 * nm1 + m
    sgn = T(1) - T(2) * (q - T(2) * np.floor(T(0.5) * q))  # (-1)^(h0 (N-1) + m)
    inv = T(1) / sd
    r = se * inv
    r = n if d == T(0) else r
    x = pi * d
    x2 = x * x
    n2 = n * n
    small = x2 * n2 < T(1e-4)
    # d/dh: pi (N cos(N x) sin x - sin(N x) cos x) / sin^2 x; series -pi x N (N^2 - 1)(1/3 - (3 N^2 - 7) x^2 / 90)
    closed = pi * (n * ce - se * cd * inv) * inv
    series = -pi * x * n * (n2 - T(1)) * (T(1) / T(3) - (T(3) * n2 - T(7)) * x2 / T(90))
    dh = sgn * (series if small else closed)
    # d/dN: x cos(N x) / sin x; series 1 - (3 N^2 - 1) x^2 / 6 + (15 N^4 - 30 N^2 + 7) x^4 / 360
    closed_n = x * ce * inv
    series_n = T(1) - (T(3) * n2 - T(1)) / T(6) * x2 + (T(15) * n2 * n2 - T(30) * n2 + T(7)) / T(360) * x2 * x2
    dn = sgn * (series_n if small else closed_n)
    return sgn * r, dh, dn


@_jit(inline="always")
def _add_direction_gradient(gpos, i, gx, gy, gz, ux, uy, uz, r, fdet, sdet, odet):
    """d = p/|p|: a gradient g w.r.t. the unit direction d (at distance r) is (g - d (d.g))/r w.r.t. the position
    p = Fdet f + Sdet s + Odet o + pix0; added to lane i's rows of pix0, fdet, sdet, odet (0-2, 3-5, 6-8, 9-11)."""
    dot = ux * gx + uy * gy + uz * gz
    for c in range(3):
        gc = gx if c == 0 else (gy if c == 1 else gz)
        uc = ux if c == 0 else (uy if c == 1 else uz)
        gp = (gc - uc * dot) / r
        gpos[c, i] += gp
        gpos[3 + c, i] += fdet * gp
        gpos[6 + c, i] += sdet * gp
        gpos[9 + c, i] += odet * gp


@_jit(cache=True, nogil=True)
def _grad_tiles(t0, t1, idx, geo, pclose, inc, lam, orient, polax, Fpad, prm, ipr, need, g,
                acc_o, acc_n, acc_geo, acc_close, acc_s, acc_F):
    """Gradients of sum(g * values) over tiles t0..t1-1 of the pixels ``idx`` (as ``fused._render_tiles``; square
    shape, nearest F, no -oversample_* flag, flat detector), accumulated into this thread's arrays:
    ``acc_o`` (9 K, TILE) per orientation component and lane, ``acc_n`` (3, TILE) per N axis and lane, ``acc_geo``
    (P, 12) pix0, fdet, sdet, odet per panel, ``acc_close`` (P,), ``acc_s`` (scale, I_bg, pixel area), ``acc_F`` the
    padded F table (empty unless ``need[0]``). ``need[1]``: d/dN (every axis then carries its grating factor).

    One long function for the reason ``fused._render_tiles`` is one: the stage loops share tile-sized scratch
    arrays and vectorise in place.
    """
    T = g.dtype.type
    pi = T(math.pi)
    need_F = need[0] != 0
    need_N = need[1] != 0
    listed = idx.size > 0
    n_pix = idx.size if listed else ipr[_f.I_NPIX]
    fpix_f = np.float64(ipr[_f.I_FPIXELS])
    inv_fpixels = 1.0 / fpix_f
    pan_f = np.float64(ipr[_f.I_PANEL_PIXELS])
    inv_pan = 1.0 / pan_f
    os_ = ipr[_f.I_OS]
    layers = ipr[_f.I_LAYERS]
    thick = ipr[_f.I_THICK] != 0
    point = ipr[_f.I_POINT] != 0
    nopolar = ipr[_f.I_NOPOLAR] != 0
    has_table = ipr[_f.I_HAS_TABLE] != 0
    use_dmin = ipr[_f.I_DMIN] != 0
    sh = ipr[_f.I_HMAX] - ipr[_f.I_HMIN] + 3
    sk = ipr[_f.I_KMAX] - ipr[_f.I_KMIN] + 3
    sl = ipr[_f.I_LMAX] - ipr[_f.I_LMIN] + 3
    fmin = (np.float64(ipr[_f.I_HMIN] - 1), np.float64(ipr[_f.I_KMIN] - 1), np.float64(ipr[_f.I_LMIN] - 1))
    fhi = (np.float64(sh - 1), np.float64(sk - 1), np.float64(sl - 1))
    fstride = (np.float64(sk * sl), np.float64(sl))
    tmin = (T(fmin[0]), T(fmin[1]), T(fmin[2]))
    thi = (T(fhi[0]), T(fhi[1]), T(fhi[2]))
    tstride = (T(fstride[0]), T(fstride[1]))
    wide_index = ipr[_f.I_WIDE] != 0  # as the forward: index arithmetic in double only where the dtype is short
    sub = prm[_f.P_SUB]
    subhalf = prm[_f.P_SUBHALF]
    thickstep = prm[_f.P_THICKSTEP]
    depth_num = prm[_f.P_DEPTH]
    px2 = prm[_f.P_PX2]
    dmin = prm[_f.P_DMIN]
    kahn = prm[_f.P_KAHN]
    I_bg = prm[_f.P_IBG]
    scale = prm[_f.P_SCALE]
    Na = prm[_f.P_NA]
    Nb = prm[_f.P_NB]
    Nc = prm[_f.P_NC]
    NS = lam.size
    K = orient.shape[1]
    osT = T(os_)
    Nv = (Na, Nb, Nc)
    use = (Na > T(1) or need_N, Nb > T(1) or need_N, Nc > T(1) or need_N)
    # the square shape's sin(N pi h)/sin(pi h) is never 0, so a term is evaluated wherever it survives dmin

    fp = np.empty(TILE, g.dtype)
    sp = np.empty(TILE, g.dtype)
    pan = np.empty(TILE, np.int64)
    pnl = np.empty((13, TILE), g.dtype)
    I = np.empty(TILE, g.dtype)
    pol_px = np.empty(TILE, g.dtype)
    found = np.empty(TILE, np.bool_)
    om0 = np.empty(TILE, g.dtype)
    R0 = np.empty(TILE, g.dtype)
    d0 = np.empty((3, TILE), g.dtype)
    pd = np.empty((3, TILE), g.dtype)  # the direction of the evaluation that set the polarization
    pgrad = np.empty((3, TILE), g.dtype)  # d pol / d direction there
    pR = np.empty(TILE, g.dtype)
    psub = np.empty((3, TILE), g.dtype)  # its Fdet, Sdet, Odet
    cap = np.ones(TILE, g.dtype)  # C's capture fraction of the last layer's first sub-pixel (1 without a sensor)
    dcap = np.zeros(TILE, g.dtype)  # d cap / d rho there (rho = d.odet)
    dL = np.empty((3, TILE), g.dtype)  # that sub-pixel's direction
    RL = np.empty(TILE, g.dtype)  # and its distance
    G = np.empty(TILE, g.dtype)
    dx = np.empty(TILE, g.dtype)
    dy = np.empty(TILE, g.dtype)
    dz = np.empty(TILE, g.dtype)
    R = np.empty(TILE, g.dtype)
    Fd = np.empty(TILE, g.dtype)
    Sd = np.empty(TILE, g.dtype)
    S3 = np.empty((3, TILE), g.dtype)
    hkl = np.empty((3, TILE), g.dtype)
    alive = np.empty(TILE, np.bool_)
    gd = np.zeros((3, TILE), g.dtype)
    gS = np.zeros((3, TILE), g.dtype)
    V = np.ones((3, TILE), g.dtype)  # grating factor per axis (1 where C skips the axis)
    D = np.zeros((3, TILE), g.dtype)  # its d/dh
    DN = np.zeros((3, TILE), g.dtype)  # its d/dN
    GH = np.empty((3, TILE), g.dtype)
    wl = np.empty(TILE, g.dtype)  # dL/dF_latt per lane
    Fb = np.full(TILE, prm[_f.P_DEFAULT_F], g.dtype)
    ib = np.zeros(TILE, np.int64)
    dF = np.zeros(TILE, g.dtype)
    gpos = np.zeros((12, TILE), np.float64)  # per lane: d/d pix0, fdet, sdet, odet
    for tile in range(t0, t1):
        start = tile * TILE
        n = min(TILE, n_pix - start)
        for i in range(n):
            q = np.float64(idx[start + i] if listed else start + i)
            pn, q = _divmod_exact(q, pan_f, inv_pan)
            pan[i] = np.int64(pn)
            row, col = _raster_cell(q, fpix_f, inv_fpixels)
            fp[i] = T(col)
            sp[i] = T(row)
            I[i] = I_bg
            pol_px[i] = T(1) if nopolar else T(0)
            found[i] = False
            for r in range(12):
                gpos[r, i] = 0.0
            for ri in range(4):
                for ci in range(3):
                    pnl[3 * ri + ci, i] = geo[pan[i], ri, ci]
            pnl[12, i] = pclose[pan[i]]
        if thick:
            # C's capture fraction multiplies the pixel: the last layer's first sub-pixel's, known before any term
            tl = T(layers - 1)
            Ol = tl * thickstep
            for i in range(n):
                Fdet = sub * (fp[i] * osT) + subhalf
                Sdet = sub * (sp[i] * osT) + subhalf
                x_ = Fdet * pnl[3, i] + Sdet * pnl[6, i] + Ol * pnl[9, i] + pnl[0, i]
                y_ = Fdet * pnl[4, i] + Sdet * pnl[7, i] + Ol * pnl[10, i] + pnl[1, i]
                z_ = Fdet * pnl[5, i] + Sdet * pnl[8, i] + Ol * pnl[11, i] + pnl[2, i]
                r_ = math.sqrt(x_ * x_ + y_ * y_ + z_ * z_)
                ux = x_ / r_
                uy = y_ / r_
                uz = z_ / r_
                rho = ux * pnl[9, i] + uy * pnl[10, i] + uz * pnl[11, i]
                depth = depth_num / rho
                e0 = math.exp(-tl * depth)
                e1 = math.exp(-(tl + T(1)) * depth)
                cap[i] = e0 - e1
                dcap[i] = (-tl * e0 + (tl + T(1)) * e1) * (-depth / rho)  # d cap/d depth x d depth/d rho
                dL[0, i] = ux
                dL[1, i] = uy
                dL[2, i] = uz
                RL[i] = r_
        for t in range(layers):
            Odet = T(t) * thickstep
            for ss in range(os_):
                for sf in range(os_):
                    first_sub = ss == 0 and sf == 0 and t == 0
                    for i in range(n):
                        Fdet = sub * (fp[i] * osT + T(sf)) + subhalf
                        Sdet = sub * (sp[i] * osT + T(ss)) + subhalf
                        Fd[i] = Fdet
                        Sd[i] = Sdet
                        x_ = Fdet * pnl[3, i] + Sdet * pnl[6, i] + Odet * pnl[9, i] + pnl[0, i]
                        y_ = Fdet * pnl[4, i] + Sdet * pnl[7, i] + Odet * pnl[10, i] + pnl[1, i]
                        z_ = Fdet * pnl[5, i] + Sdet * pnl[8, i] + Odet * pnl[11, i] + pnl[2, i]
                        r_ = math.sqrt(x_ * x_ + y_ * y_ + z_ * z_)
                        R[i] = r_
                        dx[i] = x_ / r_
                        dy[i] = y_ / r_
                        dz[i] = z_ / r_
                        gd[0, i] = T(0)
                        gd[1, i] = T(0)
                        gd[2, i] = T(0)
                    if first_sub:
                        for i in range(n):
                            om0[i] = T(1) / (R[i] * R[i]) if point else px2 / (R[i] * R[i]) * pnl[12, i] / R[i]
                            R0[i] = R[i]
                            d0[0, i] = dx[i]
                            d0[1, i] = dy[i]
                            d0[2, i] = dz[i]
                    for j in range(NS):
                        ix = inc[j, 0]
                        iy = inc[j, 1]
                        iz = inc[j, 2]
                        lj = lam[j]
                        for i in range(n):
                            S3[0, i] = (dx[i] - ix) / lj
                            S3[1, i] = (dy[i] - iy) / lj
                            S3[2, i] = (dz[i] - iz) / lj
                            gS[0, i] = T(0)
                            gS[1, i] = T(0)
                            gS[2, i] = T(0)
                        if use_dmin:
                            for i in range(n):
                                sq = S3[0, i] * S3[0, i] + S3[1, i] * S3[1, i] + S3[2, i] * S3[2, i]
                                stol = T(0.5) * math.sqrt(sq)
                                alive[i] = not (stol > T(0) and dmin > T(0.5) / (stol if stol > T(0) else T(1)))
                        else:
                            for i in range(n):
                                alive[i] = True
                        if not nopolar:
                            # C's polarization of the first evaluation that survives the dmin cut, and its derivative
                            # (that of physics.polarization_factor's algebraic form): c i - K (x E - y B)
                            Bx, By, Bz = _unit3(polax[1] * iz - polax[2] * iy, polax[2] * ix - polax[0] * iz,
                                                polax[0] * iy - polax[1] * ix)
                            Ex, Ey, Ez = _unit3(iy * Bz - iz * By, iz * Bx - ix * Bz, ix * By - iy * Bx)
                            degenerate = (Bx == T(0) and By == T(0) and Bz == T(0)) or \
                                (Ex == T(0) and Ey == T(0) and Ez == T(0))
                            for i in range(n):
                                if alive[i] and not found[i]:
                                    pol_px[i] = _f._polar(ix, iy, iz, dx[i], dy[i], dz[i], polax, kahn)
                                    found[i] = True
                                    c = ix * dx[i] + iy * dy[i] + iz * dz[i]
                                    if degenerate:
                                        w = c * (T(1) + kahn)
                                        pgrad[0, i] = w * ix
                                        pgrad[1, i] = w * iy
                                        pgrad[2, i] = w * iz
                                    else:
                                        xe = dx[i] * Ex + dy[i] * Ey + dz[i] * Ez
                                        yb = dx[i] * Bx + dy[i] * By + dz[i] * Bz
                                        pgrad[0, i] = c * ix - kahn * (xe * Ex - yb * Bx)
                                        pgrad[1, i] = c * iy - kahn * (xe * Ey - yb * By)
                                        pgrad[2, i] = c * iz - kahn * (xe * Ez - yb * Bz)
                                    pd[0, i] = dx[i]
                                    pd[1, i] = dy[i]
                                    pd[2, i] = dz[i]
                                    pR[i] = R[i]
                                    psub[0, i] = Fd[i]
                                    psub[1, i] = Sd[i]
                                    psub[2, i] = Odet
                        for i in range(n):
                            G[i] = g[start + i] * scale * om0[i] * pol_px[i] * cap[i]
                        for k in range(K):
                            # Miller indices (C 6.7); each loop below stores into one or two arrays, so that LLVM
                            # vectorises it (more stores need more run-time overlap checks than it makes)
                            for r in range(3):
                                o0, o1, o2 = orient[3 * r, k], orient[3 * r + 1, k], orient[3 * r + 2, k]
                                for i in range(n):
                                    hkl[r, i] = o0 * S3[0, i] + o1 * S3[1, i] + o2 * S3[2, i]
                            # grating factors and their derivatives (C 6.8)
                            for r in range(3):
                                if use[r]:
                                    nr = Nv[r]
                                    nm1 = nr - T(1)
                                    if need_N:
                                        for i in range(n):
                                            V[r, i], D[r, i], DN[r, i] = _grating_and_derivatives(hkl[r, i], nr, nm1,
                                                                                                  pi)
                                    else:
                                        for i in range(n):
                                            V[r, i], D[r, i], _unused = _grating_and_derivatives(hkl[r, i], nr, nm1, pi)
                            # structure factor (C 6.9)
                            if has_table and wide_index:  # the forward's lookup, exactly (fused._render_tiles)
                                for i in range(n):
                                    ib[i] = np.int64(_f._f_index(np.float64(hkl[0, i]), np.float64(hkl[1, i]),
                                                                 np.float64(hkl[2, i]), fmin, fhi, fstride))
                            elif has_table:
                                for i in range(n):
                                    ib[i] = np.int64(_f._f_index(hkl[0, i], hkl[1, i], hkl[2, i], tmin, thi, tstride))
                            if has_table:
                                for i in range(n):
                                    Fb[i] = Fpad[ib[i]]
                            # the term, and dL/dF_latt of it (C 6.10)
                            for i in range(n):
                                fl = V[0, i] * V[1, i] * V[2, i]
                                I[i] = I[i] + (Fb[i] * Fb[i] * fl * fl if alive[i] else T(0))
                            for i in range(n):
                                fl = V[0, i] * V[1, i] * V[2, i]
                                wl[i] = T(2) * (G[i] if alive[i] else T(0)) * Fb[i] * Fb[i] * fl
                            # dL/dh, dL/dk, dL/dl
                            for i in range(n):
                                GH[0, i] = wl[i] * D[0, i] * V[1, i] * V[2, i]
                            for i in range(n):
                                GH[1, i] = wl[i] * V[0, i] * D[1, i] * V[2, i]
                            for i in range(n):
                                GH[2, i] = wl[i] * V[0, i] * V[1, i] * D[2, i]
                            # h = a.S: to the orientation (per lane) and to S
                            for r in range(3):
                                for c_ in range(3):
                                    row = 9 * k + 3 * r + c_
                                    for i in range(n):
                                        acc_o[row, i] += GH[r, i] * S3[c_, i]
                            for c_ in range(3):
                                oa, ob, oc = orient[c_, k], orient[3 + c_, k], orient[6 + c_, k]
                                for i in range(n):
                                    gS[c_, i] += GH[0, i] * oa + GH[1, i] * ob + GH[2, i] * oc
                            if need_N:
                                for i in range(n):
                                    acc_n[0, i] += wl[i] * DN[0, i] * V[1, i] * V[2, i]
                                for i in range(n):
                                    acc_n[1, i] += wl[i] * V[0, i] * DN[1, i] * V[2, i]
                                for i in range(n):
                                    acc_n[2, i] += wl[i] * V[0, i] * V[1, i] * DN[2, i]
                            if need_F:  # dL/dF = 2 t F F_latt^2, into this thread's copy of the table
                                for i in range(n):
                                    fl = V[0, i] * V[1, i] * V[2, i]
                                    dF[i] = (G[i] if alive[i] else T(0)) * T(2) * Fb[i] * fl * fl
                                for i in range(n):
                                    acc_F[ib[i]] += dF[i]
                        for i in range(n):
                            gd[0, i] += gS[0, i] / lj
                            gd[1, i] += gS[1, i] / lj
                            gd[2, i] += gS[2, i] / lj
                    for i in range(n):  # the sub-pixel's direction to its position
                        _add_direction_gradient(gpos, i, np.float64(gd[0, i]), np.float64(gd[1, i]),
                                                np.float64(gd[2, i]), np.float64(dx[i]), np.float64(dy[i]),
                                                np.float64(dz[i]), np.float64(R[i]), np.float64(Fd[i]),
                                                np.float64(Sd[i]), np.float64(Odet))
        # the pixel's factors: scale, water start, capture fraction, solid angle of the first sub-pixel, polarization
        for i in range(n):
            gi = np.float64(g[start + i])
            Ii = np.float64(I[i])
            pol = np.float64(pol_px[i])
            om = np.float64(om0[i])
            cp = np.float64(cap[i])
            acc_s[0] += gi * Ii * pol * om * cp
            acc_s[1] += gi * np.float64(scale) * pol * om * cp
            dom = gi * np.float64(scale) * Ii * pol * cp
            r0 = np.float64(R0[i])
            if point:
                dR = -2.0 * dom * om / r0
            else:
                r3 = r0 * r0 * r0
                acc_close[pan[i]] += dom * np.float64(px2) / r3
                acc_s[2] += dom * np.float64(pnl[12, i]) / r3
                dR = -3.0 * dom * om / r0
            Fdet0 = np.float64(sub * (fp[i] * osT) + subhalf)
            Sdet0 = np.float64(sub * (sp[i] * osT) + subhalf)
            for c_ in range(3):
                gp = dR * np.float64(d0[c_, i])
                gpos[c_, i] += gp
                gpos[3 + c_, i] += Fdet0 * gp
                gpos[6 + c_, i] += Sdet0 * gp
            if thick:  # cap(rho), rho = d.odet at the last layer's first sub-pixel
                drho = gi * np.float64(scale) * Ii * pol * om * np.float64(dcap[i])
                OlF = np.float64((T(layers - 1)) * thickstep)
                _add_direction_gradient(gpos, i, drho * np.float64(pnl[9, i]), drho * np.float64(pnl[10, i]),
                                        drho * np.float64(pnl[11, i]), np.float64(dL[0, i]), np.float64(dL[1, i]),
                                        np.float64(dL[2, i]), np.float64(RL[i]), Fdet0, Sdet0, OlF)
                for c_ in range(3):
                    gpos[9 + c_, i] += drho * np.float64(dL[c_, i])  # and rho's own odet
            if found[i] and not nopolar:
                dpol = gi * np.float64(scale) * Ii * om * np.float64(cap[i])
                _add_direction_gradient(gpos, i, dpol * np.float64(pgrad[0, i]), dpol * np.float64(pgrad[1, i]),
                                        dpol * np.float64(pgrad[2, i]), np.float64(pd[0, i]), np.float64(pd[1, i]),
                                        np.float64(pd[2, i]), np.float64(pR[i]), np.float64(psub[0, i]),
                                        np.float64(psub[1, i]), np.float64(psub[2, i]))
            for r in range(12):
                acc_geo[pan[i], r] += gpos[r, i]


class _Job:
    """One fused render with its backward: the kernel arrays and the pixel list, shared by forward and backward."""

    def __init__(self, args, pix, dt, interp_enabled, shapes, dtypes, pixel_size, grid_span, progress=None):
        self.args, self.pix, self.dt, self.interp_enabled, self.progress = args, pix, dt, interp_enabled, progress
        self.shapes, self.dtypes, self.pixel_size, self.grid_span = shapes, dtypes, pixel_size, grid_span
        self.omsum = None
        self.still_on = True

    def forward(self) -> np.ndarray:
        # the backward's copy of the settings first: the forward's tricubic shut-off may rewrite them (without a
        # table, where interpolation has nothing to interpolate and both lookups give default_F)
        ipr = self.args[9].copy()
        ipr[_f.I_INTERP] = 0
        self.grad_args = (*self.args[:9], ipr, self.args[10])
        values, self.omsum, self.still_on = _f._render_pixels(self.pix, self.args, self.dt, self.interp_enabled,
                                                               self.progress)
        return values

    def backward(self, g: np.ndarray, needs) -> list:
        geo, pclose, inc, lam, orient, _, polax, Fpad, prm, ipr, _ = self.grad_args
        need = np.array([needs[GRAD_INPUTS.index("F_grid")] or needs[GRAD_INPUTS.index("default_F")],
                         needs[GRAD_INPUTS.index("N")]], dtype=np.int64)
        n = int(ipr[_f.I_NPIX])
        ntiles = _f._tiles(n)
        threads = max(1, min(_f.num_threads(), ntiles))
        P, K = geo.shape[0], orient.shape[1]
        parts = [(ntiles * t // threads, ntiles * (t + 1) // threads) for t in range(threads)]
        accs = [(np.zeros((9 * K, TILE)), np.zeros((3, TILE)), np.zeros((P, 12)), np.zeros(P), np.zeros(3),
                 np.zeros(Fpad.size if need[0] else 0)) for _ in parts]

        def one(k):
            _grad_tiles(parts[k][0], parts[k][1], self.pix, geo, pclose, inc, lam, orient, polax, Fpad, prm, ipr,
                        need, g, *accs[k])

        with ThreadPoolExecutor(threads, thread_name_prefix="nb-fused-grad") as ex:
            list(ex.map(one, range(len(parts))))
        o, nn, gg, cl, sc, fF = (sum(a[i] for a in accs) for i in range(6))  # in thread order
        grads = {"pix0": gg[:, 0:3], "fdet": gg[:, 3:6], "sdet": gg[:, 6:9], "odet": gg[:, 9:12],
                 "close_distance": cl, "orientations": o.sum(1).reshape(K, 3, 3), "N": nn.sum(1),
                 "scale": sc[0], "I_bg": sc[1], "pixel_area": sc[2]}
        # Fdet, Sdet = pixel (index + 1/2)/oversample: their pixel-size derivative is Fdet/pixel (and Sdet/pixel)
        grads["pixel_size"] = float(np.sum(gg[:, 3:6] * geo[:, 1]) + np.sum(gg[:, 6:9] * geo[:, 2])) / self.pixel_size
        if need[0]:  # the padded table: its inner block is the table, its border default_F
            span = self.grid_span
            padded = fF.reshape(span[0] + 3, span[1] + 3, span[2] + 3)
            inner = (slice(1, span[0] + 2), slice(1, span[1] + 2), slice(1, span[2] + 2))
            if needs[GRAD_INPUTS.index("F_grid")] and ipr[_f.I_HAS_TABLE]:
                grid = np.zeros(self.shapes["F_grid"])
                grid[:span[0] + 1, :span[1] + 1, :span[2] + 1] = padded[inner]
                grads["F_grid"] = grid
            elif needs[GRAD_INPUTS.index("F_grid")]:  # no table: the placeholder grid enters nothing
                grads["F_grid"] = np.zeros(self.shapes["F_grid"])
            border = padded.copy()
            border[inner] = 0.0  # summed on its own: no cancellation against the table's cells
            grads["default_F"] = float(border.sum())
        out = []
        for name, wanted in zip(GRAD_INPUTS, needs):
            if not wanted:
                out.append(None)
                continue
            v = np.asarray(grads[name], dtype=np.float64)
            out.append(torch.from_numpy(np.ascontiguousarray(v)).reshape(self.shapes[name]).to(self.dtypes[name]))
        return out


class _FusedRender(torch.autograd.Function):
    """values = the fused render; backward = ``_grad_tiles``. The job carries the arrays; the tensors after it
    are the kernel inputs that may carry gradients (``GRAD_INPUTS``)."""

    @staticmethod
    def forward(ctx, job, *tensors):
        ctx.job = job
        return torch.from_numpy(job.forward())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        gn = np.ascontiguousarray(g.detach().cpu().numpy(), dtype=ctx.job.dt)
        return (None, *ctx.job.backward(gn, ctx.needs_input_grad[1:]))


def render(geom, idx, inp, s, fpixels: int, pixel_size, oversample: int, thickstep: float, thicksteps: int,
           curved: bool, interp_enabled: bool = True, progress=None, npix: int = 0, panel_pixels: int = 0):
    """``fused.render`` whose values carry gradients (this module's backward); ``pixel_size`` may be a tensor
    (its gradient comes from the sub-pixel positions here, and from the pixel area through ``inp``)."""
    px = _f._scalar(pixel_size)
    dt, args, pix = _f.render_arrays(geom, idx, inp, s, fpixels, px, oversample, thickstep, thicksteps, curved,
                                     interp_enabled, npix, panel_pixels)
    pst = pixel_size if isinstance(pixel_size, torch.Tensor) else torch.tensor(px, dtype=torch.float64)
    tensors = [geom.pix0, geom.fdet, geom.sdet, geom.odet, inp.close_distance, pst, inp.orientations, inp.N,
               inp.scale, inp.I_bg, inp.pixel_area, inp.F_grid, torch.as_tensor(inp.default_F)]
    shapes = {k: t.shape for k, t in zip(GRAD_INPUTS, tensors)}
    dtypes = {k: t.dtype for k, t in zip(GRAD_INPUTS, tensors)}
    span = [mx - mn for mn, mx in zip(s.hkl_mins, s.hkl_maxs)]
    job = _Job(args, pix, dt, interp_enabled, shapes, dtypes, px, span, progress)
    values = _FusedRender.apply(job, *tensors)
    return values, _f.omega_total(job.omsum, inp), torch.as_tensor(job.still_on)
