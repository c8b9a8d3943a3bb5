"""The C program's output files from a rendered image, written all-or-nothing.

``write_c_outputs`` is what the CLI does after the render and what a Python user calls to get the same
files: the raw float image, the SMV integer image with nanoBragg's header, the PGM preview, the Poisson
noise image (C's generator, C's draw order) and the Fdump.bin cache, plus C's end-of-run lines.
``write_atomically`` is the one place files are written: temporary names next to the targets, renamed
only when every file was written, removed on any failure or interruption.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from ..stats import ImageStats, int_image, int_scale, pgm_image, pgm_scale, roi_mask, summarize
from .experiments import experiments_json, single_run_experiments
from .hkl import write_fdump
from .images import write_float_image, write_pgm
from .smv import adc_offset_field, format_header, nanobragg_header


_TMP_SUFFIX = ".part"


def temporary_name(name) -> str:
    """The temporary name ``write_atomically`` writes ``name`` under: ``name.part<pid>``."""
    return f"{name}{_TMP_SUFFIX}{os.getpid()}"


def remove_stale_temporaries(name) -> None:
    """Delete temporaries of ``name`` (``name.part<pid>``, any pid) that a killed process left behind."""
    p = Path(name)
    for tmp in p.parent.glob(glob.escape(p.name) + _TMP_SUFFIX + "*"):
        if tmp.name[len(p.name) + len(_TMP_SUFFIX):].isdigit():
            tmp.unlink(missing_ok=True)


def write_atomically(files: list[tuple[str | Path, bytes | None, object]]) -> None:
    """Write ``(path, bytes, None)`` or ``(path, None, writer(tmp_path))`` entries: every file under a
    temporary name next to its target first, then all renamed; on any failure (a full disk, an unwritable or
    missing directory, a target that is a directory) or interruption (Ctrl-C, SIGTERM) the temporaries are
    removed and no target is touched. An OSError becomes one ``InputError`` line naming the target file.
    The renames run with SIGINT and SIGTERM deferred, so an interruption lands before or after all of them."""
    targets = [os.path.normpath(os.path.abspath(name)) for name, _, _ in files]
    if len(set(targets)) != len(targets):
        dup = next(str(files[i][0]) for i, t in enumerate(targets) if targets.index(t) != i)
        raise UsageError(f"two outputs name the same file {dup}: give each output its own name")
    done: list[tuple[str, str]] = []
    name = tmp = None
    try:
        for name, data, writer in files:
            if os.path.isdir(name):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(name))
            tmp = temporary_name(name)
            done.append((tmp, str(name)))
            if data is not None:
                with open(tmp, "wb") as fh:
                    fh.write(data)
            else:
                writer(tmp)
    except BaseException as exc:
        _remove(tmp for tmp, _ in done)
        if isinstance(exc, OSError):
            where = name if exc.filename in (None, tmp) else exc.filename  # the target, not its temporary name
            raise InputError(f"cannot write {where}: {exc.strerror or exc}") from None
        raise
    with _signals_deferred():
        for i, (tmp, target) in enumerate(done):
            try:
                os.replace(tmp, target)
            except OSError as exc:
                _remove(t for t, _ in done[i:])
                raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None


def _remove(paths) -> None:
    """Remove temporaries that may not exist (or whose directory does not)."""
    for p in paths:
        with contextlib.suppress(OSError):
            Path(p).unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM that arrive inside are acted on (by the handler they had) when it ends.

    Python runs signal handlers in the main thread whichever thread the signal reached, so swapping the
    handlers defers them for the whole process; outside the main thread this is a no-op."""
    caught: list[int] = []
    try:
        old = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
               for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in caught[:1]:
            handler = old[s]
            if callable(handler):
                handler(s, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(s)


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
    adc_header: bool = False  # -adc_header: ADC_OFFSET=adc in the SMV headers (the pedestal dxtbx subtracts)
    exptout: str | None = None  # -exptout: the simulation as a DIALS experiment list (io.experiments)


def outputs_from_config(config) -> Outputs:
    """The outputs a ``SimConfig`` asks for (Fdump.bin whenever -hkl was read, as C)."""
    oc = config.output
    return Outputs(floatfile=oc.floatfile, intfile=oc.intfile, pgmfile=oc.pgmfile, noisefile=oc.noisefile,
                   dumpfile=config.crystal.dump if config.crystal.hkl is not None else None, scale=oc.scale,
                   pgmscale=oc.pgmscale, adc=oc.adc, seed=oc.seed, adc_header=oc.adc_header, exptout=oc.exptout)


def roi_of(det) -> np.ndarray:
    """(spixels, fpixels) bool: the detector's ROI window (masked pixels included), where C writes pixels."""
    return roi_mask(det.shape, det.roi if det.roi is not None else (0, det.fpixels, 0, det.spixels))


def noise_image(image32: np.ndarray, in_roi: np.ndarray, seed: int, adc: float, rng=None):
    """C's Poisson noise image (ROI pixels in raster order, one seed stream): (uint16 image, photons,
    overloads). ``rng`` continues C's random state (after the misset and mosaic draws of the same run)."""
    from ..rng import poisson_noise

    noise, photons, overloads = poisson_noise(image32[in_roi], seed, adc, rng)
    full = np.zeros(image32.shape, dtype=np.uint16)
    full[in_roi] = noise
    return full, photons, overloads


def write_c_outputs(image, model, outputs: Outputs, out=None, noise=None) -> ImageStats:
    """Write C's files for ``image`` (spixels, fpixels) rendered from ``model``; C's end-of-run lines go to
    ``out`` (e.g. ``print``; default: nowhere). Returns the image statistics. Nothing is written unless every
    file can be. ``noise``: the noise image already drawn (``noise_image``'s result), else drawn here."""
    from ..geometry import place_detector

    det = model.detector
    fields = nanobragg_header(model, place_detector(det, model.beam.beam_vector))
    header = format_header(fields + ([adc_offset_field(outputs.adc)] if outputs.adc_header else []))
    table = getattr(model.info, "hkl_table", None)
    extra = []
    if outputs.dumpfile is not None and table is not None:
        extra.append((outputs.dumpfile, None, lambda p: write_fdump(p, table)))
    if outputs.exptout is not None:
        extra.append((outputs.exptout, experiments_json(single_run_experiments(model)), None))
    return write_image_outputs(image, outputs, header, roi_of(det), det.rendered_mask().cpu().numpy(),
                               float(det.pixel_size), model.sampling.oversample, out,
                               rng=getattr(model.info, "rng", None), noise=noise, extra_files=extra)


def write_image_outputs(image, outputs: Outputs, header: bytes, in_roi: np.ndarray, rendered: np.ndarray,
                        pixel_size: float, oversample: int, out=None, *, rng=None, noise=None, extra_files=(),
                        rmsd_offset: int = 0, count: int | None = None) -> ImageStats:
    """The output stage shared by the programs of the C suite: statistics (``stats.summarize``; ``rmsd_offset``
    and ``count`` as there), the float image, the SMV int image and the noise image under ``header``, the PGM,
    and ``extra_files`` (``write_atomically`` entries), all or nothing; C's end-of-run lines go to ``out``.
    ``rng``: C's random state to continue for the noise image (None: a fresh one); ``noise``: the noise image
    already drawn (``noise_image``'s result)."""
    out = out or (lambda line: None)
    image32 = image.detach().to("cpu").numpy().astype(np.float32) if hasattr(image, "detach") else \
        np.asarray(image, dtype=np.float32)
    st = summarize(image32, rendered, in_roi, pixel_size, oversample, rmsd_offset=rmsd_offset, count=count)
    files: list = []
    if outputs.floatfile is not None:
        files.append((outputs.floatfile, None, lambda p: write_float_image(p, image32)))
    for line in st.lines():
        out(line)
    iscale = int_scale(outputs.scale, st.max_I)
    out(f"intfile_scale = {iscale:g}")
    if outputs.intfile is not None:
        files.append((outputs.intfile, header + int_image(image32, in_roi, iscale, outputs.adc).tobytes(), None))
    if outputs.pgmfile is not None:
        pscale = pgm_scale(outputs.pgmscale, st.rmsd, iscale)
        out(f"pgm_scale = {pscale:g}")
        pgm = pgm_image(image32, in_roi, pscale)
        files.append((outputs.pgmfile, None, lambda p: write_pgm(p, pgm, pscale)))
    if outputs.noisefile is not None:
        if noise is None:
            seed = outputs.seed if outputs.seed is not None else int(time.time())
            noise = noise_image(image32, in_roi, seed, outputs.adc, rng)
        noise, photons, overloads = noise
        out(f"{photons:.0f} photons on noise image ({overloads} overloads)")
        files.append((outputs.noisefile, header + noise.tobytes(), None))
    files.extend(extra_files)
    write_atomically(files)
    return st
