"""nanobrag-torch: a vectorized, differentiable PyTorch port of the nanoBragg diffraction simulator."""
__version__ = "0.1.0"

from .config import SimConfig, build_config  # noqa: E402
from .flags import parse_argv  # noqa: E402
from .simulator import Simulator  # noqa: E402


def config_from_argv(argv: list[str]) -> SimConfig:
    """A SimConfig from C-style command-line flags (the same the CLI takes)."""
    return build_config(parse_argv(list(argv)))


__all__ = ["Simulator", "SimConfig", "build_config", "config_from_argv", "parse_argv", "__version__"]
