"""The old name of :mod:`nanobrag_torch.response.detector`, kept for users' imports."""
import sys

from .response import detector as _moved

sys.modules[__name__] = _moved
