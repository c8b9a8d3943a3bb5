"""Simulation configuration: frozen dataclasses built from the command line with C's defaults and auto rules.

Everything here is plain data in SI units (metres, radians) as the C program keeps them internally.
Rules that need the crystal (crystal size -> N, auto oversampling) are applied in ``load`` once the
cell is known, exactly where C applies them.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

from .errors import UsageError
from .io.expt import read_expt

from .constants import AVOGADRO, DEFAULT_FLUENCE, R_E_SQR, RTD, WATER_F  # noqa: F401 - also config's names
EXPT_FLAGS = "expt_flags"  # the event holding an -expt file's flags (cmdline.flags puts it first)
SOURCE_DISTANCE = 10.0  # m; C has no flag for it and it has no effect

# Per convention: beam, fdet, sdet, odet, twotheta axis, polar, spindle, pivot (§3.1).
CONVENTIONS = {
    "MOSFLM": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1), "beam"),
    "DENZO": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1), "beam"),
    "ADXV": ((0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1), (-1, 0, 0), (1, 0, 0), (1, 0, 0), "beam"),
    "XDS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0), (1, 0, 0), "sample"),
    "DIALS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0), "sample"),
    # CUSTOM: the C program's initial vectors (note the 2theta axis differs from MOSFLM's)
    "CUSTOM": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), None),
}
VECTOR_KEYS = ("beam_vector", "fdet_vector", "sdet_vector", "odet_vector", "twotheta_axis", "polar_vector",
               "spindle_axis")

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


def _auto_steps(steps: int, rng: float, step: float, count_only_range: float):
    """C's shared auto rule for divergence/dispersion grids (§2.5) followed by its sanity pass."""
    if steps <= 0:
        if rng < 0.0:
            if step <= 0.0:
                steps, rng, step = 1, 0.0, 0.0
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                step, steps = rng, 2
            else:
                steps = math.ceil(rng / step)
    else:
        if rng < 0.0:
            if step <= 0.0:
                rng = count_only_range
                step = rng / steps
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                if steps <= 1:
                    steps = 2
                step = rng / (steps - 1)
    if rng <= 0.0 or step <= 0.0 or steps <= 0:
        steps, rng, step = 1, 0.0, 0.0
    return steps, rng, step


def _phi_steps(phisteps: int, osc: float, phistep: float):
    """C's phi auto rule (§2.5)."""
    if phisteps < 0:
        if osc < 0.0:
            if phistep <= 0.0:
                phisteps, osc, phistep = 1, 0.0, 0.0
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep <= 0.0:
                phisteps, phistep = 2, osc / 2.0
            else:
                phisteps = math.ceil(osc / phistep)
    else:
        if phisteps == 0:
            phisteps = 1
        if osc < 0.0:
            if phistep <= 0.0:
                osc = 1.0 / RTD
                phistep = osc / phisteps
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep < 0.0:
                phistep = osc / phisteps
    return phisteps, osc, phistep


def _thick_steps(thicksteps: int, thick: float):
    """C's detector-layer auto rule (§2.5; the layer step has no flag)."""
    step = -1.0
    if thicksteps <= 0:
        if thick < 0.0:
            thicksteps, thick, step = 1, 0.0, 0.0
        else:
            thicksteps = 2
            step = thick / thicksteps
    else:
        if thick < 0.0:
            thick = 0.5e-6
            step = thick / thicksteps
        else:
            if thicksteps <= 1:
                thicksteps = 2
            step = thick / (thicksteps - 1)
    if thick <= 0.0 or step <= 0.0 or thicksteps <= 0:
        thicksteps, thick, step = 1, 0.0, 0.0
    return thicksteps, thick, step


