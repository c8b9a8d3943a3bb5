"""The C library's heap, held steady for the eager kernel (no torch import: the programs call it first thing)."""
from __future__ import annotations

import ctypes


def steady_heap() -> bool:
    """Fix glibc malloc's thresholds so the eager kernel's freed chunk buffers (``budget.chunk_pixels``) are
    reused, not handed back to the system: blocks up to 32 MB come from the heap and up to 1 GiB of freed heap
    is kept (mallopt). With the default, adaptive thresholds those buffers are now and then returned between
    chunks and page-faulted in again: eager CPU renders ran 15-35 % slower, and their times varied by +-20 %
    from run to run. Process-wide, so the programs call it and a library user opts in (``nb.steady_heap()``).
    False (nothing changed) where the C library has no mallopt (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's, without a library search
    except (OSError, AttributeError, TypeError):  # TypeError: Windows, where CDLL needs a name
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    mmap_set = bool(mallopt(m_mmap_threshold, 32 << 20))
    trim_set = bool(mallopt(m_trim_threshold, 1 << 30))
    return mmap_set and trim_set


__all__ = ["steady_heap"]
