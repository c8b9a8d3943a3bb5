"""``python -m nanobrag_torch nonbragg`` (console script ``nonbragg-torch``): the C program nonBragg (§12).

    nonbragg-torch -stol water.stol -lambda 1 -distance 100 -detpixels 1024 -thick 0.1 -density 1 -MW 18

The same single-dash flags and files as nonBragg: parse (``flags.parse_argv`` with this program's ``FLAGS``)
-> ``NonBraggConfig`` (C's defaults and auto rules) -> read the .stol table, source file and -img image ->
``amorphous.render_amorphous`` (the detector geometry and sources of the Bragg simulator) -> the float image,
SMV int image, PGM, noise image and C's end-of-run lines (``io.outputs.write_image_outputs``), and with -img
the radially binned structure factor of that image (-stolout). Flags are matched exactly (C matches
substrings), and bad input is one line and a non-zero exit with no file written.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from ..config import DEFAULT_FLUENCE, RTD, SOURCE_DISTANCE, BeamConfig, DetectorConfig, EngineConfig, OutputConfig
from ..cmdline.c_rules import (angstrom_to_m, auto_steps, deg_to_rad, fluence_from_flux, mm_to_m, percent_to_fraction,
                               phi_steps, roi_window, times)
from ..cmdline.replay import apply_table_event, not_a_c_flag_warning, state_from_events
from ..checks import check_device
from ..errors import InputError, UsageError, warn
from ..cmdline.flags import FLAGS as NANOBRAGG_FLAGS
from ..cmdline.flags import NOT_C_FLAGS, Flag, flag_help_lines, parse_argv
from ..cmdline.flags import make_flag as _f

# nonBragg has no detector conventions: CUSTOM's axes, the beam centre taken as (fast, slow) and the near point
# for the sample pivot, which is what geometry.place_detector does for a convention name it does not special-case.
CONVENTION = "NONBRAGG"
GROUPS = ("Sample", "Beam", "Detector", "Rotation", "Output", "Engine")


_BASE = {flag.key: flag for flag in NANOBRAGG_FLAGS}


def _shared(keys: str) -> tuple[Flag, ...]:
    """nanoBragg's entries for the flags nonBragg shares with it verbatim (same spellings, units, help)."""
    return tuple(_BASE[k] for k in keys.split())


