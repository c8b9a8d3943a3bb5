"""What a render needs in memory, and how it is cut into chunks to fit the budget (``-max_memory_gb``).

``memory_needs`` counts the whole-image buffers and the eager kernel's intermediates per pixel;
``check_memory`` refuses up front a render that cannot fit; ``chunk_pixels`` picks the pixels per chunk of the
eager kernel and whether the backward must recompute chunks (torch.utils.checkpoint) to stay in the budget.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .errors import UsageError

# Intermediates of the eager kernel per evaluation (bytes, float64; halved in float32).
_BYTES_PER_EVAL = 8 * 48
_BYTES_PER_EVAL_INTERP = 8 * (48 + 3 * 64 + 64)
# What autograd keeps for the backward, per evaluation: measured ~115 B (nearest F, gradient w.r.t. the
# orientation matrix and the distance, 1024² x 10 domains: 1.16 GB peak), kept with a margin; tricubic F keeps
# its 64 neighbours and their weights as well.
_BYTES_PER_EVAL_GRAD = 8 * 20
_BYTES_PER_EVAL_GRAD_INTERP = 8 * (20 + 3 * 64 + 64)
# Whole-image buffers per pixel besides the image and its chunks: the pixel index (int64, in torch and in the
# fused kernel), the rendered mask and the fused kernel's two per-pixel flags (bool).
_BYTES_PER_PIXEL = 8 + 8 + 1 + 2
# Evaluations per chunk on the CPU. Measured (eager, float32/64, 1 and 2 threads: 1024^2 one source, 512^2 x 10
# domains, 2x2 oversampling x 3x3 divergence x 10 domains, the Phase D two sources): with the heap held steady
# (heap.steady_heap, as our programs do) 2^17 is the fastest or within 5 % of it, 2^16 and 2^18 up to 20 %
# slower; with glibc's default thresholds, freed buffers are now and then returned to the system between chunks
# and every chunk size runs 15-35 % slower and varies from run to run.
_CPU_CHUNK_EVALS = 1 << 17
# With gradients every chunk's graph is kept anyway, and fewer, larger chunks cost less: 1024^2 x 10 domains,
# forward + backward, 1.31 s and 1.08 GB peak at 2^19 against 1.44 s and 1.66 GB at 2^17 (steady heap).
_CPU_CHUNK_EVALS_GRAD = 1 << 19


def evaluations_per_pixel(model) -> int:
    """Kernel evaluations per pixel: layers x sub-pixels x sources x crystals x phi steps x mosaic domains."""
    batch = math.prod(model.crystal.batch_shape)
    return (model.detector.thicksteps * model.sampling.oversample ** 2 * model.beam.sources * batch
            * model.crystal.phisteps * model.crystal.mosaic_domains)


def memory_needs(model) -> tuple[int, int]:
    """(bytes of the whole-image buffers, bytes of the eager kernel's intermediates per pixel) of a render:
    the image and its chunks, the pixel index and mask; every evaluation of a pixel at once."""
    det = model.detector
    item = torch.finfo(model.dtype).bits // 8
    batch = math.prod(model.crystal.batch_shape)
    image = math.prod(det.shape) * (_BYTES_PER_PIXEL + 2 * item * batch)
    per = _BYTES_PER_EVAL_INTERP if model.structure_factors.interpolate else _BYTES_PER_EVAL
    if model.dtype == torch.float32:
        per //= 2
    return image, evaluations_per_pixel(model) * per


class Chunking(NamedTuple):
    """Eager chunks: ``pixels``, the size to aim at; ``limit``, the most the memory budget allows (the CPU aims
    below it, at cache-sized chunks); ``recompute``, recompute each chunk in the backward (gradients over the
    budget)."""
    pixels: int
    limit: int
    recompute: bool


def chunk_pixels(model, max_memory_gb: float, grad: bool) -> Chunking:
    """Pixels per chunk from what the budget leaves beside the image (see ``Chunking``)."""
    det = model.detector
    evals = evaluations_per_pixel(model)
    image, per_pixel = memory_needs(model)
    budget = max_memory_gb * 2**30 - image
    pixels = math.prod(det.shape)
    limit = int(max(1, min(pixels, budget // max(1, per_pixel))))
    per_grad = _BYTES_PER_EVAL_GRAD_INTERP if model.structure_factors.interpolate else _BYTES_PER_EVAL_GRAD
    recompute = grad and pixels * evals * per_grad > budget
    # a recomputed chunk holds its whole graph at once in the backward: the forward's size then
    target = _CPU_CHUNK_EVALS_GRAD if grad and not recompute else _CPU_CHUNK_EVALS
    n = min(limit, target // max(1, evals)) if model.device.type == "cpu" else limit
    return Chunking(int(max(1, n)), limit, recompute)


def check_memory(model, max_memory_gb: float, eager: bool) -> None:
    """Refuse up front a render that cannot fit ``max_memory_gb``: its whole-image buffers plus (for the eager
    kernel, which holds every evaluation of a chunk at once) the intermediates of a chunk of one pixel."""
    if not (isinstance(max_memory_gb, (int, float)) and math.isfinite(max_memory_gb) and max_memory_gb > 0):
        raise UsageError(f"-max_memory_gb: must be positive, got {max_memory_gb}")
    image, per_pixel = memory_needs(model)
    need = image + (per_pixel if eager else 0)
    if need <= max_memory_gb * 2**30:
        return
    det = model.detector
    dtype = str(model.dtype).replace("torch.", "")
    parts = f"{'x'.join(str(n) for n in det.shape[::-1])} pixels in {dtype}: {_size(image)} of image buffers"
    if eager:
        parts += f", {_size(per_pixel)} of intermediates for each pixel"
    raise UsageError(f"-max_memory_gb: this render needs at least {_size(need)} ({parts}), more than the budget "
                     f"of {max_memory_gb:g} GiB; raise -max_memory_gb or render fewer pixels, sources, steps or "
                     "domains")


def _size(nbytes: float) -> str:
    """A byte count for a message: 3.1 GiB, 12 MiB, 480 KiB, 96 B."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= factor:
            return f"{nbytes / factor:.3g} {unit}"
    return f"{nbytes:.0f} B"



__all__ = ["memory_needs", "check_memory", "chunk_pixels", "Chunking", "evaluations_per_pixel"]
