"""Datasets from one model: a rotation series or a set of stills, frame by frame (issue 13).

A frame is exactly one single-image run of the command line with one flag changed:

* rotation series (``frames=N``): frame i is the run with ``-phi (phi + i*osc)`` (degrees, the sum taken in
  double): it starts at that spindle angle and integrates over the model's ``phistep`` x ``phisteps`` as C
  does for one image. Pass ``phi`` (the -phi given) for frames bit-identical to those runs.
* stills (``stills=...``): frame i is the run with ``-misset rx ry rz`` (degrees) from a list, or with
  ``-misset random -misset_seed (misset_seed + i)``: the random orientation of C's generator (§7.4, §7.5)
  with the seed advanced by one per frame.
* noise: frame i's noise image is the run's with ``-seed (seed + i)``, C's generator continuing C's state
  after the misset and mosaic draws (§7.6), as in that run.

``render_series`` renders frames serially in this process or, given a ``dask.distributed`` client, as
tasks on its workers (``nanobrag_torch.datasets.cluster``); either way it yields ``Frame`` objects. Writing them is
the job of ``io.dataset``.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..cmdline.c_rules import deg_to_rad
from ..constants import RTD
from ..errors import UsageError
from ..model import SETUP_DTYPE, Model
from ..crandom.streams import CRandom, random_misset
from .cluster import resolve_device


def phi_radians(phi_deg: float) -> float:
    """-phi in degrees -> radians, the command line's own conversion (``c_rules.deg_to_rad``: value / RTD, as C)."""
    return deg_to_rad(float(phi_deg))


def misset_radians(angles_deg) -> tuple[float, float, float]:
    """-misset rx ry rz in degrees -> radians, the command line's own conversion (``c_rules.deg_to_rad``)."""
    return tuple(deg_to_rad(float(x)) for x in angles_deg)


@dataclass(frozen=True)
class SeriesPlan:
    """What varies from frame to frame. Angles in degrees, as the flags take them.

    * rotation: ``phi`` (start of frame 0; None = the model's phi0) and ``osc`` (degrees per frame);
    * stills: ``missets`` (one (rx, ry, rz) per frame) or ``misset_seed`` (random, frame i seeded +i);
    * ``seed``: noise seed of frame 0 (frame i: seed + i); None = no noise image; ``adc``: the noise
      image's offset (-adc); ``counts_adc``: the offset of ``Frame.counts``, the same photon draws as the
      noise image with this offset (what the NXmx and CBF files hold: 0 = photon counts); None = no counts.
    """

    frames: int
    rotation: bool = True
    phi: float | None = None
    osc: float = 0.0
    missets: tuple[tuple[float, float, float], ...] | None = None
    misset_seed: int | None = None
    seed: int | None = None
    adc: float = 40.0
    counts_adc: float | None = None

    def __post_init__(self):
        if self.frames < 1:
            raise UsageError(f"a series needs at least one frame, got {self.frames}")
        if not self.rotation and self.missets is None and self.misset_seed is None:
            raise UsageError("stills need orientations: a list of missets or a misset seed")
        if self.missets is not None and len(self.missets) < self.frames:
            raise UsageError(f"stills: {len(self.missets)} orientations for {self.frames} frames")

    def phi_deg(self, i: int, model: Model | None = None) -> float | None:
        """Frame i's starting spindle angle (degrees), or None for stills."""
        if not self.rotation:
            return None
        start = self.phi if self.phi is not None else float(model.crystal.phi0) * RTD
        return start + i * self.osc

    def misset_deg(self, i: int) -> tuple[float, float, float] | None:
        """Frame i's misset angles (degrees) from the list; None for a rotation series or random stills."""
        return None if self.missets is None else tuple(self.missets[i])

    def noise_seed(self, i: int) -> int | None:
        return None if self.seed is None else self.seed + i