def initial_state() -> SimpleNamespace:
    """The C program's variables before parsing, in its internal units."""
    nan = math.nan
    return SimpleNamespace(
        mat=None, cell=None, misset=None, misset_random=False, misset_seed=None,
        Na=1, Nb=1, Nc=1, sample_x=0.0, sample_y=0.0, sample_z=0.0, shape="square", fudge=1.0,
        mosaic_spread=-1.0, mosaic_domains=-1, mosaic_seed=12345678, hkl=None, default_F=0.0,
        dump="Fdump.bin", interpolate=None,
        wavelength=1e-10, fluence=DEFAULT_FLUENCE, flux=0.0, exposure=1.0, beamsize=1e-4,
        dispersion=0.0, dispsteps=-1, hdivrange=-1.0, vdivrange=-1.0, hdivstep=-1.0, vdivstep=-1.0,
        hdivsteps=-1, vdivsteps=-1, round_div=True, sourcefile=None, kahn=0.0, nopolar=False,
        water=0.0, dmin=0.0,
        distance=0.1, close_distance=nan, detsize_f=0.1024, detsize_s=0.1024, fpixels=0, spixels=0,
        pixel=1e-4, Xbeam=nan, Ybeam=nan, Xclose=nan, Yclose=nan, ORGX=nan, ORGY=nan, pivot="beam",
        convention="MOSFLM", vectors={}, twotheta=0.0, rotx=0.0, roty=0.0, rotz=0.0, curved=False,
        point_pixel=False, mu=-1.0, thick=0.0, thicksteps=-1, oversample=-1, os_thick=False,
        os_polar=False, os_omega=False, roi=None, mask=None, img=None, expt=None,
        phi0=0.0, osc=-1.0, phistep=-1.0, phisteps=-1,
        floatfile="floatimage.bin", intfile="intimage.img", pgmfile="image.pgm", write_pgm=True,
        noisefile="noiseimage.img", noise=True, scale=0.0, pgmscale=0.0, adc=40.0, seed=None, adc_header=False,
        exptout=None,
        progress=None, quiet=False, dtype="float64", device="cpu", max_memory_gb=2.0, kernel="auto", help=False,
        warnings=[],
        frames=0, stills=0, stills_file=None, nexus=None, cbf=None, resume=False, workers=None, scheduler=None,
        pdb=None, mtz=None, mtz_labels=None, anomalous=False, b_factor=None, bulk_solvent=False, k_sol=0.35,
        b_sol=46.0, hklout=None,
    )


def apply_smv_header(st: SimpleNamespace, header: dict, width: int, height: int, is_mask: bool) -> None:
    """Starting values from an -img/-mask SMV header (§8.8: last substring match wins per key)."""
    from .io.smv import header_value

    st.fpixels, st.spixels = width, height
    px = header_value(header, "PIXEL_SIZE")
    if px is not None:
        st.pixel = px / 1000.0
    st.detsize_f = st.pixel * width
    st.detsize_s = st.pixel * height
    for key, attr, conv in (
        ("DISTANCE", "distance", _mm), ("CLOSE_DISTANCE", "close_distance", _mm),
        ("WAVELENGTH", "wavelength", _angstrom), ("BEAM_CENTER_X", "Xbeam", _mm),
        ("ORGX", "ORGX", float), ("ORGY", "ORGY", float), ("PHI", "phi0", _deg), ("OSC_RANGE", "osc", _deg),
    ):
        v = header_value(header, key)
        if v is not None:
            setattr(st, attr, conv(v))
    v = header_value(header, "BEAM_CENTER_Y")
    if v is not None:
        st.Ybeam = (st.detsize_s - v / 1000.0) if is_mask else v / 1000.0


# Unit conversions written as C writes them (§1.1 item 9): it divides by the unit for mm, Å, degrees, percent and
# the water size in µm (x/1000.0, x/1e10, x/RTD, x/100.0, x/1e6) and multiplies for the sensor thickness
# and dmin (x*1e-6, x*1e-10). x/1000.0 and x*1e-3 round differently for about one value in six, so the form
# decides whether a flag's value is the same double as C's.


def _mm(v: float) -> float:
    return v / 1000.0


def _deg(v: float) -> float:
    return v / RTD


def _angstrom(v: float) -> float:
    return v / 1e10


def _percent(v: float) -> float:
    return v / 100.0


def _water_um(v: float) -> float:
    return v / 1e6


def _times(factor: float):
    """A conversion C writes as a multiplication (x*1e-6 for the sensor thickness, x*1e-10 for dmin)."""
    return lambda v: v * factor


UM = 1e-6

