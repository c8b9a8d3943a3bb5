"""The truth of a simulation as a DIALS experiment list (-exptout FILE, ``write_experiments``): JSON in
dxtbx's schema (as DIALS 3.12 writes it), built without importing dxtbx, so that what a processing program
found (``dials.index``'s ``indexed.expt``) can be compared with what was simulated.

Everything is in the imgCIF laboratory frame DIALS uses (``lab_frame``): the same frame dxtbx builds when it
reads our NXmx and CBF files, so the numbers compare directly.

* beam: direction (sample to source, +z), wavelength (Å), polarization normal and fraction (C's -polar_vector
  and -polar); one per file (dispersion and divergence are not described).
* detector: one panel: origin (outer corner of pixel (0, 0)), fast and slow axes (mm), pixel size, image
  size, sensor thickness and mu (C's -detector_thick and attenuation, none when thickness is 0); P panels
  (``panels.Panels``, -expt): every panel, with the hierarchy's groups (``detector_dict``).
* goniometer and scan (rotation series, or one image with -osc > 0): the spindle as the rotation axis; image
  range, the first frame's start angle and the oscillation per frame (degrees), exposure times and epochs.
* crystal: the real-space vectors a, b, c (Å) at spindle angle 0, the datum DIALS' crystal models refer to
  (the setting at angle φ is the rotation about the axis by φ, as C rotates); P 1. For stills (no goniometer)
  each experiment's crystal is its own frame's orientation at -phi. The unmosaiced crystal: the mosaic
  domains are not described.
* imageset (datasets only): the frames the run wrote: the CBF template, else the NXmx file, else the
  -noisefile/-intfile template, with paths relative to the JSON file.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .expt import group_frames
from .lab_frame import imgcif_setup

COUNT_MAX = 65535.0  # the integer images' saturation (uint16)


@dataclass(frozen=True)
class ScanRange:
    """A rotation scan: the first frame's start angle and the oscillation per frame (degrees), how many frames,
    the exposure per frame (s) and the first frame's epoch (s since 1970)."""

    start_deg: float
    osc_deg: float
    frames: int = 1
    exposure: float = 1.0
    epoch: float = 0.0


@dataclass(frozen=True)
class ImageFiles:
    """The image files the experiments refer to: a per-frame name template with a run of '#' (CBF, SMV), or
    one file holding every frame (NXmx, ``multi``)."""

    name: str
    multi: bool = False


def _vec(x) -> list[float]:
    return [float(v) + 0.0 for v in np.asarray(x, dtype=np.float64)]


def beam_dict(model) -> dict:
    """dxtbx's Beam: sample-to-source direction, wavelength (Å), polarization."""
    st = imgcif_setup(model)
    return {"direction": [0.0, 0.0, 1.0], "wavelength": st.wavelength, "divergence": 0.0,
            "sigma_divergence": 0.0, "polarization_normal": _vec(st.polarization_normal),
            "polarization_fraction": st.polarization_fraction, "flux": 0.0, "transmission": 1.0}


def _panel(name: str, fast, slow, origin, pixel, size, trusted, thickness, material, mu, px_mm) -> dict:
    return {"name": name, "type": "SENSOR_PAD", "fast_axis": _vec(fast), "slow_axis": _vec(slow),
            "origin": _vec(origin), "raw_image_offset": [0, 0], "image_size": list(size),
            "pixel_size": [pixel, pixel], "trusted_range": list(trusted), "thickness": thickness,
            "material": material, "mu": mu, "identifier": "", "mask": [], "gain": 1.0, "pedestal": 0.0,
            "px_mm_strategy": {"type": px_mm}}


def _node(name: str, origin, children: list) -> dict:
    """A hierarchy group: axes along imgCIF x and y, its origin relative to its parent's, its children."""
    node = _panel(name, (1, 0, 0), (0, 1, 0), origin, 0.0, (0, 0), (0.0, 0.0), 0.0, "", 0.0, "SimplePxMmStrategy")
    node["pixel_size"] = [0.0, 0.0]
    node["type"] = ""
    node["children"] = children
    return node


