"""jit.fast_cache_loads: cached kernels load without numba's registry refresh, and still compute the same."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("numba")

# numba.np.linalg is imported by numba's registry refresh (BaseContext.refresh), and by nothing our kernels load
PROBE = """
import json, sys
import numpy as np
from nanobrag_torch import fused
from nanobrag_torch.crandom import streams
x = np.linspace(-0.5, 0.5, 101)
s = fused.sinpi_small_array(x)
state, seed = streams.CRandom(), streams.Seed(-7)
draws = [state.gaussdev(seed) for _ in range(3)]  # C's generators (crandom), compiled and cached too
print(json.dumps({"refreshed": "numba.np.linalg" in sys.modules, "sin": float(np.max(np.abs(s - np.sin(np.pi * x)))),
                  "hits": sum(fused.sinpi_small_array.stats.cache_hits.values()), "draws": draws}))
"""


def _probe(cache_dir) -> dict:
    env = {"NUMBA_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_warm_cache_loads_without_the_registry_refresh(tmp_path):
    import numba

    from nanobrag_torch.jit import CHECKED

    cold = _probe(tmp_path)  # compiles (which refreshes the registries) and writes the cache
    warm = _probe(tmp_path)  # loads it
    assert cold["hits"] == 0 and cold["refreshed"]
    checked = ".".join(numba.__version__.split(".")[:2]) in CHECKED
    assert warm["hits"] == 1 and warm["refreshed"] is not checked  # a numba not checked: left alone
    assert warm["sin"] == cold["sin"] and warm["sin"] < 1e-15
    assert warm["draws"] == cold["draws"] and len(set(warm["draws"])) == 3


def test_a_dispatcher_without_the_expected_cache_is_left_alone():
    from nanobrag_torch.jit import fast_cache_loads

    class NoCache:
        _cache = object()

    d = NoCache()
    assert fast_cache_loads(d) is d and not hasattr(d._cache, "load_overload")
