"""Bit-exact re-implementation of nanoBragg's Numerical-Recipes random number generators.

Mirrors ``docs/c-reference.md`` section 7 (and 4.3 / 8.5): ``ran1`` (Park-Miller minimal standard
generator with a 32-entry Bays-Durham shuffle), ``gaussdev`` (polar Box-Muller with a cached spare),
``poidev`` (Poisson deviates, float32 arithmetic, cached statics), the mosaic/misset rotation
generator and the noise image.

C facts reproduced here:

* The shuffle table ``iv[32]`` and the carry ``iy`` are C statics, shared by every seed variable.
  One :class:`CRandom` instance holds them; use ONE instance for a whole run, in C's order
  (random misset, mosaic domains, noise).  Each stream starts from a negative seed and therefore
  re-initialises the table; a stored positive seed (a negative user seed) continues it.
* ``ran1`` returns ``float(AM*iy)`` rounded to float32 (capped at float32(1 - 1.2e-7)).
* ``gaussdev``/``poidev`` use float32 where the C source uses ``float``; ``sin``, ``cos``, ``tan``,
  ``exp``, ``log``, ``sqrt`` are double-precision libm calls (Python's ``math`` module calls the
  platform libm) rounded to float32 on assignment.
* The mosaic generator's ``powf`` is the platform's single-precision ``powf`` (numpy's float32 scalar
  power calls it); it is not always the correctly rounded value of the double ``pow``.

Float32 rounding of a Python float is done through a one-element ``array('f')`` (a C double->float
cast), which is the fastest exact method in CPython; a float32 product/sum of two float32 values is
computed in double and then rounded, which is exact (53 >= 2*24 + 2).

Only the Python standard library and numpy are used.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_MOSAIC_SEED",
    "CRandom",
    "Seed",
    "gammln",
    "mosaic_umats",
    "poidev_values",
    "poisson_noise",
    "random_misset",
    "umat_to_misset_angles",
]

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
_THIRD_F = np.float32(1.0 / 3.0)
_GAMMLN_COF = (
    76.18009172947146,
    -86.50532032941677,
    24.01409824083091,
    -1.231739572450155,
    0.1208650973866179e-2,
    -0.5395239384953e-5,
)

DEFAULT_MOSAIC_SEED = 12345678


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
        """Polar Box-Muller (float32), returning the cached spare on every second call.

        As in NR's gasdev, a negative seed (a stream about to be re-initialised) drops the spare.
        """
        if seed.value < 0:
            self.gauss_spare = None
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
        """NR poidev with float32 variables (c-reference section 7.3). Returns the float32 deviate."""
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
    def mosaic_axis_angle(self, mosaicity: float, seed: Seed) -> tuple[tuple[float, float, float], float]:
        """Three ran1 draws -> (unit rotation axis, rotation angle) of C's mosaic_rotation_umat."""
        m = np.float32(mosaicity)  # the C parameter is `float mosaicity`
        r1 = 2.0 * self.ran1(seed) - 1.0
        r2 = 2.0 * self.ran1(seed) - 1.0
        r3 = 2.0 * self.ran1(seed) - 1.0
        xyrad = math.sqrt(1.0 - r2 * r2)
        # rot = mosaicity*powf((1.0-r3*r3),(1.0/3.0)): powf on floats, float product.
        # numpy's float32 *scalar* power calls the platform powf (its array path may not).
        with np.errstate(all="ignore"):
            rot = float(m * (np.float32(1.0 - r3 * r3) ** _THIRD_F))
        return (xyrad * math.sin(math.pi * r1), xyrad * math.cos(math.pi * r1), r2), rot

    def mosaic_rotation_umat(self, mosaicity: float, seed: Seed) -> np.ndarray:
        """Random rotation matrix (row-major 3x3 float64) from three ran1 draws (section 7.4)."""
        return umat_from_axis_angle(*self.mosaic_axis_angle(mosaicity, seed))


def umat_from_axis_angle(axis: tuple[float, float, float], rot: float) -> np.ndarray:
    """C's rotation matrix about a unit axis by ``rot`` in its component form (double precision)."""
    v1, v2, v3 = axis
    t1 = math.cos(rot)
    t2 = 1.0 - t1
    t3 = v1 * v1
    t6 = t2 * v1
    t7 = t6 * v2
    t8 = math.sin(rot)
    t9 = t8 * v3
    t11 = t6 * v3
    t12 = t8 * v2
    t15 = v2 * v2
    t19 = t2 * v2 * v3
    t20 = t8 * v1
    t24 = v3 * v3
    return np.array(
        [
            [t1 + t2 * t3, t7 - t9, t11 + t12],
            [t7 + t9, t1 + t2 * t15, t19 - t20],
            [t11 - t12, t19 + t20, t1 + t2 * t24],
        ],
        dtype=np.float64,
    )


@dataclass
class MosaicDraws:
    """C's mosaic domains: unit axes (D, 3), angles (D,) rad drawn at ``spread``, and the matrices C uses
    (domain 0 is the identity; its draws are consumed all the same)."""

    axes: np.ndarray
    angles: np.ndarray
    umats: np.ndarray
    spread: float


