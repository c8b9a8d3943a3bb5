"""The model: plain tensors describing one experiment — crystal, detector, beam, structure factors, sampling.

Every continuous quantity is a tensor that may require a gradient; discrete choices (counts, shapes, flags,
conventions) are plain Python values, and giving one of them a tensor that requires grad raises. Parameters
are kept in float64 on the model's device (the C program sets up its geometry in double); ``Model.dtype`` is
the precision the render runs in. A leading batch axis on the crystal's cell/matrix, misset, N and scale
renders B stills of one detector in one call.

Build one with ``nanobrag_torch.load_model(config)`` (reads the files a ``SimConfig`` names) or directly in
Python with these classes; ``render(model)`` turns it into an image and never touches the file system.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

import torch

from .errors import UsageError

if TYPE_CHECKING:  # LoadInfo's annotations only: the model needs neither module to run
    from .crandom.streams import CRandom
    from .io.hkl import HKLTable

SETUP_DTYPE = torch.float64


def _broadcast_shapes(shapes) -> torch.Size:
    """torch.broadcast_shapes without its import of torch's symbolic-shape machinery (~0.3 s per process)."""
    out: list[int] = []
    for dims in itertools.zip_longest(*(reversed(tuple(s)) for s in shapes), fillvalue=1):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError(f"batch shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return torch.Size(reversed(out))


def _tensor_fields(obj):
    return [(f.name, getattr(obj, f.name)) for f in fields(obj) if isinstance(getattr(obj, f.name), torch.Tensor)]


def _to(obj, device):
    """A copy of dataclass ``obj`` with its tensors on ``device`` (floating ones in float64)."""
    changes = {}
    for name, t in _tensor_fields(obj):
        changes[name] = t.to(device=device, dtype=SETUP_DTYPE) if t.is_floating_point() else t.to(device)
    return replace(obj, **changes)


@dataclass
class Crystal:
    """The crystal. Orientation: C applies the misset to the reciprocal vectors, then phi, then mosaic.

    * ``cell`` (..., 6): a, b, c (A), alpha, beta, gamma (rad); or None when only ``matrix`` is given.
    * ``matrix`` (..., 3, 3): rows a*, b*, c* (1/A) — a MOSFLM ``-mat`` divided by the wavelength it was given
      with; when present it replaces the cell's reciprocal vectors (the cell, if any, still imposes its
      lengths and volume, as in C).
    * ``misset`` (..., 3) rad (rotations about lab x, y, z); ``N`` (..., 3) unit cells (continuous for the
      spot-shape functions); ``scale`` (...) a per-crystal intensity factor (1 for a C run).
    * ``shape``: square | round | gauss | tophat; ``fudge``: spot-width factor.
    * ``mosaic_spread`` (rad) and the domain draws at ``mosaic_reference_spread``: unit ``mosaic_axes``
      (D, 3), ``mosaic_angles`` (D,) and C's matrices ``mosaic_umats`` (D, 3, 3); None for no mosaicity.
      A spread different from the reference scales every angle by spread/reference (fixed draws).
    * ``phi0``, ``phistep`` (rad), ``phisteps`` and the unit ``spindle_axis``; ``osc`` for headers.
    """

    cell: torch.Tensor | None
    matrix: torch.Tensor | None
    misset: torch.Tensor
    N: torch.Tensor
    shape: str = "square"
    fudge: torch.Tensor | float = 1.0
    scale: torch.Tensor | float = 1.0
    mosaic_spread: torch.Tensor | float = 0.0
    mosaic_reference_spread: float = 0.0
    mosaic_axes: torch.Tensor | None = None
    mosaic_angles: torch.Tensor | None = None
    mosaic_umats: torch.Tensor | None = None
    phi0: torch.Tensor | float = 0.0
    phistep: torch.Tensor | float = 0.0
    phisteps: int = 1
    spindle_axis: torch.Tensor | None = None
    osc: float = 0.0  # the oscillation range (rad) the headers record; the render uses phi0/phistep/phisteps

    @property
    def batch_shape(self) -> torch.Size:
        """The leading batch shape shared by cell/matrix, misset, N and scale (empty for one crystal)."""
        shapes = [self.misset.shape[:-1], self.N.shape[:-1]]
        if self.cell is not None:
            shapes.append(self.cell.shape[:-1])
        if self.matrix is not None:
            shapes.append(self.matrix.shape[:-2])
        if isinstance(self.scale, torch.Tensor):
            shapes.append(self.scale.shape)
        return _broadcast_shapes(shapes)

    @property
    def mosaic_domains(self) -> int:
        return 1 if self.mosaic_umats is None else int(self.mosaic_umats.shape[0])


@dataclass
class Detector:
    """One flat (or curved) detector panel placed as C places it.

    * ``distance`` (m, along the beam for the beam pivot) or ``close_distance`` (m, perpendicular; None when
      not given); ``pivot``: "beam" | "sample".
    * ``beam_center`` (2,): Xbeam, Ybeam (m) in the convention's meaning (MOSFLM/DENZO swap them onto
      slow/fast, MOSFLM adds half a pixel, ADXV flips Y); ``near_point`` (2,): Fclose, Sclose (m), used by the
      sample pivot (CUSTOM takes the beam centre instead, as C).
    * ``rotations`` (3,): rotations about lab x, y, z (rad), then ``twotheta`` (rad) about ``twotheta_axis``.
    * ``fdet``, ``sdet``, ``odet`` (3,): the convention's (or custom) axes before rotation.
    * ``pixel_size`` (m), ``fpixels`` × ``spixels`` pixels, ``detsize_s`` (m, ADXV's Y flip).
    * ``thickness`` (m), ``mu`` (1/m) and ``thicksteps`` sensor layers ``thickness/layer_divisor`` apart (C
      divides by the layer count or by one less, depending on which flags were given); ``curved``,
      ``point_pixel``.
    * ``roi`` (xmin, xmax, ymin, ymax), inclusive; ``mask`` (spixels, fpixels) bool, True = rendered.
    """

    convention: str
    pivot: str
    fpixels: int
    spixels: int
    pixel_size: torch.Tensor
    distance: torch.Tensor
    close_distance: torch.Tensor | None
    beam_center: torch.Tensor
    near_point: torch.Tensor
    rotations: torch.Tensor
    twotheta: torch.Tensor
    fdet: torch.Tensor
    sdet: torch.Tensor
    odet: torch.Tensor
    twotheta_axis: torch.Tensor
    detsize_s: float
    thickness: torch.Tensor | float = 0.0
    mu: torch.Tensor | float = 0.0
    thicksteps: int = 1
    layer_divisor: int = 1
    curved: bool = False
    point_pixel: bool = False
    roi: tuple[int, int, int, int] | None = None
    mask: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.spixels, self.fpixels

    @property
    def thickstep(self):
        """Distance between sensor layers (m)."""
        return self.thickness / self.layer_divisor

    def renders_every_pixel(self) -> bool:
        """No mask and an ROI (if any) covering the whole detector: ``rendered_mask()`` is all True."""
        if self.mask is not None and not bool(self.mask.all()):
            return False
        if self.roi is None:
            return True
        xmin, xmax, ymin, ymax = self.roi
        return xmin <= 0 and ymin <= 0 and xmax >= self.fpixels - 1 and ymax >= self.spixels - 1

    def rendered_mask(self) -> torch.Tensor:
        """(spixels, fpixels) bool: pixels C renders — inside the ROI and not masked."""
        dev = self.pixel_size.device
        f = torch.arange(self.fpixels, device=dev)[None, :]
        s = torch.arange(self.spixels, device=dev)[:, None]
        xmin, xmax, ymin, ymax = self.roi if self.roi is not None else (0, self.fpixels, 0, self.spixels)
        m = (f >= xmin) & (f <= xmax) & (s >= ymin) & (s <= ymax)
        if self.mask is not None:
            m = m & self.mask.to(dev)
        return m


@dataclass
class Beam:
    """Incident beam and its sources.

    * ``wavelength`` (m): the central wavelength lambda0.
    * ``source_directions`` (NS, 3): unit vectors from the sample towards each source (the incident
      direction is their negative); ``source_wavelengths`` (NS,) m, NaN meaning "lambda0" (a source file
      without that column), or None for the dispersion grid lambda0 * ``dispersion_factors`` (NS,).
    * ``source_weights`` (NS,): per-source intensity weights, 1 by default — C reads a source file's weight
      column and ignores it, and so do we for a file; set them in Python to weight sources.
    * ``beam_vector`` (3,) unit beam direction (places the detector); ``polar_vector`` (3,) E-vector axis;
      ``kahn`` polarization factor, ``nopolar``; ``fluence`` (photons/m^2); ``water_size`` (m) and ``dmin``
      (m; 0 = no resolution cut).
    """

    wavelength: torch.Tensor
    source_directions: torch.Tensor
    source_wavelengths: torch.Tensor | None
    dispersion_factors: torch.Tensor
    source_weights: torch.Tensor
    beam_vector: torch.Tensor
    polar_vector: torch.Tensor
    kahn: torch.Tensor | float = 0.0
    nopolar: bool = False
    fluence: torch.Tensor | float = 0.0
    water_size: torch.Tensor | float = 0.0
    dmin: float = 0.0

    @property
    def sources(self) -> int:
        return int(self.source_directions.shape[0])

    def wavelengths(self) -> torch.Tensor:
        """(NS,) wavelength of every source (m)."""
        if self.source_wavelengths is None:
            return self.wavelength * self.dispersion_factors
        return torch.where(torch.isnan(self.source_wavelengths), self.wavelength, self.source_wavelengths)


@dataclass
class StructureFactors:
    """F on the integer grid [mins..maxs] (``table`` of shape span+2 per axis, C's zero padding included),
    or none (``table`` None: every F is ``default_F``). ``missing`` (same shape, bool) marks in-range cells
    the HKL file did not list — they take ``default_F``. ``interpolate``: tricubic interpolation (C's auto
    rule or -interpolate, and only with a table)."""

    table: torch.Tensor | None
    default_F: torch.Tensor | float = 0.0
    mins: tuple[int, int, int] = (0, 0, 0)
    maxs: tuple[int, int, int] = (0, 0, 0)
    missing: torch.Tensor | None = None
    interpolate: bool = False

    def effective_table(self) -> torch.Tensor | None:
        """The table with default_F in the missing cells (so default_F's gradient reaches them)."""
        if self.table is None or self.missing is None:
            return self.table
        return torch.where(self.missing, torch.as_tensor(self.default_F, dtype=self.table.dtype,
                                                         device=self.table.device), self.table)


@dataclass(frozen=True)
class Sampling:
    """Sub-pixel sampling and C's per-term factor flags (-oversample_thick/-polar/-omega)."""

    oversample: int = 1
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False


@dataclass
class LoadInfo:
    """What the loader decided (``load.build_model``), for the report, the SMV header and the noise image; a model
    built in Python has the defaults (no table, no files, a fresh random state for its noise image)."""

    N: tuple[int, int, int] = (1, 1, 1)
    oversample: int = 1
    misset_angles_deg: tuple[float, float, float] | None = None
    hkl_table: HKLTable | None = None  # the structure-factor table the run used (-hkl, Fdump, -pdb, -mtz)
    rng: CRandom | None = None  # C's random state after the misset and mosaic draws (None: a fresh one)
    files: dict[str, str] = field(default_factory=dict)  # flag -> file read for it (validate names it)
    source_lines: list[int] | None = None  # the source file's line of each source (validate names it)


@dataclass
class Model:
    """Everything a render needs, as tensors on one device; ``dtype`` is the render precision."""

    crystal: Crystal
    detector: Detector
    beam: Beam
    structure_factors: StructureFactors
    sampling: Sampling = field(default_factory=Sampling)
    dtype: torch.dtype = torch.float64
    info: LoadInfo = field(default_factory=LoadInfo)  # what the loader decided, for reports and the noise image
    # validate_model's record of the values each group of checks passed with (shared by replace()d copies: a
    # record only matches the very values it was made for, so sharing it is safe)
    _checked: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.info is None:  # Model(..., info=None): nothing was loaded, as by default
            self.info = LoadInfo()

    def __getstate__(self):
        # a pickled or deep-copied model (e.g. sent to a dataset worker) starts without the record of passed
        # checks: it holds weak references, and the copy's tensors are new objects anyway
        return {**self.__dict__, "_checked": {}}

    @property
    def device(self) -> torch.device:
        return self.detector.pixel_size.device

    @property
    def steps(self) -> int:
        """C's normalisation count: sources x mosaic domains x phi steps x oversample^2 (not layers)."""
        os_ = self.sampling.oversample
        return self.beam.sources * self.crystal.mosaic_domains * self.crystal.phisteps * os_ * os_

    def replace(self, **changes) -> Model:
        """A copy with parameters replaced, named part__field: ``model.replace(crystal__cell=cell,
        detector__distance=d)`` (the parts: crystal, detector, beam, structure_factors)."""
        parts = {}
        for key, value in changes.items():
            part, sep, name = key.partition("__")
            if not sep or part not in ("crystal", "detector", "beam", "structure_factors"):
                raise TypeError(f"replace(): expected part__field (e.g. crystal__cell), got {key!r}")
            parts.setdefault(part, {})[name] = value
        return replace(self, **{part: replace(getattr(self, part), **kw) for part, kw in parts.items()})

    def to(self, device=None, dtype: torch.dtype | None = None) -> Model:
        """The same model on ``device`` and/or rendering in ``dtype``."""
        m = self
        if device is not None:
            m = replace(m, crystal=_to(m.crystal, device), detector=_to(m.detector, device),
                        beam=_to(m.beam, device), structure_factors=_to(m.structure_factors, device))
        if dtype is not None:
            m = replace(m, dtype=dtype)
        return m


# Parameters that select code paths or sizes: never tensors that require grad.
DISCRETE = {
    Crystal: ("shape", "phisteps", "mosaic_reference_spread", "osc"),
    Detector: ("convention", "pivot", "fpixels", "spixels", "detsize_s", "thicksteps", "layer_divisor",
               "curved", "point_pixel", "roi", "mask"),
    Beam: ("nopolar", "dmin"),
    StructureFactors: ("mins", "maxs", "missing", "interpolate"),
}


def check_discrete(model: Model) -> None:
    """Refuse a gradient on a parameter that cannot carry one (a count, a flag, a cut) — never detach."""
    for part in (model.crystal, model.detector, model.beam, model.structure_factors):
        for name in DISCRETE.get(type(part)) or getattr(part, "DISCRETE", ()):
            v = getattr(part, name)
            if isinstance(v, torch.Tensor) and v.requires_grad:
                raise UsageError(f"{type(part).__name__}.{name} is discrete (a count, flag or cut) and "
                                 "cannot carry a gradient")
    for name, t in (("Crystal.mosaic_axes", model.crystal.mosaic_axes),
                    ("Crystal.mosaic_angles", model.crystal.mosaic_angles),
                    ("Crystal.mosaic_umats", model.crystal.mosaic_umats)):
        if t is not None and t.requires_grad:
            raise UsageError(f"{name} are fixed random draws; differentiate Crystal.mosaic_spread instead")


def setup_tensor(x, device) -> torch.Tensor:
    """``x`` as a float64 tensor on ``device`` (the setup precision: geometry and orientations are built in
    float64 whatever the render's dtype); a tensor keeps its graph."""
    return torch.as_tensor(x, dtype=SETUP_DTYPE, device=device)



def detector_from_config(dc, device=None, mask=None) -> Detector:
    """The detector panel a ``config.DetectorConfig`` describes (``mask``: optional (S, F) bool tensor)."""
    return Detector(
        convention=dc.convention, pivot=dc.pivot, fpixels=dc.fpixels, spixels=dc.spixels,
        pixel_size=setup_tensor(dc.pixel_size, device), distance=setup_tensor(dc.distance, device),
        close_distance=None if dc.close_distance is None else setup_tensor(dc.close_distance, device),
        beam_center=setup_tensor((dc.xbeam, dc.ybeam), device), near_point=setup_tensor((dc.fclose, dc.sclose), device),
        rotations=setup_tensor(dc.rot, device), twotheta=setup_tensor(dc.twotheta, device),
        fdet=setup_tensor(dc.fdet_vector, device),
        sdet=setup_tensor(dc.sdet_vector, device), odet=setup_tensor(dc.odet_vector, device),
        twotheta_axis=setup_tensor(dc.twotheta_axis, device), detsize_s=dc.detsize_s,
        thickness=setup_tensor(dc.thickness, device), mu=setup_tensor(dc.mu, device), thicksteps=dc.thicksteps,
        layer_divisor=round(dc.thickness / dc.thickstep) if dc.thickstep > 0 else 1, curved=dc.curved,
        point_pixel=dc.point_pixel, roi=tuple(dc.roi), mask=mask,
    )
