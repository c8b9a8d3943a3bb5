"""Structure factors for a model from a structure (issue 23): the ``StructureFactors`` of a PDB/mmCIF model
(``structure_factors_from_model``) or of merged MTZ data (``structure_factors_from_mtz``), and the resolution
a model's detector reaches (``table_resolution``), to which the command line computes the table.

The table is C's grid (``io.hkl.table_from_reflections``): listed P1 reflections with both Friedel mates,
``default_F`` in the unlisted cells of the index box. ``StructureFactors.table`` is a float64 tensor like any
other parameter: it may require grad (``sf.table.requires_grad_(True)``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .geometry import pixel_positions, place_detector, unitize
from .io.hkl import HKLTable, table_from_reflections
from .io.mtz import read_mtz
from .io.p1 import Reflections, within_resolution
from .io.structure import DEFAULT_B_SOL, DEFAULT_K_SOL, model_reflections, read_structure
from .model import SETUP_DTYPE, Model, StructureFactors

CORNER_SAMPLES = 256  # detector edges sampled per axis for its reach (the corners are always among them)
# How far (in Miller index units per axis) a lookup can land from the pixel's fractional index: the nearest
# integer (1/2), or the tricubic neighbourhood floor-1 .. floor+2 (2).
LOOKUP_REACH = {False: 0.5, True: 2.0}


def structure_factors_from_table(table: HKLTable | None, default_F: float = 0.0, interpolate: bool = False,
                                 device=None) -> StructureFactors:
    """A grid (or none: every F is default_F) as the model's ``StructureFactors``; interpolation only with
    a table of at least one reflection, as C."""
    default = torch.as_tensor(default_F, dtype=SETUP_DTYPE, device=device)
    if table is None:
        return StructureFactors(table=None, default_F=default)
    return StructureFactors(
        table=torch.as_tensor(table.grid, dtype=SETUP_DTYPE, device=device), default_F=default, mins=table.mins,
        maxs=table.maxs, missing=None if table.missing is None else torch.as_tensor(table.missing, device=device),
        interpolate=bool(interpolate and table.count > 0),
    )


def table_of(refl: Reflections, default_F: float = 0.0) -> HKLTable:
    """C's grid of P1 reflections."""
    return table_from_reflections(refl.hkl, refl.F, default_F, refl.source)


def structure_factors_from_model(path: str | Path, d_min: float, wavelength: float | None = None,
                                 anomalous: bool = False, *, b_factor: float | None = None,
                                 bulk_solvent: bool = False, k_sol: float = DEFAULT_K_SOL,
                                 b_sol: float = DEFAULT_B_SOL, default_F: float = 0.0, interpolate: bool = False,
                                 device=None) -> StructureFactors:
    """|F| of a PDB/mmCIF model for every P1 reflection with d >= ``d_min`` (A), both Friedel mates (gemmi:
    IT92 form factors, the file's cell and space group; ``io.structure``). ``anomalous``: f'/f'' at
    ``wavelength`` (A); ``b_factor``: every atom's B (A^2); ``bulk_solvent`` with ``k_sol`` (e/A^3) and
    ``b_sol`` (A^2). F(000) is not listed; unlisted cells hold ``default_F``."""
    refl = model_reflections(read_structure(path), d_min, wavelength=wavelength, anomalous=anomalous,
                             b_factor=b_factor, bulk_solvent=bulk_solvent, k_sol=k_sol, b_sol=b_sol,
                             source=f"-pdb: {path}")
    return structure_factors_from_table(table_of(refl, default_F), default_F, interpolate, device)


def structure_factors_from_mtz(path: str | Path, labels: str | None = None, d_min: float | None = None, *,
                               default_F: float = 0.0, interpolate: bool = False, device=None) -> StructureFactors:
    """The P1 amplitudes of merged MTZ data (``labels`` as -mtz_labels: "F,SIGF", "I,SIGI" -> sqrt(I),
    "F(+),F(-)"; ``io.mtz``), with d >= ``d_min`` (A; None: all); unlisted cells hold ``default_F``."""
    refl = within_resolution(read_mtz(path, labels), d_min)
    return structure_factors_from_table(table_of(refl, default_F), default_F, interpolate, device)


def detector_reach(model: Model) -> float:
    """The largest |s| = 2 sin(theta)/lambda (1/A) a pixel of the model's detector sees: the largest
    |d - b| over the detector (its pixel corners at up to ``CORNER_SAMPLES`` per edge, on every sensor layer,
    curved or flat) plus the largest |b - i| over the sources (b: the beam direction, d: a diffracted and i:
    an incident unit vector; |d - i| <= |d - b| + |b - i|), at the shortest wavelength of the beam."""
    det, beam = model.detector, model.beam
    with torch.no_grad():
        geom = place_detector(det, beam.beam_vector)
        dev, dt = geom.pix0.device, geom.pix0.dtype
        f = torch.linspace(-0.5, det.fpixels - 0.5, min(det.fpixels, CORNER_SAMPLES) + 1, dtype=dt, device=dev)
        s = torch.linspace(-0.5, det.spixels - 0.5, min(det.spixels, CORNER_SAMPLES) + 1, dtype=dt, device=dev)
        ff, ss = torch.meshgrid(f, s, indexing="ij")
        pos = pixel_positions(geom, ff.reshape(-1), ss.reshape(-1), float(det.pixel_size), 1,
                              float(det.thickstep), det.thicksteps, det.curved)
        b = geom.beam
        out = torch.linalg.vector_norm(unitize(pos) - b, dim=-1).max()
        incident = -unitize(beam.source_directions.to(dt))
        spread = torch.linalg.vector_norm(incident - b, dim=-1).max()
        lam = float(beam.wavelengths().min()) * 1e10
    return float(out + spread) / lam


def table_resolution(model: Model, interpolate: bool, crystal) -> float:
    """The d (A) to which a run's table must reach: the detector's reach (``detector_reach``) widened by the
    index neighbourhood a lookup there can land in (``LOOKUP_REACH`` per axis times |a*| + |b*| + |c*| of the
    ``crystal`` geometry), or the -dmin cut-off where that comes first."""
    widen = LOOKUP_REACH[bool(interpolate)] * sum(
        float(torch.linalg.vector_norm(v, dim=-1).max()) for v in (crystal.a_star, crystal.b_star, crystal.c_star))
    s = detector_reach(model) + widen
    if model.beam.dmin > 0:
        s = min(s, 1.0 / (model.beam.dmin * 1e10))
    return 1.0 / s
