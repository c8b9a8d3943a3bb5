"""The C program's output files from a rendered image, written all-or-nothing.

``write_c_outputs`` is what the CLI does after the render and what a Python user calls to get the same
files: the raw float image, the SMV integer image with nanoBragg's header, the PGM preview, the Poisson
noise image (C's generator, C's draw order) and the Fdump.bin cache, plus C's end-of-run lines.
``io.atomic.write_atomically`` is the one place files are written: temporary names next to the targets, renamed
only when every file was written, removed on any failure or interruption.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..stats import ImageStats, int_image_blocks, int_scale, pgm_image_blocks, pgm_scale, roi_mask, summarize
from .atomic import atomic_files, check_output_path
from .experiments import experiments_json, single_run_experiments
from .hkl import write_fdump, write_hkl
from .images import write_float_image, write_pgm_blocks, write_with_header
from .smv import adc_offset_field, format_header, nanobragg_header


@dataclass
class Outputs:
    """File names of C's outputs (None: not written) and the image scaling options (C's flags)."""

    floatfile: str | None = "floatimage.bin"
    intfile: str | None = "intimage.img"
    pgmfile: str | None = "image.pgm"
    noisefile: str | None = "noiseimage.img"
    dumpfile: str | None = None  # Fdump.bin: written when the structure factors came from an HKL file
    scale: float = 0.0  # -scale (0: 55000 / max_I)
    pgmscale: float = 0.0  # -pgmscale (0: 250 / (5 rmsd))
    adc: float = 40.0
    seed: int | None = None  # noise seed (None: time-based, as C)
    hklout: str | None = None  # -hklout: the run's P1 table as C's HKL text (ours)
    adc_header: bool = False  # -adc_header: ADC_OFFSET=adc in the SMV headers (the pedestal dxtbx subtracts)
    exptout: str | None = None  # -exptout: the simulation as a DIALS experiment list (io.experiments)


def check_outputs(outputs: Outputs) -> None:
    """Every file ``outputs`` names can be written (see ``check_output_path``): checked before a render, so a
    mistyped folder costs nothing."""
    for flag, name in (("-floatfile", outputs.floatfile), ("-intfile", outputs.intfile),
                       ("-pgmfile", outputs.pgmfile), ("-noisefile", outputs.noisefile),
                       ("-dump", outputs.dumpfile)):
        if name is not None:
            check_output_path(flag, name)


def outputs_from_config(config) -> Outputs:
    """The outputs a ``SimConfig`` asks for (Fdump.bin whenever -hkl was read, as C)."""
    oc = config.output
    return Outputs(floatfile=oc.floatfile, intfile=oc.intfile, pgmfile=oc.pgmfile, noisefile=oc.noisefile,
                   dumpfile=config.crystal.dump if config.crystal.hkl is not None else None, scale=oc.scale,
                   pgmscale=oc.pgmscale, adc=oc.adc, seed=oc.seed, hklout=oc.hklout, adc_header=oc.adc_header,
                   exptout=oc.exptout)


def roi_of(det) -> np.ndarray:
    """(spixels, fpixels) bool: the detector's ROI window (masked pixels included), where C writes pixels;
    (P, spixels, fpixels) for P panels (one window on every panel)."""
    roi = det.roi if det.roi is not None else (0, det.fpixels, 0, det.spixels)
    window = roi_mask((det.spixels, det.fpixels), roi)
    return np.broadcast_to(window, det.shape).copy() if len(det.shape) == 3 else window


def noise_image(image32: np.ndarray, in_roi: np.ndarray | None, seed: int, adc: float, rng=None):
    """C's Poisson noise image (ROI pixels in raster order, one seed stream; ``in_roi`` None: every pixel):
    (uint16 image, photons, overloads). ``rng`` continues C's random state (after the misset and mosaic draws
    of the same run)."""
    from ..crandom.streams import poisson_noise

    if in_roi is None:
        return poisson_noise(image32, seed, adc, rng)
    noise, photons, overloads = poisson_noise(image32[in_roi], seed, adc, rng)
    full = np.zeros(image32.shape, dtype=np.uint16)
    full[in_roi] = noise
    return full, photons, overloads


def write_c_outputs(image, model, outputs: Outputs, out=None, noise=None) -> ImageStats:
    """Write C's files for ``image`` (spixels, fpixels) rendered from ``model``; C's end-of-run lines go to
    ``out`` (e.g. ``print``; default: nowhere). Returns the image statistics. Nothing is written unless every
    file can be. ``noise``: the noise image already drawn (``noise_image``'s result), else drawn here.

    A ``Panels`` detector's (P, S, F) image is written as its panels one after another (panel 0 first): a
    (P S) x F image, under panel 0's header (as the C program's CUSTOM panel) with SIZE2 = P S."""
    from ..geometry import place_detector
    from ..panels import Panels, panel_as_detector

    det = model.detector
    table = model.info.hkl_table
    extra = []
    if outputs.dumpfile is not None and table is not None:
        extra.append((outputs.dumpfile, None, lambda p: write_fdump(p, table)))
    if outputs.hklout is not None and table is not None:
        extra.append((outputs.hklout, None, lambda p: write_hkl(p, table)))
    if outputs.exptout is not None:
        extra.append((outputs.exptout, experiments_json(single_run_experiments(model)), None))
    one, shape = det, det.shape
    if isinstance(det, Panels):
        one = panel_as_detector(det, 0, model.beam.beam_vector)
        shape = (det.panels * det.spixels, det.fpixels)
    values = nanobragg_header(replace(model, detector=one), place_detector(one, model.beam.beam_vector))
    fields = [(k, str(shape[0]) if k == "SIZE2" else v) for k, v in values]
    header = format_header(fields + ([adc_offset_field(outputs.adc)] if outputs.adc_header else []))
    every = det.renders_every_pixel()  # the ROI and the rendered pixels are the whole image: no masks
    return write_image_outputs(image.reshape(shape), outputs, header, None if every else roi_of(det).reshape(shape),
                               None if every else det.rendered_mask().cpu().numpy().reshape(shape),
                               float(det.pixel_size),
                               model.sampling.oversample, out, rng=model.info.rng, noise=noise,
                               extra_files=extra)


def write_image_outputs(image, outputs: Outputs, header: bytes, in_roi: np.ndarray | None,
                        rendered: np.ndarray | None, pixel_size: float, oversample: int, out=None, *, rng=None,
                        noise=None, extra_files=(), rmsd_offset: int = 0, count: int | None = None) -> ImageStats:
    """The output stage shared by the programs of the C suite: statistics (``stats.summarize``; ``rmsd_offset``
    and ``count`` as there), the float image, the SMV int image and the noise image under ``header``, the PGM,
    and ``extra_files`` (``write_atomically`` entries), all or nothing; C's end-of-run lines go to ``out``.
    ``in_roi``/``rendered`` None: every pixel. ``rng``: C's random state to continue for the noise image (None:
    a fresh one); ``noise``: the noise image already drawn (``noise_image``'s result). The images are written
    from the render's float32 pixels (no copy when it is float32) and block by block (no whole-image
    temporaries for the SMV and PGM pixels)."""
    out = out or (lambda line: None)
    image32 = image.detach().to("cpu").numpy() if hasattr(image, "detach") else np.asarray(image)
    image32 = image32.astype(np.float32, copy=False)
    with atomic_files() as files:  # each file is written in the background while the next one is computed
        if outputs.floatfile is not None:
            files.add(outputs.floatfile, None, lambda p: write_float_image(p, image32))
        st = summarize(image32, rendered, in_roi, pixel_size, oversample, rmsd_offset=rmsd_offset, count=count)
        for line in st.lines():
            out(line)
        iscale = int_scale(outputs.scale, st.max_I)
        out(f"intfile_scale = {iscale:g}")
        if outputs.intfile is not None:
            int_blocks = int_image_blocks(image32, in_roi, iscale, outputs.adc)
            files.add(outputs.intfile, None, lambda p: write_with_header(p, header, int_blocks))
        if outputs.pgmfile is not None:
            pscale = pgm_scale(outputs.pgmscale, st.rmsd, iscale)
            out(f"pgm_scale = {pscale:g}")
            pgm_blocks = pgm_image_blocks(image32, in_roi, pscale)
            files.add(outputs.pgmfile, None, lambda p: write_pgm_blocks(p, image32.shape, pgm_blocks, pscale))
        if outputs.noisefile is not None:
            if noise is None:
                seed = outputs.seed if outputs.seed is not None else int(time.time())
                noise = noise_image(image32, in_roi, seed, outputs.adc, rng)
            pixels, photons, overloads = noise
            out(f"{photons:.0f} photons on noise image ({overloads} overloads)")
            files.add(outputs.noisefile, None, lambda p: write_with_header(p, header, [pixels]))
        for entry in extra_files:
            files.add(*entry)
    return st
