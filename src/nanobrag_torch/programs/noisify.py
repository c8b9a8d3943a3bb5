"""``python -m nanobrag_torch noisify`` (console script ``noisify-torch``): C's noisify, parse -> read -> respond
-> write.

Reads a raw float32 image in photons/pixel, applies the detector response of
:mod:`nanobrag_torch.response.detector` (noise, PSF, gain, ADC) in C's order with C's random streams, and writes
C's files: the noiseless SMV image, its PGM preview and the SMV noise image, with noisify's own header or the
one of ``-header FILE``. "§11.N" cites docs/c-behaviour.md.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..checks import check_positive
from ..cmdline.flags import Flag, flag_help_lines, parse_argv
from ..cmdline.flags import make_flag as _f
from ..errors import InputError, UsageError, warn
from ..io.images import read_float_image, write_pgm, write_with_header
from ..io.atomic import atomic_files
from ..io.smv import format_header, header_value, read_smv_header
from ..response.detector import DEFAULT_CALIB_SEED, R_E_SQR, DetectorImages, DetectorResponse, apply_detector_response

PROG = "noisify"


# C's noisify flags (§11.1). Spellings are C's, matched exactly (C matches substrings).
FLAGS: tuple[Flag, ...] = (
    _f("floatfile", "-floatfile -floatimage -bin", "str", "Files",
       "input: raw float32 image in photons/pixel (also a bare file name)"),
    _f("header", "-header", "file", "Files",
       "copy this SMV file's header into the outputs; its size and pixel set ours"),
    _f("intfile", "-intfile -intimage", "str", "Files", "noiseless SMV image (default intimage.img)"),
    _f("pgmfile", "-pgmfile -pgmimage", "str", "Files", "PGM preview of the noiseless image (default image.pgm)"),
    _f("noisefile", "-noisefile -noiseimage", "str", "Files", "SMV image with noise (default noiseimage.img)"),
    _f("nonoise", "-nonoise", "none", "Files", "no noise image (the PSF then blurs the noiseless image)"),
    _f("nopgm", "-nopgm", "none", "Files", "no PGM image"),
    _f("bits", "-bits", "int", "Files", "16 (default) or 32 bits per SMV pixel"),
    _f("scale", "-scale", "float", "Response", "factor that puts the input on the photons/pixel scale (default 1)"),
    _f("fluence", "-fluence", "float", "Response", "photons/m^2; input x fluence x r_e^2 = photons (default: 1/r_e^2)"),
    _f("gain", "-gain", "float", "Response", "pixel units per photon (default 1)"),
    _f("adc", "-adc -adcoffset", "float", "Response", "offset added to every pixel after noise (default 40)"),
    _f("readout", "-readout -readout_noise -readnoise", "float", "Response",
       "rms Gaussian read-out noise in pixel units (default 0)"),
    _f("flicker", "-flicker", "float", "Response", "fractional rms source flicker, per pixel (default 0)"),
    _f("calibration", "-calibration", "float", "Response",
       "fractional rms static calibration error per pixel (default 0.03)"),
    _f("seed", "-seed", "int", "Response", "seed of the flicker, photon and read-out noise (default: the clock)"),
    _f("calib_seed", "-calib_seed", "int", "Response", "seed of the calibration error (default -123456789, as C)"),
    _f("badpix_seed", "-badpix_seed", "int", "Response", "accepted; no effect (as in C)"),
    _f("hotpix_seed", "-hotpix_seed", "int", "Response", "accepted; no effect (as in C)"),
    _f("psf", "-psf", "name", "Response", "point-spread function: gauss or fiber (default none)"),
    _f("psf_fwhm", "-psf_fwhm -psf_width -psf_sigma -psf_size", "float", "Response",
       "PSF full width at half maximum in um (default 46; every spelling is the FWHM, as in C)"),
    _f("psf_radius", "-psf_radius -psf_rad", "int", "Response", "PSF radius in pixels (default 0: automatic)"),
    _f("distance", "-distance", "float", "Header", "sample-detector distance (mm, default 100)"),
    _f("pixel", "-pixel", "float", "Header", "pixel size (mm, default 0.1); also converts the PSF width"),
    _f("detpixels", "-detpixels", "int", "Header", "pixels along both axes (default: from the file size)"),
    _f("detpixels_x", "-detpixels_x", "int", "Header", "pixels along x (fast)"),
    _f("detpixels_y", "-detpixels_y", "int", "Header", "pixels along y (slow)"),
    _f("detsize", "-detsize", "float", "Header", "accepted; no effect (as in C: the size is pixels x pixel size)"),
    _f("detsize_x", "-detsize_x", "float", "Header", "accepted; no effect (as in C)"),
    _f("detsize_y", "-detsize_y", "float", "Header", "accepted; no effect (as in C)"),
    _f("Xbeam", "-Xbeam", "float", "Header", "beam centre X (mm, default: the detector centre)"),
    _f("Ybeam", "-Ybeam", "float", "Header", "beam centre Y (mm, default: the detector centre)"),
    _f("lambda", "-lambda", "float", "Header", "wavelength (A, default 1)"),
    _f("phi", "-phi", "float", "Header", "PHI and OSC_START (deg, default 0)"),
    _f("osc", "-osc", "float", "Header", "OSC_RANGE (deg, default 1)"),
    _f("quiet", "-quiet", "none", "Ours", "print only warnings and the photon counts"),
)
GROUPS = ("Files", "Response", "Header", "Ours")


def help_text() -> str:
    lines = [f"usage: {PROG} -floatfile floatimage.bin [options]    (or: python -m nanobrag_torch noisify ...)", "",
             "C noisify: turn an image in photons/pixel (a raw float32 file, e.g. nanoBragg's -floatfile) into",
             "detector images: source flicker, calibration error, Poisson noise, point-spread function, gain,",
             "read-out noise and ADC offset, in C's order and with C's random streams. Writes the noiseless",
             "SMV image (-intfile), its PGM preview and the SMV noise image."]
    lines += flag_help_lines(FLAGS, GROUPS)
    lines += ["", "  -h, --help                                   show this help and exit"]
    return "\n".join(lines) + "\n"


@dataclass
class NoisifyConfig:
    """A parsed noisify command line (lengths in metres, as C keeps them)."""

    floatfile: str | None = None
    header: str | None = None
    intfile: str = "intimage.img"
    pgmfile: str | None = "image.pgm"
    noisefile: str | None = "noiseimage.img"
    response: DetectorResponse = field(default_factory=DetectorResponse)
    distance: float = 0.1
    pixel: float = 1e-4
    xpixels: int = 0
    ypixels: int = 0
    xbeam: float | None = None
    ybeam: float | None = None
    wavelength: float = 1.0  # Angstrom, written as is
    phi: float = 0.0
    osc: float = 1.0
    quiet: bool = False
    warnings: list[str] = field(default_factory=list)


_RESPONSE_KEYS = ("scale", "fluence", "gain", "adc", "readout", "flicker", "calibration", "seed", "calib_seed",
                  "psf_radius", "bits")
_NON_NEGATIVE = ("readout", "flicker", "calibration", "psf_fwhm", "psf_radius")


def build_config(events: list[tuple[str, object]]) -> NoisifyConfig:
    """Replay the parsed flags in order (the last one wins, as in C) into a :class:`NoisifyConfig`."""
    cfg = NoisifyConfig()
    resp: dict = {"seed": None, "calib_seed": DEFAULT_CALIB_SEED}
    for key, value in events:
        if key in _NON_NEGATIVE and value < 0:
            raise UsageError(f"-{key}: must be >= 0, got {value:g}")
        if key in _RESPONSE_KEYS:
            resp[key] = value
        elif key in ("floatfile", "header", "intfile", "pgmfile", "noisefile", "quiet"):
            setattr(cfg, key, value)
        elif key == "nonoise":
            resp["noise"] = False
        elif key == "nopgm":
            cfg.pgmfile = None
        elif key == "psf":
            resp["psf"] = _psf_kind(str(value))
        elif key == "psf_fwhm":
            resp["psf_fwhm"] = value / 1e6
        elif key == "distance":
            cfg.distance = value / 1000.0
        elif key == "pixel":
            cfg.pixel = check_positive("-pixel", value) / 1000.0
        elif key == "detpixels":
            cfg.xpixels = cfg.ypixels = _positive_int("-detpixels", value)
        elif key in ("detpixels_x", "detpixels_y"):
            setattr(cfg, key.replace("detpixels_", "") + "pixels", _positive_int(f"-{key}", value))
        elif key in ("Xbeam", "Ybeam"):
            setattr(cfg, key.lower(), value / 1000.0)
        elif key == "lambda":
            cfg.wavelength = value
        elif key in ("phi", "osc"):
            setattr(cfg, key, value)
        elif key in ("badpix_seed", "hotpix_seed"):
            cfg.warnings.append(f"-{key}: accepted and ignored (C noisify has no bad or hot pixels)")
    if "bits" in resp and resp["bits"] not in (16, 32):
        raise UsageError(f"-bits: expected 16 or 32, got {resp['bits']}")
    if cfg.floatfile is None:
        raise UsageError("no input image: give -floatfile FILE (raw float32, photons/pixel)")
    if not resp.get("noise", True):
        cfg.noisefile = None
    cfg.response = DetectorResponse(pixel_size=cfg.pixel, **resp)
    return cfg


def _psf_kind(token: str) -> str:
    """-psf: a word containing 'gauss' or 'fiber' (C's substring test); anything else is an error (C warns and
    blurs nothing)."""
    for kind in ("gauss", "fiber"):
        if kind in token:
            return kind
    raise UsageError(f"-psf: expected gauss or fiber, got {token!r}")


def _positive_int(flag: str, value: int) -> int:
    if value <= 0:
        raise UsageError(f"{flag}: must be positive, got {value}")
    return value


# --------------------------------------------------------------------------------------------- reading
def apply_header(cfg: NoisifyConfig) -> bytes | None:
    """-header: the file's first HEADER_BYTES bytes (copied into the outputs); its SIZE1/SIZE2 set the image
    size and PIXEL_SIZE, DISTANCE, BEAM_CENTER_X/Y the geometry, over the flags, as in C (§11.7)."""
    if cfg.header is None:
        return None
    hdr, raw, cfg.xpixels, cfg.ypixels = read_smv_header(cfg.header, "-header")
    px = header_value(hdr, "PIXEL_SIZE")
    if px is not None:
        if not px > 0:
            raise InputError(f"-header: {cfg.header}: PIXEL_SIZE must be positive, got {px:g}")
        cfg.pixel = px / 1000.0
    dist = header_value(hdr, "DISTANCE")
    cfg.distance = cfg.distance if dist is None else dist / 1000.0
    bx, by = header_value(hdr, "BEAM_CENTER_X"), header_value(hdr, "BEAM_CENTER_Y")
    cfg.xbeam = cfg.xbeam if bx is None else bx / 1000.0
    cfg.ybeam = cfg.ybeam if by is None else cfg.pixel * cfg.ypixels - by / 1000.0
    return raw


def image_shape(count: int, xpixels: int, ypixels: int) -> tuple[int, int]:
    """C's image size from the number of floats in the file and the sizes given (0: not given): both missing,
    the largest x <= sqrt(count) that divides it; one missing, count divided by the other (§11.1)."""
    if not xpixels and not ypixels:
        xpixels = int(math.sqrt(count))
        while xpixels > 1 and count % xpixels:
            xpixels -= 1
        return xpixels, count // xpixels
    if not ypixels:
        return xpixels, count // xpixels
    if not xpixels:
        return count // ypixels, ypixels
    return xpixels, ypixels


def read_input(cfg: NoisifyConfig) -> np.ndarray:
    """The input float image as (ypixels, xpixels) float32; its size must be exactly the image's."""
    flat = read_float_image(cfg.floatfile, "-floatfile")
    guessed = not cfg.xpixels and not cfg.ypixels
    cfg.xpixels, cfg.ypixels = image_shape(flat.size, cfg.xpixels, cfg.ypixels)
    if cfg.xpixels * cfg.ypixels != flat.size:
        raise InputError(f"-floatfile: {cfg.floatfile}: {flat.size} floats do not make a {cfg.xpixels}x{cfg.ypixels} "
                         "image (see -detpixels_x/-detpixels_y" + (", -header)" if cfg.header else ")"))
    if guessed and cfg.xpixels != cfg.ypixels:
        cfg.warnings.append(f"guessing xy pixel dimensions: {cfg.xpixels}x{cfg.ypixels} "
                            "(give -detpixels_x/-detpixels_y to choose)")
    return flat.reshape(cfg.ypixels, cfg.xpixels)


