"""The previous pure-Python generator (ran1, gaussdev, poidev) and noise image, kept as a test reference.

This is the implementation that nanobrag_torch.crandom.streams had before the generators moved to the one numba-compiled
implementation in nanobrag_torch.crandom.generators. It was verified bit-identical against C's golden noise images
(tests/unit/test_rng.py), so the new generator is checked against it draw for draw. Only tests import it.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

import numpy as np

# --- ran1 constants (Numerical Recipes) -------------------------------------------------------
_IA = 16807
_IM = 2147483647
_IQ = 127773
_IR = 2836
_NTAB = 32
_NDIV = 1 + (_IM - 1) // _NTAB  # 67108864 == 2**26
_NDIV_SHIFT = 26
_AM = 1.0 / _IM
_RNMX = 1.0 - 1.2e-7  # compared in double, as C promotes the float temp
_F32 = array("f", [0.0])


def _f32(x: float) -> float:
    """Round a Python float to float32 (C double->float conversion), returned as a Python float."""
    _F32[0] = x
    return _F32[0]


_RNMX_F = _f32(_RNMX)  # what `return RNMX;` from a float function gives: 1 - 2**-23
_GAMMLN_COF = (
    76.18009172947146,
    -86.50532032941677,
    24.01409824083091,
    -1.231739572450155,
    0.1208650973866179e-2,
    -0.5395239384953e-5,
)


def _c_div(a: int, b: int) -> int:
    """C integer division (truncation towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _schrage(idum: int) -> int:
    """One Park-Miller step as C computes it (Schrage's trick, truncating division)."""
    k = _c_div(idum, _IQ)
    idum = _IA * (idum - k * _IQ) - _IR * k
    if idum < 0:
        idum += _IM
    return idum


def _exp(x: float) -> float:
    """libm exp, with C's overflow to +inf instead of Python's OverflowError."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _floor(x: float) -> float:
    """C floor() on a double: NaN and infinities pass through."""
    if not math.isfinite(x):
        return x
    return float(math.floor(x))


def gammln(xx: float) -> float:
    """NR ``float gammln(float xx)``: Lanczos ln Gamma in double, result rounded to float32.

    ``xx`` is the float32 argument (the caller rounds ``em + 1.0`` to float as C does at the call).
    """
    x = y = xx
    tmp = x + 5.5
    tmp -= (x + 0.5) * math.log(tmp)
    ser = 1.000000000190015
    for c in _GAMMLN_COF:
        y += 1.0
        ser += c / y
    return _f32(-tmp + math.log(2.5066282746310005 * ser / x))


@dataclass
class Seed:
    """Mutable holder for a C ``long`` seed variable (what C passes as ``&seed``)."""

    value: int = 0


class CRandom:
    """The C program's shared ran1 state: ONE shuffle table iv[32] and carry iy shared by every seed
    variable (C statics), plus gaussdev's cached spare and poidev's cached statics."""

    def __init__(self) -> None:
        self.iv: list[int] = [0] * _NTAB  # static long iv[NTAB] (mutated in place, never rebound)
        self.iy: int = 0  # static long iy = 0
        self.gauss_spare: float | None = None  # static int iset / static float gset
        # poidev: static float sq, alxm, g, oldm = -1.0
        self.poi_oldm: float = -1.0
        self.poi_g: float = 0.0
        self.poi_sq: float = 0.0
        self.poi_alxm: float = 0.0

    # -- ran1 ----------------------------------------------------------------------------------
    def _init_table(self, seed: Seed) -> None:
        idum = seed.value
        idum = max(-idum, 1)
        iv = self.iv
        for j in range(_NTAB + 7, -1, -1):
            idum = _schrage(idum)
            if j < _NTAB:
                iv[j] = idum
        self.iy = iv[0]
        seed.value = idum

    def ran1(self, seed: Seed) -> float:
        """NR ran1: uniform deviate in (0, 1), float32 value as a Python float; advances seed.value."""
        if seed.value <= 0 or self.iy == 0:
            self._init_table(seed)
        idum = _schrage(seed.value)
        seed.value = idum
        j = _c_div(self.iy, _NDIV)
        self.iy = self.iv[j]
        self.iv[j] = idum
        _F32[0] = _AM * self.iy
        temp = _F32[0]
        return _RNMX_F if temp > _RNMX else temp

    # -- gaussdev ------------------------------------------------------------------------------
    def gaussdev(self, seed: Seed) -> float:
        """Polar Box-Muller (float32), returning the cached spare on every second call, whatever the seed
        (C keeps the spare when a negative seed comes in, unlike NR's gasdev)."""
        if self.gauss_spare is None:
            while True:
                v1 = _f32(2.0 * self.ran1(seed) - 1.0)
                v2 = _f32(2.0 * self.ran1(seed) - 1.0)
                rsq = _f32(_f32(v1 * v1) + _f32(v2 * v2))
                if not (rsq >= 1.0 or rsq == 0.0):
                    break
            fac = _f32(math.sqrt(-2.0 * math.log(rsq) / rsq))
            self.gauss_spare = _f32(v1 * fac)
            return _f32(v2 * fac)
        spare = self.gauss_spare
        self.gauss_spare = None
        return spare

    # -- poidev --------------------------------------------------------------------------------
    def poidev(self, xm: float, seed: Seed) -> float:
        """NR poidev with float32 variables (as C declares them). Returns the float32 deviate."""
        xm = _f32(xm)
        if xm > 1.0e6:
            return _f32(xm + math.sqrt(xm) * self.gaussdev(seed))
        if xm < 12.0:
            if xm != self.poi_oldm:
                self.poi_oldm = xm
                self.poi_g = _f32(_exp(-xm))
            g = self.poi_g
            em = -1.0
            t = 1.0
            while True:
                em += 1.0
                t = _f32(t * self.ran1(seed))
                if not (t > g):
                    break
            return em
        if xm != self.poi_oldm:  # also taken for NaN
            self.poi_oldm = xm
            self.poi_sq = _f32(math.sqrt(2.0 * xm))
            self.poi_alxm = _f32(math.log(xm))
            self.poi_g = _f32(_f32(xm * self.poi_alxm) - gammln(_f32(xm + 1.0)))
        sq, alxm, g = self.poi_sq, self.poi_alxm, self.poi_g
        while True:
            while True:
                y = _f32(math.tan(math.pi * self.ran1(seed)))
                em = _f32(_f32(sq * y) + xm)
                if not (em < 0.0):
                    break
            em = _floor(em)
            ex = _f32(_f32(_f32(em * alxm) - gammln(_f32(em + 1.0))) - g)
            t = _f32(0.9 * (1.0 + _f32(y * y)) * _exp(ex))
            if not (self.ran1(seed) > t):
                break
        return em

    # -- mosaic / misset rotation --------------------------------------------------------------


def reference_poisson_noise(values, seed: int, adc: float) -> tuple[np.ndarray, float, int]:
    """The previous ``rng.poisson_noise``: per-call poidev from a fresh state, C's post-processing."""
    rng = CRandom()
    arr = np.asarray(values, dtype=np.float32)
    s = Seed(-int(seed))
    ems = np.array([rng.poidev(float(x), s) for x in arr.ravel()], dtype=np.float64)
    photons = 0.0
    for e in ems.tolist():  # C: sequential double accumulation
        photons += e
    test = ems + float(adc)
    over = test > 65535.0
    test[over] = 65535.0
    test[np.isnan(test)] = 0.0
    with np.errstate(invalid="ignore"):
        as_int = np.trunc(test).astype(np.int64)
    return (as_int & 0xFFFF).astype(np.uint16).reshape(arr.shape), photons, int(np.count_nonzero(over))
