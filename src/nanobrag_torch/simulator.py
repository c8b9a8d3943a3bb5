"""Simulator: loads the inputs a config names, builds geometry/crystal/sources, renders in pixel chunks."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from . import kernel
from .config import AVOGADRO, R_E_SQR, WATER_F, SimConfig
from .crystal import build_crystal, crystal_counts, orientation_stack, reciprocal_from_cell
from .errors import InputError, UsageError
from .geometry import build_detector, pixel_positions, unitize
from .io.hkl import HKLTable, read_fdump, read_hkl
from .io.mat import read_mat
from .io.smv import read_smv
from .io.sourcefile import read_sourcefile
from .physics import water_background
from .rng import CRandom, mosaic_umats, random_misset
from .sources import build_sources

SETUP_DTYPE = torch.float64  # geometry, crystal and sources are set up in double, as in C
# Rough bytes of intermediates per evaluation (pixel x layer x sub-pixel x source x phi x domain).
_BYTES_PER_EVAL = 8 * 48
_BYTES_PER_EVAL_INTERP = 8 * (48 + 3 * 64 + 64)
# Evaluations per chunk on the CPU: intermediates of a few MB stay in cache and in malloc's reused heap.
_CPU_CHUNK_EVALS = 1 << 18


def torch_dtype(name: str) -> torch.dtype:
    """The engine dtype named in the config."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def resolve_device(name: str) -> torch.device:
    """The engine device; a clear error when CUDA is asked for but absent."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"-device: unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("-device cuda: CUDA is not available on this machine")
    return dev


@dataclass
class RunInfo:
    """What a run decided and derived, for the report, the headers and the tools."""

    N: tuple[int, int, int] = (1, 1, 1)
    oversample: int = 1
    steps: int = 1
    interpolate: bool = False
    interpolation_disabled_at: int | None = None
    omega_sum: float = 0.0
    misset_angles_deg: tuple[float, float, float] | None = None
    hkl_table: HKLTable | None = None
    hkl_from_dump: bool = False
    messages: list[str] = field(default_factory=list)


class Simulator:
    """``Simulator(config).run() -> torch.Tensor`` [slow, fast] image in the engine dtype.

    All inputs are read and validated in the constructor, so a failure raises before anything is rendered
    or written.
    """

    def __init__(self, config: SimConfig, log=None, workdir: str | Path = "."):
        self.config = config
        self.log = log or (lambda msg: None)
        self.workdir = Path(workdir)
        self.dtype = torch_dtype(config.engine.dtype)
        self.device = resolve_device(config.engine.device)
        self.info = RunInfo()
        self._setup()

    # ------------------------------------------------------------------ setup
    def _t(self, x, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(x, dtype=dtype or self.dtype, device=self.device)

    def _setup(self) -> None:
        cfg = self.config
        bc, dc, cc = cfg.beam, cfg.detector, cfg.crystal
        warn = lambda msg: print(f"WARNING: {msg}", file=sys.stderr)  # noqa: E731
        self.warn = warn

        # Structure factors (C §4.5).
        table = None
        if cc.hkl is not None:
            table = read_hkl(self.workdir / cc.hkl, cc.default_F, warn)
        else:
            dump = self.workdir / cc.dump
            if dump.is_file():
                table = read_fdump(dump)
                self.info.hkl_from_dump = True
                self.log(f"reading Fs from {cc.dump}")
            elif cc.default_F == 0.0:
                raise UsageError("no structure factors: give -hkl FILE or -default_F F "
                                 f"(or keep a {cc.dump} from an earlier run in the working directory)")
        self.info.hkl_table = table

        # Crystal (C §4).
        if cc.cell is not None:
            a_star, b_star, c_star, V = reciprocal_from_cell(cc.cell, SETUP_DTYPE, self.device)
            cell_lv = (cc.cell[0], cc.cell[1], cc.cell[2], V)
        else:
            cell_lv = None
        if cc.mat is not None:
            mat = read_mat(self.workdir / cc.mat)
            scale = 1e-10 / bc.wavelength
            a_star, b_star, c_star = (self._t(v, SETUP_DTYPE) * scale for v in mat)
        # One C random state for the whole run, consumed in C's order: misset, mosaic domains, noise (§7.6).
        self.rng = CRandom()
        misset = cc.misset
        if cc.misset_random:
            _, misset = random_misset(cc.misset_seed, self.rng)
            self.info.misset_angles_deg = tuple(math.degrees(x) for x in misset)
        self.crystal = build_crystal((a_star, b_star, c_star), bc.wavelength, misset, cell_lv, SETUP_DTYPE, self.device)
        if not all(math.isfinite(float(x)) for x in torch.cat((self.crystal.a0, self.crystal.b0, self.crystal.c0))):
            raise InputError("the crystal cell is degenerate (zero volume): check -mat/-cell")
        N = crystal_counts(self.crystal, cc.Na, cc.Nb, cc.Nc, cc.sample_x, cc.sample_y, cc.sample_z)
        self.info.N = N

        # Detector (C §3).
        self.detector = build_detector(dc, bc.beam_vector, SETUP_DTYPE, self.device)
        if self.detector.odet_regenerated:
            warn("odet_vector is not a unit vector: using fdet x sdet (as the C program does)")

        # Oversampling auto rule (§2.8).
        xtal_max = max(float(torch.linalg.vector_norm(v)) * n
                       for v, n in ((self.crystal.a0, N[0]), (self.crystal.b0, N[1]), (self.crystal.c0, N[2])))
        recip_px = bc.wavelength * float(self.detector.distance) / dc.pixel_size
        recommended = max(1, math.ceil(3.0 * xtal_max / recip_px))
        os_ = cfg.sampling.oversample
        if os_ <= 0:
            os_ = recommended
            self.log(f"auto-selected {os_}-fold oversampling")
        elif os_ < recommended:
            self.log(f"note: crystal ({xtal_max * 1e10:g} A) exceeds the reciprocal pixel size "
                     f"({recip_px * 1e10:g} A); -oversample {recommended} is recommended")
        self.info.oversample = os_

        # Sources (§5).
        rows = None
        if bc.sourcefile is not None:
            rows = read_sourcefile(self.workdir / bc.sourcefile, warn)
        self.sources = build_sources(bc, rows, SETUP_DTYPE, self.device)

        # Mosaic domains (§7.4): always drawn (C consumes the stream), used only when the spread is > 0.
        umats = self._t(mosaic_umats(cc.mosaic_spread, cc.mosaic_domains, cc.mosaic_seed, self.rng), SETUP_DTYPE)
        if cc.mosaic_spread <= 0.0:
            umats = None
        phis = self._t([cc.phi0 + cc.phistep * k for k in range(cc.phisteps)], SETUP_DTYPE)
        spindle = unitize(self._t(cc.spindle_axis, SETUP_DTYPE))
        self.orientations = orientation_stack(self.crystal, spindle, phis, umats).to(self.dtype)
        # Setup ran in float64 (as C does) so that integer decisions (N, oversampling) do not depend on
        # -dtype; the render uses the engine dtype.
        self.crystal = _cast(self.crystal, self.dtype)
        self.detector = _cast(self.detector, self.dtype)
        self.sources = _cast(self.sources, self.dtype)

        # Mask (§8.8).
        self.mask = None
        if dc.mask is not None:
            _, m = read_smv(self.workdir / dc.mask, "-mask")
            if m.shape != (dc.spixels, dc.fpixels):
                raise InputError(f"-mask: {dc.mask}: {m.shape[1]}x{m.shape[0]} pixels, detector is "
                                 f"{dc.fpixels}x{dc.spixels}")
            self.mask = m

        # Interpolation decision (§2.7): off when no table was loaded.
        self.info.interpolate = bool(cc.interpolate and table is not None and table.count > 0)
        self.info.steps = self.sources.count * cc.mosaic_domains * cc.phisteps * os_ * os_

    # ------------------------------------------------------------------ render
    def kernel_settings(self) -> kernel.KernelSettings:
        cfg = self.config
        bc, dc, cc, sc = cfg.beam, cfg.detector, cfg.crystal, cfg.sampling
        t = self.info.hkl_table
        return kernel.KernelSettings(
            shape=cc.shape, N=self.info.N, fudge=cc.fudge, kahn=bc.kahn_factor, nopolar=bc.nopolar,
            point_pixel=dc.point_pixel, pixel_size=dc.pixel_size, thick=dc.thickness > 0.0,
            thickstep=dc.thickstep, mu=dc.mu, dmin=bc.dmin, water=bc.water_size != 0.0,
            interpolate=self.info.interpolate, has_table=t is not None and t.count > 0, default_F=cc.default_F,
            hkl_mins=t.mins if t is not None else (0, 0, 0), hkl_maxs=t.maxs if t is not None else (0, 0, 0),
            oversample_thick=sc.oversample_thick, oversample_polar=sc.oversample_polar,
            oversample_omega=sc.oversample_omega,
        )

    def kernel_inputs(self) -> kernel.KernelInputs:
        cfg = self.config
        bc = cfg.beam
        t = self.info.hkl_table
        grid = self._t(t.grid) if t is not None else self._t(np.zeros((1, 1, 1)))
        I_bg = water_background(bc.water_size, R_E_SQR, bc.fluence, AVOGADRO, WATER_F)
        return kernel.KernelInputs(
            odet=self.detector.odet, close_distance=self.detector.close_distance,
            incident=-self.sources.directions, wavelengths=self.sources.wavelengths,
            orientations=self.orientations,
            recip=torch.stack((self.crystal.a_star, self.crystal.b_star, self.crystal.c_star)),
            polar_axis=unitize(self._t(bc.polar_vector)), F_grid=grid, I_bg=self._t(I_bg),
            scale=self._t(R_E_SQR * bc.fluence / self.info.steps),
        )

    def rendered_mask(self) -> np.ndarray:
        """[slow][fast] pixels C renders: inside the ROI and not masked."""
        from .stats import roi_mask

        dc = self.config.detector
        m = roi_mask((dc.spixels, dc.fpixels), dc.roi)
        if self.mask is not None:
            m = m & (self.mask != 0)
        return m

    def chunk_pixels(self) -> int:
        """Pixels per chunk from the memory budget (-max_memory_gb)."""
        dc = self.config.detector
        evals = (dc.thicksteps * self.info.oversample ** 2 * self.sources.count * self.orientations.shape[0])
        per = _BYTES_PER_EVAL_INTERP if self.info.interpolate else _BYTES_PER_EVAL
        if self.dtype == torch.float32:
            per //= 2
        budget = self.config.engine.max_memory_gb * 2**30
        n = budget // max(1, evals * per)
        if self.device.type == "cpu":
            n = min(n, _CPU_CHUNK_EVALS // max(1, evals))
        return int(max(1, min(dc.fpixels * dc.spixels, n)))

    def run(self, progress: bool | None = None) -> torch.Tensor:
        """Render the image: (spixels, fpixels) tensor in the engine dtype (0 outside ROI/mask)."""
        dc = self.config.detector
        settings = self.kernel_settings()
        inputs = self.kernel_inputs()
        rendered = torch.as_tensor(self.rendered_mask().reshape(-1), device=self.device)
        idx = torch.nonzero(rendered).reshape(-1)
        image = torch.zeros(dc.spixels * dc.fpixels, dtype=self.dtype, device=self.device)
        chunk = self.chunk_pixels()
        interp_enabled = torch.ones((), dtype=torch.bool, device=self.device)
        omega_sum = torch.zeros((), dtype=self.dtype, device=self.device)
        starts = range(0, idx.numel(), chunk)
        bar = _progress(len(starts), progress)
        values = []
        for start in starts:
            sel = idx[start:start + chunk]
            pos = pixel_positions(self.detector, sel % dc.fpixels, sel // dc.fpixels, dc.pixel_size,
                                  self.info.oversample, dc.thickstep, dc.thicksteps, dc.curved)
            v, om, interp_enabled = kernel.render_chunk(pos, inputs, settings, interp_enabled)
            values.append(v)
            omega_sum = omega_sum + om.sum()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if values:
            image = image.index_put((idx,), torch.cat(values))
        self.info.omega_sum = float(omega_sum.detach())
        if settings.interpolate and not bool(interp_enabled):
            self.info.messages.append("WARNING: out of range for three point interpolation: "
                                      "nearest-neighbour F used from there on (as the C program does)")
        return image.reshape(dc.spixels, dc.fpixels)


def _cast(obj, dtype: torch.dtype):
    """A copy of a dataclass of tensors with every floating tensor field cast to ``dtype``."""
    changes = {f.name: getattr(obj, f.name).to(dtype) for f in fields(obj)
               if isinstance(getattr(obj, f.name), torch.Tensor) and getattr(obj, f.name).is_floating_point()}
    return replace(obj, **changes)


def _progress(total: int, progress: bool | None):
    """A tqdm bar on stderr: always when asked, never when refused, else only for renders over ~2 s."""
    if progress is False or total <= 1:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc="rendering", unit="chunk", file=sys.stderr, delay=0 if progress else 2.0,
                leave=False)
