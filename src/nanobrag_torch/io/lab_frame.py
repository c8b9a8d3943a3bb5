"""The laboratory frames the processing programs read geometry in, and the experiment expressed in them.

The simulation's lab frame is the C program's (it depends on the convention: MOSFLM's beam runs along +x,
XDS's along +z, ...). Files describe the experiment in a fixed frame instead:

* NeXus/NXmx uses the McStas frame: the beam along +z, y up (``lab_to_mcstas``).
* imgCIF, and with it dxtbx/DIALS, uses a frame with x along the principal goniometer axis and z from the
  sample towards the source, so the beam runs along -z (``MCSTAS_TO_IMGCIF``: x and z flipped, as dxtbx
  converts NeXus geometry).

``lab_to_mcstas`` takes the beam to McStas +z and the spindle's part perpendicular to the beam to McStas -x,
which is imgCIF/DIALS +x: a spindle perpendicular to the beam reads as DIALS's usual (1, 0, 0) whatever the
convention. ``imgcif_setup`` places the model's detector (``geometry.place_detector``) and returns every
vector a writer needs in the imgCIF frame (lengths in mm): the NXmx, imgCIF and experiment-list writers
share it, so the three files describe one geometry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mcstas import MCSTAS_TO_IMGCIF  # McStas (NeXus) -> imgCIF (dxtbx/DIALS); used by the writers from here


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _units(v: np.ndarray) -> np.ndarray:
    """Each row (or the vector) scaled to length 1."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def lab_to_mcstas(beam, spindle, polar=None) -> np.ndarray:
    """Rotation (3x3, rows the McStas axes in lab coordinates) taking the beam to +z and the part of the
    spindle (or, failing that, the polarization axis, then any axis) perpendicular to the beam to -x."""
    z = _unit(np.asarray(beam, dtype=np.float64))
    for cand in (spindle, polar, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)):
        if cand is None:
            continue
        c = np.asarray(cand, dtype=np.float64)
        perp = c - np.dot(c, z) * z
        if np.linalg.norm(perp) > 1e-9:
            x = -_unit(perp)
            break
    y = np.cross(z, x)
    return np.stack((x, y, z))


def _vec(t) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float64)


@dataclass(frozen=True)
class ImgcifSetup:
    """A model's experiment in the imgCIF (dxtbx/DIALS) frame. Lengths in mm, directions unit vectors.

    ``to_imgcif``: lab -> imgCIF rotation (3x3); ``origin``: the outer corner of pixel (0, 0) (dxtbx's panel
    origin); ``fast``/``slow``: the detector axes; ``normal``: C's detector normal (odet, which is fast x slow
    or its opposite: ADXV); ``close_distance``: origin . normal, the sample-to-plane distance (mm);
    ``spindle``: the rotation axis (None without one);
    ``polarization_normal``/``polarization_fraction``: dxtbx's description of C's -polar_vector and -polar
    (the plane holding the E-vector, and the fraction of intensity polarized in it, (1 + kahn)/2);
    ``geometry``: the placed detector (``geometry.DetectorGeometry``, lab frame, metres)."""

    to_imgcif: np.ndarray
    origin: np.ndarray
    fast: np.ndarray
    slow: np.ndarray
    normal: np.ndarray
    close_distance: float | np.ndarray
    spindle: np.ndarray | None
    wavelength: float  # Å
    polarization_normal: np.ndarray
    polarization_fraction: float
    pixel_size: float  # mm
    geometry: object

    @property
    def to_mcstas(self) -> np.ndarray:
        """lab -> McStas (NeXus) rotation."""
        return MCSTAS_TO_IMGCIF @ self.to_imgcif


def imgcif_setup(model) -> ImgcifSetup:
    """Place ``model``'s detector and express beam, detector and spindle in the imgCIF frame (module doc)."""
    from ..panels import Panels, place

    det, beam = model.detector, model.beam
    multi = isinstance(det, Panels)  # (P, 3) vectors
    g = place(det, beam.beam_vector)
    spindle = model.crystal.spindle_axis
    spindle = _unit(_vec(spindle)) if spindle is not None else None
    polar = _unit(_vec(beam.polar_vector))
    R = MCSTAS_TO_IMGCIF @ lab_to_mcstas(_vec(g.beam).reshape(-1, 3)[0], spindle, polar)
    fast, slow, normal = (_units(_vec(v)) @ R.T for v in (g.fdet, g.sdet, g.odet))
    close = _vec(g.close_distance) * 1000.0
    e = R @ polar
    pol_normal = _unit(np.cross(np.array([0.0, 0.0, 1.0]), e))  # perpendicular to the beam and the E-vector
    return ImgcifSetup(
        to_imgcif=R, origin=_vec(g.pix0) @ R.T * 1000.0, fast=fast, slow=slow, normal=normal,
        close_distance=close if multi else float(close), spindle=None if spindle is None else R @ spindle,
        wavelength=float(beam.wavelength) * 1e10, polarization_normal=pol_normal,
        polarization_fraction=(1.0 + float(beam.kahn)) / 2.0, pixel_size=float(det.pixel_size) * 1000.0,
        geometry=g)
