"""The C program's Numerical-Recipes generators as plain functions over explicit state arrays.

This module is the ONE implementation of ``ran1``, ``gaussdev``, ``gammln`` and ``poidev``. It is written in
the subset of Python that numba compiles, and it is used two ways (see :mod:`nanobrag_torch.crandom.streams`):

* interpreted, as imported, for the handful of draws of the random misset and the mosaic domains (so a run
  without a noise image never imports numba);
* compiled, by ``rng._compiled()``: a second copy of this module whose functions are replaced by
  ``numba.njit(cache=True)`` dispatchers, for the noise image (one call renders every pixel).

Both ways run the same statements on the same state, so a run may mix them: one C random state per run.

State (all mutated in place, as C mutates its statics):

* ``seed``: int64[1], the C ``long`` seed variable the caller passes by address.
* ``table``: int64[33], ran1's shuffle table ``iv[0..31]`` followed by its carry ``iy`` (C statics shared by
  every seed variable).
* ``cache``: float64[6], poidev's statics ``oldm, g, sq, alxm`` (``oldm`` starts at -1) and gaussdev's spare
  (a 0/1 flag, then the value).

Float32 arithmetic: where C uses ``float`` variables, each operation is computed in double and rounded to
float32 with :func:`f32` (a product or sum of two float32 values computed in double and then rounded is the
float32 result, since 53 >= 2*24 + 2). ``sin``/``tan``/``exp``/``log``/``sqrt`` are the double-precision libm
calls that C makes, rounded to float32 on assignment. Values are carried as float64 holding float32 values.
"""

from __future__ import annotations

import math

import numpy as np

# Functions that rng._compiled() replaces by numba dispatchers (every function of this module), and those of
# them that numba inlines into their callers (the per-draw path; the rare branches stay calls).
KERNELS = ("f32", "c_div", "schrage", "ran1", "gaussdev", "gammln", "poidev", "poidev_array", "noise_pixels")
INLINE = ("f32", "c_div", "schrage", "ran1", "poidev")

# ran1 (Park-Miller minimal standard with a Bays-Durham shuffle)
IA = 16807
IM = 2147483647
IQ = 127773
IR = 2836
NTAB = 32
NDIV = 1 + (IM - 1) // NTAB  # 2**26
AM = 1.0 / IM
RNMX = 1.0 - 1.2e-7  # compared in double, as C promotes its float temporary
RNMX_F = float(np.float32(RNMX))  # what `return RNMX;` from a float function gives: 1 - 2**-23
IY = NTAB  # table[IY] is the carry iy
TABLE_SIZE = NTAB + 1