# Flags whose value is stored as given (after a unit factor), optionally with other state set alongside:
#   key -> (state attributes the value goes to, unit factor, {other attribute: value})
# C's handler for each of these only stores the (converted) value; e.g. -distance also selects the beam
# pivot and -close_distance the sample pivot.
_STORE: dict[str, tuple[tuple[str, ...], object, dict]] = {
    "mat": (("mat",), None, {}),
    "cell": (("cell",), None, {}),
    "misset_seed": (("misset_seed",), None, {}),
    "N": (("Na", "Nb", "Nc"), None, {}),
    "Na": (("Na",), None, {}), "Nb": (("Nb",), None, {}), "Nc": (("Nc",), None, {}),
    "xtal_size": (("sample_x", "sample_y", "sample_z"), _mm, {}),
    "xtal_x": (("sample_x",), _mm, {}), "xtal_y": (("sample_y",), _mm, {}), "xtal_z": (("sample_z",), _mm, {}),
    "mosaic": (("mosaic_spread",), _deg, {}),
    "lambda": (("wavelength",), _angstrom, {}),
    "beamsize": (("beamsize",), _mm, {}),
    "dispersion": (("dispersion",), _percent, {}),
    "divergence": (("hdivrange", "vdivrange"), _mm, {}),
    "hdivrange": (("hdivrange",), _mm, {}), "vdivrange": (("vdivrange",), _mm, {}),
    "hdivstep": (("hdivstep",), _mm, {}), "vdivstep": (("vdivstep",), _mm, {}),
    "divsteps": (("hdivsteps", "vdivsteps"), None, {}),
    "polar": (("kahn",), None, {"nopolar": False}),
    "water": (("water",), _water_um, {}),
    "distance": (("distance",), _mm, {"pivot": "beam"}),
    "close_distance": (("close_distance",), _mm, {"pivot": "sample"}),
    "detsize": (("detsize_f", "detsize_s"), _mm, {}),
    "detsize_f": (("detsize_f",), _mm, {}), "detsize_s": (("detsize_s",), _mm, {}),
    "detpixels": (("fpixels", "spixels"), None, {}),
    "detpixels_f": (("fpixels",), None, {}), "detpixels_s": (("spixels",), None, {}),
    "pixel": (("pixel",), _mm, {}),
    "Xbeam": (("Xbeam",), _mm, {"pivot": "beam"}), "Ybeam": (("Ybeam",), _mm, {"pivot": "beam"}),
    "Xclose": (("Xclose",), _mm, {"pivot": "sample"}), "Yclose": (("Yclose",), _mm, {"pivot": "sample"}),
    "ORGX": (("ORGX",), None, {"pivot": "sample"}), "ORGY": (("ORGY",), None, {"pivot": "sample"}),
    "pivot": (("pivot",), None, {}),
    "twotheta": (("twotheta",), _deg, {"pivot": "sample"}),
    "detector_rotx": (("rotx",), _deg, {}), "detector_roty": (("roty",), _deg, {}),
    "detector_rotz": (("rotz",), _deg, {}),
    "detector_thick": (("thick",), _times(1e-6), {}),
    "thicksteps": (("thicksteps",), None, {}),
    "roi": (("roi",), None, {}),
    "dmin": (("dmin",), _times(1e-10), {}),
    "phi": (("phi0",), _deg, {}),
    "osc": (("osc",), _deg, {}),
    "phistep": (("phistep",), _deg, {}),
    "phisteps": (("phisteps",), None, {}),
    "pgmfile": (("pgmfile",), None, {"write_pgm": True}),
    "noisefile": (("noisefile",), None, {"noise": True}),
    "pgmscale": (("pgmscale",), None, {"write_pgm": True}),
    "help": (("help",), None, {}),
    "k_sol": (("k_sol",), None, {"bulk_solvent": True}),
    "B_sol": (("b_sol",), None, {"bulk_solvent": True}),
    "bfactor": (("b_factor",), None, {}),
}
# Flags whose value is stored under the flag's own name, unconverted.
for _key in ("fudge", "default_F", "hkl", "dump", "sourcefile", "exposure", "fluence", "flux", "adc", "scale",
             "seed", "mosaic_domains", "mosaic_seed", "dispsteps", "hdivsteps", "vdivsteps", "oversample",
             "mask", "img", "dtype", "device", "max_memory_gb", "kernel", "floatfile", "intfile",
             "frames", "stills", "stills_file", "nexus", "cbf", "workers", "scheduler",
             "pdb", "mtz", "mtz_labels", "hklout", "expt", "exptout"):
    _STORE[_key] = ((_key,), None, {})
