"""The old name of :mod:`nanobrag_torch.datasets.series`, kept for users' imports."""
import sys

from .datasets import series as _moved

sys.modules[__name__] = _moved
