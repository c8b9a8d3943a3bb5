"""Writing a dataset frame by frame, each file atomically, and knowing which frames are already complete.

Per frame: C's files (-floatfile/-intfile/-noisefile/-pgmfile) under name templates, a miniCBF (-cbf), and
for a NeXus file (-nexus) the frame's pixels in a spool directory ``FILE.h5.frames/``; every file is written
under a temporary name and renamed (``io.atomic.write_atomically``). The NeXus file is assembled from the
spool once every frame is there, written under a temporary name and renamed, then the spool is removed:
neither a frame file nor the HDF5 file is ever seen half-written. ``complete(i)`` re-reads frame i's files
(sizes, headers, decodable pixels), so a resumed run trusts nothing it did not check.

The pixels: NeXus and CBF hold the noise image's photon counts (uint16; with an offset only when -adc was
given: ``DatasetFiles.data_adc``) when noise is on; with -nonoise the NeXus stack holds the float image
(float32) and the CBF the integer image (C's -intfile pixels, with ``data_adc`` as their offset). C's own
per-frame files (-intfile, -noisefile templates) keep C's -adc (default 40), as the single runs write them.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from ..io.atomic import check_output_path, remove_stale_temporaries, write_atomically
from ..io.nexus import image_shape
from ..io.outputs import Outputs, roi_of, write_c_outputs

_RUN = re.compile(r"#+")


def frame_name(template: str, i: int) -> str:
    """``template`` with its last run of '#' replaced by frame number i + 1, zero-padded to the run's width."""
    runs = list(_RUN.finditer(template))
    if not runs:
        return template
    m = runs[-1]
    return f"{template[:m.start()]}{i + 1:0{len(m.group())}d}{template[m.end():]}"


def check_template(flag: str, template: str) -> str:
    """A per-frame name must hold a run of '#' for the frame number."""
    if "#" not in Path(template).name:
        raise UsageError(f"{flag}: a per-frame name needs #### for the frame number (e.g. frame_#####"
                         f"{Path(template).suffix or '.img'}), got {template!r}")
    return template


@dataclass(frozen=True)
class DatasetFiles:
    """Where a dataset goes: name templates (None: not written), the NeXus file, and C's image scaling."""

    floatfile: str | None = None
    intfile: str | None = None
    noisefile: str | None = None
    pgmfile: str | None = None
    cbf: str | None = None
    nexus: str | None = None
    scale: float = 0.0
    pgmscale: float = 0.0
    adc: float = 40.0  # C's -adc: the SMV files' offset
    data_adc: float = 0.0  # the NXmx/CBF counts' offset (-adc when given, else 0: photon counts)
    adc_header: bool = False  # -adc_header: ADC_OFFSET in the SMV headers

    def templates(self) -> dict[str, str]:
        return {k: v for k, v in (("floatfile", self.floatfile), ("intfile", self.intfile),
                                  ("noisefile", self.noisefile), ("pgmfile", self.pgmfile), ("cbf", self.cbf))
                if v is not None}

    @property
    def anchor(self) -> str | None:
        """The file the run record and the spool are named after: the NeXus file, else the first template."""
        return self.nexus or next(iter(self.templates().values()), None)

    @property
    def anchor_flag(self) -> str | None:
        """The flag that names the anchor (for messages)."""
        return "-nexus" if self.nexus else next((f"-{k}" for k in self.templates()), None)


def _smv_ok(path: Path, shape) -> bool:
    from ..io.smv import read_smv

    try:
        _, img = read_smv(path, "frame")
    except Exception:
        return False
    return img.shape == shape


def _pgm_ok(path: Path, shape) -> bool:
    data = path.read_bytes()
    head = b"P5\n%d %d\n" % (shape[1], shape[0])
    end = data.find(b"\n255\n")
    return data.startswith(head) and end > 0 and len(data) == end + 5 + shape[0] * shape[1]


def _cbf_ok(path: Path, shape) -> bool:
    from ..io.cbf import read_cbf

    try:
        _, px = read_cbf(path)
    except Exception:
        return False
    return px.shape == shape


