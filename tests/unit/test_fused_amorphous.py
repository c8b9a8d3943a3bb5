"""The fused CPU render of amorphous scattering (nanobrag_torch.fused_amorphous) against the eager torch render
(amorphous.render_amorphous with kernel="torch"), on every case of the nonBragg live corpus, in process.

Both do C's arithmetic in C's order; in float64 they differ only where torch sums a 3-vector's squares in
another order than C (the fused kernel keeps C's), a float64 ulp or two of sin(theta)/lambda, so every pixel
agrees to a relative 1e-12 (tolerances("float64").tensor_rtol) and the float32 image the files hold is the
same bit for bit (measured on all 39 cases). In float32 both round at each step, with libm's atan2/cos in the
fused kernel against torch's: the images agree to tolerances("float32").tensor_rtol of the image's maximum.
Parity with the C program itself: tests/parity/test_nonbragg_parity.py (the default kernel is this one).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nanobrag_torch import amorphous, fused
from nanobrag_torch.programs import nonbragg
from nanobrag_torch.errors import UsageError
from tests.parity.test_nonbragg_corpus import CORPUS
from tools.matrix.corpus import load_corpus
from tools.thresholds import tolerances

CASES = [c for c in load_corpus(CORPUS).cases if not c.is_error]


def _model(case, monkeypatch):
    monkeypatch.chdir(CORPUS / "inputs")
    argv = list(case.argv)
    if case.shape[0] * case.shape[1] > 10000:  # the eager render of 256^2 x 36 evaluations takes ~10 s: an ROI
        argv += ["-roi", "100", "163", "0", "63"]
    cfg = nonbragg.build_config(nonbragg.parse(argv))
    inputs = nonbragg.read_inputs(cfg, warn=lambda msg: None)
    return cfg, inputs, *nonbragg.build_model(cfg, inputs)


def _render(case, monkeypatch, dtype, kernel):
    cfg, inputs, det, beam, sample = _model(case, monkeypatch)
    return amorphous.render_amorphous(det, beam, sample, cfg.oversample, dtype=dtype, fmap=cfg.fmap,
                                      keep_last=inputs.img is not None, kernel=kernel)


def _assert_same_float64(ours, eager):
    a, b = eager.numpy(), ours.numpy()
    np.testing.assert_allclose(b, a, rtol=tolerances("float64").tensor_rtol, atol=0)
    assert np.array_equal(a.astype(np.float32).view(np.uint32), b.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fused_matches_eager_float64(case, monkeypatch):
    eager = _render(case, monkeypatch, torch.float64, "torch")
    ours = _render(case, monkeypatch, torch.float64, "numba")
    _assert_same_float64(ours.image, eager.image)
    assert ours.steps == eager.steps
    assert ours.omega_sum == pytest.approx(eager.omega_sum, rel=1e-12)
    if eager.last is not None:  # -img: the last evaluation of every pixel, for C's stol analysis
        assert torch.equal(ours.last["pixels"], eager.last["pixels"])
        assert torch.equal(ours.last["index"], eager.last["index"])
        for key in ("stol", "polar", "omega"):
            np.testing.assert_allclose(ours.last[key].numpy(), eager.last[key].numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", CASES[::4], ids=[c.id for c in CASES[::4]])
def test_fused_matches_eager_float32(case, monkeypatch):
    eager = _render(case, monkeypatch, torch.float32, "torch").image.numpy().astype(np.float64)
    ours = _render(case, monkeypatch, torch.float32, "numba").image.numpy().astype(np.float64)
    assert np.max(np.abs(ours - eager)) <= tolerances("float32").tensor_rtol * np.max(np.abs(eager))


def _case(case_id):
    return next(c for c in CASES if c.id == case_id)


def test_any_thread_count_gives_the_same_image(monkeypatch):
    # tiles are independent (each pixel sums its own terms), so the chunking over threads cannot matter
    case = _case("large_oversample_divergence")
    images = []
    for threads in (1, 3):
        monkeypatch.setattr(fused, "num_threads", lambda t=threads: t)
        images.append(_render(case, monkeypatch, torch.float64, "numba").image)
    assert torch.equal(images[0], images[1])


def test_unsorted_table_follows_cs_walk_in_raster_order(monkeypatch):
    # a table folding back (0.05 then 0.04) inside the detector's sin(theta)/lambda range (0 .. 0.09 / A): C's
    # one stateful search across all evaluations (one thread, pixel by pixel, sub-pixel, source); a binary
    # search per evaluation picks other nodes where the table folds back
    case = _case("table_unsorted")
    cfg, inputs, det, beam, sample = _model(case, monkeypatch)
    xa, ya = amorphous.stol_table(torch.tensor([0.0, 0.02, 0.05, 0.04, 0.07, 0.1, 0.2], dtype=torch.float64),
                                  torch.tensor([2.5, 2.6, 3.0, 4.6, 7.5, 6.2, 5.0], dtype=torch.float64), 1e10)
    folded = amorphous.AmorphousSample(xa, ya, sample.molecules, increasing=False)
    eager = amorphous.render_amorphous(det, beam, folded, cfg.oversample, kernel="torch", keep_last=True)
    ours = amorphous.render_amorphous(det, beam, folded, cfg.oversample, kernel="numba", keep_last=True)
    assert torch.equal(ours.last["index"], eager.last["index"])
    _assert_same_float64(ours.image, eager.image)
    searched = amorphous.AmorphousSample(xa, ya, sample.molecules, increasing=True)
    other = amorphous.render_amorphous(det, beam, searched, cfg.oversample, kernel="torch").image
    assert float((other - eager.image).abs().max() / eager.image.abs().max()) > 1e-3  # the walk matters here


def test_kernel_choice(monkeypatch):
    case = _case("table_default")
    cfg, inputs, det, beam, sample = _model(case, monkeypatch)
    calls = []
    real = amorphous._render_fused
    monkeypatch.setattr(amorphous, "_render_fused", lambda *a: calls.append(1) or real(*a))
    amorphous.render_amorphous(det, beam, sample)
    assert calls == [1]  # auto on the CPU without gradients: fused
    sample.molecules = sample.molecules.clone().requires_grad_(True)
    image = amorphous.render_amorphous(det, beam, sample).image
    assert calls == [1] and image.requires_grad  # a gradient: the eager kernel
    with pytest.raises(UsageError, match="does not render autograd"):
        amorphous.render_amorphous(det, beam, sample, kernel="numba")
    with pytest.raises(UsageError, match="expected one of auto, torch, numba"):
        amorphous.render_amorphous(det, beam, sample, kernel="fast")
