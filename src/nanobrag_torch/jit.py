"""Our numba kernels' start: their on-disk cache loaded without numba's registry refresh.

Before numba loads a cached function it refreshes its type and lowering registries
(``BaseContext.refresh``: it starts numba's runtime, then imports every implementation module numba has, ~0.2-0.3 s
per process here). Loading machine code from the cache needs only the runtime, and compiling refreshes them itself (``CompilerBase`` does,
so a cache miss still compiles as always). ``fast_cache_loads`` makes one dispatcher's cache skip that
refresh; nothing else in the process changes, and a numba whose cache lacks the methods used here is left alone.
This module does not import numba.
"""
from __future__ import annotations


def fast_cache_loads(dispatcher):
    """``dispatcher`` (``numba.njit(cache=True)``) with cache loads that skip the registry refresh; returned."""
    cache = getattr(dispatcher, "_cache", None)
    load = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    if load is None or guard is None or not callable(getattr(cache, "load_overload", None)):
        return dispatcher

    def load_overload(sig, target_context):
        # as numba's own load_overload, less the refresh: only its first step, starting numba's runtime (NRT:
        # its C helpers' symbols and its compiled atomics), which cached code calls
        from numba.core.runtime import rtsys

        rtsys.initialize(target_context)
        with guard():
            return load(sig, target_context)
        return None  # an I/O error the guard swallowed: numba compiles

    cache.load_overload = load_overload
    return dispatcher
