"""The C program's automatic rules: how it converts flag values to SI units and settles what was left unset.

Pure functions of the values given (or of the replayed state, ``cmdline.replay``), each named after the C
behaviour it mirrors (docs/c-behaviour.md §2.5, §3.1, §1.1 item 9). They are shared by nanoBragg's and
nonBragg's command lines and by the dataset runner (which converts each frame's -phi as the command line would).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

from ..constants import RTD
from ..errors import UsageError

# Per convention: beam, fdet, sdet, odet, twotheta axis, polar, spindle, pivot (§3.1).
CONVENTIONS = {
    "MOSFLM": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1), "beam"),
    "DENZO": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1), "beam"),
    "ADXV": ((0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1), (-1, 0, 0), (1, 0, 0), (1, 0, 0), "beam"),
    "XDS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0), (1, 0, 0), "sample"),
    "DIALS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0), "sample"),
    # CUSTOM: the C program's initial vectors (note the 2theta axis differs from MOSFLM's)
    "CUSTOM": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), None),
}
VECTOR_KEYS = ("beam_vector", "fdet_vector", "sdet_vector", "odet_vector", "twotheta_axis", "polar_vector",
               "spindle_axis")

# Unit conversions written as C writes them (§1.1 item 9): it divides by the unit for mm, Å, degrees, percent and
# the water size in µm (x/1000.0, x/1e10, x/RTD, x/100.0, x/1e6) and multiplies for the sensor thickness
# and dmin (x*1e-6, x*1e-10). x/1000.0 and x*1e-3 round differently for about one value in six, so the form
# decides whether a flag's value is the same double as C's.


def mm_to_m(v: float) -> float:
    """mm -> m as C divides (x/1000.0)."""
    return v / 1000.0


def deg_to_rad(v: float) -> float:
    """degrees -> radians as C divides (x/RTD)."""
    return v / RTD


def angstrom_to_m(v: float) -> float:
    """Å -> m as C divides (x/1e10)."""
    return v / 1e10


def percent_to_fraction(v: float) -> float:
    """percent -> fraction as C divides (x/100.0)."""
    return v / 100.0


def um_to_m(v: float) -> float:
    """µm -> m as C divides for the water size (x/1e6)."""
    return v / 1e6


def times(factor: float):
    """A conversion C writes as a multiplication (x*1e-6 for the sensor thickness, x*1e-10 for dmin)."""
    return lambda v: v * factor


def auto_steps(steps: int, rng: float, step: float, count_only_range: float):
    """C's shared auto rule for divergence/dispersion grids (§2.5) followed by its sanity pass."""
    if steps <= 0:
        if rng < 0.0:
            if step <= 0.0:
                steps, rng, step = 1, 0.0, 0.0
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                step, steps = rng, 2
            else:
                steps = math.ceil(rng / step)
    else:
        if rng < 0.0:
            if step <= 0.0:
                rng = count_only_range
                step = rng / steps
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                if steps <= 1:
                    steps = 2
                step = rng / (steps - 1)
    if rng <= 0.0 or step <= 0.0 or steps <= 0:
        steps, rng, step = 1, 0.0, 0.0
    return steps, rng, step


def phi_steps(phisteps: int, osc: float, phistep: float):
    """C's phi auto rule (§2.5)."""
    if phisteps < 0:
        if osc < 0.0:
            if phistep <= 0.0:
                phisteps, osc, phistep = 1, 0.0, 0.0
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep <= 0.0:
                phisteps, phistep = 2, osc / 2.0
            else:
                phisteps = math.ceil(osc / phistep)
    else:
        if phisteps == 0:
            phisteps = 1
        if osc < 0.0:
            if phistep <= 0.0:
                osc = 1.0 / RTD
                phistep = osc / phisteps
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep < 0.0:
                phistep = osc / phisteps
    return phisteps, osc, phistep


def thick_steps(thicksteps: int, thick: float):
    """C's detector-layer auto rule (§2.5; the layer step has no flag)."""
    step = -1.0
    if thicksteps <= 0:
        if thick < 0.0:
            thicksteps, thick, step = 1, 0.0, 0.0
        else:
            thicksteps = 2
            step = thick / thicksteps
    else:
        if thick < 0.0:
            thick = 0.5e-6
            step = thick / thicksteps
        else:
            if thicksteps <= 1:
                thicksteps = 2
            step = thick / (thicksteps - 1)
    if thick <= 0.0 or step <= 0.0 or thicksteps <= 0:
        thicksteps, thick, step = 1, 0.0, 0.0
    return thicksteps, thick, step


def detector_pixels(st: SimpleNamespace) -> tuple[int, int]:
    """C's detector size rule: pixel counts override sizes; counts = ceil(size/pixel - 0.5); size = px*count."""
    px = st.pixel
    if px <= 0:
        raise UsageError(f"-pixel: must be positive, got {px * 1000:g}")
    if st.fpixels:
        st.detsize_f = px * st.fpixels
    if st.spixels:
        st.detsize_s = px * st.spixels
    fpixels = math.ceil(st.detsize_f / px - 0.5)
    spixels = math.ceil(st.detsize_s / px - 0.5)
    if fpixels <= 0 or spixels <= 0:
        raise UsageError(f"detector has no pixels ({fpixels}x{spixels}); check -detpixels/-detsize/-pixel")
    return fpixels, spixels


