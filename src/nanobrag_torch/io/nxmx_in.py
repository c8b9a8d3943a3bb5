"""Read the experiment of an NXmx file (``-expt FILE.h5``) as ``io.expt`` reads a DIALS experiment list: the
beam, every ``NXdetector_module`` as a panel, the hierarchy, the goniometer's axis and the scan — so that a
NeXus file (ours, or one with several modules) gives the detector geometry the way a ``.expt`` does.

Geometry (h5py, no dxtbx): a module's pixel (0,0) corner is its ``fast_pixel_direction``'s ``depends_on``
chain applied to the origin — each transformation (a translation by value x vector, or a rotation by value
about vector, each after its ``offset``) applied first, then the one it depends on, up to "." — and its fast
and slow axes are those directions turned by the chain's rotations. The frame goes from McStas (NeXus: beam
along +z) to imgCIF (dxtbx/DIALS: x and z flipped, ``lab_frame.MCSTAS_TO_IMGCIF``), the frame of an experiment
list. A transformation shared by two or more modules is a group of the hierarchy (its modules). The image
size is ``data_size`` (slow, fast), the pixel size the directions' values, the sensor ``sensor_thickness``
(none for the 1 nm that stands for C's -detector_thick 0 in our files; no mu: NXmx has none, so C's default
applies, or give -detector_abs); a
``pixel_mask`` (non-zero: masked) becomes the panels' masked rectangles (runs of masked pixels on a row).
The rotation axis is the sample chain's scanned rotation turned by the rotations outside it (dxtbx's multi-axis
goniometer; with none scanned, the first rotation), the scan its first value and the step to the second (or its
``_increment_set``); without a rotation a still. Polarization from ``incident_polarization_stokes``
(the first row), else unpolarized. NXmx holds no crystal: give ``-cell``/``-mat``/``-misset``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from .expt_model import Experiment, ExptPanel, axis_turn, multi_axis_goniometer
from .mcstas import MCSTAS_TO_IMGCIF, NO_SENSOR_THICKNESS_MM

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_LENGTH_MM = {"mm": 1.0, "m": 1000.0, "cm": 10.0, "um": 1e-3, "microns": 1e-3, "micron": 1e-3, "nm": 1e-6}
_WAVELENGTH_A = {"angstrom": 1.0, "a": 1.0, "nm": 10.0, "m": 1e10}


def is_hdf5(path) -> bool:
    """The file starts with HDF5's signature (an NXmx file, not JSON)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def _text(v) -> str:
    v = v[()] if hasattr(v, "shape") and getattr(v, "shape", None) == () else v
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode() if isinstance(v, bytes) else str(v)


def _scale(ds, table: dict, default: str, where: str) -> float:
    unit = _text(ds.attrs.get("units", default)).strip().lower().replace("å", "angstrom")
    if unit not in table:
        raise InputError(f"{where}: unit {unit!r} not understood (use {', '.join(sorted(table))})")
    return table[unit]


def _angle(ds, value: float, where: str) -> float:
    """A rotation's value in radians from its ``units`` (degrees by default); other units refused."""
    units = _text(ds.attrs.get("units", "deg")).strip().lower()
    if units.startswith("deg"):
        return math.radians(value)
    if units.startswith("rad"):
        return value
    raise InputError(f"{where}: rotation units {units!r} not understood (use deg or rad)")


def _offset(ds, where: str) -> np.ndarray:
    """A transformation's ``offset`` (mm, from its ``offset_units``; none: zero)."""
    offset = np.asarray(ds.attrs.get("offset", (0.0, 0.0, 0.0)), dtype=float).reshape(3)
    unit = _text(ds.attrs.get("offset_units", "mm")).strip().lower()
    if unit not in _LENGTH_MM:
        raise InputError(f"{where}: offset_units {unit!r} not understood (use {', '.join(sorted(_LENGTH_MM))})")
    return offset * _LENGTH_MM[unit]


def _matrix(ds, index: int, where: str) -> np.ndarray:
    """4x4 of one transformation (its value ``index`` for a scanned axis): translation (mm) or rotation."""
    kind = _text(ds.attrs.get("transformation_type", "")).lower()
    vector = np.asarray(ds.attrs.get("vector", (0.0, 0.0, 0.0)), dtype=float).reshape(3)
    value = float(np.asarray(ds[()], dtype=float).reshape(-1)[index])
    offset = _offset(ds, where)
    m = np.eye(4)
    if kind == "translation":
        m[:3, 3] = offset + value * _scale(ds, _LENGTH_MM, "mm", where) * vector
    elif kind == "rotation":
        m[:3, :3] = axis_turn(vector, _angle(ds, value, where))
        m[:3, 3] = offset
    else:
        raise InputError(f"{where}: transformation_type {kind!r} (need translation or rotation)")
    return m


