"""NeXus/NXmx files (-nexus): the frames as one chunked, compressed stack and the instrument model, written
with h5py; bitshuffle + LZ4 from hdf5plugin, the filter DIALS and XDS's Dectris plugin read.

Geometry goes into the NeXus (McStas) frame: z along the beam, y up, x horizontal. The rotation from the
simulation's lab frame (``lab_frame.lab_to_mcstas``) takes the beam to +z and the spindle (made perpendicular
to the beam) to -x, so a spindle perpendicular to the beam reads in DIALS as its usual (1, 0, 0); the
experiment list (``io.experiments``) and the imgCIF headers (``io.cbf``) use the same rotation.

What is written (``FIELDS`` lists every path, checked by tests/datasets/test_series.py against the NXmx definition):

* ``/entry`` (NXentry, @version "1.0"): definition "NXmx", title, start_time, end_time_estimated.
* ``/entry/data`` (NXdata, @signal "data"): data (frames, slow, fast), chunks of one frame, bitshuffle/LZ4.
* ``/entry/sample`` (NXsample): name, depends_on; for a rotation series transformations/omega (deg, one start
  angle per frame; @vector the spindle), omega_end and omega_increment_set; for stills depends_on "." and the
  per-frame misset angles in ``/entry/sample/simulation`` (NXcollection).
* ``/entry/instrument`` (NXinstrument): name (@short_name), time_zone; beam (NXbeam): incident_wavelength
  (Å), flux_integrated (fluence, photons/m²), incident_polarization_stokes (one row per frame); detector
  (NXdetector): depends_on -> transformations/det_z (the perpendicular distance along the detector normal) ->
  "."; module (NXdetector_module): data_origin, data_size, data_stride, module_offset (pix0 within the detector
  plane; depends_on det_z), fast_pixel_direction and slow_pixel_direction (pixel size, @vector the axes;
  depends_on module_offset); data (link), description, type, distance (along the beam to the beam spot),
  distance_derived, beam_center_x/y (pixels), count_time, frame_time, pixel_mask (bit 0 for pixels outside -roi
  or masked), pixel_mask_applied, saturation_value, bit_depth_readout, sensor_material, sensor_thickness (C's
  -detector_thick; its default 0 as 1 nm: ``NO_SENSOR_THICKNESS_MM``); for noise images simulation/adc_offset
  (NXcollection: photons = data - adc_offset; 0 unless -adc was given: the counts are photons, as a
  photon-counting detector records them).
* ``/entry/source`` (NXsource): name (@short_name).

P panels (a ``panels.Panels`` detector, -expt): the frames are (frames, P x slow, fast), panel p in rows
p S..; the detector has no det_z, distance or beam centre; each hierarchy group is a translation
``detector/transformations/group_k`` and each panel a ``module_p`` (``_nx_panel_modules``).
"""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from .expt import group_frames
from .lab_frame import imgcif_setup
from .mcstas import NO_SENSOR_NOTE, NO_SENSOR_THICKNESS_MM

# Every dataset path written (attributes are listed in the module doc); the tests compare them with NXmx.
FIELDS = (
    "/entry/definition", "/entry/title", "/entry/start_time", "/entry/end_time_estimated",
    "/entry/data/data",
    "/entry/sample/name", "/entry/sample/depends_on",
    "/entry/instrument/name", "/entry/instrument/time_zone",
    "/entry/instrument/beam/incident_wavelength", "/entry/instrument/beam/flux_integrated",
    "/entry/instrument/beam/incident_polarization_stokes",
    "/entry/instrument/detector/depends_on", "/entry/instrument/detector/transformations/det_z",
    "/entry/instrument/detector/data", "/entry/instrument/detector/description", "/entry/instrument/detector/type",
    "/entry/instrument/detector/distance", "/entry/instrument/detector/distance_derived",
    "/entry/instrument/detector/beam_center_x", "/entry/instrument/detector/beam_center_y",
    "/entry/instrument/detector/count_time", "/entry/instrument/detector/frame_time",
    "/entry/instrument/detector/pixel_mask",
    "/entry/instrument/detector/pixel_mask_applied", "/entry/instrument/detector/saturation_value",
    "/entry/instrument/detector/bit_depth_readout", "/entry/instrument/detector/sensor_material",
    "/entry/instrument/detector/sensor_thickness",
    "/entry/instrument/detector/module/data_origin", "/entry/instrument/detector/module/data_size",
    "/entry/instrument/detector/module/data_stride", "/entry/instrument/detector/module/module_offset",
    "/entry/instrument/detector/module/fast_pixel_direction",
    "/entry/instrument/detector/module/slow_pixel_direction",
    "/entry/source/name",
)
ROTATION_FIELDS = ("/entry/sample/transformations/omega", "/entry/sample/transformations/omega_end",
                   "/entry/sample/transformations/omega_increment_set")
