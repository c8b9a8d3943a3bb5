"""The same render on every device and dtype the ``device``/``dtype`` fixtures give (tests/conftest.py).

The reference is the CPU float64 render, the C program's precision (bit-identical to C on the golden
corpus). Every other combination must pass the parity thresholds of its dtype against it: the same judge
(tools.metrics.verdict) and the same table (tools.thresholds) as the golden-corpus tests. On a machine
without a GPU the CUDA parameters are skipped.
"""
from __future__ import annotations

import pytest
import torch

from nanobrag_torch import config_from_argv, load_model, render
from tools.metrics import compare_images, verdict

# Small, but through the kernel's main paths: mosaic domains, a phi sweep, 2x2 sub-pixels, a triclinic cell.
ARGV = ("-cell 70 80 90 75 85 95 -misset 10 20 30 -default_F 100 -N 4 -mosaic 0.5 -mosaic_domains 3 "
        "-mosaic_seed 7 -phi 0 -osc 1 -phisteps 2 -lambda 1.2 -distance 100 -detpixels 24 -oversample 2 "
        "-nonoise -nopgm").split()


def _render(tmp_path, device, dtype) -> torch.Tensor:
    cfg = config_from_argv(ARGV).with_engine(device=str(device), dtype=str(dtype).removeprefix("torch."))
    return render(load_model(cfg, workdir=tmp_path), kernel="torch", progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("ref"), "cpu", torch.float64)


def test_render_matches_the_cpu_float64_render(tmp_path, device, dtype, tol, reference):
    img = _render(tmp_path, device, dtype)
    assert img.dtype == dtype and img.device.type == device.type
    assert float(reference.max()) > 10 * float(reference.mean()), "the case must have spots, not a flat field"
    m = compare_images(reference.numpy(), img.double().cpu().numpy())
    passed, reasons = verdict(m, tol.float_image)
    assert passed, (reasons, m)
    if dtype == torch.float64 and device.type == "cpu":
        assert torch.equal(img, reference)  # one code path, one result: the render is deterministic