def _npy_ok(path: Path, shape, dtype) -> bool:
    try:
        a = np.load(path, mmap_mode="r")
    except Exception:
        return False
    return a.shape == shape and a.dtype == dtype


class DatasetWriter:
    """Writes the frames of one dataset (``files``) rendered from ``model`` by ``plan``; ``meta`` carries the
    NeXus/CBF header values (``nexus.NexusMeta``) and ``version`` the program version for the CBF header."""

    def __init__(self, files: DatasetFiles, model, plan, meta, version: str = ""):
        self.files, self.model, self.plan, self.meta, self.version = files, model, plan, meta, version
        self.shape = image_shape(model.detector)  # P panels: one under another
        self.noise = plan.seed is not None
        self.stack_dtype = np.dtype(np.uint16 if self.noise else np.float32)
        self.spool = Path(f"{files.nexus}.frames") if files.nexus else None
        self._nexus_done: bool | None = None
        if files.cbf is not None:
            from ..io.cbf import minicbf_fits

            if hasattr(model.detector, "panels"):  # the command line refuses it earlier (cmdline.replay)
                raise UsageError(f"-cbf: not written for a detector of {model.detector.panels} panels; use -nexus")

            self.full_cbf = not minicbf_fits(model, plan.rotation)  # the geometry needs imgCIF's axes

    # -- what exists -----------------------------------------------------------------------------------
    def nexus_complete(self) -> bool:
        """The final NeXus file exists and holds every frame (read back once per run)."""
        if self._nexus_done is None:
            from ..io.nexus import nexus_frames

            self._nexus_done = (self.files.nexus is not None and Path(self.files.nexus).is_file()
                                and nexus_frames(self.files.nexus) == (self.plan.frames, self.shape))
        return self._nexus_done

    def spool_path(self, i: int) -> Path:
        return self.spool / f"frame_{i + 1:07d}.npy"

    def complete(self, i: int) -> bool:
        """Every file of frame i exists and reads back as a whole frame of this detector."""
        checks = {"floatfile": lambda p: p.stat().st_size == 4 * self.shape[0] * self.shape[1],
                  "intfile": lambda p: _smv_ok(p, self.shape), "noisefile": lambda p: _smv_ok(p, self.shape),
                  "pgmfile": lambda p: _pgm_ok(p, self.shape), "cbf": lambda p: _cbf_ok(p, self.shape)}
        for key, template in self.files.templates().items():
            p = Path(frame_name(template, i))
            if not p.is_file() or not checks[key](p):
                return False
        if self.files.nexus and not self.nexus_complete():
            return _npy_ok(self.spool_path(i), self.shape, self.stack_dtype)
        return True

    def check_targets(self) -> None:
        """Before anything is removed or rendered: every name this dataset writes can take a file (it is not a
        directory, its folder exists), and the NeXus spool is a folder if it exists; else one line naming the
        flag and the file (``InputError``), nothing touched."""
        targets = [(f"-{k}", frame_name(t, i)) for k, t in self.files.templates().items()
                   for i in range(self.plan.frames)]
        if self.files.nexus:
            targets.append(("-nexus", self.files.nexus))
        for flag, name in targets:
            check_output_path(flag, name)
        if self.spool is not None and self.spool.exists() and not self.spool.is_dir():
            raise InputError(f"-nexus: {self.spool} (where the frames wait for the NeXus file) is a file, not a "
                             "folder: remove it or choose another -nexus name")

    def reset(self) -> None:
        """A fresh run: remove the files an earlier run left under this dataset's names (its frames, spool and
        NeXus file), so that none of them can later pass for a frame of this run."""
        for template in self.files.templates().values():
            for i in range(self.plan.frames):
                name = frame_name(template, i)
                Path(name).unlink(missing_ok=True)
                remove_stale_temporaries(name)
        if self.spool is not None and self.spool.is_dir():
            shutil.rmtree(self.spool)
        if self.files.nexus:
            Path(self.files.nexus).unlink(missing_ok=True)
            remove_stale_temporaries(self.files.nexus)
        self._nexus_done = False

    # -- writing ---------------------------------------------------------------------------------------
    def counts(self, frame, fm) -> np.ndarray:
        """The frame's detector counts for NXmx/CBF: the noise image's photon counts (+ ``data_adc``), else
        C's integer image (-scale or 55000/max) with ``data_adc`` as its offset."""
        if frame.noise is not None:
            return frame.counts if frame.counts is not None else frame.noise
        from ..stats import int_image, int_scale, summarize

        det = fm.detector
        in_roi = roi_of(det)
        st = summarize(frame.image, det.rendered_mask().cpu().numpy(), in_roi, float(det.pixel_size),
                       fm.sampling.oversample)
        return int_image(frame.image, in_roi, int_scale(self.files.scale, st.max_I), self.files.data_adc)

    def write(self, frame) -> None:
        """Write every file of ``frame`` (each atomically)."""
        from .series import frame_model

        f, i = self.files, frame.index
        fm = frame_model(self.model, self.plan, i)
        names = {k: frame_name(t, i) for k, t in f.templates().items()}
        for name in names.values():  # temporaries a killed run left behind
            remove_stale_temporaries(name)
        if any(k in names for k in ("floatfile", "intfile", "noisefile", "pgmfile")):
            noise = (frame.noise, frame.photons, frame.overloads) if frame.noise is not None else None
            outs = Outputs(floatfile=names.get("floatfile"), intfile=names.get("intfile"),
                           pgmfile=names.get("pgmfile"), noisefile=names.get("noisefile") if noise else None,
                           dumpfile=None, scale=f.scale, pgmscale=f.pgmscale, adc=f.adc,
                           seed=self.plan.noise_seed(i), adc_header=f.adc_header)
            write_c_outputs(frame.image, fm, outs, noise=noise)
        if "cbf" in names:
            from ..io.cbf import CbfFrame, cbf_header_lines, frame_timestamp, imgcif_header, write_cbf, write_imgcif

            angle = frame.phi_deg if frame.phi_deg is not None else 0.0
            inc = self.plan.osc if self.plan.rotation else 0.0
            cf = CbfFrame(angle, inc, frame_timestamp(self.meta.start_time, i, self.meta.exposure))
            counts = self.counts(frame, fm)
            if self.full_cbf:
                lines = imgcif_header(fm, cf, self.meta.exposure, self.version)
                block = Path(names["cbf"]).stem
                write_atomically([(names["cbf"], None, lambda p: write_imgcif(p, counts, lines, block))])
            else:
                lines = cbf_header_lines(fm, cf, self.meta.exposure, self.version)
                write_atomically([(names["cbf"], None, lambda p: write_cbf(p, counts, lines))])
        if f.nexus and not self.nexus_complete():
            stack = self.counts(frame, fm) if self.noise else frame.image
            self.spool.mkdir(parents=True, exist_ok=True)

            def save(p):
                with open(p, "wb") as fh:
                    np.save(fh, np.asarray(stack, dtype=self.stack_dtype).reshape(self.shape))

            write_atomically([(self.spool_path(i), None, save)])

    def finish(self) -> None:
        """Assemble the NeXus file from the spool (temporary name, then renamed) and remove the spool."""
        if not self.files.nexus:
            return
        if not self.nexus_complete():
            from ..io.nexus import write_nxmx

            remove_stale_temporaries(self.files.nexus)

            missing = [i + 1 for i in range(self.plan.frames) if not self.spool_path(i).is_file()]
            if missing:  # pragma: no cover - every frame was written or checked before finish
                raise RuntimeError(f"-nexus: frames {missing[:5]} missing from {self.spool}")
            target = self.files.nexus
            write_atomically([(target, None, lambda p: write_nxmx(
                p, self.model, self.meta, lambda i: np.load(self.spool_path(i)), self.stack_dtype,
                file_name=Path(target).name))])
            self._nexus_done = True
        if self.spool is not None and self.spool.is_dir():
            shutil.rmtree(self.spool)
