"""Command-line entry point: parse -> config -> Simulator(config).run() -> write the C program's files."""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .config import RTD, apply_smv_header, build_config
from .errors import InputError, NanoBraggError, UsageError
from .flags import help_text, parse_argv
from .io.hkl import write_fdump
from .io.images import write_float_image, write_pgm
from .io.smv import format_header, read_smv
from .stats import int_image, int_scale, pgm_image, pgm_scale, roi_mask, summarize


def _header_hook(st, events):
    """C's pre-pass: -mask then -img headers give starting values that flags later override."""
    for key in ("mask", "img"):
        for k, v in events:
            if k == key:
                header, img = read_smv(v, f"-{key}")
                apply_smv_header(st, header, img.shape[1], img.shape[0], is_mask=key == "mask")


def smv_fields(sim, config) -> list[tuple[str, str]]:
    """The C program's SMV header values (lengths in mm, %g formatting)."""
    dc, cc = config.detector, config.crystal
    g = sim.detector
    f = lambda x: f"{float(x):g}"  # noqa: E731
    dials = [float(x) for x in g.dials_origin]
    return [
        ("SIZE1", str(dc.fpixels)), ("SIZE2", str(dc.spixels)), ("PIXEL_SIZE", f(dc.pixel_size * 1000)),
        ("DISTANCE", f(g.distance * 1000)), ("WAVELENGTH", f(config.beam.wavelength * 1e10)),
        ("BEAM_CENTER_X", f(dc.xbeam * 1000)), ("BEAM_CENTER_Y", f(dc.ybeam * 1000)),
        ("ADXV_CENTER_X", f(g.fbeam * 1000)), ("ADXV_CENTER_Y", f((dc.detsize_s - float(g.sbeam)) * 1000)),
        ("MOSFLM_CENTER_X", f((float(g.sbeam) - 0.5 * dc.pixel_size) * 1000)),
        ("MOSFLM_CENTER_Y", f((float(g.fbeam) - 0.5 * dc.pixel_size) * 1000)),
        ("DENZO_X_BEAM", f(g.sbeam * 1000)), ("DENZO_Y_BEAM", f(g.fbeam * 1000)),
        ("DIALS_ORIGIN", ",".join(f"{x:g}" for x in dials)),
        ("XDS_ORGX", f(g.orgx)), ("XDS_ORGY", f(g.orgy)), ("CLOSE_DISTANCE", f(g.close_distance * 1000)),
        ("PHI", f(cc.phi0 * RTD)), ("OSC_START", f(cc.phi0 * RTD)), ("OSC_RANGE", f(cc.osc * RTD)),
        ("TWOTHETA", f(dc.twotheta * RTD)), ("DETECTOR_SN", "000"), ("BEAMLINE", "fake"),
    ]


def _report_setup(sim, config, out) -> None:
    """The setup lines worth comparing with the C program's stdout."""
    from .crystal import cell_parameters

    dc = config.detector
    info = sim.info
    real, recip = cell_parameters(sim.crystal)
    out(f"{dc.convention.lower()} convention selected.")
    out(f"pivoting detector around {'sample' if dc.pivot == 'sample' else 'direct beam spot'}")
    if info.misset_angles_deg is not None:
        out("random orientation misset angles: %f %f %f deg" % info.misset_angles_deg)
    out("Unit Cell: " + " ".join(f"{x:g}" for x in real))
    out("Recp Cell: " + " ".join(f"{x:g}" for x in recip))
    out(f"volume = {float(sim.crystal.volume):g} A^3")
    out(f"  {sim.sources.count} sources, {config.crystal.mosaic_domains} mosaic domains, "
        f"{config.crystal.phisteps} phi steps, {info.oversample}x{info.oversample} pixel oversample steps, "
        f"{dc.thicksteps} detector layers")
    out(f"  {'parallelpiped' if config.crystal.shape == 'square' else config.crystal.shape} xtal: "
        f"{info.N[0]}x{info.N[1]}x{info.N[2]} cells; "
        f"{'tricubic interpolation' if info.interpolate else 'nearest-neighbour'} structure factors")
    g = sim.detector
    out(f"  distance={float(g.distance):g} detsize={dc.detsize_f:g}x{dc.detsize_s:g}  pixel={dc.pixel_size:g} "
        f"meters ({dc.fpixels}x{dc.spixels} pixels)")
    out(f"  Xbeam={dc.xbeam:g} Ybeam={dc.ybeam:g}")
    out(f"  Fbeam={float(g.fbeam):g} Sbeam={float(g.sbeam):g}")
    out(f"  Fclose={float(g.fclose):g} Sclose={float(g.sclose):g}")
    out(f"  roi: {dc.roi[0]} < x < {dc.roi[1]} && {dc.roi[2]} < y < {dc.roi[3]}")


