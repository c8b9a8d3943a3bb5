"""Read a DIALS experiment list (``.expt``, dxtbx's JSON schema) with plain ``json`` — no dxtbx import.

The first experiment's models are read: the beam (wavelength, direction, polarization), the detector (its
panels in the lab frame, composed through the hierarchy, and the hierarchy's groups), the goniometer's
rotation axis, the scan (start and width of the first image) and the crystal when present (real-space
vectors, space group). Units stay the file's (mm, A, degrees); ``load`` converts them once.

dxtbx's goniometer turns a crystal vector x at angle phi to S R(e, phi) F x (S: setting rotation, F: fixed
rotation, e: the datum rotation axis). Since S R(e, phi) = R(S e, phi) S, that is one rotation about the lab
axis S e of the vector S F x: the spindle axis read is S e and the crystal's vectors S F a, S F b, S F c, which
is the C program's model (one spindle, the crystal at phi = 0 in the lab frame).

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
from .expt_model import Experiment, ExptPanel, multi_axis_goniometer
from .nxmx_in import is_hdf5, read_nxmx_experiment


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


@dataclass(frozen=True)
class GroupFrames:
    """How the writers lay out a post-ordered hierarchy (innermost first): each group's pivot (the mean of its
    panels' origins), its parent (the smallest later group holding all its panels; None at the top), and each
    panel's innermost group (None: in no group)."""

    groups: tuple[tuple[int, ...], ...]
    pivots: np.ndarray  # (groups, 3), in the units of the origins
    parents: tuple[int | None, ...]
    inner: tuple[int | None, ...]

    def relative(self, k: int | None, point: np.ndarray) -> np.ndarray:
        """``point`` from group ``k``'s pivot (from the origin when ``k`` is None)."""
        return point - (self.pivots[k] if k is not None else 0.0)


def group_frames(groups, origins: np.ndarray) -> GroupFrames:
    """The ``GroupFrames`` of ``groups`` (panel indices) for panels at ``origins`` (P, 3)."""
    groups = tuple(tuple(int(i) for i in g) for g in groups)
    sets = [frozenset(g) for g in groups]
    parents = tuple(next((h for h in range(k + 1, len(sets)) if sets[k] <= sets[h]), None) for k in range(len(sets)))
    inner = tuple(next((k for k, m in enumerate(sets) if p in m), None) for p in range(len(origins)))
    pivots = np.array([origins[list(g)].mean(0) for g in groups]).reshape(len(groups), 3)
    return GroupFrames(groups, pivots, parents, inner)


def _goniometer(gonio: dict, where: str) -> tuple[tuple[float, float, float], np.ndarray]:
    """(the spindle axis in the lab frame, S F) of a goniometer: a single axis with its setting and fixed
    rotations, or dxtbx's multi-axis one (axes innermost first, each at its angle; the axes inside the scan
    axis make F, those outside it S)."""
    if not {"axes", "angles", "scan_axis"} <= gonio.keys():
        setting, fixed = _rotation(gonio, "setting_rotation", where), _rotation(gonio, "fixed_rotation", where)
        return tuple(setting @ np.array(_vec(gonio, "rotation_axis", where))), setting @ fixed
    try:
        axes = np.array(gonio["axes"], dtype=float).reshape(-1, 3)
        angles = np.radians(np.array(gonio["angles"], dtype=float).reshape(-1))
        k = int(gonio["scan_axis"])
    except (TypeError, ValueError):
        raise InputError(f"{where}: 'axes', 'angles' or 'scan_axis' is not numeric") from None
    norms = np.linalg.norm(axes, axis=1)
    if not (len(axes) == len(angles) and 0 <= k < len(axes) and np.all(np.isfinite(angles)) and np.all(norms > 0)):
        raise InputError(f"{where}: {len(axes)} axes, {len(angles)} angles and scan axis {k} do not fit together")
    return multi_axis_goniometer(axes, angles, k)


def _rotation(d: dict, key: str, where: str) -> np.ndarray:
    """The goniometer's 3x3 ``key`` matrix (row-major, as dxtbx writes it; the identity when absent); one line
    for a matrix that is not a rotation."""
    if d.get(key) is None:
        return np.eye(3)
    m = np.array(_vec(d, key, where, 9)).reshape(3, 3)
    if not (np.allclose(m @ m.T, np.eye(3), atol=1e-6) and np.linalg.det(m) > 0):
        raise InputError(f"{where}: '{key}' is not a rotation matrix")
    return m


# Experiments read, by (resolved path, modification time, size): the command line's parse, its replay and the
# loader each ask for the -expt file, which for NXmx means opening and walking HDF5 three times. An Experiment
# is immutable; only successful reads are kept, so a bad file raises its error every time.
_READ: dict[tuple, Experiment] = {}