# Switches (no value): key -> {attribute: value}.
_SWITCH: dict[str, dict] = {
    "shape_square": {"shape": "square"}, "shape_round": {"shape": "round"},
    "shape_gauss": {"shape": "gauss"}, "shape_tophat": {"shape": "tophat"},
    "interpolate": {"interpolate": True}, "nointerpolate": {"interpolate": False},
    "round_div": {"round_div": True}, "square_div": {"round_div": False},
    "nopolar": {"nopolar": True},
    "curved_det": {"curved": True}, "point_pixel": {"point_pixel": True},
    "oversample_thick": {"os_thick": True}, "oversample_polar": {"os_polar": True},
    "oversample_omega": {"os_omega": True},
    "nonoise": {"noise": False}, "nopgm": {"write_pgm": False},
    "noprogress": {"progress": False}, "progress": {"progress": True}, "quiet": {"quiet": True},
    "resume": {"resume": True}, "adc_header": {"adc_header": True},
    "anomalous": {"anomalous": True}, "bulk_solvent": {"bulk_solvent": True},
    **{f"conv_{c.lower()}": {"convention": c} for c in ("MOSFLM", "DENZO", "ADXV", "XDS", "DIALS")},
}
# Accepted, stored nowhere, with one warning (C reads them and they change nothing in the image).
_NO_EFFECT = {
    "density": "density/MW flags have no effect (as in the C program)",
    "coherent": "-coherent has no effect (as in the C program)",
    **{k: f"-{k} has no effect (as in the C program)" for k in ("stol", "stolout", "printout", "printout_pixel")},
}
_CUSTOM_VECTORS = ("beam_vector", "polar_vector", "fdet_vector", "sdet_vector", "odet_vector", "spindle_axis",
                   "twotheta_axis")


def _on_misset(st: SimpleNamespace, v) -> None:
    """-misset rx ry rz (deg) fixes the orientation; -misset random draws it from -misset_seed."""
    if v == "random":
        st.misset_random, st.misset = True, None
    else:
        st.misset_random, st.misset = False, tuple(x / RTD for x in v)


def _on_energy(st: SimpleNamespace, v) -> None:
    """-energy eV sets the wavelength through C's constant hc = 12398.42 eV A."""
    st.wavelength = (12398.42 / v) / 1e10


def _on_vector(st: SimpleNamespace, key: str, v) -> None:
    """Any explicit lab vector selects the CUSTOM convention; -pix0_vector's value itself is ignored, as in C."""
    if key != "pix0_vector":
        st.vectors[key] = v
    st.convention = "CUSTOM"


def _on_detector_abs(st: SimpleNamespace, v) -> None:
    """-detector_abs um: attenuation length; 'inf' or 0 turns the sensor model off (thickness 0, mu 0)."""
    if v == "inf" or v == 0.0:
        st.thick, st.mu = 0.0, 0.0
    else:
        st.mu = 1.0 / (v * UM)


def apply_table_event(st: SimpleNamespace, key: str, v, store: dict, switch: dict) -> bool:
    """Apply an event found in a store table (key -> (attributes, conversion or None, {other attribute: value}),
    like ``_STORE``) or a switch table (key -> {attribute: value}, like ``_SWITCH``); False when neither has it."""
    if key in store:
        attrs, convert, extra = store[key]
        for attr in attrs:
            setattr(st, attr, convert(v) if convert is not None else v)
        for attr, value in extra.items():
            setattr(st, attr, value)
        return True
    if key in switch:
        for attr, value in switch[key].items():
            setattr(st, attr, value)
        return True
    return False


def apply_event(st: SimpleNamespace, key: str, v) -> None:
    """Replay one command-line event onto the state with C's handler semantics (exact-match flags).

    Most flags only store their converted value (``_STORE``) or set a switch (``_SWITCH``); the few with
    more logic have a named handler above.
    """
    if apply_table_event(st, key, v, _STORE, _SWITCH):
        pass
    elif key in _NO_EFFECT:
        st.warnings.append(_NO_EFFECT[key])
    elif key == "misset":
        _on_misset(st, v)
    elif key == "energy":
        _on_energy(st, v)
    elif key in _CUSTOM_VECTORS or key == "pix0_vector":
        _on_vector(st, key, v)
    elif key == "detector_abs":
        _on_detector_abs(st, v)
    elif key == "not_a_c_flag":
        st.warnings.append(not_a_c_flag_warning(v))
    else:  # pragma: no cover - flag table and handlers out of sync
        raise AssertionError(f"no handler for {key}")


