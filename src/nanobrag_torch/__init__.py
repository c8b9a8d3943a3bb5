"""nanobrag-torch: a vectorized, differentiable PyTorch port of the nanoBragg diffraction simulator.

    config = nb.config_from_argv("-cell 100 100 100 90 90 90 -default_F 100 -N 5".split())
    model = nb.load_model(config)          # reads the files the config names -> tensors
    image = nb.render(model)               # pure; differentiable in the model's continuous parameters
    water = nb.amorphous_sample("water.stol", thickness=1e-4)   # nonBragg's amorphous background
    image = image + nb.render_background(model, water)          # same units: photons per pixel
    nb.write_c_outputs(image, model, nb.outputs_from_config(config))   # C's files

Citations "§N.M" in this package name sections of docs/c-behaviour.md (the C program's behaviour we mirror).
"""
__version__ = "0.1.0"

from .amorphous import AmorphousSample, amorphous_sample, render_amorphous, render_background  # noqa: E402
from .config import SimConfig, build_config  # noqa: E402
from .flags import parse_argv  # noqa: E402
from .io.outputs import Outputs, outputs_from_config, write_c_outputs  # noqa: E402
from .load import build_model, load_model, read_inputs  # noqa: E402
from .model import Beam, Crystal, Detector, Model, Sampling, StructureFactors  # noqa: E402
from .renderer import RenderResult, render, render_details  # noqa: E402


def config_from_argv(argv: list[str]) -> SimConfig:
    """A SimConfig from C-style command-line flags (the same the CLI takes)."""
    return build_config(parse_argv(list(argv)))


__all__ = ["SimConfig", "build_config", "config_from_argv", "parse_argv", "load_model", "build_model",
           "read_inputs", "render", "render_details", "RenderResult", "Model", "Crystal", "Detector", "Beam",
           "StructureFactors", "Sampling", "Outputs", "outputs_from_config", "write_c_outputs", "AmorphousSample",
           "amorphous_sample", "render_amorphous", "render_background", "__version__"]