# --------------------------------------------------------------------------------------------- writing
def smv_header(cfg: NoisifyConfig) -> bytes:
    """noisify's own SMV header (§11.7): size, pixel, distance, wavelength, beam centre (Y measured from the
    far edge), phi and oscillation."""
    g = lambda x: f"{x:g}"  # noqa: E731
    fields = [("SIZE1", str(cfg.xpixels)), ("SIZE2", str(cfg.ypixels)), ("PIXEL_SIZE", g(cfg.pixel * 1000.0)),
              ("DISTANCE", g(cfg.distance * 1000.0)), ("WAVELENGTH", g(cfg.wavelength)),
              ("BEAM_CENTER_X", g(cfg.xbeam * 1000.0)),
              ("BEAM_CENTER_Y", g((cfg.pixel * cfg.ypixels - cfg.ybeam) * 1000)),
              ("PHI", g(cfg.phi)), ("OSC_START", g(cfg.phi)), ("OSC_RANGE", g(cfg.osc)),
              ("DETECTOR_SN", "000"), ("BEAMLINE", "fake")]
    return format_header(fields, "unsigned_short" if cfg.response.bits == 16 else "long_integer")


def write_outputs(cfg: NoisifyConfig, res: DetectorImages, header: bytes) -> None:
    """C's files, all or nothing: the noiseless image, the PGM, the noise image (a name given twice holds what C
    wrote last)."""
    intimage = res.intimage.pixels
    files: dict[str, object] = {cfg.intfile: lambda p: write_with_header(p, header, [intimage])}
    if cfg.pgmfile is not None:
        pgm = res.pgm
        files[cfg.pgmfile] = lambda p: write_pgm(p, pgm, 1.0)
    if cfg.noisefile is not None and res.noiseimage is not None:
        noise = res.noiseimage.pixels
        files.pop(cfg.noisefile, None)
        files[cfg.noisefile] = lambda p: write_with_header(p, header, [noise])
    with atomic_files() as out:  # the files are written in parallel
        for name, writer in files.items():
            out.add(name, None, writer)