STILLS_FIELDS = ("/entry/sample/simulation/misset_angles",)
NOISE_FIELDS = ("/entry/instrument/detector/simulation/adc_offset",)


@dataclass(frozen=True)
class NexusMeta:
    """What the file records beyond the model: frame count and angles, time, exposure, what the data are."""

    frames: int
    start_time: datetime
    exposure: float = 1.0  # s per frame
    omega: tuple[float, ...] | None = None  # rotation: start angle per frame (deg)
    osc: float = 0.0  # deg per frame
    missets_deg: tuple[tuple[float, float, float], ...] | None = None  # stills: per frame
    adc: float | None = None  # noise images: the ADC offset in the counts; None: float images
    title: str = "nanobrag-torch simulation"
    creator: str = "nanobrag-torch"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ds(group, name, value, units=None, **attrs):
    d = group.create_dataset(name, data=value)
    if units is not None:
        d.attrs["units"] = units
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


def _group(parent, name, nx_class, **attrs):
    g = parent.create_group(name)
    g.attrs["NX_class"] = nx_class
    for k, v in attrs.items():
        g.attrs[k] = v
    return g


def _translation(group, name, value_mm, vector, depends_on, offset=(0.0, 0.0, 0.0)):
    return _ds(group, name, float(value_mm), "mm", transformation_type="translation",
               vector=np.asarray(vector, dtype=np.float64), offset=np.asarray(offset, dtype=np.float64),
               offset_units="mm", depends_on=depends_on)


def stokes(kahn: float, polar_mcstas: np.ndarray) -> tuple[float, float, float, float]:
    """Stokes (I, Q, U, V) of a beam with fraction ``kahn`` linearly polarized along ``polar`` (Q, U measured
    from McStas x)."""
    chi = math.atan2(float(polar_mcstas[1]), float(polar_mcstas[0]))
    clean = lambda x: round(x, 12) + 0.0  # noqa: E731  (no -0.0 or 1e-17 from the angle's rounding)
    return 1.0, clean(kahn * math.cos(2 * chi)), clean(kahn * math.sin(2 * chi)), 0.0


def write_nxmx(path, model, meta: NexusMeta, frame_reader, dtype, file_name: str | None = None) -> None:
    """Write the NXmx file ``path`` (directly: callers write to a temporary name and rename; ``file_name`` is
    the final name, recorded in the file): the instrument of ``model`` and ``meta.frames`` frames, frame i from
    ``frame_reader(i)`` as ``dtype``. One helper per NeXus group below."""
    import h5py

    setup = imgcif_setup(model)
    dtype = np.dtype(dtype)
    end = meta.start_time + timedelta(seconds=meta.frames * meta.exposure)
    with h5py.File(path, "w", libver=("v110", "latest"), track_order=True) as f:
        f.attrs.update({"NX_class": "NXroot", "file_name": file_name or Path(path).name,
                        "file_time": _iso(meta.start_time), "creator": meta.creator,
                        "HDF5_Version": h5py.version.hdf5_version, "h5py_version": h5py.version.version,
                        "default": "entry"})
        entry = _group(f, "entry", "NXentry", version="1.0", default="data")
        _ds(entry, "definition", "NXmx")
        _ds(entry, "title", meta.title)
        _ds(entry, "start_time", _iso(meta.start_time))
        _ds(entry, "end_time_estimated", _iso(end))
        stack = _nx_data(entry, model, meta, frame_reader, dtype)
        _nx_sample(entry, model, meta, setup.to_mcstas)
        inst = _group(entry, "instrument", "NXinstrument")
        _ds(inst, "name", "nanoBragg simulation", short_name="nanobrag-torch")
        _ds(inst, "time_zone", "UTC+00:00")
        _nx_beam(inst, model, meta, setup.to_mcstas)
        _nx_detector(inst, model, meta, setup, stack, dtype)
        src = _group(entry, "source", "NXsource")
        _ds(src, "name", "nanoBragg simulation", short_name="simulation")


def _vec(t) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy(), dtype=np.float64)


def _nx_data(entry, model, meta: NexusMeta, frame_reader, dtype):
    """NXdata: the frame stack (frames, slow, fast), bitshuffle/LZ4, one chunk per frame; returns the dataset."""
    import hdf5plugin

    S, F = image_shape(model.detector)
    data = _group(entry, "data", "NXdata", signal="data")
    stack = data.create_dataset("data", shape=(meta.frames, S, F), dtype=dtype, chunks=(1, S, F),
                                **hdf5plugin.Bitshuffle(cname="lz4"))
    for i in range(meta.frames):
        stack[i] = np.asarray(frame_reader(i), dtype=dtype).reshape(S, F)
    return stack


