"""Our numba kernels' start: their on-disk cache loaded without numba's registry refresh.

Before numba loads a cached function it refreshes its type and lowering registries (``BaseContext.refresh``:
it starts numba's runtime, then imports every implementation module numba has, ~0.2-0.3 s per process here).
Loading machine code from the cache needs only the runtime, and compiling refreshes the registries itself
(``CompilerBase`` does, so a cache miss still compiles as always). ``fast_cache_loads`` makes one dispatcher's
cache skip that refresh; nothing else in the process changes. It relies on numba's private cache API, so it
applies only to the numba releases it was checked against (``CHECKED``) and leaves any other numba, or a cache
without the methods used, alone. What cached code needs from the refresh besides the runtime: symbols that
implementation modules register when imported (e.g. ``numba.cpython.hashing``'s hash secret, for code that
hashes); none of our kernels uses them, and unpickling a cached kernel imports the modules its types name.
This module does not import numba.
"""
from __future__ import annotations


CHECKED = ("0.68",)  # numba major.minor releases whose Cache.load_overload is refresh + guarded _load_overload


def fast_cache_loads(dispatcher):
    """``dispatcher`` (``numba.njit(cache=True)``) with cache loads that skip the registry refresh; returned."""
    import sys

    numba = sys.modules.get("numba")
    if numba is None or ".".join(getattr(numba, "__version__", "").split(".")[:2]) not in CHECKED:
        return dispatcher
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