# --------------------------------------------------------------------------------------------- run
def _report_setup(cfg: NoisifyConfig, out) -> None:
    r = cfg.response
    out(f"importing {cfg.xpixels * cfg.ypixels} pixel intensities: {cfg.floatfile}")
    out(f"  distance={cfg.distance:g} detsize={cfg.pixel * cfg.xpixels:g}x{cfg.pixel * cfg.ypixels:g}  "
        f"pixel={cfg.pixel:g} meters ({cfg.xpixels}x{cfg.ypixels} pixels)")
    out(f"  Xbeam={cfg.xbeam:g} Ybeam={cfg.ybeam:g}")
    if r.psf is not None:
        out(f"  {'Gaussian' if r.psf == 'gauss' else 'fiber'} PSF fwhm = {float(np.float32(r.psf_fwhm)) * 1e6:g} um "
            + ("with automatic rendering radius" if r.psf_radius == 0 else f"with rendering radius: {r.psf_radius}"))
    noise = r.noise
    out(f"  seed: {-r.seed}")
    out(f"  calibration noise seed: {-r.calib_seed}")
    out(f"  calibration_noise = {r.calibration * 100 if noise else 0:g} %")
    out(f"  input file scale = {r.scale:g}")
    out(f"  readout_noise = {r.readout if noise else 0:g} ADU")
    out(f"  flicker_noise = {r.flicker * 100 if noise else 0:g} %")
    out(f"  quantum_gain = {r.gain:g} ADU/photon")
    out(f"  adc_offset = {r.adc:g} ADU")