def detector_dict(model) -> dict:
    """dxtbx's Detector: the panel(s) placed as the simulation placed them. One panel sits under a root group at
    the origin; P panels (``panels.Panels``) keep their hierarchy: each group a frame at the mean of its
    panels' origins (axes along x and y), each panel's origin relative to its innermost group's (dxtbx
    stores local frames), under a root group at the origin when no group holds every panel."""
    st = imgcif_setup(model)
    det = model.detector
    thick_mm = float(det.thickness) * 1000.0
    sensor = thick_mm > 0

    def panel(name, fast, slow, origin) -> dict:
        return _panel(name, fast, slow, origin, st.pixel_size, (det.fpixels, det.spixels), (-1.0, COUNT_MAX),
                      thick_mm, "Si" if sensor else "", float(det.mu) / 1000.0 if sensor else 0.0,
                      "ParallaxCorrectedPxMmStrategy" if sensor else "SimplePxMmStrategy")

    if not hasattr(det, "panels"):
        return {"panels": [panel("nanoBragg simulated detector", st.fast, st.slow, st.origin)],
                "hierarchy": _node("", (0, 0, 0), [{"panel": 0}])}
    h = group_frames(det.groups, st.origin)
    panels = [panel(det.names[p] if p < len(det.names) and det.names[p] else f"panel{p}", st.fast[p], st.slow[p],
                    h.relative(h.inner[p], st.origin[p])) for p in range(det.panels)]

    def children(k: int | None) -> list:
        kids = [node(g) for g, up in enumerate(h.parents) if up == k]
        return kids + [{"panel": p} for p in range(det.panels) if h.inner[p] == k]

    def node(k: int) -> dict:
        return _node(f"group{k}", h.relative(h.parents[k], h.pivots[k]), children(k))

    tops = [k for k, up in enumerate(h.parents) if up is None]
    whole = len(tops) == 1 and len(set(h.groups[tops[0]])) == det.panels
    return {"panels": panels, "hierarchy": node(tops[0]) if whole else _node("", (0, 0, 0), children(None))}


def goniometer_dict(model) -> dict:
    """dxtbx's Goniometer: one axis, the spindle."""
    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return {"rotation_axis": _vec(imgcif_setup(model).spindle), "fixed_rotation": identity,
            "setting_rotation": identity}


def scan_dict(scan: ScanRange) -> dict:
    """dxtbx's Scan (DIALS 3.12's layout): images 1..N, (start, width) in degrees, exposures and epochs."""
    n = scan.frames
    return {"image_range": [1, n], "batch_offset": 0, "oscillation": [scan.start_deg, scan.osc_deg],
            "exposure_time": [scan.exposure] * n, "epochs": [scan.epoch + i * scan.exposure for i in range(n)],
            "valid_image_ranges": {}}


def crystal_dict(model, at_phi: bool) -> dict:
    """dxtbx's Crystal: real-space a, b, c (Å) after the misset, at spindle angle 0 (``at_phi``: rotated to the
    model's -phi, as a still is exposed), space group P 1."""
    import torch

    from ..geometry import rotate_axis, unitize
    from ..crystal import crystal_geometry

    cr = crystal_geometry(model)
    abc = torch.stack((cr.a0, cr.b0, cr.c0)) * 1e10
    if at_phi and model.crystal.spindle_axis is not None:
        spindle = unitize(torch.as_tensor(model.crystal.spindle_axis, dtype=abc.dtype))
        abc = rotate_axis(abc, spindle, torch.as_tensor(model.crystal.phi0, dtype=abc.dtype))
    R = imgcif_setup(model).to_imgcif
    a, b, c = (R @ v for v in abc.detach().cpu().numpy())
    return {"__id__": "crystal", "real_space_a": _vec(a), "real_space_b": _vec(b), "real_space_c": _vec(c),
            "space_group_hall_symbol": " P 1"}