def frame_model(model: Model, plan: SeriesPlan, i: int) -> Model:
    """The model of frame i: ``model`` with frame i's phi0 (rotation) or misset (stills) substituted."""
    dev = model.device
    if plan.rotation:
        if plan.phi is None:
            phi0 = float(model.crystal.phi0) + phi_radians(i * plan.osc)
        else:
            phi0 = phi_radians(plan.phi_deg(i))
        return model.replace(crystal__phi0=torch.tensor(phi0, dtype=SETUP_DTYPE, device=dev))
    if plan.missets is not None:
        misset = misset_radians(plan.missets[i])
    else:  # -misset random with -misset_seed (misset_seed + i): C's draw (§7.4-7.5), three ran1 deviates
        _, misset = random_misset(plan.misset_seed + i, CRandom())
    return model.replace(crystal__misset=torch.tensor(misset, dtype=SETUP_DTYPE, device=dev))


@dataclass
class Frame:
    """One rendered frame: the float32 image (what -floatfile stores), C's noise image (uint16, -adc added)
    with its photon count and overloads when the plan has a noise seed, the same draws with the plan's
    ``counts_adc`` (``counts``; the noise image itself when the offsets agree), and where it came from."""

    index: int
    image: np.ndarray
    noise: np.ndarray | None
    photons: float
    overloads: int
    phi_deg: float | None
    misset_rad: tuple[float, float, float]
    seconds: float
    interpolation_disabled: bool = False
    worker: str | None = None
    counts: np.ndarray | None = None


def render_frame(model: Model, plan: SeriesPlan, i: int, kernel: str = "auto",
                 max_memory_gb: float = 2.0) -> Frame:
    """Render frame i of ``plan`` (float image and, with a noise seed, the noise image) on ``model``'s device."""
    from ..io.outputs import noise_image, roi_of
    from ..renderer import render_details

    t0 = time.perf_counter()
    fm = frame_model(model, plan, i)
    res = render_details(fm, kernel=kernel, max_memory_gb=max_memory_gb, progress=False)
    image32 = res.image.detach().to("cpu").numpy().astype(np.float32, copy=False)
    noise, counts, photons, overloads = None, None, 0.0, 0
    if plan.seed is not None:
        state = model.info.rng or CRandom()  # the run's state after its draws
        roi, seed = roi_of(fm.detector), plan.noise_seed(i)
        noise, photons, overloads = noise_image(image32, roi, seed, plan.adc, copy.deepcopy(state))
        if plan.counts_adc is not None:  # the same draws (same state and seed) with the other offset
            counts = noise if plan.counts_adc == plan.adc else \
                noise_image(image32, roi, seed, plan.counts_adc, copy.deepcopy(state))[0]
    return Frame(index=i, image=image32, noise=noise, photons=photons, overloads=overloads,
                 phi_deg=plan.phi_deg(i, model), misset_rad=tuple(float(x) for x in fm.crystal.misset),
                 seconds=time.perf_counter() - t0, interpolation_disabled=bool(res.interpolation_disabled),
                 counts=counts)


def make_plan(model: Model, frames: int | None = None, *, osc: float | None = None, phi: float | None = None,
              stills: int | Sequence | None = None, misset_seed: int | None = None, seed: int | None = None,
              adc: float = 40.0, counts_adc: float | None = None) -> SeriesPlan:
    """The plan ``render_series`` renders (see there for the arguments)."""
    if (frames is None) == (stills is None):
        raise UsageError("give either frames=N (a rotation series) or stills=N|orientations (stills)")
    noise = {"seed": seed, "adc": adc, "counts_adc": counts_adc}
    if frames is not None:
        osc = float(model.crystal.osc) * RTD if osc is None else float(osc)
        return SeriesPlan(frames=int(frames), rotation=True, phi=phi, osc=osc, **noise)
    if isinstance(stills, int):
        if misset_seed is None:
            raise UsageError("random stills need a misset_seed (frame i uses misset_seed + i)")
        return SeriesPlan(frames=stills, rotation=False, misset_seed=int(misset_seed), **noise)
    missets = tuple(tuple(float(x) for x in m) for m in stills)
    if any(len(m) != 3 for m in missets):
        raise UsageError("stills: each orientation is three misset angles rx ry rz (degrees)")
    return SeriesPlan(frames=len(missets), rotation=False, missets=missets, **noise)


