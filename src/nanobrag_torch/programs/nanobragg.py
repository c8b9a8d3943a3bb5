"""Command-line entry point: parse -> config -> load_model -> render -> write the C program's files."""
from __future__ import annotations

import math
import sys
import time


from .. import __version__
from ..cmdline.replay import apply_smv_header, build_config
from ..errors import UsageError, warn
from .entry import run_program
from ..cmdline.flags import help_text, parse_argv
from ..io.smv import read_smv


def _header_hook(st, events):
    """C's pre-pass: -mask then -img headers give starting values that flags later override."""
    for key in ("mask", "img"):
        for k, v in events:
            if k == key:
                header, img = read_smv(v, f"-{key}")
                apply_smv_header(st, header, img.shape[1], img.shape[0], is_mask=key == "mask")


def _report_setup(model, config, out) -> None:
    """The setup lines worth comparing with the C program's stdout."""
    from ..crystal import cell_parameters, crystal_geometry
    from ..geometry import place_detector

    dc = config.detector
    info = model.info
    cr = crystal_geometry(model)
    real, recip = cell_parameters(cr)
    out(f"{dc.convention.lower()} convention selected.")
    out(f"pivoting detector around {'sample' if dc.pivot == 'sample' else 'direct beam spot'}")
    if info.misset_angles_deg is not None:
        out("random orientation misset angles: %f %f %f deg" % info.misset_angles_deg)
    out("Unit Cell: " + " ".join(f"{x:g}" for x in real))
    out("Recp Cell: " + " ".join(f"{x:g}" for x in recip))
    out(f"volume = {float(cr.volume):g} A^3")
    out(f"  {model.beam.sources} sources, {model.crystal.mosaic_domains} mosaic domains, "
        f"{model.crystal.phisteps} phi steps, {info.oversample}x{info.oversample} pixel oversample steps, "
        f"{dc.thicksteps} detector layers")
    interp = model.structure_factors.interpolate
    out(f"  {'parallelpiped' if config.crystal.shape == 'square' else config.crystal.shape} xtal: "
        f"{info.N[0]}x{info.N[1]}x{info.N[2]} cells; "
        f"{'tricubic interpolation' if interp else 'nearest-neighbour'} structure factors")
    if hasattr(model.detector, "panels"):  # -expt: P panels placed by the file
        det = model.detector
        out(f"  {det.panels} panels of {det.fpixels}x{det.spixels} pixels of {float(det.pixel_size):g} m from "
            f"{config.expt} ({len(det.groups)} groups), written one after another")
        return
    g = place_detector(model.detector, model.beam.beam_vector)
    out(f"  distance={float(g.distance):g} detsize={dc.detsize_f:g}x{dc.detsize_s:g}  pixel={dc.pixel_size:g} "
        f"meters ({dc.fpixels}x{dc.spixels} pixels)")
    out(f"  Xbeam={dc.xbeam:g} Ybeam={dc.ybeam:g}")
    out(f"  Fbeam={float(g.fbeam):g} Sbeam={float(g.sbeam):g}")
    out(f"  Fclose={float(g.fclose):g} Sclose={float(g.sclose):g}")
    out(f"  roi: {dc.roi[0]} < x < {dc.roi[1]} && {dc.roi[2]} < y < {dc.roi[3]}")


def run(argv: list[str], out=print) -> int:
    """Run the CLI on ``argv`` (without the program name): parse -> load -> render -> write; returns the
    exit code."""
    events = parse_argv(argv)
    if any(k == "help" for k, _ in events) or not argv:
        sys.stdout.write(help_text())
        return 0 if argv else 2
    config = build_config(events, header_hook=_header_hook)
    quiet = config.output.quiet
    log = (lambda msg: None) if quiet else out
    for w in config.warnings:
        warn(w)
    if config.dataset.active:  # -frames / -stills: a dataset (programs.dataset), not one image
        from .dataset import run_series

        return run_series(events, config, out)

    from ..io.outputs import check_outputs, outputs_from_config, write_c_outputs
    from ..load import load_model
    from ..renderer import render_details

    outputs = outputs_from_config(config)
    check_outputs(outputs)  # a missing folder is said now, not after the render
    t0 = time.perf_counter()
    model = load_model(config, log=log)
    if not quiet:
        _report_setup(model, config, out)
    res = render_details(model, kernel=config.engine.kernel, max_memory_gb=config.engine.max_memory_gb,
                         progress=config.output.progress)
    if model.structure_factors.interpolate and bool(res.interpolation_disabled):
        warn("out of range for three point interpolation: nearest-neighbour F used from there on "
             "(as the C program does)")
    steps = model.steps
    out(f"solid angle subtended by detector = {res.omega_sum / steps:g} steradian "
        f"( {100 * res.omega_sum / steps / 4 / math.pi:g}% sphere)")
    write_c_outputs(res.image, model, outputs, out)
    if not quiet:
        out(f"rendered in {time.perf_counter() - t0:.3g} s on {config.engine.device} ({config.engine.dtype})")
    return 0


# The other programs of the C suite: `python -m nanobrag_torch NAME <that program's flags>`. Each entry is
# "module:function" inside this package, imported only when used; the function takes argv (without NAME)
# and returns the exit code, raising NanoBraggError for bad input like ``run``.
SUBCOMMANDS: dict[str, str] = {
    "noisify": ".noisify:run",  # C noisify: detector response of a photons/pixel image
    "nonbragg": ".nonbragg:run",  # nonBragg: amorphous scattering from a .stol table
    "add": ".add:run",  # float_add: the sum of raw float images
}


def _runner(argv: list[str]):
    """(run function, argv for it, program name): a subcommand when argv starts with one, else nanoBragg."""
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module, func = SUBCOMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module, __package__), func), argv[1:], argv[0]
    return run, argv, "nanobrag-torch"


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m nanobrag_torch``, ``nanobrag-torch``): nanoBragg, or the subcommand
    argv starts with; errors and signals as ``entry.run_program``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    runner, argv, prog = _runner(argv)
    return run_program(runner, argv, prog)


__all__ = ["main", "run", "__version__", "UsageError"]