def _imageset(kind: str, files: list[str], indices: list[int] | None) -> dict:
    d = {"__id__": kind}
    d.update({"template": files[0]} if kind == "ImageSequence" else {"images": files})
    if indices is not None:
        d["single_file_indices"] = indices
    d.update({"mask": None, "gain": None, "pedestal": None, "dx": None, "dy": None,
              "params": {"dynamic_shadowing": "Auto", "multi_panel": False}})
    return d


def experiment_list(model, *, scan: ScanRange | None = None, stills: list | None = None,
                    images: ImageFiles | None = None, frame_name=None, relative_to: str | Path | None = None
                    ) -> dict:
    """The experiment list (a dict in dxtbx's JSON schema) of a simulation of ``model``.

    * ``scan``: a rotation: one experiment with goniometer, scan and the crystal at spindle angle 0;
    * ``stills``: a list of per-frame models (their crystals differ): one experiment each, no goniometer;
    * neither: one still of ``model``.
    ``images`` names the frames (``frame_name(template, i)`` expands a template; names relative to the folder
    ``relative_to``); None: no imageset.
    """
    def rel(name: str) -> str:
        return os.path.relpath(name, relative_to) if relative_to is not None else name

    out = {"__id__": "ExperimentList", "experiment": [], "imageset": [], "beam": [beam_dict(model)],
           "detector": [detector_dict(model)], "goniometer": [], "scan": [], "crystal": [], "profile": [],
           "scaling_model": []}
    if scan is not None:
        out["goniometer"].append(goniometer_dict(model))
        out["scan"].append(scan_dict(scan))
        out["crystal"].append(crystal_dict(model, at_phi=False))
        exp = {"__id__": "Experiment", "identifier": "nanobrag-torch truth 0", "beam": 0, "detector": 0,
               "goniometer": 0, "scan": 0, "crystal": 0}
        if images is not None:
            indices = list(range(scan.frames)) if images.multi else None
            out["imageset"].append(_imageset("ImageSequence", [rel(images.name)], indices))
            exp["imageset"] = 0
        out["experiment"].append(exp)
        return out
    for i, m in enumerate(stills if stills is not None else [model]):
        out["crystal"].append(crystal_dict(m, at_phi=True))
        exp = {"__id__": "Experiment", "identifier": f"nanobrag-torch truth {i}", "beam": 0, "detector": 0,
               "crystal": i}
        if images is not None:
            name = images.name if images.multi or frame_name is None else frame_name(images.name, i)
            out["imageset"].append(_imageset("ImageSet", [rel(name)], [i] if images.multi else None))
            exp["imageset"] = len(out["imageset"]) - 1
        out["experiment"].append(exp)
    return out


def experiments_json(expts: dict) -> bytes:
    """The JSON text of an experiment list, as dxtbx writes it (indent 2)."""
    return (json.dumps(expts, indent=2) + "\n").encode()


def single_run_experiments(model) -> dict:
    """One image of ``model`` (the command line without -frames/-stills): a rotation of one frame from -phi
    over -osc, or a still when -osc is 0."""
    osc = float(model.crystal.osc)
    if osc > 0 and model.crystal.spindle_axis is not None:
        return experiment_list(model, scan=ScanRange(math.degrees(float(model.crystal.phi0)), math.degrees(osc)))
    return experiment_list(model)


def write_experiments(model, path, **kw) -> None:
    """Write the experiment list of ``model`` to ``path`` (atomically): ``experiment_list``'s keyword arguments,
    or none for one image as the command line renders it (``single_run_experiments``)."""
    from .atomic import write_atomically

    expts = experiment_list(model, **kw) if kw else single_run_experiments(model)
    write_atomically([(path, experiments_json(expts), None)])