def run(argv: list[str], out=print) -> int:
    """Run the CLI on ``argv`` (without the program name); returns the exit code."""
    events = parse_argv(argv)
    if any(k == "help" for k, _ in events) or not argv:
        sys.stdout.write(help_text())
        return 0 if argv else 2
    config = build_config(events, header_hook=_header_hook)
    quiet = config.output.quiet
    log = (lambda msg: None) if quiet else out
    for w in config.warnings:
        print(f"WARNING: {w}", file=sys.stderr)

    from .simulator import Simulator

    t0 = time.perf_counter()
    sim = Simulator(config, log=log)
    if not quiet:
        _report_setup(sim, config, out)
    image = sim.run(progress=config.output.progress)
    for msg in sim.info.messages:
        print(msg, file=sys.stderr)
    image32 = image.detach().to("cpu").numpy().astype(np.float32)
    dc, oc = config.detector, config.output
    shape = (dc.spixels, dc.fpixels)
    in_roi = roi_mask(shape, dc.roi)
    rendered = sim.rendered_mask()
    st = summarize(image32, rendered, in_roi, dc.pixel_size, sim.info.oversample)
    steps = sim.info.steps
    out(f"solid angle subtended by detector = {sim.info.omega_sum / steps:g} steradian "
        f"( {100 * sim.info.omega_sum / steps / 4 / math.pi:g}% sphere)")

    # Build every output in memory first; write them only when all succeeded.
    files: list[tuple[str, bytes | None, object]] = []
    files.append((oc.floatfile, None, lambda p: write_float_image(p, image32)))
    for line in st.lines():
        out(line)
    iscale = int_scale(oc.scale, st.max_I)
    out(f"intfile_scale = {iscale:g}")
    fields = smv_fields(sim, config)
    ints = int_image(image32, in_roi, iscale, oc.adc)
    header = format_header(fields)
    files.append((oc.intfile, header + ints.tobytes(), None))
    if oc.pgmfile is not None:
        pscale = pgm_scale(oc.pgmscale, st.rmsd, iscale)
        out(f"pgm_scale = {pscale:g}")
        pgm = pgm_image(image32, in_roi, pscale)
        files.append((oc.pgmfile, None, lambda p, pgm=pgm, s=pscale: write_pgm(p, pgm, s)))
    if oc.noisefile is not None:
        noise_bytes = _noise_image(image32, in_roi, config, sim, out)
        files.append((oc.noisefile, header + noise_bytes, None))
    if sim.info.hkl_table is not None and config.crystal.hkl is not None:
        files.append((config.crystal.dump, None, lambda p: write_fdump(p, sim.info.hkl_table)))
    _write_all(files)
    if not quiet:
        out(f"rendered in {time.perf_counter() - t0:.3g} s on {config.engine.device} ({config.engine.dtype})")
    return 0


def _noise_image(image32, in_roi, config, sim, out) -> bytes:
    """The Poisson noise image with C's generator and draw order (ROI pixels in raster order)."""
    from .rng import poisson_noise

    oc = config.output
    seed = oc.seed if oc.seed is not None else int(time.time())
    vals = image32[in_roi]
    noise, photons, overloads = poisson_noise(vals, seed, oc.adc, sim.rng)
    full = np.zeros(image32.shape, dtype=np.uint16)
    full[in_roi] = noise
    out(f"{photons:.0f} photons on noise image ({overloads} overloads)")
    return full.tobytes()


def _write_all(files) -> None:
    """Write every output to a temporary name, then rename; on failure remove what was written."""
    done = []
    try:
        for name, data, writer in files:
            tmp = f"{name}.part{os.getpid()}"
            if data is not None:
                Path(tmp).write_bytes(data)
            else:
                writer(tmp)
            done.append((tmp, name))
    except OSError as exc:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {exc.filename or name}: {exc.strerror or exc}") from None
    for tmp, name in done:
        os.replace(tmp, name)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line on stderr and a non-zero exit code for bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = run(argv)
    except NanoBraggError as exc:
        print(f"nanobrag-torch: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("nanobrag-torch: interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    return code


__all__ = ["main", "run", "__version__", "UsageError"]
