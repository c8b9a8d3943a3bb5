"""The command line's events replayed as C's handlers would (last one wins), then C's rules -> a ``SimConfig``.

``flags.parse_argv`` turns argv into ordered ``(key, value)`` events; ``build_config`` replays them onto the
C program's variables (``initial_state``, ``apply_event``), after the -img/-mask header pre-pass
(``apply_smv_header``), and assembles the config section by section with the automatic rules of ``c_rules``.
nonBragg's command line replays its own tables with the same engine (``state_from_events``, ``apply_table_event``).
"""
from __future__ import annotations

import math
import os
from types import SimpleNamespace

from ..config import (BeamConfig, CrystalConfig, DatasetConfig, DetectorConfig, EngineConfig, OutputConfig,
                      SamplingConfig, SimConfig, StructureConfig)
from ..constants import DEFAULT_FLUENCE, RTD
from ..errors import UsageError
from ..io.expt import read_expt
from ..io.smv import header_value
from .c_rules import (angstrom_to_m, auto_steps, beam_centre, cell_rule, deg_to_rad, detector_attenuation,
                      detector_pixels, fluence_from_flux, mm_to_m, mosaic_rule, percent_to_fraction, phi_steps,
                      roi_window, thick_steps, times, um_to_m)
from .flags import EXPT_FLAGS


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
    st.fpixels, st.spixels = width, height
    px = header_value(header, "PIXEL_SIZE")
    if px is not None:
        st.pixel = px / 1000.0
    st.detsize_f = st.pixel * width
    st.detsize_s = st.pixel * height
    for key, attr, conv in (
        ("DISTANCE", "distance", mm_to_m), ("CLOSE_DISTANCE", "close_distance", mm_to_m),
        ("WAVELENGTH", "wavelength", angstrom_to_m), ("BEAM_CENTER_X", "Xbeam", mm_to_m),
        ("ORGX", "ORGX", float), ("ORGY", "ORGY", float), ("PHI", "phi0", deg_to_rad),
        ("OSC_RANGE", "osc", deg_to_rad),
    ):
        v = header_value(header, key)
        if v is not None:
            setattr(st, attr, conv(v))
    v = header_value(header, "BEAM_CENTER_Y")
    if v is not None:
        st.Ybeam = (st.detsize_s - v / 1000.0) if is_mask else v / 1000.0


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
    "xtal_size": (("sample_x", "sample_y", "sample_z"), mm_to_m, {}),
    "xtal_x": (("sample_x",), mm_to_m, {}), "xtal_y": (("sample_y",), mm_to_m, {}),
    "xtal_z": (("sample_z",), mm_to_m, {}),
    "mosaic": (("mosaic_spread",), deg_to_rad, {}),
    "lambda": (("wavelength",), angstrom_to_m, {}),
    "beamsize": (("beamsize",), mm_to_m, {}),
    "dispersion": (("dispersion",), percent_to_fraction, {}),
    "divergence": (("hdivrange", "vdivrange"), mm_to_m, {}),
    "hdivrange": (("hdivrange",), mm_to_m, {}), "vdivrange": (("vdivrange",), mm_to_m, {}),
    "hdivstep": (("hdivstep",), mm_to_m, {}), "vdivstep": (("vdivstep",), mm_to_m, {}),
    "divsteps": (("hdivsteps", "vdivsteps"), None, {}),
    "polar": (("kahn",), None, {"nopolar": False}),
    "water": (("water",), um_to_m, {}),
    "distance": (("distance",), mm_to_m, {"pivot": "beam"}),
    "close_distance": (("close_distance",), mm_to_m, {"pivot": "sample"}),
    "detsize": (("detsize_f", "detsize_s"), mm_to_m, {}),
    "detsize_f": (("detsize_f",), mm_to_m, {}), "detsize_s": (("detsize_s",), mm_to_m, {}),
    "detpixels": (("fpixels", "spixels"), None, {}),
    "detpixels_f": (("fpixels",), None, {}), "detpixels_s": (("spixels",), None, {}),
    "pixel": (("pixel",), mm_to_m, {}),
    "Xbeam": (("Xbeam",), mm_to_m, {"pivot": "beam"}), "Ybeam": (("Ybeam",), mm_to_m, {"pivot": "beam"}),
    "Xclose": (("Xclose",), mm_to_m, {"pivot": "sample"}), "Yclose": (("Yclose",), mm_to_m, {"pivot": "sample"}),
    "ORGX": (("ORGX",), None, {"pivot": "sample"}), "ORGY": (("ORGY",), None, {"pivot": "sample"}),
    "pivot": (("pivot",), None, {}),
    "twotheta": (("twotheta",), deg_to_rad, {"pivot": "sample"}),
    "detector_rotx": (("rotx",), deg_to_rad, {}), "detector_roty": (("roty",), deg_to_rad, {}),
    "detector_rotz": (("rotz",), deg_to_rad, {}),
    "detector_thick": (("thick",), times(1e-6), {}),
    "thicksteps": (("thicksteps",), None, {}),
    "roi": (("roi",), None, {}),
    "dmin": (("dmin",), times(1e-10), {}),
    "phi": (("phi0",), deg_to_rad, {}),
    "osc": (("osc",), deg_to_rad, {}),
    "phistep": (("phistep",), deg_to_rad, {}),
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


def beam_config(st: SimpleNamespace, vec: dict) -> BeamConfig:
    """The beam: wavelength, fluence, divergence and dispersion grids after C's auto rules."""
    hsteps, hrange, hstep = auto_steps(st.hdivsteps, st.hdivrange, st.hdivstep, 1.0)
    vsteps, vrange, vstep = auto_steps(st.vdivsteps, st.vdivrange, st.vdivstep, 1.0)
    dsteps, disp, dstep = auto_steps(st.dispsteps, st.dispersion, -1.0, 1.0)
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
    thicksteps, thick, thickstep = thick_steps(st.thicksteps, st.thick)
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
    phisteps, osc, phistep = phi_steps(st.phisteps, st.osc, st.phistep)
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
    osc_deg = osc if osc is not None and deg_to_rad(osc) == crystal.osc else crystal.osc * RTD
    return DatasetConfig(frames=st.frames, stills=st.stills, stills_file=st.stills_file, nexus=st.nexus,
                         cbf=st.cbf, resume=st.resume, workers=st.workers, scheduler=st.scheduler,
                         phi_deg=phi_deg, osc_deg=osc_deg, exposure=st.exposure)


def _time_seed() -> int:
    """C's default for time-based seeds (it stores -time())."""
    import time

    return int(time.time())