def render_series(model: Model, frames: int | None = None, *, osc: float | None = None, phi: float | None = None,
                  stills: int | Sequence | None = None, misset_seed: int | None = None, seed: int | None = None,
                  adc: float = 40.0, counts_adc: float | None = None, plan: SeriesPlan | None = None,
                  indices: Iterable[int] | None = None, client=None, kernel: str = "auto", max_memory_gb: float = 2.0,
                  device: str | None = None, frame_fn=None, progress=None) -> Iterator[Frame]:
    """Render a dataset from ``model`` and yield its frames (in index order serially, in completion order
    with a ``client``).

    * ``frames=N``: a rotation series; frame i starts at ``phi + i*osc`` degrees (``phi``: the -phi given,
      default the model's phi0; ``osc`` default the model's -osc) and integrates like one run (module doc).
    * ``stills=N`` with ``misset_seed=S``: random orientations, frame i as ``-misset random -misset_seed S+i``;
      ``stills=[(rx, ry, rz), ...]``: one still per misset (degrees, as -misset).
    * ``seed``: the noise seed of frame 0 (frame i: seed + i); None: no noise image. ``adc`` as -adc;
      ``counts_adc``: also yield the same draws with this offset as ``Frame.counts`` (0: photon counts).
    * ``plan``: a ``SeriesPlan`` instead of the arguments above; ``indices``: render only these frames.
    * ``client``: a ``dask.distributed.Client``: frames become tasks on its workers (``cluster.map_frames``;
      ``device`` "auto" takes each worker's GPU when it has one); None renders here, one after another.
    * ``frame_fn``: a function with ``render_frame``'s signature run per frame (default ``render_frame``);
      ``progress``: called with each finished Frame.
    """
    if plan is None:
        plan = make_plan(model, frames, osc=osc, phi=phi, stills=stills, misset_seed=misset_seed, seed=seed,
                         adc=adc, counts_adc=counts_adc)
    todo = list(range(plan.frames)) if indices is None else list(indices)
    fn = frame_fn or render_frame
    if client is not None:
        from .cluster import map_frames

        frames_iter = map_frames(client, model, plan, todo, kernel=kernel, max_memory_gb=max_memory_gb,
                                 device=device, frame_fn=fn)
    else:
        if device is not None:
            model = model.to(resolve_device(device))
        frames_iter = (fn(model, plan, i, kernel, max_memory_gb) for i in todo)
    for frame in frames_iter:
        if progress is not None:
            progress(frame)
        yield frame


class Progress:
    """Frames done, frames/s and ETA on stderr: a line at most every ``every`` seconds, and a last one."""

    def __init__(self, total: int, skipped: int = 0, stream=None, every: float = 1.0, enabled: bool = True):
        import sys

        self.total, self.skipped, self.done = total, skipped, 0
        self.stream = stream or sys.stderr
        self.every, self.enabled = every, enabled
        self.t0 = time.perf_counter()
        self.last = -math.inf

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.done / dt if dt > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        left = self.total - self.skipped - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        skipped = f" ({self.skipped} already complete)" if self.skipped else ""
        return (f"frames {self.skipped + self.done}/{self.total} done{skipped}, {rate:.3g} frames/s, "
                f"ETA {eta}")

    def __call__(self, frame=None) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.every or self.skipped + self.done >= self.total):
            self.last = now
            print(self.line(), file=self.stream, flush=True)


__all__ = ["Frame", "SeriesPlan", "Progress", "frame_model", "make_plan", "phi_radians", "misset_radians",
           "render_frame", "render_series", "resolve_device"]
