"""What an experiment file holds for a simulation (``io.expt`` reads a DIALS experiment list into it,
``io.nxmx_in`` an NXmx file): the beam, the panels in the lab frame, the hierarchy's groups, the goniometer's
axis, the scan and the crystal, in the file's units (mm, A, degrees)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..crandom.streams import umat_from_axis_angle


@dataclass(frozen=True)
class ExptPanel:
    """One panel in the lab frame: origin (mm, outer corner of pixel (0,0)), unit fast/slow axes, pixel size
    (mm, fast and slow), image size (fast, slow pixels), sensor thickness (mm) and mu (1/mm), masked
    rectangles (f0, s0, f1, s1: pixels f0 <= f < f1, s0 <= s < s1) and the trusted range."""

    name: str
    origin: tuple[float, float, float]
    fast: tuple[float, float, float]
    slow: tuple[float, float, float]
    pixel_size: tuple[float, float]
    image_size: tuple[int, int]
    thickness: float
    mu: float
    mask: tuple[tuple[int, int, int, int], ...]
    trusted_range: tuple[float, float]


@dataclass(frozen=True)
class Experiment:
    """The models of an experiment list's first experiment (the file's units)."""

    wavelength: float  # A
    direction: tuple[float, float, float]  # unit, from the sample towards the source (dxtbx's s0 direction)
    polarization_normal: tuple[float, float, float]
    polarization_fraction: float
    panels: tuple[ExptPanel, ...]
    groups: tuple[tuple[int, ...], ...]  # panel indices of each hierarchy group, innermost first
    spindle_axis: tuple[float, float, float] | None
    scan: tuple[float, float] | None  # (start, width) of the first image, degrees
    crystal: tuple[tuple[float, float, float], ...] | None  # real-space a, b, c (A) in the lab frame
    space_group: str | None  # Hall symbol, for the record


__all__ = ["Experiment", "ExptPanel", "axis_turn", "multi_axis_goniometer"]


def axis_turn(axis, rad: float) -> np.ndarray:
    """The right-handed rotation by ``rad`` about ``axis`` (normalised here; C's rotation formula,
    ``crandom.streams``)."""
    axis = np.asarray(axis, dtype=float)
    return umat_from_axis_angle(tuple(axis / np.linalg.norm(axis)), float(rad))


def multi_axis_goniometer(axes, angles_rad, scan_axis: int) -> tuple[tuple[float, float, float], np.ndarray]:
    """(the spindle axis S e, S F) of dxtbx's multi-axis goniometer: unit-normalised ``axes`` (innermost first)
    at ``angles_rad``; the axes inside ``scan_axis`` make the fixed rotation F, those outside it the setting
    rotation S, the outermost on the left."""
    units = [np.asarray(a, dtype=float) / np.linalg.norm(a) for a in axes]
    turns = [axis_turn(a, t) for a, t in zip(axes, angles_rad)]
    fixed, setting = np.eye(3), np.eye(3)
    for i in range(scan_axis):
        fixed = turns[i] @ fixed
    for i in range(scan_axis + 1, len(units)):
        setting = turns[i] @ setting
    return tuple(setting @ units[scan_axis]), setting @ fixed
