"""X-ray sources: the divergence x dispersion grid or a source file (§5)."""
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


def file_positions(beam: BeamConfig, file_rows, dtype, device,
                   source_distance: float = SOURCE_DISTANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions (NS, 3) as the file gives them, wavelengths (NS,) with NaN for "lambda0") from source-file
    rows; a missing coordinate puts the source ``source_distance`` up-beam, as C does."""
    b = unitize(torch.as_tensor(beam.beam_vector, dtype=dtype, device=device))
    pos = []
    for X, Y, Z, _w, _lam in file_rows:
        pos.append([-source_distance * float(b[i]) if math.isnan(v) else v for i, v in enumerate((X, Y, Z))])
    lams = torch.as_tensor([r[4] for r in file_rows], dtype=dtype, device=device)
    return torch.as_tensor(pos, dtype=dtype, device=device), lams


def file_sources(beam: BeamConfig, file_rows, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit directions (NS, 3), wavelengths (NS,) with NaN for "lambda0") from source-file rows.

    Missing columns take C's defaults: a position 10 m up-beam, weight 1 (read, never used), lambda0.
    """
    pos, lams = file_positions(beam, file_rows, dtype, device)
    return unitize(pos), lams


def grid_positions(beam: BeamConfig, dtype, device,
                   source_distance: float = SOURCE_DISTANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions (NS, 3) at ``source_distance``, wavelength factors (NS,)) of C's divergence x dispersion
    loops: every kept (hdiv, vdiv) point (h outer, v inner) times every wavelength lambda0 (1 + k step -
    dispersion/2); the up-beam vector is turned about the E-vector by vdiv, then about B by hdiv."""
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    b = unitize(t(beam.beam_vector))
    e = unitize(t(beam.polar_vector))
    v = unitize(torch.cross(b, e, dim=-1))
    pts = divergence_grid(beam)
    if not pts:
        raise ValueError("the divergence grid kept no source points")
    factors = [1.0 + beam.disp_step * k - beam.dispersion / 2.0 for k in range(beam.disp_steps)]
    dirs = [rotate_axis(rotate_axis(-source_distance * b, e, vdiv), v, hdiv) for hdiv, vdiv in pts]
    dirs = torch.stack(dirs).repeat_interleave(len(factors), dim=0)
    return dirs, t(factors * len(pts))


def grid_sources(beam: BeamConfig, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit directions (NS, 3), wavelength factors (NS,)) of C's divergence x dispersion loops (see
    ``grid_positions``)."""
    dirs, factors = grid_positions(beam, dtype, device)
    return unitize(dirs), factors


def build_sources(beam: BeamConfig, file_rows, dtype, device) -> Sources:
    """Sources from file rows (NaN = missing column) or from the divergence/dispersion grid."""
    if file_rows:
        dirs, lams = file_sources(beam, file_rows, dtype, device)
        return Sources(dirs, torch.where(torch.isnan(lams), beam.wavelength, lams))
    dirs, factors = grid_sources(beam, dtype, device)
    return Sources(dirs, beam.wavelength * factors)