FLAGS: tuple[Flag, ...] = (
    # Sample
    _f("stol", "-stol", "file", "Sample", "table of sin(theta)/lambda (1/A) and F of one molecule (required)"),
    _f("4stol", "-4stol", "file", "Sample", "the same table with 4 sin(theta)/lambda in its first column"),
    _f("Q", "-Q", "file", "Sample", "the same table with Q = 4 pi sin(theta)/lambda in its first column"),
    _f("sample_x", "-thick -thickness -sample_thick -sample_x", "float", "Sample",
       "sample thickness along the beam (mm, default 0.1)"),
    _f("sample_size", "-samplesize -sample_size", "float", "Sample", "sample size along all three axes (mm)"),
    _f("sample_y", "-sample_width -sample_y -width", "float", "Sample", "sample width (mm, clipped to -beamsize)"),
    _f("sample_z", "-sample_height -sample_heigh -sample_z -height -heigh", "float", "Sample",
       "sample height (mm, clipped to -beamsize)"),
    _f("density", "-density -sample_den -sample_density", "float", "Sample", "density (g/cm^3, default 1)"),
    _f("molecules", "-molecules -sample_molecules", "float", "Sample",
       "number of molecules in the beam (sets the density)"),
    _f("MW", "-MW -molecular -molecular_weight", "float", "Sample", "molecular weight (g/mol, default 18)"),
    # Beam
    *_shared("lambda energy fluence flux exposure"),
    _f("beamsize", "-beamsize", "float", "Beam", "beam size (mm, default 0.1); clips the sample's width, height"),
    *_shared("dispersion dispsteps divergence hdivrange vdivrange hdivstep vdivstep hdivsteps vdivsteps divsteps "
             "round_div square_div sourcefile"),
    _f("source_distance", "-source_distance", "float", "Beam", "distance of generated sources (mm, default 10 m)"),
    *_shared("polar nopolar"),
    _f("beam_vector", "-beam_vector", "vec3", "Beam", "beam direction (default 1 0 0)"),
    _f("polar_vector", "-polar_vector", "vec3", "Beam", "E-vector axis (default 0 0 1)"),
    _f("coherent", "-coherent", "none", "Beam", "accepted for compatibility; no effect (as in C)"),
    # Detector
    *_shared("distance close_distance detsize"),
    _f("detsize_x", "-detsize_x", "float", "Detector", "detector size along fast (mm)"),
    _f("detsize_y", "-detsize_y", "float", "Detector", "detector size along slow (mm)"),
    *_shared("detpixels detpixels_f detpixels_s pixel"),
    _f("Xbeam", "-Xbeam", "float", "Detector", "beam centre along fast (mm; selects the beam pivot)"),
    _f("Ybeam", "-Ybeam", "float", "Detector", "beam centre along slow (mm; selects the beam pivot)"),
    _f("Xclose", "-Xclose", "float", "Detector", "near point along fast (mm; selects the sample pivot)"),
    _f("Yclose", "-Yclose", "float", "Detector", "near point along slow (mm; selects the sample pivot)"),
    _f("ORGX", "-ORGX", "float", "Detector", "near point along fast (pixels; selects the sample pivot)"),
    _f("ORGY", "-ORGY", "float", "Detector", "near point along slow (pixels; selects the sample pivot)"),
    _f("pivot", "-pivot", "pivot", "Detector", "detector pivot: beam or sample"),
    _f("fdet_vector", "-fdet_vector", "vec3", "Detector", "fast axis (default 0 0 1)"),
    _f("sdet_vector", "-sdet_vector", "vec3", "Detector", "slow axis (default 0 -1 0)"),
    _f("odet_vector", "-odet_vector", "vec3", "Detector", "accepted; C always uses fast x slow"),
    _f("twotheta_axis", "-twotheta_axis", "vec3", "Detector", "two-theta axis (default 0 1 0; not normalised)"),
    _f("pix0_vector", "-pix0_vector", "vec3", "Detector", "accepted; C recomputes it (no effect)"),
    _f("spindle_axis", "-spindle_axis", "vec3", "Detector", "accepted; no effect on the image (as in C)"),
    _f("twotheta", "-twotheta", "float", "Detector", "detector two-theta swing (deg; selects the sample pivot)"),
    *_shared("detector_rotx detector_roty detector_rotz curved_det point_pixel"),
    _f("oversample", "-oversample", "int", "Detector", "sub-pixels per side (default 1)"),
    *_shared("roi"),
    _f("img", "-img", "file", "Detector", "SMV image: its header sets the geometry; its pixels give -stolout"),
    _f("ignore", "-ignore", "float", "Detector", "-img pixel value to leave out of -stolout (repeatable)"),
    _f("gain", "-gain", "float", "Detector", "-img counts per photon (default 1)"),
    # Rotation (the SMV header only)
    _f("phi", "-phi", "float", "Rotation", "starting spindle angle for the header (deg)"),
    _f("osc", "-osc", "float", "Rotation", "oscillation range for the header (deg)"),
    _f("phistep", "-phistep", "float", "Rotation", "spindle step (deg; header's OSC_RANGE rule)"),
    _f("phisteps", "-phisteps", "int", "Rotation", "number of spindle steps (header's OSC_RANGE rule)"),
    # Output
    *_shared("floatfile intfile pgmfile noisefile nonoise"),
    _f("nopgm", "-nopgm", "none", "Output", "do not write a PGM image (C writes one anyway)"),
    *_shared("scale pgmscale adc seed"),
    _f("stolout", "-stolout", "str", "Output", "-img's binned F vs stol (default output.stol)"),
    _f("Fmap", "-Fmap", "none", "Output", "each pixel holds the interpolated F instead of photons"),
    _f("noreject", "-noreject", "none", "Output", "accepted; no effect (as in C)"),
    *_shared("printout printout_pixel"),
    _f("noprogress", "-noprogress", "none", "Output", "accepted (no progress output)"),
    _f("progress", "-progress", "none", "Output", "accepted (no progress output)"),
    # Ours
    *_shared("dtype device kernel quiet"),
)

INTRO = [
    "usage: nonbragg-torch -stol water.stol [options]",
    "",
    "PyTorch port of nonBragg, the amorphous-scattering simulator of the nanoBragg suite (water, air, ice, ...):",
    "the C program's single-dash flags, the same output files. Units: mm for lengths, A for wavelength,",
    "mrad for divergence, % for dispersion, deg for angles, g/cm^3 and g/mol for the sample.",
]