def image_shape(det) -> tuple[int, int]:
    """(rows, fast) of one frame in the file: (spixels, fpixels), or (P x spixels, fpixels) for P panels, the
    panels one under another (panel 0 on top), as dxtbx cuts one NXdetector_module out of it each."""
    return (getattr(det, "panels", 1) * det.spixels, det.fpixels)


def _nx_sample(entry, model, meta: NexusMeta, R) -> None:
    """NXsample: the goniometer's omega per frame (a rotation series) or the stills' missets."""
    crystal = model.crystal
    sample = _group(entry, "sample", "NXsample")
    _ds(sample, "name", "simulated crystal")
    if meta.omega is not None:
        spindle = _vec(crystal.spindle_axis)
        axis = R @ (spindle / np.linalg.norm(spindle))
        tr = _group(sample, "transformations", "NXtransformations")
        omega = np.asarray(meta.omega, dtype=np.float64)
        _ds(tr, "omega", omega, "deg", transformation_type="rotation", vector=axis,
            offset=np.zeros(3), offset_units="mm", depends_on=".")
        _ds(tr, "omega_end", omega + meta.osc, "deg")
        _ds(tr, "omega_increment_set", float(meta.osc), "deg")
        _ds(sample, "depends_on", "/entry/sample/transformations/omega")
    else:
        _ds(sample, "depends_on", ".")
        sim = _group(sample, "simulation", "NXcollection")
        if meta.missets_deg is not None:
            _ds(sim, "misset_angles", np.asarray(meta.missets_deg, dtype=np.float64), "deg",
                description="per-frame rotations about lab x, y, z of the simulation (-misset)")


def _nx_beam(inst, model, meta: NexusMeta, R) -> None:
    """NXbeam: wavelength, fluence and the polarization as Stokes parameters per frame."""
    beam = model.beam
    b = _group(inst, "beam", "NXbeam", flux="flux_integrated")
    _ds(b, "incident_wavelength", float(beam.wavelength) * 1e10, "angstrom")
    _ds(b, "flux_integrated", float(beam.fluence), "m^-2")
    polar = R @ (_vec(beam.polar_vector) / np.linalg.norm(_vec(beam.polar_vector)))
    _ds(b, "incident_polarization_stokes", np.tile(stokes(float(beam.kahn), polar), (meta.frames, 1)))


def _nx_detector(inst, model, meta: NexusMeta, setup, stack, dtype) -> None:
    """NXdetector: distance along the normal (det_z), beam centre, exposure, pixel mask, sensor, ADC offset."""
    import hdf5plugin

    from .outputs import roi_of

    det, g, R = model.detector, setup.geometry, setup.to_mcstas
    S, F = image_shape(det)
    multi = hasattr(det, "panels")
    d = _group(inst, "detector", "NXdetector")
    dtr = _group(d, "transformations", "NXtransformations")
    if multi:
        _ds(d, "depends_on", _nx_panel_modules(d, dtr, det, g, R))
    else:
        det_z = "/entry/instrument/detector/transformations/det_z"
        _ds(d, "depends_on", det_z)
        _translation(dtr, "det_z", float(g.close_distance) * 1000.0, R @ _vec(g.odet), ".")
    d["data"] = stack  # a hard link: the same dataset
    _ds(d, "description", "nanoBragg simulated detector (nanobrag-torch)")
    _ds(d, "type", "pixel")
    if not multi:  # one distance and beam centre: a single panel's
        _ds(d, "distance", float(g.distance) * 1000.0, "mm")
        _ds(d, "distance_derived", True)
        _ds(d, "beam_center_x", float(g.fbeam) / float(det.pixel_size), "pixel")
        _ds(d, "beam_center_y", float(g.sbeam) / float(det.pixel_size), "pixel")
    _ds(d, "count_time", float(meta.exposure), "s")
    _ds(d, "frame_time", float(meta.exposure), "s")
    mask = np.where(det.rendered_mask().cpu().numpy() & roi_of(det), 0, 1).astype(np.int32).reshape(S, F)
    d.create_dataset("pixel_mask", data=mask, chunks=(S, F), **hdf5plugin.Bitshuffle(cname="lz4"))
    _ds(d, "pixel_mask_applied", False)
    if dtype.kind in "iu":
        _ds(d, "saturation_value", int(np.iinfo(dtype).max))
    _ds(d, "bit_depth_readout", dtype.itemsize * 8)
    _ds(d, "sensor_material", "Si")
    if float(det.thickness) > 0:
        _ds(d, "sensor_thickness", float(det.thickness) * 1000.0, "mm")
    else:
        _ds(d, "sensor_thickness", NO_SENSOR_THICKNESS_MM, "mm", note=NO_SENSOR_NOTE)
    if meta.adc is not None:  # not NXdata/data_offset: fabio would read that as one more frame
        sim = _group(d, "simulation", "NXcollection")
        _ds(sim, "adc_offset", float(meta.adc), "counts",
            description="C's -adc, added to every count of the noise images (photons = data - adc_offset)")
    if not multi:
        _nx_module(d, det, g, R, det_z)