def not_a_c_flag_warning(v: tuple[str, str]) -> str:
    """The warning for a ``flags.NOT_C_FLAGS`` spelling: C skips the token and its values."""
    return (f"{v[0]} is not a flag of the C program, which ignores it and its values; so do we "
            f"(use {v[1]} for that effect)")


def state_from_events(events: list[tuple[str, object]], header_hook=None, initial=None, apply=None) -> SimpleNamespace:
    """C's variables after its pre-pass (-mask/-img headers, via ``header_hook``) and every flag, in order
    (``initial``/``apply``: another program's ``initial_state``/``apply_event``; default nanoBragg's)."""
    st = (initial or initial_state)()
    if header_hook is not None:
        header_hook(st, events)
    for key, value in events:
        (apply or apply_event)(st, key, value)
    return st


def detector_pixels(st: SimpleNamespace) -> tuple[int, int]:
    """C's detector size rule: pixel counts override sizes; counts = ceil(size/pixel - 0.5); size = px*count."""
    px = st.pixel
    if px <= 0:
        raise UsageError(f"-pixel: must be positive, got {px * 1000:g}")
    if st.fpixels:
        st.detsize_f = px * st.fpixels
    if st.spixels:
        st.detsize_s = px * st.spixels
    fpixels = math.ceil(st.detsize_f / px - 0.5)
    spixels = math.ceil(st.detsize_s / px - 0.5)
    if fpixels <= 0 or spixels <= 0:
        raise UsageError(f"detector has no pixels ({fpixels}x{spixels}); check -detpixels/-detsize/-pixel")
    return fpixels, spixels


def fluence_from_flux(st: SimpleNamespace) -> float:
    """C: a non-zero -flux with a positive exposure gives fluence = flux*exposure/beamsize^2, else -fluence."""
    if st.flux != 0.0 and st.exposure > 0.0 and st.beamsize >= 0:
        return st.flux * st.exposure / st.beamsize / st.beamsize
    return st.fluence


def beam_centre(st: SimpleNamespace) -> dict:
    """Convention defaults of C for the beam centre and near point, and the convention's lab vectors/pivot.

    MOSFLM/DENZO swap X/Y onto slow/fast (MOSFLM adds half a pixel), ADXV flips Y, XDS/DIALS/CUSTOM take
    X/Y as fast/slow; CUSTOM also places the near point at the beam centre and keeps the -pivot given.
    """
    nan = math.isnan
    px = st.pixel
    Fclose = (st.ORGX - 0.5) * px if not nan(st.ORGX) else st.detsize_f / 2.0
    Sclose = (st.ORGY - 0.5) * px if not nan(st.ORGY) else st.detsize_s / 2.0
    Xclose = Fclose if nan(st.Xclose) else st.Xclose
    Yclose = Sclose if nan(st.Yclose) else st.Yclose
    conv = st.convention
    Xbeam, Ybeam = st.Xbeam, st.Ybeam
    Df, Ds = st.detsize_f, st.detsize_s
    if conv == "ADXV":
        Xbeam = (Df + px) / 2.0 if nan(Xbeam) else Xbeam
        Ybeam = (Ds - px) / 2.0 if nan(Ybeam) else Ybeam
        Fbeam, Sbeam = Xbeam, Ds - Ybeam
    elif conv in ("MOSFLM", "DENZO"):
        Xbeam = (Ds + px) / 2.0 if nan(Xbeam) else Xbeam
        Ybeam = (Df + px) / 2.0 if nan(Ybeam) else Ybeam
        half = 0.5 * px if conv == "MOSFLM" else 0.0
        Fbeam, Sbeam = Ybeam + half, Xbeam + half
    else:  # XDS, DIALS, CUSTOM
        Xbeam = Xclose if nan(Xbeam) else Xbeam
        Ybeam = Yclose if nan(Ybeam) else Ybeam
        Fbeam, Sbeam = Xbeam, Ybeam
        if conv == "CUSTOM":
            Fclose, Sclose = Xbeam, Ybeam
    defaults = CONVENTIONS[conv]
    vec = dict(zip(VECTOR_KEYS, defaults[:7]))
    if conv == "CUSTOM":
        vec.update(st.vectors)
        pivot = st.pivot
    else:
        pivot = defaults[7]
    return dict(xbeam=Xbeam, ybeam=Ybeam, xclose=Xclose, yclose=Yclose, fbeam=Fbeam, sbeam=Sbeam,
                fclose=Fclose, sclose=Sclose, vectors=vec, pivot=pivot)


