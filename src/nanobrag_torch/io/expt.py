"""Read a DIALS experiment list (``.expt``, dxtbx's JSON schema) with plain ``json`` — no dxtbx import.

The first experiment's models are read: the beam (wavelength, direction, polarization), the detector (its
panels in the lab frame, composed through the hierarchy, and the hierarchy's groups), the goniometer's
rotation axis, the scan (start and width of the first image) and the crystal when present (real-space
vectors, space group). Units stay the file's (mm, A, degrees); ``load`` converts them once.

dxtbx stores a panel's and a group's frame (fast, slow, origin) relative to its parent group: a child's
lab-frame origin is the parent's origin + x fast + y slow + z normal (normal = fast x slow) of the parent,
and its axes are the parent's frame applied to its own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError


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


def _vec(d: dict, key: str, where: str, n: int = 3) -> tuple[float, ...]:
    try:
        v = tuple(float(x) for x in d[key])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: missing or non-numeric '{key}'") from None
    if len(v) != n or not all(np.isfinite(v)):
        raise InputError(f"{where}: '{key}' must hold {n} finite numbers, got {d[key]!r}")
    return v


def _model(doc: dict, exp: dict, kind: str, path) -> dict | None:
    """The experiment's ``kind`` model (an index into the top-level list), or None when absent."""
    if exp.get(kind) is None:
        return None
    try:
        return doc[kind][int(exp[kind])]
    except (KeyError, IndexError, TypeError, ValueError):
        raise InputError(f"-expt: {path}: experiment 0 names {kind} {exp[kind]!r}, which the file does not "
                         "hold") from None


def _frame(d: dict, where: str) -> np.ndarray:
    """(3, 4): the columns fast, slow, normal, origin of a panel or group's local frame."""
    f, s, o = (np.array(_vec(d, k, where)) for k in ("fast_axis", "slow_axis", "origin"))
    return np.stack([f, s, np.cross(f, s), o], axis=1)


def _compose(parent: np.ndarray, local: np.ndarray) -> np.ndarray:
    """A child's lab frame from its parent's lab frame and its own frame in the parent's."""
    m = parent[:, :3]
    out = m @ local
    out[:, 3] += parent[:, 3]
    return out


def _panel(d: dict, frame: np.ndarray, where: str) -> ExptPanel:
    try:
        mask = tuple(tuple(int(x) for x in r) for r in d.get("mask", ()))
        if any(len(r) != 4 for r in mask):
            raise ValueError
        size = tuple(int(x) for x in d["image_size"])
        thickness, mu = float(d.get("thickness", 0.0)), float(d.get("mu", 0.0))
        trusted = tuple(float(x) for x in d.get("trusted_range", (0.0, 0.0)))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: bad 'image_size', 'mask', 'thickness', 'mu' or 'trusted_range'") from None
    return ExptPanel(name=str(d.get("name", "")), origin=tuple(frame[:, 3]), fast=tuple(frame[:, 0]),
                     slow=tuple(frame[:, 1]), pixel_size=_vec(d, "pixel_size", where, 2), image_size=size,
                     thickness=thickness, mu=mu, mask=mask, trusted_range=trusted)