def mosaic_draws(spread_rad: float, domains: int, seed: int, rng: CRandom | None = None) -> MosaicDraws:
    """C's mosaic domain loop: one generator call (3 draws) per domain, seed variable starting at -seed.

    C always makes at least one call, so ``domains < 1`` is treated as 1; domain 0 is then overwritten
    by the identity (axis and angle 0 here).
    """
    rng = CRandom() if rng is None else rng
    s = Seed(-int(seed))
    n = max(1, int(domains))
    axes = np.zeros((n, 3), dtype=np.float64)
    angles = np.zeros(n, dtype=np.float64)
    umats = np.empty((n, 3, 3), dtype=np.float64)
    for i in range(n):
        axis, rot = rng.mosaic_axis_angle(spread_rad, s)
        axes[i], angles[i] = axis, rot
        umats[i] = umat_from_axis_angle(axis, rot)
    axes[0], angles[0], umats[0] = (1.0, 0.0, 0.0), 0.0, np.eye(3)
    return MosaicDraws(axes, angles, umats, float(spread_rad))


# --- module-level helpers ---------------------------------------------------------------------
def mosaic_umats(spread_rad: float, domains: int, seed: int, rng: CRandom | None = None) -> np.ndarray:
    """C's mosaic domain matrices (domains, 3, 3): ``mosaic_draws(...).umats``."""
    return mosaic_draws(spread_rad, domains, seed, rng).umats


def _normalise_rows(u: list[list[float]]) -> None:
    """Scale each row to unit length (rows of zero length are left alone), in place."""
    for r in u:
        n = math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
        if n > 0:
            r[0] /= n
            r[1] /= n
            r[2] /= n


