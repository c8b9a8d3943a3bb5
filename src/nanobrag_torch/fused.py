"""The fused CPU render path: one compiled pass (numba) over pixels x layers x sub-pixels x sources x phi x mosaic.

Same physics, same C quirks and the same evaluation order as the eager torch kernel (``kernel.render_chunk``),
which stays the reference, the GPU path and the autograd path. Pixels are rendered in tiles of consecutive
pixels of the raster-ordered pixel list; inside a tile every step is a short loop over the tile's pixels, so
the compiler vectorises it, and each pixel accumulates its terms one by one in C's order
(layer, sub-pixel S, sub-pixel F, source, phi step, mosaic domain). Tiles run in parallel (numba threads).

Cheaper exact math than C's (the golden corpus passes within the thresholds of ``tools.thresholds``):
the square-crystal grating factor sin(N pi h)/sin(pi h) is evaluated on the fractional part d = h - round(h),
as (-1)^(h0 (N-1) + m) sin(pi e)/sin(pi d) with N d = m + e, both sines from one polynomial on |x| <= 1/2
(no range reduction, no library call, N at d == 0 exactly).

C's global tricubic shut-off (the first out-of-range lookup in raster order switches interpolation off for
everything after it) is reproduced in two passes: the parallel pass lets every pixel interpolate until its
own first out-of-range lookup and records it; then every pixel after the first such pixel that did
interpolate is rendered again with nearest-neighbour F. A tile that starts after an already known
out-of-range pixel renders with nearest F straight away (it would be redone otherwise).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit
from numba.core import types
from numba.extending import intrinsic, overload

from .jit import fast_cache_loads
from .physics import GAUSS_WIDTH, ROUND_XTAL_SCALE, TOPHAT_RADIUS_SQR



def _jit(fn=None, **opts):
    """numba.njit with IEEE division (x/0 = inf, 0/0 = NaN, as in C and torch) instead of Python's
    ZeroDivisionError checks, which would also stop the loops from vectorising, and no fast-math (the
    arithmetic stays as written); with ``cache=True`` the cache loads without numba's registry refresh
    (``jit.fast_cache_loads``). As a decorator with or without options."""
    def wrap(f):
        d = njit(error_model="numpy", fastmath=False, **opts)(f)
        return fast_cache_loads(d) if opts.get("cache") else d
    return wrap if fn is None else wrap(fn)

TILE = 64  # pixels per tile: the vector loops' length; a tile's work arrays stay in L1
_CHUNKS_PER_THREAD = 32  # work items per thread: small enough to balance, few enough to cost nothing

# ---------------------------------------------------------------------------------------------- sin(pi x)
# sin(pi x) = x P(x^2) on |x| <= 1/2: Chebyshev fits (mpmath.chebyfit on [0, 0.2502]) of sin(pi sqrt t)/sqrt t,
# fit error 3e-19 (float64, degree 8 in t) and 7e-9 (float32, degree 4); evaluated with fused multiply-adds,
# measured max relative error 2.6e-16 in float64 and 1.5e-7 in float32 (~1.2 ulp; tests/unit/test_fused.py).
_SINPI64 = (3.141592653589793, -5.167712780049969, 2.5501640398773002, -0.5992645293189358,
            0.08214588657295133, -0.007370430504516517, 0.0004662998090641688, -2.190347829127253e-05,
            7.697626512234251e-07)
_SINPI32 = (3.141592640023496, -5.167710068092312, 2.550077181005858, -0.5982888784889738, 0.07765241213928704)


def sinpi_small(x):
    """sin(pi x) for |x| <= 1/2 by the polynomial the fused kernel uses (compiled code only)."""
    raise NotImplementedError("sinpi_small is compiled into the fused kernel; see sinpi_small_array")


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (the hardware's fused multiply-add)."""
    def codegen(context, builder, sig, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


@overload(sinpi_small, jit_options={"error_model": "numpy"})
def _sinpi_small_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        c = tuple(np.float32(v) for v in _SINPI32)

        def impl32(x):
            t = x * x
            return x * _fma(_fma(_fma(_fma(c[4], t, c[3]), t, c[2]), t, c[1]), t, c[0])
        return impl32
    c = _SINPI64

    def impl64(x):
        t = x * x
        acc = _fma(_fma(_fma(_fma(c[8], t, c[7]), t, c[6]), t, c[5]), t, c[4])
        return x * _fma(_fma(_fma(_fma(acc, t, c[3]), t, c[2]), t, c[1]), t, c[0])
    return impl64


@_jit(cache=True)
def sinpi_small_array(x):
    """``sinpi_small`` over an array in its own dtype, compiled (for tests)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = sinpi_small(x[i])
    return out


@_jit
def _sincg_reduced(h, n, nm1):
    """C sincg(pi h, N) = sin(N pi h)/sin(pi h), evaluated on the fractional part of h (N at integer h)."""
    T = type(h)
    h0 = np.floor(h + T(0.5))
    d = h - h0
    y = n * d
    m = np.floor(y + T(0.5))
    e = y - m
    r = sinpi_small(e) / sinpi_small(d)
    r = n if d == T(0) else r
    q = h0 * nm1 + m
    return (T(1) - T(2) * (q - T(2) * np.floor(T(0.5) * q))) * r


@_jit(cache=True)
def sincg_array(h, n):
    """``_sincg_reduced(h, N)`` over an array (for tests)."""
    T = h.dtype.type
    out = np.empty_like(h)
    for i in range(h.size):
        out[i] = _sincg_reduced(h[i], T(n), T(n - 1))
    return out


# ------------------------------------------------------------------------------------------ kernel layout
# Floating parameters (engine dtype), by index into ``prm``.
P_SUB, P_SUBHALF, P_THICKSTEP, P_PX2, P_CLOSE, P_DEPTH, P_DMIN, P_KAHN, P_IBG, P_SCALE, P_NA, P_NB, P_NC, \
    P_FUDGE, P_DIST, P_DEFAULT_F = range(16)
N_PRM = 16
# Integer settings, by index into ``ipr``.
(I_FPIXELS, I_OS, I_LAYERS, I_SHAPE, I_POINT, I_THICK, I_WATER, I_NOPOLAR, I_OS_THICK, I_OS_POLAR, I_OS_OMEGA,
 I_CURVED, I_HAS_TABLE, I_HMIN, I_KMIN, I_LMIN, I_HMAX, I_KMAX, I_LMAX, I_INTERP, I_DMIN, I_WIDE, I_NPIX,
 I_PANEL_PIXELS) = range(24)
N_IPR = 24
SHAPES = {"square": 0, "round": 1, "gauss": 2, "tophat": 3}


@_jit
def _sinc3(x):
    """C sinc3(x) = 3 (sin x/x - cos x)/x^2, 1 at 0; Taylor series below 0.5 in float32 (as physics.sinc3)."""
    T = type(x)
    if x == T(0):
        return T(1)
    closed = T(3) * (math.sin(x) / x - math.cos(x)) / (x * x)
    if T(1) + T(1e-10) == T(1) and abs(x) < T(0.5):  # float32 (constant-folded)
        x2 = x * x
        return T(1) - x2 / T(10) * (T(1) - x2 / T(28) * (T(1) - x2 / T(54) * (T(1) - x2 / T(88))))
    return closed


@_jit
def _clamp_axis(x, hi):
    """x clamped to [0, hi]; NaN -> 0."""
    lo = type(x)(0)
    r = x if x >= lo else lo
    return r if r <= hi else hi


@_jit(cache=True, nogil=True)
def _render_tiles(t0, t1, idx, geo, pclose, inc, lam, orient, recip, polax, Fpad, prm, ipr, known_first,
                  values, omsum, had_oor, used_interp):
    """Render tiles t0..t1-1 (TILE consecutive entries each) of the pixels ``idx`` (flat raster indices,
    ascending; empty: every pixel 0 .. ``ipr[I_NPIX]`` - 1) into ``values`` (per pixel) and ``omsum`` (the
    summed solid angle per tile, float64). Runs without the GIL: threads render chunks in parallel.

    ``geo`` (P, 5, 3) per panel, rows: pix0, fdet, sdet, odet, beam; ``pclose`` (P,) each panel's close
    distance; a flat index q is pixel q mod (S F) of panel q div (S F) (one panel: the C program's detector).
    A tile on one panel (all but the few across a boundary; every tile of C's single detector) uses its
    panel's vectors as loop constants; a tile across a boundary loads each pixel's vectors. ``orient`` (9, K):
    a, b, c components per phi x mosaic orientation. ``Fpad``: the F table with a default_F border one cell
    wide (flat, shape in ipr).
    With ``ipr[I_INTERP]`` tricubic F is used until each pixel's first out-of-range lookup
    (``had_oor``); ``used_interp`` says whether a pixel used it at all (both per pixel, empty without
    tricubic F). ``known_first[0]``: the smallest
    pixel position known to hold an out-of-range lookup (tiles after it use nearest F).

    Why one long function: it is the whole per-tile evaluation compiled as one numba function, so that the
    stage loops (positions, per source, per orientation) share their tile-sized scratch arrays and LLVM
    vectorises each loop in place; split into separately compiled functions, the scratch arrays cross call
    boundaries and the loops stop vectorising (docs/development/fused-kernel.md). Its stages are marked by
    comments in the order of the eager kernel's named stages (kernel.render_chunk).
    """
    T = values.dtype.type
    listed = idx.size > 0
    n_pix = idx.size if listed else ipr[I_NPIX]
    fpix_f = np.float64(ipr[I_FPIXELS])
    inv_fpixels = 1.0 / fpix_f
    pan_f = np.float64(ipr[I_PANEL_PIXELS])
    inv_pan = 1.0 / pan_f
    os_ = ipr[I_OS]
    layers = ipr[I_LAYERS]
    shape = ipr[I_SHAPE]
    point = ipr[I_POINT] != 0
    thick = ipr[I_THICK] != 0
    water = ipr[I_WATER] != 0
    nopolar = ipr[I_NOPOLAR] != 0
    os_thick = ipr[I_OS_THICK] != 0
    os_polar = ipr[I_OS_POLAR] != 0
    os_omega = ipr[I_OS_OMEGA] != 0
    any_os = os_thick or os_polar or os_omega
    curved = ipr[I_CURVED] != 0
    has_table = ipr[I_HAS_TABLE] != 0
    interp = ipr[I_INTERP] != 0
    use_dmin = ipr[I_DMIN] != 0
    hmin = T(ipr[I_HMIN])
    kmin = T(ipr[I_KMIN])
    lmin = T(ipr[I_LMIN])
    # tricubic range test: in range iff min+2 <= h and h - min + 3 <= max - min + 1 (per axis)
    hrng = T(ipr[I_HMAX] - ipr[I_HMIN] + 1)
    krng = T(ipr[I_KMAX] - ipr[I_KMIN] + 1)
    lrng = T(ipr[I_LMAX] - ipr[I_LMIN] + 1)
    sh = ipr[I_HMAX] - ipr[I_HMIN] + 3  # padded table dims
    sk = ipr[I_KMAX] - ipr[I_KMIN] + 3
    sl = ipr[I_LMAX] - ipr[I_LMIN] + 3
    fmin = (np.float64(ipr[I_HMIN] - 1), np.float64(ipr[I_KMIN] - 1), np.float64(ipr[I_LMIN] - 1))
    fhi = (np.float64(sh - 1), np.float64(sk - 1), np.float64(sl - 1))
    fstride = (np.float64(sk * sl), np.float64(sl))
    tmin = (T(fmin[0]), T(fmin[1]), T(fmin[2]))
    thi = (T(fhi[0]), T(fhi[1]), T(fhi[2]))
    tstride = (T(fstride[0]), T(fstride[1]))
    wide_index = ipr[I_WIDE] != 0  # table indices not exact in the engine dtype: index arithmetic in double
    noskip = water or shape == 0  # F_latt == 0 is skipped only without water; sincg is never 0 (as in C)
    sub = prm[P_SUB]
    subhalf = prm[P_SUBHALF]
    thickstep = prm[P_THICKSTEP]
    px2 = prm[P_PX2]
    depth_num = prm[P_DEPTH]
    dmin = prm[P_DMIN]
    kahn = prm[P_KAHN]
    I_bg = prm[P_IBG]
    scale = prm[P_SCALE]
    Na = prm[P_NA]
    Nb = prm[P_NB]
    Nc = prm[P_NC]
    fudge = prm[P_FUDGE]
    dist = prm[P_DIST]
    default_F = prm[P_DEFAULT_F]
    NS = lam.size
    K = orient.shape[1]
    osT = T(os_)
    use_a = Na > T(1)
    use_b = Nb > T(1)
    use_c = Nc > T(1)
    nprod = Na * Nb * Nc
    n2 = Na * Na * Nb * Nb * Nc * Nc
    T_S = T(layers * os_ * os_)

    fp = np.empty(TILE, values.dtype)
    sp = np.empty(TILE, values.dtype)
    I = np.empty(TILE, values.dtype)
    pol_px = np.empty(TILE, values.dtype)
    found = np.empty(TILE, np.bool_)
    om0 = np.empty(TILE, values.dtype)
    cap_last = np.empty(TILE, values.dtype)
    om_acc = np.empty(TILE, values.dtype)
    ion = np.empty(TILE, np.bool_)
    dx = np.empty(TILE, values.dtype)
    dy = np.empty(TILE, values.dtype)
    dz = np.empty(TILE, values.dtype)
    om = np.empty(TILE, values.dtype)
    cap = np.empty(TILE, values.dtype)
    Sx = np.empty(TILE, values.dtype)
    Sy = np.empty(TILE, values.dtype)
    Sz = np.empty(TILE, values.dtype)
    alive = np.empty(TILE, np.bool_)
    fac = np.empty(TILE, values.dtype)
    hh = np.empty(TILE, values.dtype)
    kk = np.empty(TILE, values.dtype)
    ll = np.empty(TILE, values.dtype)
    FL = np.empty(TILE, values.dtype)
    Fb = np.full(TILE, default_F, values.dtype)
    ib = np.zeros(TILE, np.int32)
    pnl = np.empty((13, TILE), values.dtype)  # per pixel: pix0, fdet, sdet, odet (x, y, z each), close distance
    pan = np.empty(TILE, np.int64)  # each pixel's panel (tiles across a panel boundary)
    for tile in range(t0, t1):
        start = tile * TILE
        om_tile = 0.0
        n = min(TILE, n_pix - start)
        tile_interp = interp and start < known_first[0]
        # indices ascend: when the first and the last pixel lie on one panel, so does the whole tile
        q_first = np.float64(idx[start] if listed else start)
        q_last = np.float64(idx[start + n - 1] if listed else start + n - 1)
        p_first = _divmod_exact(q_first, pan_f, inv_pan)[0]
        uniform = p_first == _divmod_exact(q_last, pan_f, inv_pan)[0]
        base = p_first * pan_f
        for i in range(n):
            # panel, slow, fast = divmods of q in exact double arithmetic (an integer division costs ~40 cycles)
            q = np.float64(idx[start + i] if listed else start + i)
            if uniform:
                q = q - base
            else:
                pn, q = _divmod_exact(q, pan_f, inv_pan)
                pan[i] = np.int64(pn)
            row, col = _raster_cell(q, fpix_f, inv_fpixels)
            fp[i] = T(col)
            sp[i] = T(row)
            I[i] = I_bg
            pol_px[i] = T(1) if nopolar else T(0)
            ion[i] = tile_interp
            found[i] = False
            om_acc[i] = T(0)
        if interp:
            for i in range(n):
                had_oor[start + i] = False
                used_interp[start + i] = False
        pf = np.int64(p_first)  # a tile on one panel: its vectors as scalars, loop constants (as one detector)
        p0x, p0y, p0z = geo[pf, 0, 0], geo[pf, 0, 1], geo[pf, 0, 2]
        fx, fy, fz = geo[pf, 1, 0], geo[pf, 1, 1], geo[pf, 1, 2]
        sx, sy, sz = geo[pf, 2, 0], geo[pf, 2, 1], geo[pf, 2, 2]
        ox, oy, oz = geo[pf, 3, 0], geo[pf, 3, 1], geo[pf, 3, 2]
        close = pclose[pf]
        if not uniform:  # across a panel boundary: each pixel's own panel vectors
            for i in range(n):
                for ri in range(4):
                    for ci in range(3):
                        pnl[3 * ri + ci, i] = geo[pan[i], ri, ci]
                pnl[12, i] = pclose[pan[i]]
        for t in range(layers):
            Odet = T(t) * thickstep
            for ss in range(os_):
                for sf in range(os_):
                    first_sub = ss == 0 and sf == 0
                    # position, direction, solid angle and capture fraction per pixel (C 6.1-6.3)
                    if uniform:
                        for i in range(n):
                            Fdet = sub * (fp[i] * osT + T(sf)) + subhalf
                            Sdet = sub * (sp[i] * osT + T(ss)) + subhalf
                            dx[i] = Fdet * fx + Sdet * sx + Odet * ox + p0x
                            dy[i] = Fdet * fy + Sdet * sy + Odet * oy + p0y
                            dz[i] = Fdet * fz + Sdet * sz + Odet * oz + p0z
                    else:
                        for i in range(n):
                            Fdet = sub * (fp[i] * osT + T(sf)) + subhalf
                            Sdet = sub * (sp[i] * osT + T(ss)) + subhalf
                            dx[i] = Fdet * pnl[3, i] + Sdet * pnl[6, i] + Odet * pnl[9, i] + pnl[0, i]
                            dy[i] = Fdet * pnl[4, i] + Sdet * pnl[7, i] + Odet * pnl[10, i] + pnl[1, i]
                            dz[i] = Fdet * pnl[5, i] + Sdet * pnl[8, i] + Odet * pnl[11, i] + pnl[2, i]
                    if curved:
                        for i in range(n):
                            dx[i], dy[i], dz[i] = _curve(dx[i], dy[i], dz[i], geo[0], dist)
                    if uniform:
                        for i in range(n):
                            R = math.sqrt(dx[i] * dx[i] + dy[i] * dy[i] + dz[i] * dz[i])
                            dx[i] = dx[i] / R
                            dy[i] = dy[i] / R
                            dz[i] = dz[i] / R
                            om[i] = T(1) / (R * R) if point else px2 / (R * R) * close / R
                    else:
                        for i in range(n):
                            R = math.sqrt(dx[i] * dx[i] + dy[i] * dy[i] + dz[i] * dz[i])
                            dx[i] = dx[i] / R
                            dy[i] = dy[i] / R
                            dz[i] = dz[i] / R
                            om[i] = T(1) / (R * R) if point else px2 / (R * R) * pnl[12, i] / R
                    if (thick or os_thick) and uniform:
                        for i in range(n):
                            rho = dx[i] * ox + dy[i] * oy + dz[i] * oz
                            depth = depth_num / rho
                            cap[i] = math.exp(-T(t) * depth) - math.exp(-(T(t) + T(1)) * depth)
                    elif thick or os_thick:
                        for i in range(n):
                            rho = dx[i] * pnl[9, i] + dy[i] * pnl[10, i] + dz[i] * pnl[11, i]
                            depth = depth_num / rho
                            cap[i] = math.exp(-T(t) * depth) - math.exp(-(T(t) + T(1)) * depth)
                    else:
                        for i in range(n):
                            cap[i] = T(1)
                    if t == 0 and first_sub:
                        for i in range(n):
                            om0[i] = om[i]
                    if first_sub and t == layers - 1:
                        for i in range(n):
                            cap_last[i] = cap[i]
                    if os_omega:
                        for i in range(n):
                            om_acc[i] += om[i]
                    for j in range(NS):
                        ix = inc[j, 0]
                        iy = inc[j, 1]
                        iz = inc[j, 2]
                        lj = lam[j]
                        # scattering vector and the dmin cut (C 6.4)
                        for i in range(n):
                            Sx[i] = (dx[i] - ix) / lj
                            Sy[i] = (dy[i] - iy) / lj
                            Sz[i] = (dz[i] - iz) / lj
                        if use_dmin:
                            for i in range(n):
                                stol = T(0.5) * math.sqrt(Sx[i] * Sx[i] + Sy[i] * Sy[i] + Sz[i] * Sz[i])
                                alive[i] = not (stol > T(0) and dmin > T(0.5) / (stol if stol > T(0) else T(1)))
                        else:
                            for i in range(n):
                                alive[i] = True
                        # polarization (C 6.6): every evaluation under -oversample_polar, else the first alive one
                        if os_polar or not nopolar:
                            for i in range(n):
                                if os_polar:
                                    pv = T(1) if nopolar else _polar(ix, iy, iz, dx[i], dy[i], dz[i], polax, kahn)
                                    fac[i] = pv
                                elif alive[i] and not found[i]:
                                    pol_px[i] = _polar(ix, iy, iz, dx[i], dy[i], dz[i], polax, kahn)
                                    found[i] = True
                        if any_os:
                            for i in range(n):
                                f = T(1)
                                if os_thick:
                                    f = f * cap[i]
                                if os_polar:
                                    f = f * fac[i]
                                if os_omega:
                                    f = f * om[i]
                                fac[i] = f
                        for k in range(K):
                            a0, a1, a2 = orient[0, k], orient[1, k], orient[2, k]
                            b0, b1, b2 = orient[3, k], orient[4, k], orient[5, k]
                            c0, c1, c2 = orient[6, k], orient[7, k], orient[8, k]
                            # Miller indices (C 6.7)
                            for i in range(n):
                                hh[i] = a0 * Sx[i] + a1 * Sy[i] + a2 * Sz[i]
                                kk[i] = b0 * Sx[i] + b1 * Sy[i] + b2 * Sz[i]
                                ll[i] = c0 * Sx[i] + c1 * Sy[i] + c2 * Sz[i]
                            # lattice factor (C 6.8)
                            if shape == 0:
                                for i in range(n):
                                    FL[i] = T(1)
                                if use_a:
                                    for i in range(n):
                                        FL[i] = FL[i] * _sincg_reduced(hh[i], Na, Na - T(1))
                                if use_b:
                                    for i in range(n):
                                        FL[i] = FL[i] * _sincg_reduced(kk[i], Nb, Nb - T(1))
                                if use_c:
                                    for i in range(n):
                                        FL[i] = FL[i] * _sincg_reduced(ll[i], Nc, Nc - T(1))
                            elif shape == 1:
                                for i in range(n):
                                    ddh = hh[i] - np.ceil(hh[i] - T(0.5))
                                    ddk = kk[i] - np.ceil(kk[i] - T(0.5))
                                    ddl = ll[i] - np.ceil(ll[i] - T(0.5))
                                    r2 = (ddh * ddh * Na * Na + ddk * ddk * Nb * Nb + ddl * ddl * Nc * Nc) * fudge
                                    x = T(0) if r2 == T(0) else T(math.pi) * math.sqrt(r2)
                                    FL[i] = nprod * T(ROUND_XTAL_SCALE) * _sinc3(x)
                            else:
                                for i in range(n):
                                    ddh = hh[i] - np.ceil(hh[i] - T(0.5))
                                    ddk = kk[i] - np.ceil(kk[i] - T(0.5))
                                    ddl = ll[i] - np.ceil(ll[i] - T(0.5))
                                    ex = ddh * recip[0, 0] + ddk * recip[1, 0] + ddl * recip[2, 0]
                                    ey = ddh * recip[0, 1] + ddk * recip[1, 1] + ddl * recip[2, 1]
                                    ez = ddh * recip[0, 2] + ddk * recip[1, 2] + ddl * recip[2, 2]
                                    r2 = (ex * ex + ey * ey + ez * ez) * n2
                                    if shape == 2:
                                        FL[i] = nprod * math.exp(-(r2 / T(GAUSS_WIDTH) * fudge))
                                    else:
                                        FL[i] = nprod if r2 * fudge < T(TOPHAT_RADIUS_SQR) else T(0)
                            # structure factor (C 6.9)
                            if tile_interp:
                                for i in range(n):
                                    if not (alive[i] and (noskip or FL[i] != T(0))):
                                        continue  # not evaluated: no lookup, no shut-off
                                    h, kx, l_ = hh[i], kk[i], ll[i]
                                    if ion[i]:
                                        if _tricubic_in_range(h, kx, l_, hmin, kmin, lmin, hrng, krng, lrng):
                                            Fb[i] = _tricubic(h, kx, l_, Fpad, hmin, kmin, lmin, sk, sl)
                                            used_interp[start + i] = True
                                            continue
                                        ion[i] = False
                                        had_oor[start + i] = True
                                    Fb[i] = Fpad[np.int64(_f_index(np.float64(h), np.float64(kx), np.float64(l_),
                                                                   fmin, fhi, fstride))]
                            elif has_table:
                                if wide_index:
                                    for i in range(n):
                                        ib[i] = np.int32(_f_index(np.float64(hh[i]), np.float64(kk[i]),
                                                                  np.float64(ll[i]), fmin, fhi, fstride))
                                else:
                                    for i in range(n):
                                        ib[i] = np.int32(_f_index(hh[i], kk[i], ll[i], tmin, thi, tstride))
                                for i in range(n):
                                    Fb[i] = Fpad[ib[i]]
                            # accumulation (C 6.10): terms that are not evaluated add 0 and multiply by 1
                            if any_os:
                                for i in range(n):
                                    F = Fb[i]
                                    fl = FL[i]
                                    ev = alive[i] & (noskip | (fl != T(0)))
                                    I[i] = (I[i] + (F * F * fl * fl if ev else T(0))) * (fac[i] if ev else T(1))
                            else:
                                for i in range(n):
                                    F = Fb[i]
                                    fl = FL[i]
                                    ev = alive[i] & (noskip | (fl != T(0)))
                                    I[i] = I[i] + (F * F * fl * fl if ev else T(0))
        # final scaling (C 6.10)
        for i in range(n):
            v = scale * I[i]
            if not os_thick:
                v = v * cap_last[i]
            if not os_polar:
                v = v * pol_px[i]
            if not os_omega:
                v = v * om0[i]
                om_acc[i] = om0[i] * T_S
            values[start + i] = v
            om_tile += np.float64(om_acc[i])
        omsum[tile] = om_tile
        if tile_interp:
            for i in range(n):
                if had_oor[start + i]:
                    if start + i < known_first[0]:
                        known_first[0] = start + i  # benign race: only an optimisation hint
                    break


@_jit
def _divmod_exact(q, d, inv_d):
    """(floor(q/d), q mod d) of non-negative integers held exactly in doubles, without an integer division."""
    k = np.floor(q * inv_d)
    r = q - k * d
    k = k - 1.0 if r < 0.0 else (k + 1.0 if r >= d else k)
    r = r + d if r < 0.0 else (r - d if r >= d else r)
    return k, r


@_jit
def _raster_cell(q, fpix_f, inv_fpixels):
    """(slow, fast) = divmod(q, fpixels) of a flat pixel index q (``inv_fpixels`` = 1 / fpixels)."""
    return _divmod_exact(q, fpix_f, inv_fpixels)


@_jit
def _sub_pixel_position(fpix, spix, subf, subs, odet, geo, sub, subhalf, os_):
    """C's sub-pixel position: Fdet, Sdet = sub (pixel os + sub-pixel) + sub/2, then Fdet f + Sdet s + Odet o + pix0
    (``geo`` rows pix0, fdet, sdet, odet), summed in C's order."""
    Fdet = sub * (fpix * os_ + subf) + subhalf
    Sdet = sub * (spix * os_ + subs) + subhalf
    return (Fdet * geo[1, 0] + Sdet * geo[2, 0] + odet * geo[3, 0] + geo[0, 0],
            Fdet * geo[1, 1] + Sdet * geo[2, 1] + odet * geo[3, 1] + geo[0, 1],
            Fdet * geo[1, 2] + Sdet * geo[2, 2] + odet * geo[3, 2] + geo[0, 2])


@_jit
def _curve(px, py, pz, geo, dist):
    """C's curved detector: distance*beam rotated about s by y/distance, then about f by z/distance."""
    bx = dist * geo[4, 0]
    by = dist * geo[4, 1]
    bz = dist * geo[4, 2]
    bx, by, bz = _rotate_axis(bx, by, bz, geo[2, 0], geo[2, 1], geo[2, 2], py / dist)
    return _rotate_axis(bx, by, bz, geo[1, 0], geo[1, 1], geo[1, 2], pz / dist)


@_jit
def _rotate_axis(vx, vy, vz, ax, ay, az, phi):
    """C rotate_axis() (as geometry.rotate_axis): axis (axis.v)(1 - cos) + v cos + (axis x v) sin."""
    c = math.cos(phi)
    s = math.sin(phi)
    dot = (ax * vx + ay * vy + az * vz) * (type(c)(1) - c)
    return (ax * dot + vx * c + (ay * vz - az * vy) * s,
            ay * dot + vy * c + (az * vx - ax * vz) * s,
            az * dot + vz * c + (ax * vy - ay * vx) * s)


@_jit
def _unit3(x, y, z):
    """C unitize(): v/|v|, a zero vector stays zero."""
    n = math.sqrt(x * x + y * y + z * z)
    if n == type(n)(0):
        return x, y, z
    return x / n, y / n, z / n


@_jit
def _polar(ix, iy, iz, dx, dy, dz, axis, kahn):
    """C polarization_factor() for unit incident i and diffracted d (as physics.polarization_factor)."""
    T = type(ix)
    cos2t = ix * dx + iy * dy + iz * dz
    c2 = cos2t * cos2t
    s2 = T(1) - c2
    if kahn == T(0):
        return T(0.5) * (T(1) + c2)
    Bx, By, Bz = _unit3(axis[1] * iz - axis[2] * iy, axis[2] * ix - axis[0] * iz, axis[0] * iy - axis[1] * ix)
    Ex, Ey, Ez = _unit3(iy * Bz - iz * By, iz * Bx - ix * Bz, ix * By - iy * Bx)
    psi = -math.atan2(dx * Bx + dy * By + dz * Bz, dx * Ex + dy * Ey + dz * Ez)
    return T(0.5) * (T(1) + c2 - kahn * math.cos(T(2) * psi) * s2)


@_jit
def _f_index(h, k, l_, mins1, his, strides):
    """Flat index (a float, exact) into the padded F table at C's nearest indices ceil(x - 0.5).

    ``mins1`` = table minimum - 1 per axis, ``his`` = padded size - 1: outside the table (and NaN) -> the
    default_F border.
    """
    T = type(h)
    half = T(0.5)
    return (_clamp_axis(np.ceil(h - half) - mins1[0], his[0]) * strides[0]
            + _clamp_axis(np.ceil(k - half) - mins1[1], his[1]) * strides[1]
            + _clamp_axis(np.ceil(l_ - half) - mins1[2], his[2]))


@_jit
def _tricubic_in_range(h, k, l_, hmin, kmin, lmin, hrng, krng, lrng):
    """C's tricubic range test on fractional indices: min+2 <= x and x - min + 3 <= max - min + 1 per axis."""
    T = type(h)
    return not ((h - hmin + T(3) > hrng) or (h - T(2) < hmin) or (k - kmin + T(3) > krng) or (k - T(2) < kmin)
                or (l_ - lmin + T(3) > lrng) or (l_ - T(2) < lmin))


@_jit
def _tricubic(h, k, l_, Fpad, hmin, kmin, lmin, sk, sl):
    """C's tricubic F: tensor-product cubic Lagrange on nodes floor-1..floor+2 (in range, as physics)."""
    T = type(h)
    if h != h or k != k or l_ != l_:
        return h + k + l_  # NaN, as the eager path's weights give
    bh = np.floor(h)
    bk = np.floor(k)
    bl = np.floor(l_)
    wh = _lagrange(h - bh)
    wk = _lagrange(k - bk)
    wl = _lagrange(l_ - bl)
    # padded table: index (x - min) + 1, nodes start at floor - 1
    oh = int(bh - hmin)
    ok = int(bk - kmin)
    ol = int(bl - lmin)
    acc = T(0)
    for a in range(4):
        sa = T(0)
        for b in range(4):
            base = ((oh + a) * sk + ok + b) * sl + ol
            sc = wl[0] * Fpad[base] + wl[1] * Fpad[base + 1] + wl[2] * Fpad[base + 2] + wl[3] * Fpad[base + 3]
            sa += wk[b] * sc
        acc += wh[a] * sa
    return acc


@_jit
def _lagrange(t):
    """Cubic Lagrange weights for nodes -1, 0, 1, 2 at t (as physics.lagrange_weights)."""
    T = type(t)
    return ((t - T(0)) * (t - T(1)) * (t - T(2)) / T(-6.0),
            (t + T(1)) * (t - T(1)) * (t - T(2)) / T(2.0),
            (t + T(1)) * (t - T(0)) * (t - T(2)) / T(-2.0),
            (t + T(1)) * (t - T(0)) * (t - T(1)) / T(6.0))


# ------------------------------------------------------------------------------------- image statistics
# Compiled one-pass versions of stats.py's block loops (same results, the sums in raster order as C's).
@_jit(cache=True, nogil=True)
def masked_sums(flat32, mask, shift):
    """(n, sum x, sum x^2) in double over the pixels where ``mask`` (empty: every pixel); with a finite
    ``shift``, sum (x-shift)^2."""
    n = 0
    total = 0.0
    sq = 0.0
    use = shift == shift
    every = mask.size == 0
    for i in range(flat32.size):
        if every or mask[i]:
            x = np.float64(flat32[i])
            if use:
                x = x - shift
            n += 1
            total += x
            sq += x * x
    return n, total, sq


@_jit(cache=True, nogil=True)
def int_pixels(flat32, roi, scale, adc, out):
    """SMV pixels (stats.int_image): floor(float32(v scale + adc + 0.5)) clipped to 0..65535; NaN, outside the
    ROI (``roi`` empty: every pixel is inside) -> 0."""
    every = roi.size == 0
    for i in range(flat32.size):
        t = np.float64(flat32[i]) * scale + adc
        t = 0.0 if t < 0.0 else (65535.0 if t > 65535.0 else t)
        r = np.floor(np.float32(t + 0.5))
        out[i] = np.uint16(r) if (every or roi[i]) and r == r else np.uint16(0)


@_jit(cache=True, nogil=True)
def pgm_pixels(flat32, roi, scale, out):
    """PGM bytes (stats.pgm_image): min(v scale, 255) truncated; negative, NaN, outside the ROI (``roi`` empty:
    every pixel is inside) -> 0."""
    every = roi.size == 0
    for i in range(flat32.size):
        t = np.float64(flat32[i]) * scale
        keep = (every or roi[i]) and t >= 0.0  # NaN fails the test
        t = 255.0 if t > 255.0 else t
        out[i] = np.uint8(np.trunc(t)) if keep else np.uint8(0)


# ------------------------------------------------------------------------------------------------ driver
def num_threads() -> int:
    """Threads of the fused path: torch's count (OMP_NUM_THREADS, else the physical cores), as for C's OpenMP."""
    return max(1, torch.get_num_threads())


def _run_tiles(pix, args, out, threads: int, progress=None, kernel=None, tile: int = TILE, npix: int = 0) -> None:
    """Render every tile of ``pix`` (empty: of the pixels 0 .. ``npix`` - 1) with ``kernel`` (default
    ``_render_tiles``; ``tile`` pixels per tile): chunks of consecutive tiles, in raster order, on ``threads``
    threads (one thread: in raster order)."""
    kernel = _render_tiles if kernel is None else kernel
    total = pix.size if pix.size else npix
    ntiles = _tiles(total, tile)
    per = max(1, ntiles // (threads * _CHUNKS_PER_THREAD))
    ranges = [(t, min(t + per, ntiles)) for t in range(0, ntiles, per)]

    def one(r):
        kernel(r[0], r[1], pix, *args, *out)
        return min(r[1] * tile, total) - r[0] * tile

    # Even with one thread the chunks run in a worker: the main thread only waits, so Ctrl-C and SIGTERM reach
    # it between chunks (never inside numba's compiler, which an interrupt can crash), and the chunks not
    # started yet are dropped instead of rendered first.
    ex = ThreadPoolExecutor(max(1, min(threads, len(ranges))), thread_name_prefix="nb-fused")
    try:
        for k in ex.map(one, ranges):
            if progress is not None:
                progress(k)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _scalar(t) -> float:
    """A 0-dim tensor's (or a number's) value as a Python float, without its gradient."""
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


def render(geom, idx: torch.Tensor | None, inp, s, fpixels: int, pixel_size: float, oversample: int,
           thickstep: float, thicksteps: int, curved: bool, interp_enabled: bool = True, progress=None,
           npix: int = 0, panel_pixels: int = 0):
    """Render the pixels ``idx`` (flat raster indices, ascending: ROI and mask applied; None: every pixel
    0 .. ``npix`` - 1) on the CPU.

    ``geom`` is the placed ``geometry.DetectorGeometry``, ``inp``/``s`` the ``kernel.KernelInputs`` and
    ``kernel.KernelSettings`` of the eager path. Returns (values per pixel, omega_sum over all pixels,
    interpolation still enabled) as torch tensors in the engine dtype, like the eager chunk loop.
    ``progress``, if given, is called with the number of pixels each finished chunk held. For P panels
    (``geom`` vectors (P, 3)), ``panel_pixels`` is the pixels of one panel and ``idx`` runs over all of them.
    """
    dt, args, pix = render_arrays(geom, idx, inp, s, fpixels, pixel_size, oversample, thickstep, thicksteps, curved,
                                  interp_enabled, npix, panel_pixels)
    values, omsum, still_on = _render_pixels(pix, args, dt, interp_enabled, progress)
    return torch.from_numpy(values), omega_total(omsum, inp), torch.as_tensor(still_on)


def render_arrays(geom, idx, inp, s, fpixels: int, pixel_size: float, oversample: int, thickstep: float,
                  thicksteps: int, curved: bool, interp_enabled: bool, npix: int, panel_pixels: int):
    """(numpy dtype, the kernel's arguments, the pixel list) of a render (``render``'s arguments)."""
    dt = np.float32 if inp.orientations.dtype == torch.float32 else np.float64
    args = _kernel_arrays(geom, inp, s, dt, fpixels, pixel_size, oversample, thickstep, thicksteps, curved,
                          interp_enabled, panel_pixels)
    pix = _pixel_list(idx)
    args[9][I_NPIX] = npix if idx is None else pix.size
    return dt, args, pix


def omega_total(omsum: np.ndarray, inp) -> torch.Tensor:
    """The summed solid angle (per-tile sums added in double) in the engine dtype."""
    return torch.as_tensor(omsum.sum(dtype=np.float64), dtype=inp.orientations.dtype)


def _pixel_list(idx) -> np.ndarray:
    """The kernels' pixel list: int64 raster indices, or an empty array for "every pixel" (``idx`` None)."""
    if idx is None:
        return np.empty(0, dtype=np.int64)
    return np.ascontiguousarray(idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else idx,
                                dtype=np.int64)


def _kernel_arrays(geom, inp, s, dt, fpixels, pixel_size, oversample, thickstep, thicksteps, curved,
                   interp_enabled, panel_pixels=0):
    """The compiled kernel's arguments (numpy, engine dtype ``dt``) from the eager path's inputs/settings."""
    T = dt
    geo = np.ascontiguousarray(np.stack([_np(v, dt).reshape(-1, 3) for v in (geom.pix0, geom.fdet, geom.sdet,
                                                                            geom.odet, geom.beam)], axis=1))
    pclose = _np(inp.close_distance, dt).reshape(-1)
    inc = _np(inp.incident, dt).reshape(-1, 3)
    lam = _np(inp.wavelengths, dt).reshape(-1)
    orient = np.ascontiguousarray(_np(inp.orientations, dt).reshape(-1, 9).T)
    recip = _np(inp.recip, dt)
    polax = _np(inp.polar_axis, dt)
    mins, maxs = s.hkl_mins, s.hkl_maxs
    span = [mx - mn for mn, mx in zip(mins, maxs)]
    default_F = _scalar(inp.default_F)
    Fpad = np.full([x + 3 for x in span], T(default_F), dtype=dt)
    if s.has_table:
        grid = _np(inp.F_grid, dt)
        Fpad[1:span[0] + 2, 1:span[1] + 2, 1:span[2] + 2] = grid[:span[0] + 1, :span[1] + 1, :span[2] + 1]
    Fpad = Fpad.reshape(-1)
    prm = np.zeros(N_PRM, dtype=dt)
    prm[P_SUB] = pixel_size / oversample
    prm[P_SUBHALF] = pixel_size / oversample / 2.0
    prm[P_THICKSTEP] = thickstep
    prm[P_PX2] = _scalar(inp.pixel_area)
    prm[P_CLOSE] = float(pclose[0])  # (each panel's value is in pclose)
    prm[P_DEPTH] = _scalar(inp.thick_mu)
    prm[P_DMIN] = s.dmin
    prm[P_KAHN] = _scalar(inp.kahn) if s.kahn else 0.0
    prm[P_IBG] = _scalar(inp.I_bg)
    prm[P_SCALE] = _scalar(inp.scale)
    prm[P_NA], prm[P_NB], prm[P_NC] = (float(x) for x in _np(inp.N, np.float64).reshape(3))
    prm[P_FUDGE] = _scalar(inp.fudge)
    prm[P_DIST] = _scalar(geom.distance.reshape(-1)[0])
    prm[P_DEFAULT_F] = default_F
    ipr = np.zeros(N_IPR, dtype=np.int64)
    ipr[I_FPIXELS] = fpixels
    ipr[I_OS] = oversample
    ipr[I_LAYERS] = thicksteps
    ipr[I_SHAPE] = SHAPES[s.shape]
    ipr[I_POINT] = s.point_pixel
    ipr[I_THICK] = s.thick
    ipr[I_WATER] = s.water
    ipr[I_NOPOLAR] = s.nopolar
    ipr[I_OS_THICK] = s.oversample_thick
    ipr[I_OS_POLAR] = s.oversample_polar
    ipr[I_OS_OMEGA] = s.oversample_omega
    ipr[I_CURVED] = curved
    ipr[I_HAS_TABLE] = s.has_table
    ipr[I_HMIN:I_LMIN + 1] = mins
    ipr[I_HMAX:I_LMAX + 1] = maxs
    ipr[I_INTERP] = bool(s.interpolate and interp_enabled)
    ipr[I_DMIN] = s.dmin > 0
    ipr[I_WIDE] = dt == np.float32 and Fpad.size >= 2**24
    ipr[I_PANEL_PIXELS] = panel_pixels if panel_pixels > 0 else np.iinfo(np.int64).max // 4
    known_first = np.full(1, np.iinfo(np.int64).max, dtype=np.int64)
    return (geo, pclose, inc, lam, orient, recip, polax, Fpad, prm, ipr, known_first)


def _tiles(n: int, tile: int = TILE) -> int:
    return (n + tile - 1) // tile


def _render_pixels(pix, args, dt, interp_enabled: bool, progress):
    """Run the tiles over ``pix`` (empty: every pixel) with C's global tricubic shut-off; (values, omega per
    tile, still on)."""
    ipr = args[9]
    n = ipr[I_NPIX]
    interp = bool(ipr[I_INTERP])
    values = np.empty(n, dtype=dt)
    omsum = np.empty(_tiles(n), dtype=np.float64)
    had_oor = np.empty(n if interp else 0, dtype=np.bool_)
    used = np.empty(n if interp else 0, dtype=np.bool_)
    args[10][0] = n
    threads = num_threads()
    _run_tiles(pix, args, (values, omsum, had_oor, used), threads, progress, npix=n)
    still_on = bool(interp_enabled)
    if interp and had_oor.any():
        # C's global shut-off: every pixel after the first out-of-range lookup that interpolated is redone
        still_on = False
        first = int(np.argmax(had_oor))
        redo = first + 1 + np.flatnonzero(used[first + 1:])
        if redo.size:
            ipr[I_INTERP] = 0
            listed = pix[redo] if pix.size else redo.astype(np.int64)
            ipr[I_NPIX] = listed.size
            v2 = np.empty(redo.size, dtype=dt)
            scratch = (v2, np.empty(_tiles(redo.size), dtype=np.float64), np.empty(0, np.bool_),
                       np.empty(0, np.bool_))
            _run_tiles(listed, args, scratch, threads)
            values[redo] = v2
    return values, omsum, still_on