# flag key -> (state attributes, conversion or None, {other attribute: value}); the conversions are C's own
# operations (x/1000.0 for mm and mrad, x/1e10 for A, x/RTD for degrees, x/100.0 for %, x*1e6 for g/cm^3), so
# every value is the same double as in C (§1.1).
_STORE: dict[str, tuple[tuple[str, ...], object, dict]] = {
    "sample_x": (("sample_x",), mm_to_m, {}), "sample_y": (("sample_y",), mm_to_m, {}),
    "sample_z": (("sample_z",), mm_to_m, {}),
    "sample_size": (("sample_x", "sample_y", "sample_z"), mm_to_m, {}),
    "density": (("density",), times(1e6), {}), "molecules": (("molecules",), None, {}), "MW": (("MW",), None, {}),
    "lambda": (("wavelength",), angstrom_to_m, {}), "beamsize": (("beamsize",), mm_to_m, {}),
    "dispersion": (("dispersion",), percent_to_fraction, {}), "divergence": (("hdivrange", "vdivrange"), mm_to_m, {}),
    "hdivrange": (("hdivrange",), mm_to_m, {}), "vdivrange": (("vdivrange",), mm_to_m, {}),
    "hdivstep": (("hdivstep",), mm_to_m, {}), "vdivstep": (("vdivstep",), mm_to_m, {}),
    "divsteps": (("hdivsteps", "vdivsteps"), None, {}), "source_distance": (("source_distance",), mm_to_m, {}),
    "polar": (("kahn",), None, {"nopolar": False}),
    "distance": (("distance",), mm_to_m, {"pivot": "beam"}),
    "close_distance": (("close_distance",), mm_to_m, {"pivot": "sample"}),
    "detsize": (("detsize_f", "detsize_s"), mm_to_m, {}), "detsize_x": (("detsize_f",), mm_to_m, {}),
    "detsize_y": (("detsize_s",), mm_to_m, {}), "detpixels": (("fpixels", "spixels"), None, {}),
    "detpixels_f": (("fpixels",), None, {}), "detpixels_s": (("spixels",), None, {}),
    "pixel": (("pixel",), mm_to_m, {}),
    "Xbeam": (("Xbeam",), mm_to_m, {"pivot": "beam"}), "Ybeam": (("Ybeam",), mm_to_m, {"pivot": "beam"}),
    "Xclose": (("Xclose",), mm_to_m, {"pivot": "sample"}), "Yclose": (("Yclose",), mm_to_m, {"pivot": "sample"}),
    "ORGX": (("ORGX",), None, {"pivot": "sample"}), "ORGY": (("ORGY",), None, {"pivot": "sample"}),
    "pivot": (("pivot",), None, {}), "twotheta": (("twotheta",), deg_to_rad, {"pivot": "sample"}),
    "detector_rotx": (("rotx",), deg_to_rad, {}), "detector_roty": (("roty",), deg_to_rad, {}),
    "detector_rotz": (("rotz",), deg_to_rad, {}),
    "phi": (("phi0",), deg_to_rad, {}), "osc": (("osc",), deg_to_rad, {}), "phistep": (("phistep",), deg_to_rad, {}),
    "noisefile": (("noisefile",), None, {"noise": True}), "pgmfile": (("pgmfile",), None, {"write_pgm": True}),
}
for _key in ("fluence", "flux", "exposure", "dispsteps", "hdivsteps", "vdivsteps", "sourcefile", "oversample",
             "roi", "img", "gain", "phisteps", "floatfile", "intfile", "scale", "pgmscale", "adc", "seed", "stolout",
             "dtype", "device", "kernel", "beam_vector", "polar_vector", "fdet_vector", "sdet_vector", "twotheta_axis"):
    _STORE[_key] = ((_key,), None, {})
_SWITCH: dict[str, dict] = {
    "round_div": {"round_div": True}, "square_div": {"round_div": False}, "nopolar": {"nopolar": True},
    "curved_det": {"curved": True}, "point_pixel": {"point_pixel": True}, "Fmap": {"fmap": True},
    "nonoise": {"noise": False}, "nopgm": {"write_pgm": False}, "quiet": {"quiet": True},
}
_NO_EFFECT = ("coherent", "odet_vector", "pix0_vector", "spindle_axis", "noreject", "printout", "printout_pixel",
              "noprogress", "progress")


def parse(argv: list[str]) -> list[tuple[str, object]]:
    """nonBragg's command line -> ordered (key, value) events (``flags.parse_argv`` with this program's flags and
    the upstream non-flags -hdiv, -vdiv, -dispstep, ...)."""
    return parse_argv(list(argv), FLAGS, not_c_flags=NOT_C_FLAGS)


def help_text() -> str:
    """nonbragg's help: its flags by topic, and the upstream spellings it accepts and ignores."""
    lines = INTRO + flag_help_lines(FLAGS, GROUPS)
    lines += ["", "Not flags of the C program (it skips them and their values; accepted and ignored, with a warning):",
              "  " + ", ".join(f"{name} ({meant})" for name, (_, meant) in NOT_C_FLAGS.items())]
    lines += ["", "  -h, --help                                   show this help and exit"]
    return "\n".join(lines) + "\n"