def roi_window(roi, fpixels: int, spixels: int) -> tuple[int, int, int, int]:
    """C's -roi: negative (unset) bounds become the detector edges; the window is inclusive."""
    r = list(roi) if roi is not None else [-1, -1, -1, -1]
    return (r[0] if r[0] >= 0 else 0, r[1] if r[1] >= 0 else fpixels,
            r[2] if r[2] >= 0 else 0, r[3] if r[3] >= 0 else spixels)


def mosaic_rule(st: SimpleNamespace) -> tuple[float, int]:
    """C's mosaic auto rule: (spread rad, domains); a spread without a count gets 10 domains, no spread 1."""
    spread, domains = st.mosaic_spread, st.mosaic_domains
    if domains <= 0:
        if spread < 0.0:
            return 0.0, 1
        if spread == 0.0:
            return spread, 1
        st.warnings.append("finite mosaicity with no -mosaic_domains: using 10 mosaic domains")
        return spread, 10
    if spread < 0.0:
        st.warnings.append("no mosaic spread specified: setting mosaic_domains = 1")
        return 0.0, 1
    return spread, (1 if spread == 0.0 else domains)


def detector_attenuation(st: SimpleNamespace, thick: float) -> float:
    """C: a sensor thickness with no -detector_abs uses mu = 1/thickness."""
    mu = st.mu
    if thick > 0.0 and mu < 0.0:
        mu = 1.0 / thick
        st.warnings.append(f"setting detector attenuation depth to {mu:g} m (mu = 1/thickness, as in C)")
    return mu


def cell_rule(cell) -> tuple[float, ...] | None:
    """-cell a [b c al be ga]: missing or non-positive b, c default to a, angles to 90 degrees (rad out)."""
    if cell is None:
        return None
    c = list(cell)
    a = c[0]
    b = c[1] if len(c) > 1 and c[1] > 0 else a
    cc = c[2] if len(c) > 2 and c[2] > 0 else a
    angles = [(c[i] / RTD if len(c) > i and c[i] > 0 else math.pi / 2) for i in (3, 4, 5)]
    return (a, b, cc, *angles)


def beam_config(st: SimpleNamespace, vec: dict) -> BeamConfig:
    """The beam: wavelength, fluence, divergence and dispersion grids after C's auto rules."""
    hsteps, hrange, hstep = _auto_steps(st.hdivsteps, st.hdivrange, st.hdivstep, 1.0)
    vsteps, vrange, vstep = _auto_steps(st.vdivsteps, st.vdivrange, st.vdivstep, 1.0)
    dsteps, disp, dstep = _auto_steps(st.dispsteps, st.dispersion, -1.0, 1.0)
    return BeamConfig(
        wavelength=st.wavelength, fluence=fluence_from_flux(st), beam_vector=tuple(vec["beam_vector"]),
        polar_vector=tuple(vec["polar_vector"]), kahn_factor=st.kahn, nopolar=st.nopolar,
        hdiv_range=hrange, hdiv_step=hstep, hdiv_steps=hsteps, vdiv_range=vrange, vdiv_step=vstep,
        vdiv_steps=vsteps, round_div=st.round_div, dispersion=disp, disp_step=dstep, disp_steps=dsteps,
        sourcefile=st.sourcefile, water_size=st.water, dmin=st.dmin,
    )