def _detector(det: dict, path) -> tuple[tuple[ExptPanel, ...], tuple[tuple[int, ...], ...]]:
    """Panels in the lab frame and the hierarchy's groups (post-order: innermost first, the root last)."""
    raw = det.get("panels") if isinstance(det, dict) else det
    if not isinstance(raw, list) or not raw:
        raise InputError(f"-expt: {path}: the detector has no panels")
    hier = det.get("hierarchy") if isinstance(det, dict) else None
    if hier is None:
        return tuple(_panel(p, _frame(p, f"-expt: {path}: panel {i}"), f"-expt: {path}: panel {i}")
                     for i, p in enumerate(raw)), ()
    frames: dict[int, np.ndarray] = {}
    groups: list[tuple[int, ...]] = []

    def walk(node: dict, parent: np.ndarray, depth: int) -> list[int]:
        if depth > 32:
            raise InputError(f"-expt: {path}: the detector hierarchy is deeper than 32 levels")
        if "panel" in node:
            i = int(node["panel"])
            if not 0 <= i < len(raw) or i in frames:
                raise InputError(f"-expt: {path}: the hierarchy names panel {i} twice or out of 0..{len(raw) - 1}")
            where = f"-expt: {path}: panel {i}"
            frames[i] = _compose(parent, _frame(raw[i], where))
            return [i]
        frame = _compose(parent, _frame(node, f"-expt: {path}: hierarchy group"))
        members: list[int] = []
        for child in node.get("children", ()):
            members += walk(child, frame, depth + 1)
        if members:
            groups.append(tuple(members))
        return members

    root = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    walk(hier, root, 0)
    if len(frames) != len(raw):
        raise InputError(f"-expt: {path}: the hierarchy places {len(frames)} of the {len(raw)} panels")
    panels = tuple(_panel(raw[i], frames[i], f"-expt: {path}: panel {i}") for i in range(len(raw)))
    return panels, tuple(groups)


def _identity(d: dict, key: str) -> bool:
    v = d.get(key)
    return v is None or np.allclose(np.asarray(v, dtype=float).reshape(-1), np.eye(3).reshape(-1), atol=1e-12)


def read_expt(path: str | Path) -> Experiment:
    """The first experiment of a DIALS experiment list; one-line ``InputError`` for a file that is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"-expt: {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"-expt: {path}: not a JSON experiment list ({exc})") from None
    if not isinstance(doc, dict) or doc.get("__id__") != "ExperimentList" or not doc.get("experiment"):
        raise InputError(f"-expt: {path}: not a DIALS experiment list (no '__id__': 'ExperimentList' with "
                         "experiments)")
    exp = doc["experiment"][0]
    beam = _model(doc, exp, "beam", path)
    det = _model(doc, exp, "detector", path)
    if beam is None or det is None:
        raise InputError(f"-expt: {path}: experiment 0 has no beam or no detector")
    where = f"-expt: {path}: beam"
    direction = np.array(_vec(beam, "direction", where))
    if not np.linalg.norm(direction) > 0:
        raise InputError(f"{where}: 'direction' is zero")
    wavelength = float(beam.get("wavelength", 0.0))
    if not (np.isfinite(wavelength) and wavelength > 0):
        raise InputError(f"{where}: 'wavelength' must be positive, got {beam.get('wavelength')!r}")
    panels, groups = _detector(det, path)
    gonio = _model(doc, exp, "goniometer", path)
    spindle = None
    if gonio is not None:
        spindle = _vec(gonio, "rotation_axis", f"-expt: {path}: goniometer")
        if not (_identity(gonio, "fixed_rotation") and _identity(gonio, "setting_rotation")):
            raise InputError(f"-expt: {path}: goniometer: fixed or setting rotations other than the identity are "
                             "not supported")
    scan = _model(doc, exp, "scan", path)
    osc = None if scan is None else _vec(scan, "oscillation", f"-expt: {path}: scan", 2)
    xtal = _model(doc, exp, "crystal", path)
    vectors = None
    if xtal is not None:
        vectors = tuple(_vec(xtal, f"real_space_{k}", f"-expt: {path}: crystal") for k in "abc")
        if abs(np.linalg.det(np.array(vectors))) < 1e-12:
            raise InputError(f"-expt: {path}: crystal: the real-space vectors are coplanar")
    return Experiment(
        wavelength=wavelength, direction=tuple(direction / np.linalg.norm(direction)),
        polarization_normal=_vec(beam, "polarization_normal", where) if "polarization_normal" in beam
        else (0.0, 1.0, 0.0),
        polarization_fraction=float(beam.get("polarization_fraction", 0.5)), panels=panels, groups=groups,
        spindle_axis=spindle, scan=osc, crystal=vectors,
        space_group=None if xtal is None else xtal.get("space_group_hall_symbol"),
    )


__all__ = ["read_expt", "Experiment", "ExptPanel"]