def _chain(f, path: str, where: str) -> list[str]:
    """The transformation paths from ``path`` up its depends_on links to "." (cycles refused)."""
    out: list[str] = []
    while path not in (".", ""):
        if path in out or len(out) > 64:
            raise InputError(f"{where}: the depends_on chain at {path} loops")
        if path not in f:
            raise InputError(f"{where}: depends_on names {path}, which the file does not hold")
        out.append(path)
        path = _text(f[path].attrs.get("depends_on", "."))
    return out


def _compose(f, paths: list[str], where: str) -> np.ndarray:
    m = np.eye(4)
    for p in paths:  # the object's own transformation first, then the one it depends on
        m = _matrix(f[p], 0, where) @ m
    return m


def _depends_on(direction, module) -> str:
    """Where a pixel direction's chain starts: its depends_on, or (older files, depends_on ".") the module's
    ``module_offset``, as dxtbx reads them."""
    start = _text(direction.attrs.get("depends_on", "."))
    return module["module_offset"].name if start in (".", "") and "module_offset" in module else start


def _mask_rectangles(mask: np.ndarray) -> tuple[tuple[int, int, int, int], ...]:
    """(f0, s0, f1, s1) rectangles covering the True pixels: runs of masked pixels on each row."""
    out = []
    for s, row in enumerate(mask):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        out += [(int(a), s, int(b), s + 1) for a, b in zip(edges[::2], edges[1::2])]
    return tuple(out)


def _children(group, nx_class: str):
    """The members of ``group`` whose NX_class attribute is ``nx_class`` (h5py gives it as str or bytes), lazily."""
    return (group[k] for k in group if group[k].attrs.get("NX_class") in (nx_class, nx_class.encode()))


def _child(group, nx_class: str):
    """The first member of ``group`` of that NX_class, or None (the members after it are not opened)."""
    return next(_children(group, nx_class), None)


def _modules(det, where: str) -> list:
    mods = list(_children(det, "NXdetector_module"))
    if not mods:
        raise InputError(f"{where}: the detector has no NXdetector_module")
    return sorted(mods, key=lambda m: tuple(int(x) for x in np.asarray(m["data_origin"][()]).reshape(-1)))


def _panels(f, det, where: str):
    """The modules as panels (imgCIF frame, mm) and the groups (shared transformations), innermost first."""
    thick = 0.0
    if "sensor_thickness" in det:
        thick = float(det["sensor_thickness"][()]) * _scale(det["sensor_thickness"], _LENGTH_MM, "mm", where)
        if thick <= NO_SENSOR_THICKNESS_MM:  # our stand-in for C's -detector_thick 0 (io.nexus)
            thick = 0.0
    mask = np.asarray(det["pixel_mask"][()]) != 0 if "pixel_mask" in det else None
    panels, chains = [], []
    for m in _modules(det, where):
        here = f"{where} {m.name}"
        try:
            fdir, sdir = m["fast_pixel_direction"], m["slow_pixel_direction"]
            size = tuple(int(x) for x in np.asarray(m["data_size"][()]).reshape(-1))
            start = tuple(int(x) for x in np.asarray(m["data_origin"][()]).reshape(-1))
        except KeyError as exc:
            raise InputError(f"{here}: missing {exc}") from None
        if len(size) != 2 or len(start) != 2:
            raise InputError(f"{here}: data_origin/data_size must hold (slow, fast), got {start} / {size}")
        chain = _chain(f, _depends_on(fdir, m), here)
        a = _compose(f, chain, here)
        corner = a @ np.append(_offset(fdir, here), 1.0)  # pixel (0,0): the fast direction's offset, placed
        axes = []
        turns = (a[:3, :3], _compose(f, _chain(f, _depends_on(sdir, m), here), here)[:3, :3])  # a: fast's chain
        for d, turn in zip((fdir, sdir), turns):
            v = turn @ np.asarray(d.attrs["vector"], dtype=float).reshape(3)
            axes.append(MCSTAS_TO_IMGCIF @ (v / np.linalg.norm(v)))
        px = [float(d[()]) * _scale(d, _LENGTH_MM, "mm", here) for d in (fdir, sdir)]
        rect = ()
        if mask is not None and mask.ndim == 2:
            rect = _mask_rectangles(mask[start[0]:start[0] + size[0], start[1]:start[1] + size[1]])
        panels.append(ExptPanel(name=m.name, origin=tuple(MCSTAS_TO_IMGCIF @ corner[:3]), fast=tuple(axes[0]),
                                slow=tuple(axes[1]), pixel_size=tuple(px), image_size=(size[1], size[0]),
                                thickness=thick, mu=0.0, mask=rect, trusted_range=(-1.0, 65535.0)))
        chains.append(chain)
    members: dict[frozenset, None] = {}
    for path in {p for c in chains for p in c}:
        holders = frozenset(i for i, c in enumerate(chains) if path in c)
        if len(holders) >= 2:
            members[holders] = None
    groups = tuple(tuple(sorted(g)) for g in sorted(members, key=lambda g: (len(g), sorted(g))))
    return tuple(panels), groups