def detector_config(st: SimpleNamespace) -> DetectorConfig:
    """The detector: pixel counts, beam centre per convention, pivot, vectors, sensor layers and ROI."""
    fpixels, spixels = detector_pixels(st)
    bc = beam_centre(st)
    vec = bc["vectors"]
    thicksteps, thick, thickstep = _thick_steps(st.thicksteps, st.thick)
    return DetectorConfig(
        convention=st.convention, pivot=bc["pivot"], fpixels=fpixels, spixels=spixels, pixel_size=st.pixel,
        detsize_f=st.detsize_f, detsize_s=st.detsize_s, distance=st.distance,
        close_distance=None if math.isnan(st.close_distance) else st.close_distance,
        xbeam=bc["xbeam"], ybeam=bc["ybeam"], xclose=bc["xclose"], yclose=bc["yclose"], fbeam=bc["fbeam"],
        sbeam=bc["sbeam"], fclose=bc["fclose"], sclose=bc["sclose"], fdet_vector=tuple(vec["fdet_vector"]),
        sdet_vector=tuple(vec["sdet_vector"]), odet_vector=tuple(vec["odet_vector"]),
        twotheta_axis=tuple(vec["twotheta_axis"]), rot=(st.rotx, st.roty, st.rotz), twotheta=st.twotheta,
        curved=st.curved, point_pixel=st.point_pixel, thickness=thick, thickstep=thickstep,
        thicksteps=thicksteps, mu=detector_attenuation(st, thick), roi=roi_window(st.roi, fpixels, spixels),
        mask=st.mask,
    )


def crystal_config(st: SimpleNamespace, vec: dict) -> CrystalConfig:
    """The crystal: cell or matrix, orientation, size, spot shape, mosaic domains, F source, phi sweep."""
    if st.mat is None and (st.cell is None or st.cell[0] == 0.0) and st.pdb is None and st.mtz is None \
            and st.expt is None:  # an -expt file's crystal is checked when the file is read
        raise UsageError("no crystal given: use -mat A.mat or -cell a b c alpha beta gamma "
                         "(or -pdb/-mtz, whose cell is used)")
    # Interpolation auto rule: decided on the raw N (before crystal size and clamping), as in C.
    interp_auto = st.interpolate is None
    interpolate = (min(st.Na, st.Nb, st.Nc) <= 2) if interp_auto else st.interpolate
    phisteps, osc, phistep = _phi_steps(st.phisteps, st.osc, st.phistep)
    spread, domains = mosaic_rule(st)
    sample_y, sample_z = st.sample_y, st.sample_z
    if st.beamsize >= 0:  # C: the beam clips the crystal's width and height
        sample_y, sample_z = min(sample_y, st.beamsize), min(sample_z, st.beamsize)
    return CrystalConfig(
        mat=st.mat, cell=cell_rule(st.cell), misset=st.misset, misset_random=st.misset_random,
        misset_seed=st.misset_seed if st.misset_seed is not None else _time_seed(),
        Na=st.Na, Nb=st.Nb, Nc=st.Nc, sample_x=st.sample_x, sample_y=sample_y, sample_z=sample_z,
        shape=st.shape, fudge=st.fudge, mosaic_spread=spread, mosaic_domains=domains,
        mosaic_seed=st.mosaic_seed, hkl=st.hkl, default_F=st.default_F, dump=st.dump, interpolate=interpolate,
        interpolate_auto=interp_auto, phi0=st.phi0, phistep=phistep, phisteps=phisteps, osc=osc,
        spindle_axis=tuple(vec["spindle_axis"]),
    )


def _distinct_outputs(named: dict[str, str | None]) -> None:
    """Two outputs given the same file name are refused (C writes one over the other)."""
    seen: dict[str, str] = {}
    for flag, name in named.items():
        if name is None:
            continue
        key = os.path.normpath(name)
        if key in seen:
            raise UsageError(f"{seen[key]} and {flag} name the same file {name}: give each output its own name")
        seen[key] = flag


def output_config(st: SimpleNamespace) -> OutputConfig:
    """Output names (C's defaults), image scales, ADC offset, noise seed and reporting switches."""
    _distinct_outputs({"-floatfile": st.floatfile, "-intfile": st.intfile,
                       "-pgmfile": st.pgmfile if st.write_pgm else None,
                       "-noisefile": st.noisefile if st.noise else None, "-hklout": st.hklout,
                       "-exptout": st.exptout})
    return OutputConfig(
        floatfile=st.floatfile, intfile=st.intfile, pgmfile=st.pgmfile if st.write_pgm else None,
        noisefile=st.noisefile if st.noise else None, scale=st.scale, pgmscale=st.pgmscale, adc=st.adc,
        seed=st.seed, adc_header=st.adc_header, exptout=st.exptout, progress=st.progress, quiet=st.quiet,
        hklout=st.hklout,
    )


