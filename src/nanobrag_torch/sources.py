"""X-ray sources: the divergence x dispersion grid or a source file (C §5)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import SOURCE_DISTANCE, BeamConfig
from .geometry import rotate_axis, unitize


@dataclass
class Sources:
    """Unit source-position vectors (NS, 3) (incident direction is their negative) and wavelengths (NS,) m."""

    directions: torch.Tensor
    wavelengths: torch.Tensor
    raw: list[tuple[float, float, float, float, float]]  # X Y Z weight lambda as C prints them

    @property
    def count(self) -> int:
        return int(self.wavelengths.shape[0])


def divergence_grid(beam: BeamConfig) -> list[tuple[float, float]]:
    """(hdiv, vdiv) points kept by C's loop (h outer, v inner) incl. the elliptical trim (§5.2)."""
    pts = []
    for ht in range(beam.hdiv_steps):
        for vt in range(beam.vdiv_steps):
            hdiv = beam.hdiv_step * ht - beam.hdiv_range / 2.0
            vdiv = beam.vdiv_step * vt - beam.vdiv_range / 2.0
            if beam.round_div:
                with_nan = []
                for d, step, steps, rng in ((hdiv, beam.hdiv_step, beam.hdiv_steps, beam.hdiv_range),
                                            (vdiv, beam.vdiv_step, beam.vdiv_steps, beam.vdiv_range)):
                    num = d * d - step * step / 4.0 * (1 - steps % 2)
                    with_nan.append(num / rng / rng if rng != 0 else math.nan)
                test = with_nan[0] + with_nan[1]
                if test * 4.0 > 1.1:  # NaN (a zero range) never trims, as in C
                    continue
            pts.append((hdiv, vdiv))
    return pts


def build_sources(beam: BeamConfig, file_rows, dtype, device) -> Sources:
    """Sources from file rows (NaN = missing column) or from the divergence/dispersion grid."""
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    b = unitize(t(beam.beam_vector))
    if file_rows:
        raw = []
        for X, Y, Z, w, lam in file_rows:
            X = -SOURCE_DISTANCE * float(b[0]) if math.isnan(X) else X
            Y = -SOURCE_DISTANCE * float(b[1]) if math.isnan(Y) else Y
            Z = -SOURCE_DISTANCE * float(b[2]) if math.isnan(Z) else Z
            w = 1.0 if math.isnan(w) else w
            lam = beam.wavelength if math.isnan(lam) else lam
            raw.append((X, Y, Z, w, lam))
        pos = t([[r[0], r[1], r[2]] for r in raw])
        lams = t([r[4] for r in raw])
        return Sources(unitize(pos), lams, raw)
    e = unitize(t(beam.polar_vector))
    v = unitize(torch.cross(b, e, dim=-1))
    pts = divergence_grid(beam)
    lambdas = [beam.wavelength * (1.0 + beam.disp_step * k - beam.dispersion / 2.0) for k in range(beam.disp_steps)]
    dirs, lams, raw = [], [], []
    weight = 1.0 / (len(pts) * len(lambdas)) if pts else 0.0
    for hdiv, vdiv in pts:
        vec = rotate_axis(rotate_axis(-SOURCE_DISTANCE * b, e, vdiv), v, hdiv)
        for lam in lambdas:
            dirs.append(vec)
            lams.append(lam)
            raw.append((float(vec[0]), float(vec[1]), float(vec[2]), weight, lam))
    if not dirs:
        raise ValueError("the divergence grid kept no source points")
    return Sources(unitize(torch.stack(dirs)), t(lams), raw)