def _nx_module(d, det, g, R, det_z: str) -> None:
    """NXdetector_module: pixel (0,0)'s offset in the detector plane, then the fast and slow pixel directions."""
    in_plane = _vec(g.pix0) - float(g.close_distance) * _vec(g.odet)  # pix0 relative to the normal's foot
    _module(d, "module", 0, det, R @ in_plane * 1000.0, det_z, R @ _vec(g.fdet), R @ _vec(g.sdet))


def _module(d, name: str, row0: int, det, offset_mm: np.ndarray, depends_on: str, fast, slow) -> None:
    """One NXdetector_module ``name``: rows row0.. of the stack (``det``'s spixels x fpixels), its
    ``module_offset`` (the translation ``offset_mm``, McStas, after ``depends_on``; along ``fast`` when zero)
    and the fast and slow pixel directions (the pixel size along the unit axes ``fast``, ``slow``)."""
    m = _group(d, name, "NXdetector_module")
    _ds(m, "data_origin", np.array([row0, 0], dtype=np.int32))
    _ds(m, "data_size", np.array([det.spixels, det.fpixels], dtype=np.int32))
    _ds(m, "data_stride", np.array([1, 1], dtype=np.int32))
    mod = _shift(m, "module_offset", offset_mm, depends_on, fast)
    px_mm = float(det.pixel_size) * 1000.0
    _translation(m, "fast_pixel_direction", px_mm, fast, mod)
    _translation(m, "slow_pixel_direction", px_mm, slow, mod)


def _shift(group, name, delta_mm: np.ndarray, depends_on: str, zero_dir=(0.0, 0.0, 1.0)) -> str:
    """A translation by ``delta_mm`` (McStas) named ``name`` in ``group`` (along ``zero_dir`` when it is zero);
    returns its path."""
    length = float(np.linalg.norm(delta_mm))
    _translation(group, name, length, delta_mm / length if length > 0 else np.asarray(zero_dir), depends_on)
    return f"{group.name}/{name}"


def _nx_panel_modules(d, dtr, det, g, R) -> str:
    """P panels: one NXdetector_module per panel (``module_0``...), rows p*S.. of the stack. Each group of the
    hierarchy is a translation ``group_k`` (to the mean of its panels' origins, from its parent's) and a
    module's offset runs from its innermost group, so dxtbx rebuilds the groups and the panels; the fast and
    slow pixel directions carry the panel's axes. Returns the path of the top group (the detector's
    depends_on), "." without a hierarchy."""
    origin_mm = _vec(g.pix0) @ R.T * 1000.0  # (P, 3) McStas
    fast, slow = _vec(g.fdet) @ R.T, _vec(g.sdet) @ R.T
    h = group_frames(det.groups, origin_mm)
    paths = [""] * len(h.groups)
    for k in reversed(range(len(h.groups))):  # a parent comes after its children: place it first
        up = h.parents[k]
        paths[k] = _shift(dtr, f"group_{k}", h.relative(up, h.pivots[k]), paths[up] if up is not None else ".")
    for p in range(det.panels):
        inner = h.inner[p]
        _module(d, f"module_{p}", p * det.spixels, det, h.relative(inner, origin_mm[p]),
                paths[inner] if inner is not None else ".", fast[p], slow[p])
    whole = [k for k, m in enumerate(h.groups) if len(set(m)) == det.panels]
    return paths[whole[-1]] if whole else "."


def nexus_frames(path) -> tuple[int, tuple[int, int]] | None:
    """(frames, (slow, fast)) of a complete NXmx file written by ``write_nxmx``, or None when the file is
    missing or not readable as one (checked by opening it and reading the stack's shape and last frame)."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filter)

    try:
        with h5py.File(path, "r") as f:
            d = f["/entry/data/data"]
            if f["/entry/definition"][()] not in (b"NXmx", "NXmx") or d.ndim != 3 or d.shape[0] == 0:
                return None
            d[-1]
            return d.shape[0], (d.shape[1], d.shape[2])
    except (OSError, KeyError, ValueError):
        return None