def build_config(events: list[tuple[str, object]], header_hook=None) -> SimConfig:
    """Replay parsed events and apply C's defaults and auto-selection rules, section by section."""
    # An -expt file's flags (one event from parse_argv) replay first, so flags given too override them; ``given``
    # is the command line's own flags.
    from_file = [e for k, v in events if k == EXPT_FLAGS for e in v]
    events = [(k, v) for k, v in events if k != EXPT_FLAGS]
    given = frozenset(k for k, _ in events)
    events = from_file + events
    expt = dict(events).get("expt")
    if expt is not None:  # parse_argv put the file's C flags before the command line's
        experiment = read_expt(expt)
        if len(experiment.panels) > 1 and dict(events).get("cbf") is not None:
            raise UsageError(f"-cbf: not written for a detector of {len(experiment.panels)} panels (-expt); use "
                             "-nexus (one module per panel) or -floatfile/-intfile (the panels one after another)")
    st = state_from_events(events, header_hook)
    if st.help:
        raise UsageError("help")  # handled by the CLI before building a config
    detector = detector_config(st)
    vec = beam_centre(st)["vectors"]
    beam = beam_config(st, vec)
    crystal = crystal_config(st, vec)
    sampling = SamplingConfig(oversample=st.oversample, oversample_thick=st.os_thick,
                              oversample_polar=st.os_polar, oversample_omega=st.os_omega)
    engine = EngineConfig(dtype=st.dtype, device=st.device, max_memory_gb=st.max_memory_gb, kernel=st.kernel)
    return SimConfig(beam=beam, detector=detector, crystal=crystal, sampling=sampling, output=output_config(st),
                     engine=engine, warnings=tuple(st.warnings), dataset=dataset_config(st, events, crystal),
                     structure=structure_config(st), expt=expt, given=given if expt is not None else frozenset())


def structure_config(st: SimpleNamespace) -> StructureConfig:
    """-pdb / -mtz and the options of a calculation from a model; one source of structure factors only."""
    given = [flag for flag, v in (("-hkl", st.hkl), ("-pdb", st.pdb), ("-mtz", st.mtz)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)}: give one source of structure factors")
    if st.mtz_labels is not None and st.mtz is None:
        raise UsageError("-mtz_labels: only with -mtz FILE")
    if st.pdb is None:
        for flag, on in (("-anomalous", st.anomalous), ("-bfactor", st.b_factor is not None),
                         ("-bulk_solvent (-k_sol, -B_sol)", st.bulk_solvent)):
            if on:
                raise UsageError(f"{flag}: only with -pdb FILE (a calculation from a model)")
    return StructureConfig(pdb=st.pdb, mtz=st.mtz, mtz_labels=st.mtz_labels, anomalous=st.anomalous,
                           b_factor=st.b_factor, bulk_solvent=st.bulk_solvent, k_sol=st.k_sol, b_sol=st.b_sol)


def dataset_config(st: SimpleNamespace, events: list[tuple[str, object]], crystal: CrystalConfig) -> DatasetConfig:
    """The dataset flags, with -phi and -osc in degrees as given (so frame i's -phi is exactly phi + i*osc)."""
    given = dict(events)  # the last value of each flag
    phi_deg = given["phi"] if "phi" in given else st.phi0 * RTD
    osc = given.get("osc")
    osc_deg = osc if osc is not None and _deg(osc) == crystal.osc else crystal.osc * RTD
    return DatasetConfig(frames=st.frames, stills=st.stills, stills_file=st.stills_file, nexus=st.nexus,
                         cbf=st.cbf, resume=st.resume, workers=st.workers, scheduler=st.scheduler,
                         phi_deg=phi_deg, osc_deg=osc_deg, exposure=st.exposure)


def _time_seed() -> int:
    """C's default for time-based seeds (it stores -time())."""
    import time

    return int(time.time())
