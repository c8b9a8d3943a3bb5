"""The C program's random streams: ran1 draws for the random misset and the mosaic domains, and the noise image.

The generators themselves (``ran1``, ``gaussdev``, ``gammln``, ``poidev``) are implemented once, in
:mod:`nanobrag_torch.crandom.generators`, over explicit state arrays. This module holds that state for a run
(:class:`CRandom`), draws the few uniforms of the misset and mosaic generators with those functions
interpreted, and renders the noise image with the same functions compiled by numba (:func:`_compiled`;
numba is imported only then, and its machine code is cached on disk between processes).

C facts reproduced here:

* The shuffle table ``iv[32]`` and the carry ``iy`` are C statics, shared by every seed variable.
  One :class:`CRandom` instance holds them; use ONE instance for a whole run, in C's order
  (random misset, mosaic domains, noise).  Each stream starts from a negative seed and therefore
  re-initialises the table; a stored positive seed (a negative user seed) continues it.
* ``ran1`` returns ``float(AM*iy)`` rounded to float32 (capped at float32(1 - 1.2e-7)).
* ``gaussdev``/``poidev`` use float32 where the C source uses ``float``; ``sin``, ``cos``, ``tan``,
  ``exp``, ``log``, ``sqrt`` are double-precision libm calls rounded to float32 on assignment.
* The mosaic generator's ``powf`` is the platform's single-precision ``powf`` (numpy's float32 scalar
  power calls it); it is not always the correctly rounded value of the double ``pow``.
* The noise image sums the photons in pixel order in double, as C does.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import numpy as np

from . import generators as _k
from ..jit import fast_cache_loads

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

_THIRD_F = np.float32(1.0 / 3.0)
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

DEFAULT_MOSAIC_SEED = 12345678

_COMPILED = None


def _jit(numba, fn, inline: bool):
    """``numba.njit`` of one generator function, cached on disk (compiled per process when no cache location
    is writable). ``_nrt=False``: the generators allocate nothing, and without numba's reference counting of
    the state arrays passed between them the per-pixel loop runs about 2.5x faster."""
    opts = {"_nrt": False, "nogil": True, "inline": "always" if inline else "never"}
    try:
        return fast_cache_loads(numba.njit(cache=True, **opts)(fn))
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(**opts)(fn)


def compile_module(name: str, generators=None):
    """A private copy of the module ``name`` whose functions listed in its ``KERNELS`` are numba dispatchers
    (those in its ``INLINE`` inlined into their callers), so that they call each other compiled. With
    ``generators`` (the compiled copy of :mod:`.generators`), every global of the module that is one of
    ``generators``'s functions (``from .generators import gaussdev, poidev``) is replaced by its compiled
    version first, so the module's loops draw from the same compiled code and C state as everything else."""
    import numba

    spec = importlib.util.find_spec(name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if generators is not None:
        for fn in generators.KERNELS:
            if getattr(mod, fn, None) is getattr(_k, fn):
                setattr(mod, fn, getattr(generators, fn))
    for fn in mod.KERNELS:
        setattr(mod, fn, _jit(numba, getattr(mod, fn), fn in mod.INLINE))
    return mod


def _compiled():
    """The generators of :mod:`.generators` compiled with numba (made on first use)."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = compile_module(_k.__name__)
    return _COMPILED


def compiled_with_generators(name: str):
    """:func:`compile_module` of a module of per-pixel loops that import ``generators``'s generators."""
    return compile_module(name, _compiled())


def gammln(xx: float) -> float:
    """NR ``float gammln(float xx)``: Lanczos ln Gamma in double, result rounded to float32.

    ``xx`` is the float32 argument (the caller rounds ``em + 1.0`` to float as C does at the call).
    """
    return float(_k.gammln(float(xx)))


class Seed:
    """A C ``long`` seed variable (what C passes as ``&seed``), held in a one-element int64 array that the
    generators advance in place. Values beyond a 64-bit long saturate, as C's ``strtol`` does."""

    __slots__ = ("cell",)

    def __init__(self, value: int = 0) -> None:
        self.cell = np.zeros(1, dtype=np.int64)
        self.value = value

    @property
    def value(self) -> int:
        return int(self.cell[0])

    @value.setter
    def value(self, v: int) -> None:
        self.cell[0] = min(max(int(v), _LONG_MIN), _LONG_MAX)

    def __repr__(self) -> str:
        return f"Seed({self.value})"


class CRandom:
    """The C program's shared random state for one run: ran1's shuffle table iv[32] and carry iy (shared by
    every seed variable), gaussdev's cached spare and poidev's cached statics (C statics)."""

    def __init__(self) -> None:
        self.table = np.zeros(_k.TABLE_SIZE, dtype=np.int64)  # iv[0..31], then iy
        self.cache = np.array(_k.FRESH_CACHE, dtype=np.float64)  # poidev oldm, g, sq, alxm; gaussdev spare

    @property
    def iv(self) -> np.ndarray:
        """The shuffle table (a view: writes go to the state)."""
        return self.table[: _k.NTAB]

    @property
    def iy(self) -> int:
        return int(self.table[_k.IY])

    @iy.setter
    def iy(self, v: int) -> None:
        self.table[_k.IY] = v

    @property
    def gauss_spare(self) -> float | None:
        """gaussdev's cached spare deviate, None when there is none."""
        return float(self.cache[_k.SPARE]) if self.cache[_k.HAS_SPARE] else None

    def ran1(self, seed: Seed) -> float:
        """NR ran1: uniform deviate in (0, 1), float32 value as a Python float; advances seed.value."""
        return float(_k.ran1(seed.cell, self.table))

    def gaussdev(self, seed: Seed) -> float:
        """NR gasdev (polar Box-Muller, float32, cached spare), compiled."""
        return float(_compiled().gaussdev(seed.cell, self.table, self.cache))

    def poidev(self, xm: float, seed: Seed) -> float:
        """NR poidev with float32 variables (``xm`` rounded to float32 first, as at C's call), compiled."""
        return float(_compiled().poidev(float(np.float32(xm)), seed.cell, self.table, self.cache))

    # -- mosaic / misset rotation --------------------------------------------------------------
    def mosaic_axis_angle(self, mosaicity: float, seed: Seed) -> tuple[tuple[float, float, float], float]:
        """Three ran1 draws -> (unit rotation axis, rotation angle) of C's mosaic_rotation_umat.

        ``r1, r2, r3 = 2*ran1 - 1``; angle ``float32(m * powf(1 - r3^2, 1/3))`` with the spread ``m`` as a float;
        axis ``(sqrt(1 - r2^2) sin(pi r1), sqrt(1 - r2^2) cos(pi r1), r2)``.
        """
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
        """C's mosaic_rotation_umat: a random rotation (row-major 3x3 float64) from three ran1 draws, as
        Rodrigues' matrix in C's term order (``umat_from_axis_angle``)."""
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
    """C's conversion of a rotation matrix to XYZ misset angles (rx, ry, rz) in radians (for ``-misset random``).

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
def poidev_values(values, seed: Seed, rng: CRandom) -> np.ndarray:
    """``poidev(v, &seed)`` for every value in order (one shared seed variable), as float64 holding the
    float32 deviates; compiled (the same generator as :meth:`CRandom.poidev`)."""
    xs = np.ascontiguousarray(values, dtype=np.float32).ravel()
    out = np.empty(xs.size, dtype=np.float64)
    _compiled().poidev_array(xs, seed.cell, rng.table, rng.cache, out)
    return out


def poisson_noise(values, seed: int, adc: float, rng: CRandom | None = None) -> tuple[np.ndarray, float, int]:
    """The noise image of C's output stage, compiled.

    ``values``: float32 pixels of the ROI in raster order. Per pixel ``n = poidev(v)``;
    ``photons += n``; ``n += adc``; ``n > 65535`` -> 65535 and one overload; stored as uint16 by
    truncation (x86: via a 32-bit int, so NaN -> 0 and a negative value wraps modulo 65536, which
    C leaves undefined). The seed variable starts at ``-seed`` (``-seed N`` stores -N).

    Returns ``(uint16 array of values' shape, photon sum (double, NaN if a pixel was NaN), overloads)``.
    """
    rng = CRandom() if rng is None else rng
    arr = np.asarray(values, dtype=np.float32)
    xs = np.ascontiguousarray(arr).ravel()
    out = np.empty(xs.size, dtype=np.uint16)
    photons, overloads = _compiled().noise_pixels(xs, float(adc), Seed(-int(seed)).cell, rng.table, rng.cache, out)
    return out.reshape(arr.shape), float(photons), int(overloads)
