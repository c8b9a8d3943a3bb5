"""Fixtures shared by the tests: where a tensor computation runs and in which precision, and how close it
must come to an independent computation (one tolerance table for unit tests and parity: tools.thresholds).

* ``device``: ``cpu``, and ``cuda`` where a GPU is present; the CUDA parameter is skipped cleanly otherwise.
* ``dtype``: ``torch.float64`` (the C program's precision, our default) and ``torch.float32``.
* ``tol``: ``tools.thresholds.tolerances(dtype)`` for the current ``dtype``.

A test that parametrizes ``dtype`` itself overrides the fixture, as pytest does for any fixture name.
"""
from __future__ import annotations

import pytest
import torch

from tools.thresholds import tolerances

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))])
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def tol(dtype):
    return tolerances(dtype)