def _beam(inst, where: str) -> tuple[float, tuple, float]:
    """(wavelength Å, polarization normal, polarization fraction) in the imgCIF frame."""
    beam = _child(inst, "NXbeam")
    if beam is None or "incident_wavelength" not in beam:
        raise InputError(f"{where}: no NXbeam with an incident_wavelength")
    wl = beam["incident_wavelength"]
    wavelength = float(np.asarray(wl[()], dtype=float).reshape(-1)[0]) * _scale(wl, _WAVELENGTH_A, "angstrom", where)
    if "incident_polarization_stokes" not in beam:
        return wavelength, (0.0, 1.0, 0.0), 0.5
    stokes = np.asarray(beam["incident_polarization_stokes"][()], dtype=float).reshape(-1, 4)
    i, q, u = (float(x) for x in stokes[0][:3])
    chi = 0.5 * math.atan2(u, q)
    e = MCSTAS_TO_IMGCIF @ np.array([math.cos(chi), math.sin(chi), 0.0])
    normal = np.cross(np.array([0.0, 0.0, 1.0]), e)
    return wavelength, tuple(normal / np.linalg.norm(normal)), (1.0 + math.hypot(q, u) / i) / 2.0 if i > 0 else 0.5


def _goniometer(f, entry, where: str):
    """(spindle axis imgCIF, (start, width) deg) of the sample's chain, as dxtbx's multi-axis goniometer: the
    scanned rotation (values that vary, or an increment set) about its axis turned by the rotations outside it
    at their values (S e, as ``io.expt``); with none scanned, the first rotation at its value (a still);
    (None, None) without a rotation. More than one scanned axis is refused in one line."""
    sample = _child(entry, "NXsample")
    if sample is None or "depends_on" not in sample:
        return None, None
    rotations = []  # innermost first: (dataset, values, width in degrees)
    for path in _chain(f, _text(sample["depends_on"][()]), where):
        ds = f[path]
        if _text(ds.attrs.get("transformation_type", "")).lower() != "rotation":
            continue
        values = np.asarray(ds[()], dtype=float).reshape(-1)
        if f"{path}_increment_set" in f:
            step = float(np.asarray(f[f"{path}_increment_set"][()], dtype=float).reshape(-1)[0])
        else:
            step = float(values[1] - values[0]) if values.size > 1 else 0.0
        rotations.append((ds, values, math.degrees(_angle(ds, step, where))))
    if not rotations:
        return None, None
    scanned = [i for i, (_, _, width) in enumerate(rotations) if width != 0.0]
    if len(scanned) > 1:
        names = ", ".join(rotations[i][0].name for i in scanned)
        raise InputError(f"{where}: the sample's axes {names} are all scanned; one scan axis is supported")
    k = scanned[0] if scanned else 0
    axes = [MCSTAS_TO_IMGCIF @ np.asarray(ds.attrs["vector"], dtype=float).reshape(3) for ds, _, _ in rotations]
    angles = [_angle(ds, float(values[0]), where) for ds, values, _ in rotations]
    spindle, _ = multi_axis_goniometer(axes, angles, k)  # NXmx holds no crystal: F turns nothing here
    return spindle, (math.degrees(angles[k]), rotations[k][2])


def read_nxmx_experiment(path: str | Path) -> Experiment:
    """The experiment of an NXmx file (module doc); one-line ``InputError`` for a file that is not one."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filters)

    where = f"-expt: {path}"
    try:
        with h5py.File(path, "r") as f:
            entry = _child(f, "NXentry")
            inst = None if entry is None else _child(entry, "NXinstrument")
            det = None if inst is None else _child(inst, "NXdetector")
            if det is None:
                raise InputError(f"{where}: not an NXmx file (no NXentry/NXinstrument/NXdetector)")
            panels, groups = _panels(f, det, where)
            wavelength, pol_normal, pol_fraction = _beam(inst, where)
            spindle, scan = _goniometer(f, entry, where)
    except OSError as exc:
        raise InputError(f"{where}: not readable as HDF5 ({exc})") from None
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"{where}: not an NXmx file this reader understands ({type(exc).__name__}: {exc})") from None
    return Experiment(wavelength=wavelength, direction=(0.0, 0.0, 1.0), polarization_normal=pol_normal,
                      polarization_fraction=pol_fraction, panels=panels, groups=groups, spindle_axis=spindle,
                      scan=scan, crystal=None, space_group=None)


__all__ = ["read_nxmx_experiment", "is_hdf5"]