def initial_state() -> SimpleNamespace:
    """nonBragg's variables before parsing, in its internal units (m, rad, g/m^3)."""
    nan = math.nan
    return SimpleNamespace(
        stol=None, stol_unit="stol", sample_x=1e-4, sample_y=1e-4, sample_z=1e-4, density=1e6, MW=18.0,
        molecules=0.0, wavelength=1e-10, fluence=DEFAULT_FLUENCE, flux=0.0, exposure=1.0, beamsize=1e-4,
        dispersion=0.0, dispsteps=-1, hdivrange=-1.0, vdivrange=-1.0, hdivstep=-1.0, vdivstep=-1.0, hdivsteps=-1,
        vdivsteps=-1, round_div=True, sourcefile=None, source_distance=SOURCE_DISTANCE, kahn=0.0, nopolar=False,
        beam_vector=(1.0, 0.0, 0.0), polar_vector=(0.0, 0.0, 1.0), fdet_vector=(0.0, 0.0, 1.0),
        sdet_vector=(0.0, -1.0, 0.0), twotheta_axis=(0.0, 1.0, 0.0),
        distance=0.1, close_distance=nan, detsize_f=0.1024, detsize_s=0.1024, fpixels=0, spixels=0, pixel=1e-4,
        Xbeam=nan, Ybeam=nan, Xclose=nan, Yclose=nan, ORGX=nan, ORGY=nan, pivot="beam", twotheta=0.0, rotx=0.0,
        roty=0.0, rotz=0.0, curved=False, point_pixel=False, oversample=-1, roi=None, img=None, ignore=[],
        gain=1.0, phi0=0.0, osc=-1.0, phistep=-1.0, phisteps=-1, fmap=False,
        floatfile="floatimage.bin", intfile="intimage.img", pgmfile="image.pgm", write_pgm=True,
        noisefile="noiseimage.img", noise=True, scale=0.0, pgmscale=0.0, adc=40.0, seed=None, stolout="output.stol",
        quiet=False, dtype="float64", device="cpu", kernel="auto", help=False, warnings=[],
    )


def apply_img_header(st: SimpleNamespace, header: dict, width: int, height: int) -> None:
    """C's -img pre-pass (§12.1): the image's size and header values are starting values flags override."""
    from ..io.smv import header_value

    st.fpixels, st.spixels = width, height
    px = header_value(header, "PIXEL_SIZE")
    if px is not None:
        st.pixel = px / 1000.0
    st.detsize_f, st.detsize_s = st.pixel * width, st.pixel * height
    for key, attr, convert in (("DISTANCE", "distance", lambda v: v / 1000.0),
                               ("CLOSE_DISTANCE", "close_distance", lambda v: v / 1000.0),
                               ("WAVELENGTH", "wavelength", lambda v: v / 1e10),
                               ("BEAM_CENTER_X", "Xbeam", lambda v: v / 1000.0),
                               ("ORGX", "ORGX", float), ("ORGY", "ORGY", float),
                               ("PHI", "phi0", lambda v: v / RTD), ("OSC_RANGE", "osc", lambda v: v / RTD)):
        v = header_value(header, key)
        if v is not None:
            setattr(st, attr, convert(v))
    v = header_value(header, "BEAM_CENTER_Y")
    if v is not None:
        st.Ybeam = st.detsize_s - v / 1000.0


def apply_event(st: SimpleNamespace, key: str, v) -> None:
    """Replay one command-line event onto the state with nonBragg's handler semantics (exact-match flags)."""
    if apply_table_event(st, key, v, _STORE, _SWITCH):
        pass
    elif key in ("stol", "4stol", "Q"):
        st.stol, st.stol_unit = v, key
    elif key == "energy":
        st.wavelength = (12398.42 / v) / 1.0e10
    elif key == "ignore":
        if not 0 <= v < 65536:
            raise UsageError(f"-ignore: expected a pixel value 0..65535, got {v:g}")
        st.ignore = [*st.ignore, float(int(v))]  # C keeps it as an unsigned short
    elif key in _NO_EFFECT:
        st.warnings.append(f"-{key} has no effect (as in the C program)")
    elif key == "not_a_c_flag":
        st.warnings.append(not_a_c_flag_warning(v))
    elif key == "help":
        st.help = True
    else:  # pragma: no cover - flag table and handlers out of sync
        raise AssertionError(f"no handler for {key}")


