"""The C program's single-dash command line: flag table, tokenizer and help text.

``parse_argv`` turns argv into an ordered list of ``(key, value)`` events; ``replay.build_config`` replays
them in order so that "last one wins" and order-dependent interactions behave as in C. Unlike C we match
flags exactly (no substring matching), and unknown flags, missing or non-numeric values are errors.
The exceptions are the spellings the upstream README and test scripts use: ``-matrix`` and ``-adcoffset``
(C's substring match reads them as ``-mat`` and ``-adc``) and the non-flags ``-hdiv``, ``-vdiv``,
``-dispstep``, ``-xdet_vector``, ``-ydet_vector``, ``-zdet_vector`` (C matches no handler and skips them and
their values; we do the same, with a warning naming the flag that does what was probably meant).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..checks import check_choice, check_flag_value, check_float, check_int
from ..errors import UsageError

EXPT_FLAGS = "expt_flags"  # the event holding an -expt file's flags (put first; replay.build_config reads it)


@dataclass(frozen=True)
class Flag:
    """One command-line flag: canonical key, accepted spellings, value kind, help group and text."""

    key: str
    names: tuple[str, ...]
    kind: str  # none | float | int | str | file | name | vec3 | cell | misset | roi | pair | pivot | abs | labels
    group: str
    help: str


def make_flag(key: str, names: str, kind: str, group: str, help_: str) -> Flag:
    """A flag-table entry: ``names`` is the space-separated spellings."""
    return Flag(key, tuple(names.split()), kind, group, help_)


_f = make_flag  # short, for the table below


FLAGS: tuple[Flag, ...] = (
    # Crystal and structure factors
    _f("mat", "-mat -matrix", "file", "Crystal", "MOSFLM A matrix (reciprocal vectors scaled by 1/lambda)"),
    _f("cell", "-cell", "cell", "Crystal", "unit cell a b c alpha beta gamma (A, deg); missing b,c = a, angles = 90"),
    _f("misset", "-misset", "misset", "Crystal", "fixed misset rotations rx ry rz (deg), or 'random'"),
    _f("misset_seed", "-misset_seed", "int", "Crystal", "seed for -misset random (default: time)"),
    _f("N", "-N", "int", "Crystal", "unit cells along a, b and c"),
    _f("Na", "-Na", "int", "Crystal", "unit cells along a"),
    _f("Nb", "-Nb", "int", "Crystal", "unit cells along b"),
    _f("Nc", "-Nc", "int", "Crystal", "unit cells along c"),
    _f("xtal_size", "-xtalsize -xtal_size -samplesize -sample_size", "float", "Crystal",
       "crystal size along all axes (mm); overrides -N"),
    _f("xtal_x", "-xtal_thick -xtal_x -sample_thick -sample_x", "float", "Crystal", "crystal size along a (mm)"),
    _f("xtal_y", "-xtal_width -xtal_y -sample_width -sample_y -width", "float", "Crystal",
       "crystal size along b (mm, clipped to -beamsize)"),
    _f("xtal_z", "-xtal_height -xtal_heigh -xtal_z -sample_height -sample_heigh -sample_z -height -heigh", "float",
       "Crystal", "crystal size along c (mm, clipped to -beamsize)"),
    _f("density", "-density -sample_den -MW -molec", "float", "Crystal", "accepted for compatibility; no effect"),
    _f("shape_square", "-square_xtal", "none", "Crystal", "parallelepiped crystal (default)"),
    _f("shape_round", "-round_xtal", "none", "Crystal", "ellipsoidal crystal (sinc3 spots)"),
    _f("shape_gauss", "-gauss_xtal", "none", "Crystal", "Gaussian spot profile"),
    _f("shape_tophat", "-tophat_spots -binary_spots", "none", "Crystal", "top-hat spot profile"),
    _f("fudge", "-fudge", "float", "Crystal", "spot-width fudge factor for round/gauss/tophat (default 1)"),
    _f("mosaic", "-mosaic -mosaicity -mosaic_spread -mosaic_spr", "float", "Crystal", "mosaic spread (deg)"),
    _f("mosaic_domains", "-mosaic_domains -mosaic_dom", "int", "Crystal", "number of mosaic domains (default 10)"),
    _f("mosaic_seed", "-mosaic_seed", "int", "Crystal", "seed for mosaic domain orientations (default 12345678)"),
    _f("hkl", "-hkl", "file", "Crystal", "structure factors: text file of h k l F"),
    _f("default_F", "-default_F", "float", "Crystal", "F for reflections not in the table (default 0)"),
    _f("dump", "-dump", "str", "Crystal", "structure-factor cache file (default Fdump.bin)"),
    _f("interpolate", "-interpolate", "none", "Crystal", "force tricubic interpolation of F"),
    _f("nointerpolate", "-nointerpolate", "none", "Crystal", "force nearest-neighbour F"),
    # Structure factors from a structure (ours, issue 23; see README "Structure factors from a model or MTZ")
    _f("pdb", "-pdb", "file", "Structure",
       "atomic model (PDB or mmCIF): |F| in P1 (both Friedel mates) to the detector's resolution or -dmin; "
       "cell and space group from the file"),
    _f("mtz", "-mtz", "file", "Structure", "merged MTZ data, expanded to P1 (cell and space group from the file)"),
    _f("mtz_labels", "-mtz_labels", "labels", "Structure",
       "MTZ columns: F,SIGF or I,SIGI (F = sqrt I) or F(+),F(-) (default: the first F, else I column)"),
    _f("anomalous", "-anomalous", "none", "Structure",
       "-pdb: f' and f'' at the beam's wavelength (Cromer-Liberman), so F(h) != F(-h)"),
    _f("bfactor", "-bfactor", "float", "Structure", "-pdb: set every atom's B factor (A^2)"),
    _f("bulk_solvent", "-bulk_solvent", "none", "Structure", "-pdb: add a flat bulk solvent (gemmi's solvent mask)"),
    _f("k_sol", "-k_sol", "float", "Structure", "bulk-solvent level (e/A^3, default 0.35); implies -bulk_solvent"),
    _f("B_sol", "-B_sol", "float", "Structure", "bulk-solvent B factor (A^2, default 46); implies -bulk_solvent"),
    _f("hklout", "-hklout", "str", "Structure",
       "write the P1 table the run used as C's HKL text (h k l F), for the C program's -hkl"),
    # Beam and sources
    _f("lambda", "-lambda -wave -wavelength", "float", "Beam", "wavelength (A, default 1)"),
    _f("energy", "-energy", "float", "Beam", "photon energy (eV); sets the wavelength"),
    _f("fluence", "-fluence", "float", "Beam", "fluence (photons/m^2, default 1/r_e^2)"),
    _f("flux", "-flux", "float", "Beam", "flux (photons/s); fluence = flux*exposure/beamsize^2"),
    _f("exposure", "-exposure", "float", "Beam", "exposure time (s, default 1)"),
    _f("beamsize", "-beamsize", "float", "Beam", "beam size (mm, default 0.1); clips the crystal size"),
    _f("dispersion", "-dispersion", "float", "Beam", "spectral width (%)"),
    _f("dispsteps", "-dispsteps", "int", "Beam", "number of wavelengths"),
    _f("divergence", "-divergence", "float", "Beam", "horizontal and vertical divergence range (mrad)"),
    _f("hdivrange", "-hdivrange", "float", "Beam", "horizontal divergence range (mrad)"),
    _f("vdivrange", "-vdivrange", "float", "Beam", "vertical divergence range (mrad)"),
    _f("hdivstep", "-hdivstep", "float", "Beam", "horizontal divergence step (mrad)"),
    _f("vdivstep", "-vdivstep", "float", "Beam", "vertical divergence step (mrad)"),
    _f("hdivsteps", "-hdivsteps", "int", "Beam", "horizontal divergence points"),
    _f("vdivsteps", "-vdivsteps", "int", "Beam", "vertical divergence points"),
    _f("divsteps", "-divsteps", "int", "Beam", "divergence points on both axes"),
    _f("round_div", "-round_div", "none", "Beam", "trim the divergence grid to an ellipse (default)"),
    _f("square_div", "-square_div", "none", "Beam", "keep the whole divergence grid"),
    _f("sourcefile", "-sourcefile", "file", "Beam", "source list: X Y Z weight lambda(m) per line"),
    _f("polar", "-polar", "float", "Beam", "Kahn polarization factor (default 0 = unpolarized)"),
    _f("nopolar", "-nopolar", "none", "Beam", "no polarization correction"),
    _f("beam_vector", "-beam_vector", "vec3", "Beam", "beam direction (CUSTOM convention)"),
    _f("polar_vector", "-polar_vector", "vec3", "Beam", "E-vector axis (CUSTOM convention)"),
    _f("coherent", "-coherent", "none", "Beam", "accepted for compatibility; no effect"),
    _f("water", "-water", "float", "Beam", "water background thickness (um)"),
    # Detector
    _f("distance", "-distance", "float", "Detector", "sample-detector distance along the beam (mm, default 100)"),
    _f("close_distance", "-close_distance", "float", "Detector", "perpendicular sample-detector distance (mm)"),
    _f("detsize", "-detsize", "float", "Detector", "detector size (mm, default 102.4)"),
    _f("detsize_f", "-detsize_f -detsize_fast -detsize_x", "float", "Detector", "detector size along fast (mm)"),
    _f("detsize_s", "-detsize_s -detsize_slow -detsize_y", "float", "Detector", "detector size along slow (mm)"),
    _f("detpixels", "-detpixels", "int", "Detector", "pixels along both axes"),
    _f("detpixels_f", "-detpixels_f -detpixels_x", "int", "Detector", "pixels along fast"),
    _f("detpixels_s", "-detpixels_s -detpixels_y", "int", "Detector", "pixels along slow"),
    _f("pixel", "-pixel", "float", "Detector", "pixel size (mm, default 0.1)"),
    _f("Xbeam", "-Xbeam", "float", "Detector", "beam centre X (mm; meaning depends on the convention)"),
    _f("Ybeam", "-Ybeam", "float", "Detector", "beam centre Y (mm)"),
    _f("Xclose", "-Xclose", "float", "Detector", "near point X (mm)"),
    _f("Yclose", "-Yclose", "float", "Detector", "near point Y (mm)"),
    _f("ORGX", "-ORGX", "float", "Detector", "XDS origin X (pixels)"),
    _f("ORGY", "-ORGY", "float", "Detector", "XDS origin Y (pixels)"),
    _f("pivot", "-pivot", "pivot", "Detector", "detector pivot: beam or sample (CUSTOM only)"),
    _f("conv_mosflm", "-mosflm", "none", "Detector", "MOSFLM convention (default)"),
    _f("conv_denzo", "-denzo", "none", "Detector", "DENZO convention"),
    _f("conv_adxv", "-adxv", "none", "Detector", "ADXV convention"),
    _f("conv_xds", "-xds", "none", "Detector", "XDS convention"),
    _f("conv_dials", "-dials", "none", "Detector", "DIALS convention"),
    _f("fdet_vector", "-fdet_vector", "vec3", "Detector", "fast axis (CUSTOM)"),
    _f("sdet_vector", "-sdet_vector", "vec3", "Detector", "slow axis (CUSTOM)"),
    _f("odet_vector", "-odet_vector", "vec3", "Detector", "detector normal (CUSTOM)"),
    _f("spindle_axis", "-spindle_axis", "vec3", "Detector", "rotation axis (CUSTOM)"),
    _f("twotheta_axis", "-twotheta_axis", "vec3", "Detector", "two-theta axis (CUSTOM; not normalised, as in C)"),
    _f("pix0_vector", "-pix0_vector", "vec3", "Detector", "selects CUSTOM; the value is ignored, as in C"),
    _f("twotheta", "-twotheta", "float", "Detector", "detector two-theta swing (deg)"),
    _f("detector_rotx", "-detector_rotx", "float", "Detector", "detector rotation about lab x (deg)"),
    _f("detector_roty", "-detector_roty", "float", "Detector", "detector rotation about lab y (deg)"),
    _f("detector_rotz", "-detector_rotz", "float", "Detector", "detector rotation about lab z (deg)"),
    _f("curved_det", "-curved_det", "none", "Detector", "spherical detector"),
    _f("point_pixel", "-point_pixel", "none", "Detector", "solid angle 1/R^2 (no pixel area or obliquity)"),
    _f("detector_abs", "-detector_abs -detector_absorb", "abs", "Detector",
       "sensor attenuation length (um), or inf/0 for none"),
    _f("detector_thick", "-detector_thick", "float", "Detector", "sensor thickness (um)"),
    _f("thicksteps", "-detector_thicksteps -thicksteps", "int", "Detector", "sensor layers"),
    _f("oversample", "-oversample", "int", "Detector", "sub-pixels per side (default: automatic)"),
    _f("oversample_thick", "-oversample_thick", "none", "Detector", "apply capture fraction per term (C quirk)"),
    _f("oversample_polar", "-oversample_polar", "none", "Detector", "apply polarization per term (C quirk)"),
    _f("oversample_omega", "-oversample_omega", "none", "Detector", "apply solid angle per term (C quirk)"),
    _f("roi", "-roi", "roi", "Detector", "xmin xmax ymin ymax: inclusive pixel window"),
    _f("mask", "-mask", "file", "Detector", "SMV mask: zero pixels are skipped; header sets geometry"),
    _f("expt", "-expt", "file", "Detector", "DIALS experiment list: beam, P panels (+ hierarchy), goniometer, scan, "
       "crystal; flags given too override it. P > 1: images hold the panels one after another, panel 0 first. "
       "An NXmx file (.h5) works too: its NXdetector_modules as the panels"),
    _f("img", "-img", "file", "Detector", "SMV image whose header sets geometry"),
    _f("dmin", "-dmin", "float", "Detector", "resolution cut-off (A)"),
    # Rotation
    _f("phi", "-phi", "float", "Rotation", "starting spindle angle (deg)"),
    _f("osc", "-osc", "float", "Rotation", "oscillation range (deg)"),
    _f("phistep", "-phistep", "float", "Rotation", "spindle step (deg)"),
    _f("phisteps", "-phisteps", "int", "Rotation", "number of spindle steps"),
    # Output
    _f("floatfile", "-floatfile -floatimage", "str", "Output", "raw float32 image (default floatimage.bin); "
       "P panels: P images of S x F one after another, panel 0 first (also SMV/PGM/noise)"),
    _f("intfile", "-intfile -intimage", "str", "Output", "SMV integer image (default intimage.img)"),
    _f("pgmfile", "-pgmfile -pgmimage", "str", "Output", "PGM preview (default image.pgm)"),
    _f("noisefile", "-noisefile -noiseimage", "str", "Output", "SMV Poisson-noise image (default noiseimage.img)"),
    _f("nonoise", "-nonoise", "none", "Output", "do not write a noise image"),
    _f("nopgm", "-nopgm", "none", "Output", "do not write a PGM image"),
    _f("scale", "-scale", "float", "Output", "int-image scale (default 55000/max)"),
    _f("pgmscale", "-pgmscale", "float", "Output", "PGM scale (default 250/(5 rmsd))"),
    _f("adc", "-adc -adcoffset", "float", "Output", "offset added to int and noise images (default 40)"),
    _f("seed", "-seed", "int", "Output", "noise seed (default: time)"),
    _f("adc_header", "-adc_header", "none", "Output",
       "also write ADC_OFFSET=<adc> into the SMV headers: the pedestal DIALS/dxtbx subtract (not a key C writes)"),
    _f("exptout", "-exptout", "str", "Output",
       "write the simulation's truth as a DIALS experiment list (JSON: beam, detector, goniometer, scan, crystal; "
       "P panels: every panel and the hierarchy)"),
    _f("stol", "-stol -4stol -Q", "file", "Output", "accepted for compatibility; no effect"),
    _f("stolout", "-stolout", "str", "Output", "accepted for compatibility; never written"),
    _f("printout", "-printout", "none", "Output", "accepted for compatibility; no effect"),
    _f("printout_pixel", "-printout_pixel", "pair", "Output", "accepted for compatibility; no effect"),
    _f("noprogress", "-noprogress", "none", "Output", "no progress bar"),
    _f("progress", "-progress", "none", "Output", "show a progress bar (default for long renders)"),
    # Datasets (ours, issue 13): a rotation series or stills in one run; see README "Simulating a dataset"
    _f("frames", "-frames", "int", "Dataset",
       "rotation series of N frames: frame i is the run with -phi (phi + i*osc), noise -seed (seed + i)"),
    _f("stills", "-stills", "int", "Dataset",
       "N stills: frame i as -misset random -misset_seed (misset_seed + i), or the first N of -stills_file"),
    _f("stills_file", "-stills_file", "file", "Dataset",
       "stills orientations, one per line: rx ry rz (deg, as -misset) or a 3x3 rotation matrix by rows"),
    _f("nexus", "-nexus", "str", "Dataset", "write the frames as one NeXus/NXmx file (HDF5, bitshuffle/LZ4; P panels: "
       "one NXdetector_module each, the frame (P S) x F)"),
    _f("cbf", "-cbf", "str", "Dataset",
       "write one miniCBF per frame; #### in the name is the frame number (from 1), e.g. frame_#####.cbf "
       "(one panel only: refused for P > 1 panels, use -nexus)"),
    _f("resume", "-resume", "none", "Dataset", "keep the frames an interrupted run completed (checked); do the rest"),
    _f("workers", "-workers", "int", "Dataset",
       "embedded dask cluster of N worker processes (0: render in this process; default: one per 2 cores)"),
    _f("scheduler", "-scheduler", "name", "Dataset", "render on an existing dask cluster: tcp://HOST:PORT"),
    # Ours
    _f("dtype", "-dtype", "name", "Engine", "float64 (default) or float32"),
    _f("device", "-device", "name", "Engine", "cpu (default), cuda or cuda:N"),
    _f("max_memory_gb", "-max_memory_gb", "float", "Engine",
       "memory budget of a render: image buffers + one chunk (GiB, default 2)"),
    _f("kernel", "-kernel", "name", "Engine", "auto (default: fused numba on the CPU), torch or numba"),
    _f("quiet", "-quiet", "none", "Engine", "print only warnings and the end-of-run statistics"),
)

# Spellings used by the upstream README and the C source's own usage examples that are not flags of the C
# program: C's substring matching finds no handler for them, so it skips the token and its values and renders
# as if they were absent. We accept them the same way (one warning each, naming the flag meant) so that the
# upstream examples run as written: spelling -> (number of values, the flag that does it).
NOT_C_FLAGS: dict[str, tuple[int, str]] = {
    "-hdiv": (1, "-hdivrange"), "-vdiv": (1, "-vdivrange"), "-dispstep": (1, "-dispsteps"),
    "-xdet_vector": (3, "-fdet_vector"), "-ydet_vector": (3, "-sdet_vector"), "-zdet_vector": (3, "-odet_vector"),
}

_BY_NAME = {name: flag for flag in FLAGS for name in flag.names}
GROUP_ORDER = ("Crystal", "Structure", "Beam", "Detector", "Rotation", "Output", "Dataset", "Engine")


def _is_flag_like(token: str) -> bool:
    """A token that starts a new flag rather than being a (possibly negative) number."""
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
        return False
    except ValueError:
        return True


class _Cursor:
    """argv with a read position: the current flag and the values after it."""

    def __init__(self, argv: list[str]):
        self.argv, self.i = argv, 0

    def next_is_value(self) -> bool:
        return self.i + 1 < len(self.argv) and not _is_flag_like(self.argv[self.i + 1])

    def take(self, count: int, flag: str) -> list[str]:
        """The ``count`` values after the flag; one line naming the flag if they are missing."""
        vals = self.argv[self.i + 1 : self.i + 1 + count]
        if len(vals) < count or any(_is_flag_like(v) for v in vals):
            raise UsageError(f"{flag}: expects {count} value{'s' if count > 1 else ''}")
        self.i += count
        return vals


def _cell_values(cur: _Cursor, flag: str):
    """-cell takes 1 to 6 numbers (a [b c alpha beta gamma]), as many as follow."""
    vals = []
    while len(vals) < 6 and cur.next_is_value():
        cur.i += 1
        vals.append(check_float(flag, cur.argv[cur.i]))
    if not vals:
        raise UsageError(f"{flag}: expects 1 to 6 values (a [b c alpha beta gamma])")
    return tuple(vals)


def _misset_values(cur: _Cursor, flag: str):
    """-misset rx ry rz, or any word containing 'rand' (C's substring test) for a random orientation."""
    if cur.i + 1 < len(cur.argv) and "rand" in cur.argv[cur.i + 1]:
        cur.i += 1
        return "random"
    return tuple(check_float(flag, v) for v in cur.take(3, flag))


def _pivot_value(cur: _Cursor, flag: str):
    """-pivot: a word containing 'sample' or 'beam' (C's substring test)."""
    tok = cur.take(1, flag)[0]
    value = "sample" if "sample" in tok else "beam" if "beam" in tok else None
    if value is None:
        raise UsageError(f"{flag}: expected 'beam' or 'sample', got {tok!r}")
    return value


def _abs_value(cur: _Cursor, flag: str):
    """-detector_abs: an attenuation length in um, or inf/infinity."""
    tok = cur.take(1, flag)[0]
    return "inf" if tok.lower() in ("inf", "infinity") else check_float(flag, tok)


# Value parsers per flag kind: (cursor, flag) -> value.
_VALUES = {
    "none": lambda cur, f: True,
    "float": lambda cur, f: check_float(f, cur.take(1, f)[0]),
    "int": lambda cur, f: check_int(f, cur.take(1, f)[0]),
    "str": lambda cur, f: cur.take(1, f)[0],
    "labels": lambda cur, f: cur.take(1, f)[0],
    "file": lambda cur, f: cur.take(1, f)[0],
    "name": lambda cur, f: cur.take(1, f)[0],
    "vec3": lambda cur, f: tuple(check_float(f, v) for v in cur.take(3, f)),
    "pair": lambda cur, f: tuple(check_int(f, v) for v in cur.take(2, f)),
    "roi": lambda cur, f: tuple(check_int(f, v) for v in cur.take(4, f)),
    "cell": _cell_values,
    "misset": _misset_values,
    "pivot": _pivot_value,
    "abs": _abs_value,
}


def unknown_flag(token: str, known) -> UsageError:
    """The one-line error for a flag no table has, with the closest known flags as a suggestion (difflib)."""
    import difflib

    close = difflib.get_close_matches(token, known, n=2, cutoff=0.75)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return UsageError(f"unknown flag {token} ({hint}see --help)")


def parse_argv(argv: list[str], flags: tuple[Flag, ...] | None = None,
               positional: str | None = None, not_c_flags: dict | None = None) -> list[tuple[str, object]]:
    """Tokenize argv into ordered (key, value) events; raise UsageError with one line on bad input.

    ``flags``: another program's flag table (default: nanoBragg's ``FLAGS`` and ``NOT_C_FLAGS``);
    ``positional``: the event key of a bare argument (e.g. an input file), which is otherwise an error;
    ``not_c_flags``: that program's accepted non-flags (like ``NOT_C_FLAGS``; default none)."""
    by_name = _BY_NAME if flags is None else {name: flag for flag in flags for name in flag.names}
    not_c_flags = NOT_C_FLAGS if flags is None else (not_c_flags or {})
    events: list[tuple[str, object]] = []
    cur = _Cursor(argv)
    while cur.i < len(argv):
        token = argv[cur.i]
        if token in ("-h", "--help", "-help"):
            events.append(("help", True))
        elif positional is not None and not _is_flag_like(token) and token not in by_name:
            events.append((positional, token))
        elif token in not_c_flags:
            count, meant = not_c_flags[token]
            cur.take(count, token)
            events.append(("not_a_c_flag", (token, meant)))
        else:
            flag = by_name.get(token)
            if flag is None:
                if not token.startswith("-"):
                    raise UsageError(f"unexpected argument {token!r} (values must follow their flag)")
                raise unknown_flag(token, list(by_name) + list(not_c_flags))
            value = _VALUES[flag.kind](cur, token)
            check_flag_value(flag.key, token, value)  # the value's physical domain
            if flag.key == "dtype":
                check_choice(token, str(value), ("float32", "float64"))
            if flag.key == "kernel":
                check_choice(token, str(value), ("auto", "torch", "numba"))
            events.append((flag.key, value))
        cur.i += 1
    expt = dict(events).get("expt")
    if expt is not None:  # a DIALS experiment list as C flags, replayed before the command line's (replay)
        from ..io.expt import c_flags, read_expt

        events = [(EXPT_FLAGS, parse_argv(c_flags(read_expt(expt))))] + events
    return events


def help_text(prog: str = "nanobrag-torch") -> str:
    """Our help text, grouped by topic."""
    lines = [
        f"usage: {prog} -mat A.mat|-cell a b c al be ga  -hkl P1.hkl|-default_F F  [options]",
        f"       {prog} -pdb model.pdb|-mtz data.mtz  [-mat A.mat|-cell ...]  [options]",
        "",
        "PyTorch port of the nanoBragg diffraction simulator: the C program's single-dash flags,",
        "the same output files. Units: mm for lengths, A for wavelength/cell/dmin, deg for angles.",
    ]
    lines += flag_help_lines(FLAGS, GROUP_ORDER)
    lines += ["", "Not flags of the C program (it skips them and their values; accepted and ignored, with a warning):",
              "  " + ", ".join(f"{name} ({meant})" for name, (_, meant) in NOT_C_FLAGS.items())]
    lines += ["", "  -h, --help                                   show this help and exit"]
    return "\n".join(lines) + "\n"


def flag_help_lines(flags: tuple[Flag, ...], groups: tuple[str, ...]) -> list[str]:
    """Help lines for a flag table, grouped by ``groups`` in order: a blank line and a title per group, then one
    line per flag (its first three spellings, its value and its help)."""
    lines: list[str] = []
    for group in groups:
        lines += ["", f"{group}:"]
        for flag in flags:
            if flag.group != group:
                continue
            arg = {
                "none": "", "float": " X", "int": " N", "str": " FILE", "file": " FILE", "name": " NAME",
                "vec3": " X Y Z", "pair": " F S", "roi": " XMIN XMAX YMIN YMAX", "cell": " a b c al be ga",
                "misset": " RX RY RZ|random", "pivot": " beam|sample", "abs": " UM|inf", "labels": " F,SIGF",
            }[flag.kind]
            names = ", ".join(flag.names[:3])
            lines.append(f"  {names + arg:<44s} {flag.help}")
    return lines