def _cross(a: list[float], b: list[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _is_zero(r: list[float]) -> bool:
    return r[0] == 0.0 and r[1] == 0.0 and r[2] == 0.0


def umat_to_misset_angles(U) -> tuple[float, float, float]:
    """Rotation matrix -> XYZ misset angles (rx, ry, rz) in radians (section 7.5).

    ``R(rx, ry, rz) = Rz.Ry.Rx`` reproduces a proper rotation ``U``.
    """
    u = [[float(x) for x in row] for row in np.asarray(U, dtype=np.float64).reshape(3, 3)]
    for _ in range(2):  # C normalises twice; a zero row is replaced by the cross product of the others
        _normalise_rows(u)
        for i in range(3):
            if _is_zero(u[i]):
                a, b = u[(i + 1) % 3], u[(i + 2) % 3]
                if not _is_zero(a) and not _is_zero(b):
                    u[i] = _cross(a, b)
    if u[2][0] * u[2][0] < 1.0:
        rx = math.atan2(u[2][1], u[2][2])
        ry = math.atan2(-u[2][0], math.sqrt(u[2][1] * u[2][1] + u[2][2] * u[2][2]))
        rz = math.atan2(u[1][0], u[0][0])
    else:
        rx = math.pi
        ry = math.pi / 2.0
        rz = math.atan2(u[0][1], -u[1][1])
    return rx, ry, rz


def random_misset(seed: int, rng: CRandom | None = None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``-misset random``: U from the mosaic generator with "mosaicity" 90 and seed variable ``-seed``
    (C stores -misset_seed), and its XYZ angles in radians. Returns (U, (rx, ry, rz))."""
    rng = CRandom() if rng is None else rng
    U = rng.mosaic_rotation_umat(90.0, Seed(-int(seed)))
    return U, umat_to_misset_angles(U)


# --- noise ------------------------------------------------------------------------------------
def _poidev_slow(rng: CRandom, xs: list[float], s: Seed, out: list[float], start: int) -> None:
    for i in range(start, len(xs)):
        out[i] = rng.poidev(xs[i], s)


def poidev_values(values, seed: Seed, rng: CRandom) -> np.ndarray:
    """``poidev(v, &seed)`` for every value in order (one shared seed variable), as float64 holding
    the float32 deviates. Same results as calling ``rng.poidev`` in a loop, but with ran1 and the two
    common poidev branches inlined (the >1e6 Gaussian branch and NaN go through ``rng.poidev``)."""
    xs = np.ascontiguousarray(values, dtype=np.float32).ravel().tolist()
    n = len(xs)
    out = [0.0] * n
    if n == 0:
        return np.zeros(0, dtype=np.float64)

    # Bring the table into a state where the inlined ran1 needs no per-draw checks: ran1's own
    # (re)initialisation, which the first draw would perform anyway, happens here. gaussdev would
    # see the still-negative seed (and drop its spare) only if the first pixel takes its branch.
    if seed.value < 0 and xs[0] > 1.0e6:
        rng.gauss_spare = None
    if seed.value <= 0 or rng.iy == 0:
        rng._init_table(seed)
    iv = rng.iv
    IM = _IM
    if not (0 < seed.value < IM and 0 < rng.iy < IM and all(0 < v < IM for v in iv)):
        # pathological seeds (e.g. |seed| >= 2**31): the general per-call path
        _poidev_slow(rng, xs, seed, out, 0)
        return np.array(out, dtype=np.float64)

    idum = seed.value
    iy = rng.iy
    oldm, g, sq, alxm = rng.poi_oldm, rng.poi_g, rng.poi_sq, rng.poi_alxm
    A = array("f", [0.0])
    AM, RNMX, RNMX_F = _AM, _RNMX, _RNMX_F
    exp, log, sqrt, tan, PI = math.exp, math.log, math.sqrt, math.tan, math.pi
    gl_cache: dict[float, float] = {}

    for i in range(n):
        xm = xs[i]
        if xm < 12.0:
            if xm != oldm:
                oldm = xm
                A[0] = _exp(-xm)
                g = A[0]
            em = 0.0
            t = 1.0
            while True:
                idum = idum * 16807 % IM
                j = iy >> 26
                iy = iv[j]
                iv[j] = idum
                A[0] = AM * iy
                r = A[0]
                if r > RNMX:
                    r = RNMX_F
                A[0] = t * r
                t = A[0]
                if not (t > g):
                    break
                em += 1.0
            out[i] = em
        elif xm <= 1.0e6:
            if xm != oldm:
                oldm = xm
                A[0] = sqrt(2.0 * xm)
                sq = A[0]
                A[0] = log(xm)
                alxm = A[0]
                A[0] = xm * alxm
                A[0] = A[0] - gammln(_f32(xm + 1.0))
                g = A[0]
            while True:
                while True:
                    idum = idum * 16807 % IM
                    j = iy >> 26
                    iy = iv[j]
                    iv[j] = idum
                    A[0] = AM * iy
                    r = A[0]
                    if r > RNMX:
                        r = RNMX_F
                    A[0] = tan(PI * r)
                    y = A[0]
                    A[0] = sq * y
                    A[0] = A[0] + xm
                    em = A[0]
                    if not (em < 0.0):
                        break
                em = float(int(em))  # floor: em >= 0 and finite here
                gl = gl_cache.get(em)
                if gl is None:
                    A[0] = em + 1.0
                    gl = gl_cache[em] = gammln(A[0])
                A[0] = y * y
                yy = A[0]
                A[0] = em * alxm
                A[0] = A[0] - gl
                A[0] = A[0] - g
                A[0] = 0.9 * (1.0 + yy) * exp(A[0])
                t = A[0]
                idum = idum * 16807 % IM
                j = iy >> 26
                iy = iv[j]
                iv[j] = idum
                A[0] = AM * iy
                r = A[0]
                if r > RNMX:
                    r = RNMX_F
                if not (r > t):
                    break
            out[i] = em
        else:  # > 1e6 (Gaussian branch) or NaN: the reference implementation, with state synced
            seed.value = idum
            rng.iy = iy
            rng.poi_oldm, rng.poi_g, rng.poi_sq, rng.poi_alxm = oldm, g, sq, alxm
            out[i] = rng.poidev(xm, seed)
            idum = seed.value
            iy = rng.iy
            oldm, g, sq, alxm = rng.poi_oldm, rng.poi_g, rng.poi_sq, rng.poi_alxm
            if not (0 < idum < IM and 0 < iy < IM):  # cannot happen from a sane state; stay exact
                _poidev_slow(rng, xs, seed, out, i + 1)
                return np.array(out, dtype=np.float64)

    seed.value = idum
    rng.iy = iy
    rng.poi_oldm, rng.poi_g, rng.poi_sq, rng.poi_alxm = oldm, g, sq, alxm
    return np.array(out, dtype=np.float64)


def poisson_noise(values, seed: int, adc: float, rng: CRandom | None = None) -> tuple[np.ndarray, float, int]:
    """The noise image of section 8.5.

    ``values``: float32 pixels of the ROI in raster order. Per pixel ``n = poidev(v)``;
    ``photons += n``; ``n += adc``; ``n > 65535`` -> 65535 and one overload; stored as uint16 by
    truncation (x86: via a 32-bit int, so NaN -> 0 and a negative value wraps modulo 65536, which
    C leaves undefined). The seed variable starts at ``-seed`` (``-seed N`` stores -N).

    Returns ``(uint16 array of values' shape, photon sum (double, NaN if a pixel was NaN), overloads)``.
    """
    rng = CRandom() if rng is None else rng
    arr = np.asarray(values, dtype=np.float32)
    ems = poidev_values(arr, Seed(-int(seed)), rng)
    photons = 0.0
    for e in ems.tolist():  # C: sequential double accumulation
        photons += e
    test = ems + float(adc)
    over = test > 65535.0
    overloads = int(np.count_nonzero(over))
    test[over] = 65535.0
    nan = np.isnan(test)
    test[nan] = 0.0
    with np.errstate(invalid="ignore"):
        as_int = np.trunc(test).astype(np.int64)
    out = (as_int & 0xFFFF).astype(np.uint16)
    return out.reshape(arr.shape), photons, overloads
