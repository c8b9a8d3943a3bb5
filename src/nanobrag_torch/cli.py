"""The old name of :mod:`nanobrag_torch.programs.nanobragg`, kept for users' imports."""
import sys

from .programs import nanobragg as _moved

sys.modules[__name__] = _moved
