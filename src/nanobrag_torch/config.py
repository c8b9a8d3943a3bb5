"""Simulation configuration: the frozen dataclasses a simulation is built from, in SI units.

Everything here is plain data in SI units (metres, radians) as the C program keeps them internally. The command
line fills them in ``cmdline.replay`` (C's flags replayed in order, with C's defaults and the automatic rules of
``cmdline.c_rules``); a Python user may build them directly. Rules that need the crystal (crystal size -> N, auto
oversampling) are applied in ``load`` once the cell is known, exactly where C applies them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .constants import AVOGADRO, DEFAULT_FLUENCE, R_E_SQR, RTD, WATER_F  # noqa: F401 - also config's names

SOURCE_DISTANCE = 10.0  # m; C has no flag for it and it has no effect

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class BeamConfig:
    """Incident beam: central wavelength, fluence, divergence/dispersion grids or a source file."""

    wavelength: float  # lambda0, m
    fluence: float  # photons/m^2
    beam_vector: Vec3
    polar_vector: Vec3
    kahn_factor: float = 0.0
    nopolar: bool = False
    hdiv_range: float = 0.0  # rad
    hdiv_step: float = 0.0
    hdiv_steps: int = 1
    vdiv_range: float = 0.0
    vdiv_step: float = 0.0
    vdiv_steps: int = 1
    round_div: bool = True
    dispersion: float = 0.0  # fraction
    disp_step: float = 0.0
    disp_steps: int = 1
    sourcefile: str | None = None
    water_size: float = 0.0  # m
    dmin: float = 0.0  # m


@dataclass(frozen=True)
class DetectorConfig:
    """Detector: convention, size, pivot and the values the C program derives its placement from."""

    convention: str
    pivot: str  # "beam" | "sample"
    fpixels: int
    spixels: int
    pixel_size: float  # m
    detsize_f: float  # m (not rounded to whole pixels, as in C)
    detsize_s: float
    distance: float  # m, as given (recomputed in geometry)
    close_distance: float | None  # m or None (unset)
    xbeam: float  # m, after convention defaults
    ybeam: float
    xclose: float
    yclose: float
    fbeam: float
    sbeam: float
    fclose: float
    sclose: float
    fdet_vector: Vec3
    sdet_vector: Vec3
    odet_vector: Vec3
    twotheta_axis: Vec3
    rot: Vec3 = (0.0, 0.0, 0.0)  # detector_rotx/y/z, rad
    twotheta: float = 0.0  # rad
    curved: bool = False
    point_pixel: bool = False
    thickness: float = 0.0  # m
    thickstep: float = 0.0
    thicksteps: int = 1
    mu: float = -1.0  # 1/m
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)  # xmin, xmax, ymin, ymax (inclusive)
    mask: str | None = None


@dataclass(frozen=True)
class CrystalConfig:
    """Crystal: cell or matrix, misset, size, spot shape, mosaicity, structure factors and rotation."""

    mat: str | None = None
    cell: tuple[float, ...] | None = None  # a b c (A) alpha beta gamma (rad), filled to 6
    misset: Vec3 | None = None  # rad
    misset_random: bool = False
    misset_seed: int = 0  # C stores -seed; here the user value (positive)
    Na: int = 1
    Nb: int = 1
    Nc: int = 1
    sample_x: float = 0.0  # m; > 0 overrides N once the cell is known
    sample_y: float = 0.0
    sample_z: float = 0.0
    shape: str = "square"  # square | round | gauss | tophat
    fudge: float = 1.0
    mosaic_spread: float = 0.0  # rad
    mosaic_domains: int = 1
    mosaic_seed: int = 12345678
    hkl: str | None = None
    default_F: float = 0.0
    dump: str = "Fdump.bin"
    interpolate: bool = False  # decided by C's auto rule; turned off later if no table is loaded
    interpolate_auto: bool = True
    phi0: float = 0.0  # rad
    phistep: float = 0.0
    phisteps: int = 1
    osc: float = 0.0
    spindle_axis: Vec3 = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class StructureConfig:
    """Structure factors from a structure (ours, issue 23): a PDB/mmCIF model (-pdb) or MTZ data (-mtz), and
    the options of the calculation from a model. Inactive (no file) for a C run."""

    pdb: str | None = None
    mtz: str | None = None
    mtz_labels: str | None = None  # e.g. "F,SIGF"; None: the first amplitude/intensity column
    anomalous: bool = False  # f'/f'' at the beam's wavelength
    b_factor: float | None = None  # A^2: every atom's B (None: the model's)
    bulk_solvent: bool = False
    k_sol: float = 0.35  # e/A^3
    b_sol: float = 46.0  # A^2

    @property
    def active(self) -> bool:
        return self.pdb is not None or self.mtz is not None

    @property
    def flag(self) -> str | None:
        return "-pdb" if self.pdb is not None else "-mtz" if self.mtz is not None else None


@dataclass(frozen=True)
class SamplingConfig:
    """Sub-pixel sampling and the C program's per-term factor flags."""

    oversample: int = 0  # <= 0: automatic (resolved once the crystal is known)
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """Output files and image scaling."""

    floatfile: str = "floatimage.bin"
    intfile: str = "intimage.img"
    pgmfile: str | None = "image.pgm"
    noisefile: str | None = "noiseimage.img"
    scale: float = 0.0
    pgmscale: float = 0.0
    adc: float = 40.0
    seed: int | None = None  # None: time-based as in C
    adc_header: bool = False  # ours: ADC_OFFSET in the SMV headers (for dxtbx)
    exptout: str | None = None  # ours: the truth as a DIALS experiment list
    progress: bool | None = None  # None: automatic (long renders on a terminal-or-not stderr)
    quiet: bool = False
    hklout: str | None = None  # the P1 table the run used, as C's HKL text (ours, issue 23)


@dataclass(frozen=True)
class EngineConfig:
    """Where and how to compute: the single owner of dtype and device."""

    dtype: str = "float64"
    device: str = "cpu"
    max_memory_gb: float = 2.0
    kernel: str = "auto"  # auto | torch | numba: the render kernel (auto: fused numba on the CPU without grad)


@dataclass(frozen=True)
class DatasetConfig:
    """Dataset flags (ours, issue 13): a rotation series or stills in one run, where they go, what renders them;
    plus the values the dataset's headers record. Inactive (no frames, no stills) for a single image."""

    frames: int = 0
    stills: int = 0
    stills_file: str | None = None
    nexus: str | None = None
    cbf: str | None = None
    resume: bool = False
    workers: int | None = None
    scheduler: str | None = None
    phi_deg: float = 0.0  # -phi as given (deg): frame i starts at phi_deg + i*osc_deg, summed in double
    osc_deg: float = 0.0  # -osc as given (deg), else the oscillation C's phi rule settled on
    exposure: float = 1.0  # -exposure (s), for the headers

    @property
    def active(self) -> bool:
        return self.frames != 0 or self.stills != 0 or self.stills_file is not None


@dataclass(frozen=True)
class SimConfig:
    beam: BeamConfig
    detector: DetectorConfig
    crystal: CrystalConfig
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    warnings: tuple[str, ...] = ()
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    expt: str | None = None  # -expt: a DIALS experiment list (its flags come before the command line's)
    given: frozenset[str] = frozenset()  # with -expt: the flags given on the command line (keys), for its overrides

    def with_engine(self, **kw) -> SimConfig:
        return replace(self, engine=replace(self.engine, **kw))
