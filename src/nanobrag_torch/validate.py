"""The physical domain of every model quantity, checked before anything is rendered: one line naming the flag.

The C program takes any number it can parse: a zero distance or fluence renders an image of zeros, a zero
wavelength, a singular matrix or an infinite beam centre an image of NaN, a negative count silently means
"automatic", and a detector that cannot fit in memory runs until the machine gives up. We refuse them in two
places that name the same flags: ``checks.check_flag_value`` refuses a value as typed (``flags.parse_argv``
calls it for every flag, naming the flag as typed, including values C replaces by a default before a model
could see them), and this module checks the model, whatever built it:

* ``validate_model(model)``: every quantity of a ``Model`` — loaded from files or built in Python — against
  its physical domain, and the relations between them (a real cell, a non-singular matrix, detector axes that
  span a plane, an ROI that overlaps the detector, wavelengths that stay positive). ``FIELDS`` maps each model
  field to the C flag that sets it, so a Python user gets the message a command-line user gets:
  ``-distance: must be positive and finite, got -100 mm (Detector.distance)``. A value read from a file names
  the file (and, for a source file, the line) and is an input error (exit 1); the others are usage errors
  (exit 2). ``load.build_model`` and ``renderer.prepare`` call it; a group of checks whose values are unchanged
  since they passed on the model is not run again, so a loaded model is checked once, not again by render.
* ``check_memory(model, max_memory_gb, eager)``: a render whose buffers cannot fit the memory budget is
  refused up front, with the size it needs.

Values are read detached, under ``torch.no_grad``: a check never touches a gradient.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, fields

import torch

from .constants import RTD
from .crystal import crystal_geometry
from .errors import InputError, UsageError
from .model import LoadInfo


# ---------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Field:
    """The C flag that sets a model field, the flag's unit and the factor from the model's (SI) unit to it;
    ``from_file``: the value comes from the file the flag names (an input error, exit 1)."""

    flag: str
    unit: str = ""
    scale: float = 1.0
    from_file: bool = False


FIELDS: dict[str, Field] = {
    "Detector.distance": Field("-distance", "mm", 1e3),
    "Detector.close_distance": Field("-close_distance", "mm", 1e3),
    "Detector.pixel_size": Field("-pixel", "mm", 1e3),
    "Detector.fpixels": Field("-detpixels_f"),
    "Detector.spixels": Field("-detpixels_s"),
    "Detector.beam_center": Field("-Xbeam/-Ybeam", "mm", 1e3),
    "Detector.near_point": Field("-Xclose/-Yclose", "mm", 1e3),
    "Detector.rotations": Field("-detector_rotx/-detector_roty/-detector_rotz", "deg", RTD),
    "Detector.twotheta": Field("-twotheta", "deg", RTD),
    "Detector.fdet": Field("-fdet_vector"),
    "Detector.sdet": Field("-sdet_vector"),
    "Detector.odet": Field("-odet_vector"),
    "Detector.twotheta_axis": Field("-twotheta_axis"),
    "Panels.origin": Field("-expt", "mm", 1e3, True),
    "Panels.fast": Field("-expt", "", 1.0, True),
    "Panels.slow": Field("-expt", "", 1.0, True),
    "Panels.pixel_size": Field("-expt", "mm", 1e3, True),
    "Panels.fpixels": Field("-expt", "", 1.0, True),
    "Panels.spixels": Field("-expt", "", 1.0, True),
    "Panels.offset": Field("Panels.offset", "mm", 1e3),
    "Panels.rotation": Field("Panels.rotation", "deg", RTD),
    "Panels.group_offset": Field("Panels.group_offset", "mm", 1e3),
    "Panels.group_rotation": Field("Panels.group_rotation", "deg", RTD),
    "Panels.groups": Field("Panels.groups"),
    "Panels.mask": Field("Panels.mask"),
    "Detector.thickness": Field("-detector_thick", "um", 1e6),
    "Detector.mu": Field("-detector_abs", "/m"),
    "Detector.thicksteps": Field("-thicksteps"),
    "Detector.layer_divisor": Field("-thicksteps"),
    "Detector.roi": Field("-roi"),
    "Detector.mask": Field("-mask", from_file=True),
    "Crystal.cell": Field("-cell"),
    "Crystal.matrix": Field("-mat", from_file=True),
    "Crystal.misset": Field("-misset", "deg", RTD),
    "Crystal.N": Field("-N"),
    "Crystal.fudge": Field("-fudge"),
    "Crystal.scale": Field("Crystal.scale"),
    "Crystal.mosaic_spread": Field("-mosaic", "deg", RTD),
    "Crystal.mosaic_umats": Field("-mosaic_domains"),
    "Crystal.phi0": Field("-phi", "deg", RTD),
    "Crystal.phistep": Field("-phistep", "deg", RTD),
    "Crystal.phisteps": Field("-phisteps"),
    "Crystal.spindle_axis": Field("-spindle_axis"),
    "Beam.wavelength": Field("-lambda", "A", 1e10),
    "Beam.source_directions": Field("-sourcefile", from_file=True),
    "Beam.source_wavelengths": Field("-sourcefile", "m", from_file=True),
    "Beam.dispersion_factors": Field("-dispersion"),
    "Beam.source_weights": Field("Beam.source_weights"),
    "Beam.beam_vector": Field("-beam_vector"),
    "Beam.polar_vector": Field("-polar_vector"),
    "Beam.kahn": Field("-polar"),
    "Beam.fluence": Field("-fluence", "photons/m^2"),
    "Beam.water_size": Field("-water", "um", 1e6),
    "Beam.dmin": Field("-dmin", "A", 1e10),
    "StructureFactors.default_F": Field("-default_F"),
    "StructureFactors.table": Field("-hkl", from_file=True),
    "Sampling.oversample": Field("-oversample"),
}


class _Checker:
    """The checks of one model: values detached to float64 on the CPU, messages built from ``FIELDS`` and the
    file names the loader recorded in ``model.info`` (``files``: flag -> path; ``source_lines``)."""

    def __init__(self, model, info: LoadInfo):
        self.model = model
        self.files = info.files
        self.source_lines = info.source_lines

    def fail(self, name: str, what: str, got=None, where: str = ""):
        f = FIELDS[name]
        path = self.files.get(f.flag)
        prefix = f.flag + ": " + (f"{path}{where}: " if path else (f"{where.strip()}: " if where else ""))
        shown = "" if got is None else f", got {got}"
        suffix = "" if f.flag == name else f" ({name})"
        raise (InputError if f.from_file else UsageError)(f"{prefix}{what}{shown}{suffix}")

    @staticmethod
    def values(x) -> torch.Tensor:
        t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        return t.to(device="cpu", dtype=torch.float64)

    def show(self, name: str, v: torch.Tensor) -> str:
        f = FIELDS[name]
        v = v.reshape(-1) * f.scale
        text = " ".join(f"{float(x):g}" for x in v[:6]) + (" ..." if v.numel() > 6 else "")
        return f"{text} {f.unit}".rstrip()

    def positive(self, name: str, x) -> None:
        v = self.values(x)
        bad = ~(torch.isfinite(v) & (v > 0))
        if bool(bad.any()):
            self.fail(name, "must be positive and finite", self.show(name, v[bad][:1]))

    def non_negative(self, name: str, x) -> None:
        v = self.values(x)
        bad = ~(torch.isfinite(v) & (v >= 0))
        if bool(bad.any()):
            self.fail(name, "must be finite and not negative", self.show(name, v[bad][:1]))

    def finite(self, name: str, x) -> None:
        v = self.values(x)
        if not bool(torch.isfinite(v).all()):
            self.fail(name, "must be finite", self.show(name, v))

    def count(self, name: str, n, least: int = 1) -> None:
        if isinstance(n, torch.Tensor) or isinstance(n, bool) or not isinstance(n, int) or n < least:
            self.fail(name, f"must be an integer >= {least}", f"{n}")

    def vector(self, name: str, x) -> torch.Tensor:
        """A non-zero, finite 3-vector (or rows of them); returns the unit vectors."""
        if x is None:
            self.fail(name, "must be a non-zero vector", "None")
        v = self.values(x)
        n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        if not bool(torch.isfinite(v).all()) or not bool((n > 0).all()):
            self.fail(name, "must be a non-zero, finite vector", self.show(name, v))
        return v / n


def _parallel(u: torch.Tensor, v: torch.Tensor) -> bool:
    """Unit vectors (anti)parallel to within 1e-9 rad."""
    return float(torch.linalg.vector_norm(torch.linalg.cross(u, v))) < 1e-9


def real_cell_margin(angles: torch.Tensor) -> torch.Tensor:
    """1 - cos²α - cos²β - cos²γ + 2 cosα cosβ cosγ: (V/abc)², > 0 exactly when the three angles (each in
    (0, π)) form a real cell (α + β + γ < 2π and each angle less than the sum of the other two)."""
    ca, cb, cg = torch.cos(angles).unbind(-1)
    return 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg


def _check_detector(c: _Checker) -> None:
    det = c.model.detector
    c.count("Detector.fpixels", det.fpixels)
    c.count("Detector.spixels", det.spixels)
    c.positive("Detector.pixel_size", det.pixel_size)
    c.positive("Detector.distance", det.distance)
    if det.close_distance is not None:
        c.positive("Detector.close_distance", det.close_distance)
    for name in ("beam_center", "near_point", "rotations", "twotheta", "odet"):
        c.finite(f"Detector.{name}", getattr(det, name))
    f, s = c.vector("Detector.fdet", det.fdet), c.vector("Detector.sdet", det.sdet)
    if _parallel(f, s):
        c.fail("Detector.sdet", "the fast and slow axes (-fdet_vector, -sdet_vector) are parallel: the pixels "
               "span no plane", c.show("Detector.sdet", c.values(det.sdet)))
    c.finite("Detector.twotheta_axis", det.twotheta_axis)
    if float(c.values(det.twotheta).abs().max()) != 0.0:
        c.vector("Detector.twotheta_axis", det.twotheta_axis)
    c.non_negative("Detector.thickness", det.thickness)
    c.count("Detector.thicksteps", det.thicksteps)
    c.count("Detector.layer_divisor", det.layer_divisor)
    if float(c.values(det.thickness).max()) > 0:
        c.non_negative("Detector.mu", det.mu)
    _check_roi(c, det)


def _check_panels(c: _Checker) -> None:
    """A ``panels.Panels`` detector: sizes, finite origins, axes spanning a plane, finite moves, groups that
    name existing panels, the sensor and the (P, S, F) mask."""
    det = c.model.detector
    c.count("Panels.fpixels", det.fpixels)
    c.count("Panels.spixels", det.spixels)
    c.positive("Panels.pixel_size", det.pixel_size)
    c.finite("Panels.origin", det.origin)
    f, s = c.vector("Panels.fast", det.fast), c.vector("Panels.slow", det.slow)
    if bool((torch.linalg.vector_norm(torch.linalg.cross(f, s), dim=-1) < 1e-9).any()):
        c.fail("Panels.slow", "is parallel to the fast axis: the panel spans no plane")
    for name in ("offset", "rotation", "group_offset", "group_rotation"):
        if getattr(det, name) is not None:
            c.finite(f"Panels.{name}", getattr(det, name))
    for members in det.groups:
        if not members or any(not 0 <= int(i) < det.panels for i in members):
            c.fail("Panels.groups", f"a group must list panels 0..{det.panels - 1}", f"{tuple(members)}")
    c.non_negative("Detector.thickness", det.thickness)
    c.count("Detector.thicksteps", det.thicksteps)
    c.count("Detector.layer_divisor", det.layer_divisor)
    if float(c.values(det.thickness).max()) > 0:
        c.non_negative("Detector.mu", det.mu)
    if det.mask is not None and tuple(det.mask.shape) != det.shape:
        c.fail("Panels.mask", f"the mask is {tuple(det.mask.shape)}, the panels {det.shape}")
    _check_roi(c, det, mask=False)
    if not bool(det.rendered_mask().any()):
        c.fail("Panels.mask", "no pixel left to render")


def _check_roi(c: _Checker, det, mask: bool = True) -> None:
    """The ROI window (inclusive) must overlap the detector; with a mask, some pixel must stay rendered."""
    if det.roi is not None:
        xmin, xmax, ymin, ymax = det.roi
        if xmin > xmax or ymin > ymax or xmin >= det.fpixels or ymin >= det.spixels or xmax < 0 or ymax < 0:
            c.fail("Detector.roi", f"the window x {xmin}..{xmax}, y {ymin}..{ymax} does not overlap the "
                   f"{det.fpixels}x{det.spixels} detector (x 0..{det.fpixels - 1}, y 0..{det.spixels - 1})")
    if mask and det.mask is not None:
        if tuple(det.mask.shape) != (det.spixels, det.fpixels):
            c.fail("Detector.mask", f"the mask is {det.mask.shape[-1]}x{det.mask.shape[0]} pixels, the detector "
                   f"{det.fpixels}x{det.spixels}")
        if not bool(det.rendered_mask().any()):
            whole = det.roi is None or tuple(det.roi) == (0, det.fpixels, 0, det.spixels)
            c.fail("Detector.mask", "no pixel left to render: the mask is zero everywhere"
                   + ("" if whole else " inside the -roi window"))


def _check_crystal(c: _Checker) -> None:
    cr = c.model.crystal
    if cr.cell is None and cr.matrix is None:
        c.fail("Crystal.cell", "the crystal needs a cell (-cell) or an orientation matrix (-mat)")
    if cr.cell is not None:
        cell = c.values(cr.cell)
        if cell.shape[-1:] != (6,):
            c.fail("Crystal.cell", "must hold a b c alpha beta gamma", f"shape {tuple(cell.shape)}")
        lengths, angles = cell[..., :3], cell[..., 3:]
        if not bool((torch.isfinite(lengths) & (lengths > 0)).all()):
            c.fail("Crystal.cell", "the lengths a, b, c must be positive and finite", _cell_text(cell))
        if not bool((torch.isfinite(angles) & (angles > 0) & (angles < math.pi)).all()):
            c.fail("Crystal.cell", "the angles must lie between 0 and 180 degrees", _cell_text(cell))
        if not bool((real_cell_margin(angles) > 1e-12).all()):
            c.fail("Crystal.cell", "the angles form no real cell (each must be less than the sum of the other two, "
                   "and all three less than 360 degrees)", _cell_text(cell))
    if cr.matrix is not None:
        m = c.values(cr.matrix)
        if not bool(torch.isfinite(m).all()):
            c.fail("Crystal.matrix", "the reciprocal vectors must be finite")
        big = m.abs().amax(-1, keepdim=True)  # scaled first: the norm of a row of 1e200s must not overflow
        rows = m / torch.where(big > 0, big, torch.ones_like(big))
        norms = torch.linalg.vector_norm(rows, dim=-1, keepdim=True)
        unit = rows / torch.where(norms > 0, norms, torch.ones_like(norms))
        if not bool((big > 0).all()) or not bool((torch.linalg.det(unit).abs() > 1e-9).all()):
            c.fail("Crystal.matrix", "the matrix is singular: a*, b*, c* are not linearly independent (zero cell "
                   "volume)")
    c.finite("Crystal.misset", cr.misset)
    c.positive("Crystal.fudge", cr.fudge)
    c.finite("Crystal.scale", cr.scale)
    c.non_negative("Crystal.mosaic_spread", cr.mosaic_spread)
    for t in (cr.mosaic_axes, cr.mosaic_angles, cr.mosaic_umats):
        if t is not None:
            c.finite("Crystal.mosaic_umats", t)
    c.finite("Crystal.phi0", cr.phi0)
    c.finite("Crystal.phistep", cr.phistep)
    c.count("Crystal.phisteps", cr.phisteps)
    c.vector("Crystal.spindle_axis", cr.spindle_axis)


def _cell_text(cell: torch.Tensor) -> str:
    row = cell.reshape(-1, 6)[0]
    return " ".join(f"{float(x):g}" for x in row[:3]) + " " + " ".join(f"{float(x) * RTD:g}" for x in row[3:])


def _check_crystal_geometry(c: _Checker) -> None:
    """The real and reciprocal vectors C derives from the cell/matrix must be finite (e.g. not a matrix of
    1e200s, whose cell volume underflows)."""
    cr = crystal_geometry(c.model)
    if not all(bool(torch.isfinite(v).all()) for v in (cr.a0, cr.b0, cr.c0, cr.a_star, cr.b_star, cr.c_star)):
        name = "Crystal.matrix" if c.model.crystal.matrix is not None else "Crystal.cell"
        c.fail(name, "the crystal cell is degenerate: its volume or vectors are not finite numbers")


def _source_where(c: _Checker, i: int) -> str:
    lines = c.source_lines
    return f" line {lines[i]}" if lines is not None and i < len(lines) else f" source {i + 1}"


def _check_beam(c: _Checker) -> None:
    b = c.model.beam
    c.positive("Beam.wavelength", b.wavelength)
    dirs = c.values(b.source_directions)
    if dirs.dim() != 2 or dirs.shape[0] < 1 or dirs.shape[1] != 3:
        c.fail("Beam.source_directions", "must hold at least one source direction (NS, 3)",
               f"shape {tuple(dirs.shape)}")
    norms = torch.linalg.vector_norm(dirs, dim=-1)
    bad = ~(torch.isfinite(dirs).all(-1) & (norms > 0))
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        c.fail("Beam.source_directions", "the source position gives no direction (it is at the sample, or not "
               "finite)", " ".join(f"{float(x):g}" for x in dirs[i]), _source_where(c, i))
    if b.source_wavelengths is not None:
        lam = c.values(b.source_wavelengths)
        bad = ~torch.isnan(lam) & ~(torch.isfinite(lam) & (lam > 0))
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            c.fail("Beam.source_wavelengths", "the wavelength must be positive", f"{float(lam[i]):g} m",
                   _source_where(c, i))
    else:
        c.finite("Beam.dispersion_factors", b.dispersion_factors)
    lams = c.values(b.wavelengths())
    if not bool((torch.isfinite(lams) & (lams > 0)).all()):
        c.fail("Beam.dispersion_factors", "every wavelength must stay positive (a spread below 200%)",
               f"wavelengths down to {float(lams.min()) * 1e10:g} A")
    w = c.values(b.source_weights)
    if w.shape != norms.shape or not bool((torch.isfinite(w) & (w >= 0)).all()):
        c.fail("Beam.source_weights", "must be finite and not negative, one per source",
               c.show("Beam.source_weights", w))
    beam = c.vector("Beam.beam_vector", b.beam_vector)
    polar = c.vector("Beam.polar_vector", b.polar_vector)
    kahn = c.values(b.kahn)
    if not bool((kahn.abs() <= 1).all()):
        c.fail("Beam.kahn", "the Kahn polarization factor must lie in [-1, 1]", c.show("Beam.kahn", kahn))
    if not b.nopolar and float(kahn.abs().max()) > 0 and _parallel(beam, polar):
        c.fail("Beam.polar_vector", "is parallel to the beam (-beam_vector): the polarization plane is undefined",
               c.show("Beam.polar_vector", c.values(b.polar_vector)))
    c.positive("Beam.fluence", b.fluence)
    c.non_negative("Beam.water_size", b.water_size)
    c.non_negative("Beam.dmin", b.dmin)


def _check_structure_factors(c: _Checker) -> None:
    sf = c.model.structure_factors
    c.finite("StructureFactors.default_F", sf.default_F)
    if sf.table is not None:
        c.finite("StructureFactors.table", sf.table)


def _check_counts(c: _Checker) -> None:
    """N (which the loader sets once the crystal size is known) and the batch shape it shares."""
    c.positive("Crystal.N", c.model.crystal.N)
    c.model.crystal.batch_shape  # noqa: B018 - the shapes of cell, misset, N and scale must broadcast


def _check_detector_or_panels(c: _Checker) -> None:
    _check_panels(c) if hasattr(c.model.detector, "panels") else _check_detector(c)


def _fields_of(part, leave_out: tuple[str, ...] = ()) -> tuple:
    return (type(part), *(getattr(part, f.name) for f in fields(part) if f.name not in leave_out))


# The groups of checks in order, each with the model values it reads. A group is skipped when those values are the
# very objects it last passed with (tensors at the same in-place version): the loader's checks are not repeated by
# render, while a value built, replaced or changed in place in Python is checked again. (Only a change through
# ``tensor.data`` or through a numpy array a tensor shares memory with goes unseen: they bypass torch's version.)
_GROUPS = (
    ("detector", lambda m: _fields_of(m.detector), _check_detector_or_panels),
    ("crystal", lambda m: _fields_of(m.crystal, ("N",)), _check_crystal),
    ("counts", lambda m: _fields_of(m.crystal), _check_counts),
    ("beam", lambda m: _fields_of(m.beam), _check_beam),
    ("structure factors", lambda m: _fields_of(m.structure_factors), _check_structure_factors),
    ("sampling", lambda m: (m.sampling,), lambda c: c.count("Sampling.oversample", c.model.sampling.oversample)),
    ("crystal geometry", lambda m: _fields_of(m.crystal, ("N",)), _check_crystal_geometry),
)


def _record(values: tuple) -> tuple | None:
    """``values`` with each tensor's in-place version; None when one cannot say (an inference tensor). Tensors
    are held weakly, so the record keeps no superseded tensor (nor its graph) alive."""
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            if v.is_inference():
                return None
            out.append((weakref.ref(v), v._version))
        else:
            out.append((v, None))
    return tuple(out)


def _same(a: tuple | None, b: tuple | None) -> bool:
    def held(x, version):
        return x() if version is not None else x

    return a is not None and b is not None and len(a) == len(b) and \
        all(held(x, vx) is held(y, vy) and vx == vy for (x, vx), (y, vy) in zip(a, b))


def validate_model(model) -> None:
    """Refuse a model with a quantity outside its physical domain: one line naming the C flag (and the file
    it came from), the value in the flag's units and the model field. Gradients are never touched. Checks
    whose values have not changed since they passed on this model (or a ``replace``d copy) are not run again."""
    c = _Checker(model, model.info)
    with torch.no_grad():
        for name, values, check in _GROUPS:
            now = _record(values(model))
            if _same(model._checked.get(name), now):
                continue
            check(c)
            model._checked[name] = now


def validate_detector(detector) -> None:
    """The detector checks of ``validate_model`` (sizes, distances, axes, sensor, ROI and mask) for a detector
    rendered without a crystal (nonbragg)."""
    from types import SimpleNamespace

    c = _Checker(SimpleNamespace(detector=detector), LoadInfo())
    with torch.no_grad():
        _check_detector(c)


__all__ = ["FIELDS", "validate_model", "real_cell_margin"]