def _report_psf(res: DetectorImages, out) -> None:
    psf = res.psf
    if psf is None:
        return
    if psf.auto_radius:
        out(f"  maximum input photon/pixel: {psf.max_photons:g}")
        if psf.lost_photons is None:
            out("WARNING: no photons, PSF skipped")
            return
        out(f"  auto-selected psf_radius = {psf.radius} pixels")
    out(f"adding back {psf.lost_photons:g} lost photons")


def run(argv: list[str], out=print) -> int:
    """noisify on ``argv`` (without the program name); returns the exit code, raises NanoBraggError on bad input."""
    events = parse_argv(argv, FLAGS, positional="floatfile")
    if not argv or any(k == "help" for k, _ in events):
        sys.stdout.write(help_text())
        return 0 if argv else 2
    cfg = build_config(events)
    header = apply_header(cfg)
    image = read_input(cfg)
    negative = int((image < 0).sum())
    if negative:
        cfg.warnings.append(f"{negative} negative pixels in {cfg.floatfile} (min {float(np.nanmin(image)):g})")
    cfg.xbeam = cfg.pixel * cfg.xpixels / 2.0 if cfg.xbeam is None else cfg.xbeam
    cfg.ybeam = cfg.pixel * cfg.ypixels / 2.0 if cfg.ybeam is None else cfg.ybeam
    seed = cfg.response.seed if cfg.response.seed is not None else int(time.time())
    cfg.response = replace(cfg.response, pixel_size=cfg.pixel, seed=seed)
    log = (lambda msg: None) if cfg.quiet else out
    _report_setup(cfg, log)
    r = cfg.response
    max_in = float(np.max(image, initial=0.0, where=image > 0))
    log(f"maximum value in input file: {max_in:g} ( {max_in * r.scale * r.fluence * R_E_SQR:g} on photon scale)")
    if not r.noise and r.applies_psf:
        log(f"  applying PSF to noiseless image width = {r.psf_fwhm_pixels:g} pixels")
    res = apply_detector_response(image, r)
    if not r.noise:
        _report_psf(res, log)
    else:
        if r.applies_psf:
            out(f"{res.photons_before_psf:.0f} photons on noise image before PSF")
            log(f"  applying PSF width = {float(np.float32(r.psf_fwhm)) * 1e6:g} um")
            _report_psf(res, log)
        out(f"{res.noiseimage.photons:.0f} photons on noise image ({res.noiseimage.overloads} overloads)")
    write_outputs(cfg, res, header if header is not None else smv_header(cfg))
    for w in cfg.warnings:  # after the files: a refusal is one line on stderr
        warn(w)
    written = [cfg.intfile] + [n for n in (cfg.pgmfile, cfg.noisefile) if n is not None]
    log(f"wrote {', '.join(written)} ({r.bits}-bit SMV)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console script ``noisify-torch``: the ``noisify`` subcommand of ``python -m nanobrag_torch``."""
    from .entry import run_program

    return run_program(run, list(sys.argv[1:] if argv is None else argv), PROG)