def read_expt(path: str | Path) -> Experiment:
    """The first experiment of a DIALS experiment list (or of an NXmx file: ``io.nxmx_in``); one-line
    ``InputError`` for a file that is not one. A file is read once per version (``_READ``)."""
    try:
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return _read_expt(path)  # raises the reader's one-line error
    if key not in _READ:
        if len(_READ) >= 8:
            _READ.clear()
        _READ[key] = _read_expt(path)
    return _READ[key]


def _read_expt(path: str | Path) -> Experiment:
    if is_hdf5(path):
        return read_nxmx_experiment(path)
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
    spindle, turn = None, np.eye(3)
    if gonio is not None:
        spindle, turn = _goniometer(gonio, f"-expt: {path}: goniometer")
    scan = _model(doc, exp, "scan", path)
    osc = None if scan is None else _vec(scan, "oscillation", f"-expt: {path}: scan", 2)
    xtal = _model(doc, exp, "crystal", path)
    vectors = None
    if xtal is not None:
        vectors = tuple(tuple(turn @ np.array(_vec(xtal, f"real_space_{k}", f"-expt: {path}: crystal")))
                        for k in "abc")
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





def custom_placement(origin, fast, slow, beam) -> tuple[float, float, float]:
    """(distance, Xbeam, Ybeam), in the units of ``origin``, that make the C program's CUSTOM convention (beam
    pivot, no rotations, odet = fast x slow) put pix0 at ``origin``: C's pix0 is -Xbeam fast - Ybeam slow +
    distance beam, so distance = origin.n / beam.n and the beam centre is where the beam crosses the panel's
    plane, measured from the origin along fast and slow."""
    o, f, s, b = (np.asarray(v, dtype=float) for v in (origin, fast, slow, beam))
    b = b / np.linalg.norm(b)
    n = np.cross(f, s)
    d = float(o @ n) / float(b @ n)
    w = d * b - o
    return d, float(w @ f), float(w @ s)


def c_flags(exp: Experiment, panel: int = 0) -> list[str]:
    """The C program's flags for the experiment's beam, goniometer, scan and panel ``panel`` (CUSTOM vectors:
    -beam_vector = the propagation direction, -fdet/-sdet_vector = the panel's axes, -odet_vector = fast x
    slow, -spindle_axis = the rotation axis; -distance/-Xbeam/-Ybeam put pix0 at the panel's origin). The
    polarization: -polar = 2 fraction - 1 (Kahn), -polar_vector = the E-vector (normal x propagation)."""
    p = exp.panels[panel]
    beam = -np.asarray(exp.direction)
    f, s = np.asarray(p.fast), np.asarray(p.slow)
    d, xb, yb = custom_placement(p.origin, f, s, beam)
    e = np.cross(np.asarray(exp.polarization_normal), beam)
    num = lambda *v: [repr(float(x)) for x in v]  # noqa: E731
    out = ["-lambda", *num(exp.wavelength), "-beam_vector", *num(*beam), "-fdet_vector", *num(*f),
           "-sdet_vector", *num(*s), "-odet_vector", *num(*np.cross(f, s)), "-distance", *num(d),
           "-Xbeam", *num(xb), "-Ybeam", *num(yb), "-pixel", *num(p.pixel_size[0]),
           "-detpixels_f", str(p.image_size[0]), "-detpixels_s", str(p.image_size[1])]
    if np.linalg.norm(e) > 0:
        out += ["-polar", *num(2 * exp.polarization_fraction - 1), "-polar_vector", *num(*(e / np.linalg.norm(e)))]
    if p.thickness > 0:
        out += ["-detector_thick", *num(p.thickness * 1000)]
        if p.mu > 0:
            out += ["-detector_abs", *num(1000 / p.mu)]
    if exp.spindle_axis is not None:
        out += ["-spindle_axis", *num(*exp.spindle_axis)]
    if exp.scan is not None:
        out += ["-phi", *num(exp.scan[0]), "-osc", *num(exp.scan[1])]
    return out


def check_one_size(exp: Experiment, path) -> None:
    """Panels of one size, pixel and sensor: refuse a detector that mixes them (one line)."""
    first = exp.panels[0]
    for i, p in enumerate(exp.panels):
        for what in ("image_size", "pixel_size", "thickness", "mu"):
            if getattr(p, what) != getattr(first, what):
                raise InputError(f"-expt: {path}: panel {i} has {what} {getattr(p, what)}, panel 0 "
                                 f"{getattr(first, what)}: panels of different sizes, pixels or sensors are not "
                                 "supported (split the detector into experiments of one panel size)")
    if first.pixel_size[0] != first.pixel_size[1]:
        raise InputError(f"-expt: {path}: rectangular pixels {first.pixel_size} mm are not supported")

__all__ = ["read_expt", "Experiment", "ExptPanel", "c_flags", "custom_placement", "check_one_size", "group_frames",
           "GroupFrames"]