# cache slots
OLDM, G, SQ, ALXM, HAS_SPARE, SPARE = 0, 1, 2, 3, 4, 5
FRESH_CACHE = (-1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # poidev: static float oldm = -1.0; gaussdev: iset = 0

GAMMLN_COF = (
    76.18009172947146,
    -86.50532032941677,
    24.01409824083091,
    -1.231739572450155,
    0.1208650973866179e-2,
    -0.5395239384953e-5,
)


def f32(x):
    """C's double -> float conversion (round to nearest even), returned as a float64 value."""
    return np.float64(np.float32(x))


def c_div(a, b):
    """C integer division of longs: truncation towards zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def schrage(idum):
    """One Park-Miller step ``16807*idum mod M`` as C computes it (Schrage's trick, truncating division).

    For every state in (0, M) that is exactly ``16807*idum % M``, computed directly in 64 bits (faster);
    other values (from seeds outside C's valid range) take C's formula.
    """
    if 0 < idum < IM:
        return (IA * idum) % IM
    k = c_div(idum, IQ)
    idum = IA * (idum - k * IQ) - IR * k
    if idum < 0:
        idum += IM
    return idum


def ran1(seed, table):
    """NR ``float ran1(long *idum)``: uniform deviate in (0, 1) rounded to float32; advances ``seed[0]``.

    A seed <= 0, or a table never used (iy == 0), (re)initialises the table from ``max(-seed, 1)`` with 40
    steps, the first 8 discarded; then each call makes one step, outputs the table entry that the carry
    selects and stores the new state there.
    """
    idum = seed[0]
    if idum <= 0 or table[IY] == 0:
        idum = max(-idum, 1)
        for j in range(NTAB + 7, -1, -1):
            idum = schrage(idum)
            if j < NTAB:
                table[j] = idum
        table[IY] = table[0]
    idum = schrage(idum)
    seed[0] = idum
    iy = table[IY]
    j = iy >> 26 if iy >= 0 else c_div(iy, NDIV)  # iy / NDIV (NDIV = 2**26)
    if j < 0 or j >= NTAB:  # only from seeds outside C's valid range, where C indexes outside its table
        j = j % NTAB
    table[IY] = table[j]
    table[j] = idum
    temp = f32(AM * table[IY])
    return RNMX_F if temp > RNMX else temp


def gaussdev(seed, table, cache):
    """C's ``gaussdev``: polar Box-Muller in float32, returning the cached spare on every second call (§7.2).

    The spare is one static shared by every seed variable, and unlike NR's ``gasdev`` C keeps it when a
    negative seed (a stream about to be re-initialised) comes in: the call returns it and draws nothing.
    """
    if cache[HAS_SPARE] != 0.0:
        cache[HAS_SPARE] = 0.0
        return cache[SPARE]
    while True:
        v1 = f32(2.0 * ran1(seed, table) - 1.0)
        v2 = f32(2.0 * ran1(seed, table) - 1.0)
        rsq = f32(f32(v1 * v1) + f32(v2 * v2))
        if not (rsq >= 1.0 or rsq == 0.0):
            break
    fac = f32(math.sqrt(-2.0 * math.log(rsq) / rsq))
    cache[SPARE] = f32(v1 * fac)
    cache[HAS_SPARE] = 1.0
    return f32(v2 * fac)


def gammln(xx):
    """NR ``float gammln(float xx)``: Lanczos ln Gamma in double, rounded to float32 (``xx`` is a float32)."""
    x = xx
    y = xx
    tmp = x + 5.5
    tmp -= (x + 0.5) * math.log(tmp)
    ser = 1.000000000190015
    for c in GAMMLN_COF:
        y += 1.0
        ser += c / y
    return f32(-tmp + math.log(2.5066282746310005 * ser / x))


def poidev(xm, seed, table, cache):
    """NR ``float poidev(float xm, long *idum)`` with C's float32 variables and cached statics.

    ``xm`` is a float32 value. Above 1e6: ``xm + sqrt(xm)*gaussdev``. Below 12: multiply uniforms until the
    product drops to ``exp(-xm)`` (em+1 draws; a zero pixel takes one). Otherwise (NaN included): Lorentzian
    rejection with ``tan`` draws. The statics ``sq, alxm, g`` are recomputed only when xm changes.
    """
    if xm > 1.0e6:
        return f32(xm + math.sqrt(xm) * gaussdev(seed, table, cache))
    if xm < 12.0:
        if xm != cache[OLDM]:
            cache[OLDM] = xm
            cache[G] = f32(np.exp(-xm))
        g = cache[G]
        em = -1.0
        t = 1.0
        while True:
            em += 1.0
            t = f32(t * ran1(seed, table))
            if not (t > g):
                break
        return em
    if xm != cache[OLDM]:  # also taken for NaN
        cache[OLDM] = xm
        cache[SQ] = f32(math.sqrt(2.0 * xm))
        cache[ALXM] = f32(math.log(xm))
        cache[G] = f32(f32(xm * cache[ALXM]) - gammln(f32(xm + 1.0)))
    sq = cache[SQ]
    alxm = cache[ALXM]
    g = cache[G]
    while True:
        while True:
            y = f32(math.tan(math.pi * ran1(seed, table)))
            em = f32(f32(sq * y) + xm)
            if not (em < 0.0):
                break
        em = np.floor(em)
        ex = f32(f32(f32(em * alxm) - gammln(f32(em + 1.0))) - g)
        t = f32(0.9 * (1.0 + f32(y * y)) * np.exp(ex))
        if not (ran1(seed, table) > t):
            break
    return em


def poidev_array(xs, seed, table, cache, out):
    """``out[i] = poidev(xs[i], &seed)`` for i in order (``xs`` float32, ``out`` float64), one seed variable."""
    for i in range(xs.size):
        out[i] = poidev(np.float64(xs[i]), seed, table, cache)


def noise_pixels(xs, adc, seed, table, cache, out):
    """C's noise-image loop over float32 pixels ``xs`` in order, into uint16 ``out``; returns (photons, overloads).

    Per pixel: ``n = poidev(x)``; ``photons += n`` (double, in order; NaN propagates); ``n += adc``;
    ``n > 65535`` -> 65535 and one overload; stored by truncation through an integer (NaN -> 0, a negative
    value wraps modulo 65536 as x86 does).
    """
    photons = 0.0
    overloads = 0
    for i in range(xs.size):
        n = poidev(np.float64(xs[i]), seed, table, cache)
        photons += n
        v = n + adc
        if v > 65535.0:
            v = 65535.0
            overloads += 1
        if v != v:
            out[i] = 0
        else:
            out[i] = int(v) & 0xFFFF
    return photons, overloads