def fluence_from_flux(st: SimpleNamespace) -> float:
    """C: a non-zero -flux with a positive exposure gives fluence = flux*exposure/beamsize^2, else -fluence."""
    if st.flux != 0.0 and st.exposure > 0.0 and st.beamsize >= 0:
        return st.flux * st.exposure / st.beamsize / st.beamsize
    return st.fluence


def beam_centre(st: SimpleNamespace) -> dict:
    """Convention defaults of C for the beam centre and near point, and the convention's lab vectors/pivot.

    MOSFLM/DENZO swap X/Y onto slow/fast (MOSFLM adds half a pixel), ADXV flips Y, XDS/DIALS/CUSTOM take
    X/Y as fast/slow; CUSTOM also places the near point at the beam centre and keeps the -pivot given.
    """
    nan = math.isnan
    px = st.pixel
    Fclose = (st.ORGX - 0.5) * px if not nan(st.ORGX) else st.detsize_f / 2.0
    Sclose = (st.ORGY - 0.5) * px if not nan(st.ORGY) else st.detsize_s / 2.0
    Xclose = Fclose if nan(st.Xclose) else st.Xclose
    Yclose = Sclose if nan(st.Yclose) else st.Yclose
    conv = st.convention
    Xbeam, Ybeam = st.Xbeam, st.Ybeam
    Df, Ds = st.detsize_f, st.detsize_s
    if conv == "ADXV":
        Xbeam = (Df + px) / 2.0 if nan(Xbeam) else Xbeam
        Ybeam = (Ds - px) / 2.0 if nan(Ybeam) else Ybeam
        Fbeam, Sbeam = Xbeam, Ds - Ybeam
    elif conv in ("MOSFLM", "DENZO"):
        Xbeam = (Ds + px) / 2.0 if nan(Xbeam) else Xbeam
        Ybeam = (Df + px) / 2.0 if nan(Ybeam) else Ybeam
        half = 0.5 * px if conv == "MOSFLM" else 0.0
        Fbeam, Sbeam = Ybeam + half, Xbeam + half
    else:  # XDS, DIALS, CUSTOM
        Xbeam = Xclose if nan(Xbeam) else Xbeam
        Ybeam = Yclose if nan(Ybeam) else Ybeam
        Fbeam, Sbeam = Xbeam, Ybeam
        if conv == "CUSTOM":
            Fclose, Sclose = Xbeam, Ybeam
    defaults = CONVENTIONS[conv]
    vec = dict(zip(VECTOR_KEYS, defaults[:7]))
    if conv == "CUSTOM":
        vec.update(st.vectors)
        pivot = st.pivot
    else:
        pivot = defaults[7]
    return dict(xbeam=Xbeam, ybeam=Ybeam, xclose=Xclose, yclose=Yclose, fbeam=Fbeam, sbeam=Sbeam,
                fclose=Fclose, sclose=Sclose, vectors=vec, pivot=pivot)


def roi_window(roi, fpixels: int, spixels: int) -> tuple[int, int, int, int]:
    """C's -roi: negative (unset) bounds become the detector edges; the window is inclusive."""
    r = list(roi) if roi is not None else [-1, -1, -1, -1]
    return (r[0] if r[0] >= 0 else 0, r[1] if r[1] >= 0 else fpixels,
            r[2] if r[2] >= 0 else 0, r[3] if r[3] >= 0 else spixels)


def mosaic_rule(st: SimpleNamespace) -> tuple[float, int]:
    """C's mosaic auto rule: (spread rad, domains); a spread without a count gets 10 domains, no spread 1."""
    spread, domains = st.mosaic_spread, st.mosaic_domains
    if domains <= 0:
        if spread < 0.0:
            return 0.0, 1
        if spread == 0.0:
            return spread, 1
        st.warnings.append("finite mosaicity with no -mosaic_domains: using 10 mosaic domains")
        return spread, 10
    if spread < 0.0:
        st.warnings.append("no mosaic spread specified: setting mosaic_domains = 1")
        return 0.0, 1
    return spread, (1 if spread == 0.0 else domains)


def detector_attenuation(st: SimpleNamespace, thick: float) -> float:
    """C: a sensor thickness with no -detector_abs uses mu = 1/thickness."""
    mu = st.mu
    if thick > 0.0 and mu < 0.0:
        mu = 1.0 / thick
        st.warnings.append(f"setting detector attenuation depth to {mu:g} m (mu = 1/thickness, as in C)")
    return mu


def cell_rule(cell) -> tuple[float, ...] | None:
    """-cell a [b c al be ga]: missing or non-positive b, c default to a, angles to 90 degrees (rad out)."""
    if cell is None:
        return None
    c = list(cell)
    a = c[0]
    b = c[1] if len(c) > 1 and c[1] > 0 else a
    cc = c[2] if len(c) > 2 and c[2] > 0 else a
    angles = [(c[i] / RTD if len(c) > i and c[i] > 0 else math.pi / 2) for i in (3, 4, 5)]
    return (a, b, cc, *angles)
