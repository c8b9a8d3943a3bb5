"""nanobrag-torch: a vectorized, differentiable PyTorch port of the nanoBragg diffraction simulator.

    config = nb.config_from_argv("-cell 100 100 100 90 90 90 -default_F 100 -N 5".split())
    model = nb.load_model(config)          # reads the files the config names -> tensors
    image = nb.render(model)               # pure; differentiable in the model's continuous parameters
    water = nb.amorphous_sample("water.stol", thickness=1e-4)   # nonBragg's amorphous background
    image = image + nb.render_background(model, water)          # same units: photons per pixel
    nb.write_c_outputs(image, model, nb.outputs_from_config(config))   # C's files
    sf = nb.structure_factors_from_model("model.pdb", d_min=2.0)       # |F| in P1 from a model (gemmi)
    nb.write_experiments(model, "truth.expt")   # the simulation as a DIALS experiment list
    images = nb.apply_detector_response(image, nb.DetectorResponse(seed=1))  # noisify's detector images

Citations "§N.M" in this package name sections of docs/c-behaviour.md (the C program's behaviour we mirror).
"""
__version__ = "0.1.0"

# The public names, imported on first use (PEP 562): `python -m nanobrag_torch -h` and a bad flag answer without
# importing torch, which alone takes ~2 s.
_LAZY = {
    "SimConfig": "config", "build_config": "cmdline.replay", "parse_argv": "cmdline.flags",
    "Outputs": "io.outputs", "outputs_from_config": "io.outputs", "write_c_outputs": "io.outputs",
    "write_experiments": "io.experiments",
    "build_model": "load", "load_model": "load", "read_inputs": "load",
    "Beam": "model", "Crystal": "model", "Detector": "model", "Model": "model", "Sampling": "model",
    "StructureFactors": "model",
    "RenderResult": "renderer", "render": "renderer", "render_details": "renderer",
    "apply_detector_response": "response.detector", "DetectorResponse": "response.detector",
    "DetectorImages": "response.detector",
    "AmorphousSample": "amorphous", "amorphous_sample": "amorphous", "render_amorphous": "amorphous",
    "render_background": "amorphous",
    "structure_factors_from_model": "structure_factors", "structure_factors_from_mtz": "structure_factors",
    "steady_heap": "heap",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def config_from_argv(argv: list[str]):
    """A SimConfig from C-style command-line flags (the same the CLI takes)."""
    from .cmdline.replay import build_config
    from .cmdline.flags import parse_argv

    return build_config(parse_argv(list(argv)))


__all__ = ["SimConfig", "build_config", "config_from_argv", "parse_argv", "load_model", "build_model",
           "read_inputs", "render", "render_details", "RenderResult", "Model", "Crystal", "Detector", "Beam",
           "StructureFactors", "Sampling", "Outputs", "outputs_from_config", "write_c_outputs", "write_experiments",
           "__version__",
           "apply_detector_response", "DetectorResponse", "DetectorImages", "AmorphousSample", "amorphous_sample",
           "render_amorphous", "render_background", "structure_factors_from_model", "structure_factors_from_mtz",
           "steady_heap"]
