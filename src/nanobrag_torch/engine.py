"""Which kernel renders: the compiled CPU kernel (numba) where it may, else the eager torch kernel (the reference,
the GPU path and the autograd path). Shared by the Bragg render (``renderer``) and the amorphous one."""
from __future__ import annotations

import importlib

from .errors import UsageError

KERNELS = ("auto", "torch", "numba")


def compiled_kernel(kernel: str, why: str | None, module: str):
    """The compiled CPU kernel module ``module`` of this package (numba) when ``kernel`` ("auto" or "numba")
    may use it and nothing rules it out (``why``: the reason it cannot render, or None), else None: the eager
    kernel. With "numba" a reason (or numba missing) is a one-line usage error."""
    if kernel not in KERNELS:
        raise UsageError(f"-kernel: expected one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "torch":
        return None
    if why is None:
        try:
            return importlib.import_module(f".{module}", __package__)
        except ImportError:
            why = "numba is not installed (pip install numba)"
    if kernel == "numba":
        raise UsageError(f"-kernel numba: the fused CPU kernel does not render {why}; use -kernel torch"
                         if not why.startswith("numba") else f"-kernel numba: {why}")
    return None
