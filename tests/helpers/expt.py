"""Write small DIALS experiment lists (dxtbx's JSON schema) for the multi-panel tests: a hierarchy of groups
whose frames are relative to their parent's, as dxtbx stores them."""
from __future__ import annotations

import json

import numpy as np


def _node(fast, slow, origin, **extra) -> dict:
    return {"name": extra.pop("name", ""), "type": "", "fast_axis": list(map(float, fast)),
            "slow_axis": list(map(float, slow)), "origin": list(map(float, origin)), **extra}


def rot(axis, deg) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def experiment_list(layout: str, size=(32, 24), pixel=0.172, distance=60.0, thickness=0.0, mu=0.0,
                    crystal=None, scan=None) -> dict:
    """A two-group detector in DIALS's lab frame (beam along -z), 4 panels of ``size`` (fast, slow) pixels:
    ``turn`` turns panel 3 by 90 deg in its plane; ``tilt`` tilts panel 1 by 25 deg about its fast axis and
    panel 2 by 15 deg about an oblique axis. Panels sit in local frames of their group (group frames offset
    from the root, which sits at -distance)."""
    w, h = size[0] * pixel, size[1] * pixel
    panels, children = [], []
    for g, gy in enumerate((0.0, -h - 1.0)):
        kids = []
        for j, gx in enumerate((-w - 0.5, 0.5)):
            i = 2 * g + j
            fast, slow, origin = np.array([1.0, 0, 0]), np.array([0, -1.0, 0]), np.array([gx, -gy + 0.3 * i, 0.0])
            if layout == "turn" and i == 3:  # fast along -slow of the others: origin at the other corner
                fast, slow = np.array([0, -1.0, 0]), np.array([-1.0, 0, 0])
                origin = origin + np.array([w, 0, 0])
            if layout == "tilt" and i in (1, 2):
                r = rot(fast if i == 1 else (1.0, 1.0, 0.3), 25.0 if i == 1 else 15.0)
                fast, slow = r @ fast, r @ slow
                origin = origin + np.array([0, 0, 2.0])
            panels.append(_node(fast, slow, origin, name=f"panel{i}", image_size=list(size),
                                pixel_size=[pixel, pixel], thickness=thickness, mu=mu,
                                trusted_range=[-1, 1e6], mask=[], raw_image_offset=[0, 0], material="Si",
                                gain=1.0, pedestal=0.0, identifier="", px_mm_strategy={"type": "SimplePxMmStrategy"}))
            kids.append({"panel": i})
        children.append(_node((1, 0, 0), (0, 1, 0), (0.2 * g, 0.0, 0.1 * g), name=f"group{g}", children=kids))
    root = _node((1, 0, 0), (0, 1, 0), (0, 0, -distance), name="root", children=children)
    doc = {"__id__": "ExperimentList",
           "experiment": [{"__id__": "Experiment", "identifier": "", "beam": 0, "detector": 0}],
           "beam": [{"__id__": "monochromatic", "direction": [0.0, 0.0, 1.0], "wavelength": 1.0,
                     "divergence": 0.0, "sigma_divergence": 0.0, "polarization_normal": [0.0, 1.0, 0.0],
                     "polarization_fraction": 0.999, "flux": 0.0, "transmission": 1.0}],
           "detector": [{"panels": panels, "hierarchy": root}]}
    if crystal is not None:
        doc["crystal"] = [{"__id__": "crystal", "real_space_a": list(crystal[0]), "real_space_b": list(crystal[1]),
                           "real_space_c": list(crystal[2]), "space_group_hall_symbol": " P 1"}]
        doc["experiment"][0]["crystal"] = 0
    if scan is not None:
        doc["goniometer"] = [{"rotation_axis": [1.0, 0.0, 0.0], "fixed_rotation": list(np.eye(3).ravel()),
                              "setting_rotation": list(np.eye(3).ravel())}]
        doc["scan"] = [{"image_range": [1, 1], "oscillation": list(scan), "batch_offset": 0, "exposure_time": [1.0],
                        "epochs": [0.0], "valid_image_ranges": {}}]  # the last three: for dxtbx
        doc["experiment"][0].update(goniometer=0, scan=0)
    return doc


def write_expt(path, layout: str, **kw) -> dict:
    doc = experiment_list(layout, **kw)
    path.write_text(json.dumps(doc, indent=1))
    return doc