@dataclass(frozen=True)
class NonBraggConfig:
    """A nonBragg run after C's defaults and auto rules: SI units (m, rad; density in g/m^3 as C keeps it)."""

    stol: str
    stol_unit: str  # stol | 4stol | Q
    sample: tuple[float, float, float]  # thickness, width, height (m) after the beam-size clip
    density: float  # g/m^3 (after -molecules, as C)
    molecular_weight: float
    molecules: float
    beam: BeamConfig
    detector: DetectorConfig
    source_distance: float = SOURCE_DISTANCE
    oversample: int = 1
    fmap: bool = False
    phi0: float = 0.0
    osc: float = 0.0
    img: str | None = None
    ignore: tuple[float, ...] = ()
    gain: float = 1.0
    stolout: str = "output.stol"
    output: OutputConfig = field(default_factory=OutputConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    warnings: tuple[str, ...] = ()


def _img_hook(st: SimpleNamespace, events) -> None:
    """C reads -img's header before any other flag."""
    from ..io.smv import read_smv

    for k, v in events:
        if k == "img":
            header, img = read_smv(v, "-img")
            apply_img_header(st, header, img.shape[1], img.shape[0])


def detector_size(st: SimpleNamespace) -> tuple[int, int]:
    """nonBragg's detector size rule: pixel counts override sizes; counts = ceil(size/pixel) (§12.1)."""
    px = st.pixel
    if not px > 0:
        raise UsageError(f"-pixel: must be positive, got {px * 1000:g}")
    if st.fpixels:
        st.detsize_f = px * st.fpixels
    if st.spixels:
        st.detsize_s = px * st.spixels
    fpixels, spixels = math.ceil(st.detsize_f / px), math.ceil(st.detsize_s / px)
    if fpixels <= 0 or spixels <= 0:
        raise UsageError(f"detector has no pixels ({fpixels}x{spixels}); check -detpixels/-detsize/-pixel")
    if fpixels * spixels > 1 << 28:
        raise UsageError(f"detector of {fpixels}x{spixels} pixels is too large; check -detpixels/-detsize/-pixel")
    return fpixels, spixels


def _sample(st: SimpleNamespace) -> tuple[tuple[float, float, float], float, float]:
    """(sample sizes after the beam clip, density g/m^3, molecules) as C straightens them up (§12.4)."""
    from ..amorphous import density_from_molecules, sample_volume, scatterer_count

    x, y, z = st.sample_x, st.sample_y, st.sample_z
    if st.beamsize >= 0:
        if st.beamsize < y:
            st.warnings.append(f"clipping sample ({y:g} m high) with beam ({st.beamsize:g} m)")
        if st.beamsize < z:
            st.warnings.append(f"clipping sample ({z:g} m wide) with beam ({st.beamsize:g} m)")
    volume = sample_volume(x, y, z, st.beamsize)
    y, z = (min(y, st.beamsize), min(z, st.beamsize)) if st.beamsize >= 0 else (y, z)
    if not st.MW > 0:
        raise UsageError(f"-MW: the molecular weight must be positive, got {st.MW:g}")
    if st.molecules < 0:
        raise UsageError(f"-molecules: must not be negative, got {st.molecules:g}")
    if st.molecules == 0 and not st.density > 0:
        raise UsageError(f"-density: must be positive, got {st.density / 1e6:g} g/cm^3")
    if not volume > 0:
        raise UsageError(f"the sample volume is {volume:g} m^3; check -thick/-sample_size/-width/-height/-beamsize")
    density = st.density
    if st.molecules != 0:
        density = density_from_molecules(st.molecules, volume, st.MW)
    return (x, y, z), density, scatterer_count(volume, density, st.MW)


def detector_config(st: SimpleNamespace) -> DetectorConfig:
    """The detector: size, C's default near point and beam centre (§12.1), pivot, axes and ROI."""
    fpixels, spixels = detector_size(st)
    px, nan = st.pixel, math.isnan
    xclose = st.ORGX * px if not nan(st.ORGX) else st.Xclose
    yclose = st.ORGY * px if not nan(st.ORGY) else st.Yclose
    xclose = (st.detsize_f - px) / 2.0 if nan(xclose) else xclose
    yclose = (st.detsize_s + px) / 2.0 if nan(yclose) else yclose
    xbeam = xclose if nan(st.Xbeam) else st.Xbeam
    ybeam = yclose if nan(st.Ybeam) else st.Ybeam
    return DetectorConfig(
        convention=CONVENTION, pivot=st.pivot, fpixels=fpixels, spixels=spixels, pixel_size=px,
        detsize_f=st.detsize_f, detsize_s=st.detsize_s, distance=st.distance,
        close_distance=None if nan(st.close_distance) else st.close_distance, xbeam=xbeam, ybeam=ybeam,
        xclose=xclose, yclose=yclose, fbeam=xbeam, sbeam=ybeam, fclose=xclose, sclose=yclose,
        fdet_vector=tuple(st.fdet_vector), sdet_vector=tuple(st.sdet_vector), odet_vector=(1.0, 0.0, 0.0),
        twotheta_axis=tuple(st.twotheta_axis), rot=(st.rotx, st.roty, st.rotz), twotheta=st.twotheta,
        curved=st.curved, point_pixel=st.point_pixel, thickness=0.0, thickstep=0.0, thicksteps=1, mu=0.0,
        roi=roi_window(st.roi, fpixels, spixels),
    )


def build_config(events: list[tuple[str, object]], header_hook=_img_hook) -> NonBraggConfig:
    """Replay parsed events onto nonBragg's defaults and apply its rules (§12.1)."""
    st = state_from_events(events, header_hook, initial_state, apply_event)
    if st.stol is None:
        raise UsageError("no structure-factor table: give -stol FILE (or -4stol/-Q FILE)")
    if not st.wavelength > 0:
        raise UsageError(f"-lambda: the wavelength must be positive, got {st.wavelength * 1e10:g} A")
    detector = detector_config(st)
    sample, density, molecules = _sample(st)
    hsteps, hrange, hstep = auto_steps(st.hdivsteps, st.hdivrange, st.hdivstep, 1.0)
    vsteps, vrange, vstep = auto_steps(st.vdivsteps, st.vdivrange, st.vdivstep, 1.0)
    dsteps, disp, dstep = auto_steps(st.dispsteps, st.dispersion, -1.0, 1.0)
    beam = BeamConfig(
        wavelength=st.wavelength, fluence=fluence_from_flux(st), beam_vector=tuple(st.beam_vector),
        polar_vector=tuple(st.polar_vector), kahn_factor=st.kahn, nopolar=st.nopolar, hdiv_range=hrange,
        hdiv_step=hstep, hdiv_steps=hsteps, vdiv_range=vrange, vdiv_step=vstep, vdiv_steps=vsteps,
        round_div=st.round_div, dispersion=disp, disp_step=dstep, disp_steps=dsteps, sourcefile=st.sourcefile,
    )
    _, osc, _ = phi_steps(st.phisteps, st.osc, st.phistep)
    check_device("-device", st.device)
    output = OutputConfig(
        floatfile=st.floatfile, intfile=st.intfile, pgmfile=st.pgmfile if st.write_pgm else None,
        noisefile=st.noisefile if st.noise else None, scale=st.scale, pgmscale=st.pgmscale, adc=st.adc,
        seed=st.seed, quiet=st.quiet)
    return NonBraggConfig(
        stol=st.stol, stol_unit=st.stol_unit, sample=sample, density=density, molecular_weight=st.MW,
        molecules=molecules, beam=beam, detector=detector, source_distance=st.source_distance,
        oversample=st.oversample if st.oversample > 0 else 1, fmap=st.fmap, phi0=st.phi0, osc=osc, img=st.img,
        ignore=tuple(st.ignore), gain=st.gain, stolout=st.stolout, output=output,
        engine=EngineConfig(dtype=st.dtype, device=st.device, kernel=st.kernel), warnings=tuple(st.warnings))


# ----------------------------------------------------------------------------------------------- loading
@dataclass
class NonBraggInputs:
    """What the input files hold: the .stol table, source rows, the -img pixels."""

    table: object
    source_rows: list | None = None
    img: object = None  # numpy uint16 (spixels, fpixels)


def read_inputs(config: NonBraggConfig, workdir: str | Path = ".", warn=None) -> NonBraggInputs:
    """Read every file ``config`` names; one-line InputError for a bad one."""
    from ..io.smv import read_smv
    from ..io.sourcefile import read_sourcefile
    from ..io.stol import read_stol

    wd = Path(workdir)
    table = read_stol(wd / config.stol, "-" + config.stol_unit, warn)
    rows = read_sourcefile(wd / config.beam.sourcefile, warn) if config.beam.sourcefile else None
    img = None
    if config.img is not None:
        _, img = read_smv(wd / config.img, "-img")
        dc = config.detector
        if img.shape != (dc.spixels, dc.fpixels):
            raise InputError(f"-img: {config.img}: {img.shape[1]}x{img.shape[0]} pixels, detector is "
                             f"{dc.fpixels}x{dc.spixels}")
    return NonBraggInputs(table, rows, img)


def build_model(config: NonBraggConfig, inputs: NonBraggInputs):
    """(``model.Detector``, ``model.Beam``, ``amorphous.AmorphousSample``) of a nonBragg run (float64 setup)."""
    import torch

    from ..amorphous import STOL_UNITS, AmorphousSample, stol_table, unitize_c
    from ..geometry import rotate_xyz
    from ..model import SETUP_DTYPE, Beam, detector_from_config
    from ..sources import file_positions, grid_positions
    from ..validate import validate_detector

    dev = torch.device(config.engine.device)
    t = lambda x: torch.as_tensor(x, dtype=SETUP_DTYPE, device=dev)  # noqa: E731
    dc, bc = config.detector, config.beam
    det = detector_from_config(dc, dev)
    validate_detector(det)
    f, _ = unitize_c(det.fdet)
    s, _ = unitize_c(det.sdet)
    det.odet, _ = unitize_c(torch.cross(f, s, dim=-1))  # C always replaces odet by fdet x sdet
    if det.close_distance is None:  # C: close distance = ratio x distance, without the Bragg program's |.|
        ratio = float((unitize_c(t(bc.beam_vector))[0] * rotate_xyz(det.odet, *dc.rot)).sum())
        if ratio < 0:
            det.close_distance = t(ratio * dc.distance)
    if inputs.source_rows:
        pos, lams = file_positions(bc, inputs.source_rows, SETUP_DTYPE, dev, config.source_distance)
        weights = t([1.0 if math.isnan(r[3]) else r[3] for r in inputs.source_rows])
        factors = torch.ones_like(lams)
    else:
        try:
            pos, factors = grid_positions(bc, SETUP_DTYPE, dev, config.source_distance)
        except ValueError:
            raise UsageError("the divergence grid keeps no source point; check -hdivrange/-vdivrange and steps")\
                from None
        lams, weights = None, torch.ones_like(factors)
    beam = Beam(wavelength=t(bc.wavelength), source_directions=pos, source_wavelengths=lams,
                dispersion_factors=factors, source_weights=weights, beam_vector=t(bc.beam_vector),
                polar_vector=t(bc.polar_vector), kahn=t(bc.kahn_factor), nopolar=bc.nopolar, fluence=t(bc.fluence))
    xa, ya = stol_table(t(inputs.table.x), t(inputs.table.F), STOL_UNITS[config.stol_unit])
    sample = AmorphousSample(xa, ya, t(config.molecules), inputs.table.increasing)
    return det, beam, sample


# ------------------------------------------------------------------------------------------- -img analysis
def img_profile(config: NonBraggConfig, img, last: dict, sample, steps: int) -> tuple[list, int]:
    """C's -img analysis (§12.7): each rendered pixel's counts back to a structure factor with its last
    evaluation's polarization and solid angle, binned at the table's abscissae; per bin with more than 100
    pixels a line 'stol mean rmsd median mad n' (float32 sums in raster order, as C). Returns (the lines,
    the pixel count of the last bin, which C then uses as the pixel count of the mean)."""
    import numpy as np

    from ..amorphous import STOL_UNITS
    from ..config import R_E_SQR

    idx = last["pixels"].cpu().numpy()
    counts = img.reshape(-1)[idx].astype(np.float32)
    valid = ~np.isin(counts, np.array(config.ignore, dtype=np.float32))
    deviate = ((counts.astype(np.float64) - config.output.adc) / config.gain).astype(np.float32)
    sign = np.where(deviate < 0, np.float32(-1), np.float32(1))
    deviate = np.abs(deviate)
    polar = last["polar"].detach().double().cpu().numpy()
    omega = last["omega"].detach().double().cpu().numpy()
    F = (sign.astype(np.float64) * np.sqrt(deviate.astype(np.float64) / polar / omega / config.beam.fluence
                                            / R_E_SQR / config.molecules * steps)).astype(np.float32)
    xa = sample.stol.detach().cpu().numpy()
    stol = last["stol"].detach().cpu().numpy()
    b = last["index"].cpu().numpy().astype(np.int64)
    b = np.where(stol > (xa[b] + xa[b + 1]) / 2.0, b + 1, b)
    b = np.where(valid, b, 0)
    mult = STOL_UNITS[config.stol_unit]
    lines, sparse, n_last = [], 0, 0
    for k in range(2, xa.shape[0] - 2):
        vals = F[b == k]
        n = vals.size
        n_last = n
        if n <= 100:
            sparse += 1
            continue
        total = np.cumsum(vals, dtype=np.float32)[-1]
        avg = np.float32(total / np.float32(n))
        dev = np.abs(vals - avg).astype(np.float32)
        rmsd = np.float32(np.sqrt(np.float64(np.cumsum(dev * dev, dtype=np.float32)[-1] / np.float32(n))))
        srt = np.sort(vals)
        median = srt[(n + 1) // 2 - 1]
        mad = np.sort(np.abs(vals - median).astype(np.float32))[(n + 1) // 2 - 1]
        lines.append(f"{xa[k] / mult:g} {float(avg):g} {float(rmsd):g}   {float(median):g} {float(mad):g}  {n}")
    if sparse:
        warn(f"{sparse} stol bins have 100 pixels or fewer and are left out of {config.stolout}")
    return lines, n_last


# ----------------------------------------------------------------------------------------------- the run
def _report(config: NonBraggConfig, det, beam, g, out) -> None:
    """The setup lines worth comparing with the C program's stdout."""
    dc = config.detector
    out(f"pivoting detector around {'sample' if dc.pivot == 'sample' else 'direct beam spot'}")
    out(f"  {beam.sources} sources, {config.oversample} pixel oversample steps")
    x, y, z = config.sample
    out(f"  sample is {x:g} m thick x {y:g} m high x {z:g} m wide, {config.density / 1e6:g} g/cm^3 and "
        f"{config.molecular_weight:g} g/mol ({config.molecules:g} molecules)")
    out(f"  incident fluence: {config.beam.fluence:g} photons/m^2")
    out(f"  distance={float(g.distance):g} detsize={dc.detsize_f:g}x{dc.detsize_s:g}  pixel={dc.pixel_size:g} "
        f"meters ({dc.fpixels}x{dc.spixels} pixels)")
    out(f"  Xbeam={float(g.fbeam):g} Ybeam={float(g.sbeam):g}")
    out(f"  roi: {dc.roi[0]} < x < {dc.roi[1]} && {dc.roi[2]} < y < {dc.roi[3]}")


def run(argv: list[str], out=print) -> int:
    """nonBragg's command line ``argv`` (without the program name): parse -> load -> render -> write (torch is
    imported only once the command line is valid, so -h and usage errors answer at once)."""
    events = parse(argv)
    if any(k == "help" for k, _ in events) or not argv:
        sys.stdout.write(help_text())
        return 0 if argv else 2
    config = build_config(events)
    quiet = config.output.quiet
    log = (lambda msg: None) if quiet else out
    for w in config.warnings:
        warn(w)
    import torch

    from ..amorphous import render_amorphous
    from ..geometry import place_detector
    from ..io.outputs import Outputs, write_image_outputs
    from ..io.smv import format_header, nonbragg_header
    from ..stats import roi_mask

    t0 = time.perf_counter()
    inputs = read_inputs(config)
    det, beam, sample = build_model(config, inputs)
    g = place_detector(det, beam.beam_vector)
    _report(config, det, beam, g, log)
    dtype = {"float32": torch.float32, "float64": torch.float64}[config.engine.dtype]
    res = render_amorphous(det, beam, sample, config.oversample, dtype=dtype, fmap=config.fmap,
                           keep_last=inputs.img is not None, kernel=config.engine.kernel)
    out(f"solid angle subtended by detector = {res.omega_sum:g} steradian ( {100 * res.omega_sum / 4 / math.pi:g}% "
        "sphere)")
    extra, count = [], None
    if inputs.img is not None:
        lines, count = img_profile(config, inputs.img, res.last, sample, res.steps)
        text = "".join(line + "\n" for line in lines).encode("ascii")
        extra.append((config.stolout, text, None))
        out(f"wrote {config.stolout} as {len(lines)} lines of text")
    dc = config.detector
    header = format_header(nonbragg_header(g, dc.fpixels, dc.spixels, dc.pixel_size, config.beam.wavelength,
                                           dc.detsize_s, config.phi0, config.osc, dc.twotheta))
    oc = config.output
    outputs = Outputs(floatfile=oc.floatfile, intfile=oc.intfile, pgmfile=oc.pgmfile, noisefile=oc.noisefile,
                      scale=oc.scale, pgmscale=oc.pgmscale, adc=oc.adc, seed=oc.seed)
    in_roi = None if det.renders_every_pixel() else roi_mask(det.shape, dc.roi)
    write_image_outputs(res.image, outputs, header, in_roi, in_roi, dc.pixel_size, config.oversample, out,
                        extra_files=extra, rmsd_offset=1, count=count)
    if not quiet:
        out(f"rendered in {time.perf_counter() - t0:.3g} s on {config.engine.device} ({config.engine.dtype})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console script ``nonbragg-torch``: the CLI's error handling, with nonbragg as the program."""
    from .entry import run_program

    return run_program(run, list(sys.argv[1:] if argv is None else argv), "nonbragg")
