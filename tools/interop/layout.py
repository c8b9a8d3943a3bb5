"""A small multi-module detector for the interop run, written as a DIALS experiment list (dxtbx's JSON schema,
built here with plain ``json``: our -expt input, not an upstream file).

``mini_jungfrau``: modules of ``pixels`` (fast, slow) in ``columns`` x ``rows``, separated by gaps, facing the
beam at ``distance_mm``, the beam through the middle of the array (in the gaps); each column of modules is one
group of the hierarchy under a root group, as a Jungfrau's half-modules sit in quadrants. DIALS's lab frame:
the beam travels along -z, the goniometer axis is +x.
"""
from __future__ import annotations

import json
from pathlib import Path


def frame(name: str, origin, fast=(1.0, 0.0, 0.0), slow=(0.0, -1.0, 0.0), **extra) -> dict:
    """A hierarchy node or panel: its frame relative to its parent's."""
    return {"name": name, "type": "", "fast_axis": list(map(float, fast)), "slow_axis": list(map(float, slow)),
            "origin": list(map(float, origin)), **extra}


def mini_jungfrau(columns: int = 2, rows: int = 4, pixels=(128, 64), pixel_mm: float = 0.2, gap_mm=(1.0, 2.0),
                  distance_mm: float = 50.0, wavelength: float = 1.0, osc_deg: float = 0.5) -> dict:
    """The experiment list of the layout (module doc): detector, beam, goniometer and a one-image scan."""
    w, h = pixels[0] * pixel_mm, pixels[1] * pixel_mm
    width, height = columns * w + (columns - 1) * gap_mm[0], rows * h + (rows - 1) * gap_mm[1]
    panels, groups = [], []
    for c in range(columns):
        x0 = -width / 2 + c * (w + gap_mm[0])
        kids = []
        for r in range(rows):
            i = len(panels)
            y0 = height / 2 - r * (h + gap_mm[1])  # slow runs along -y: row 0 on top
            panels.append(frame(f"module{i}", (0.0, y0, 0.0), image_size=list(pixels),
                                pixel_size=[pixel_mm, pixel_mm], thickness=0.0, mu=0.0, trusted_range=[-1, 65535],
                                mask=[], raw_image_offset=[0, 0], material="Si", gain=1.0, pedestal=0.0,
                                identifier="", px_mm_strategy={"type": "SimplePxMmStrategy"}))
            kids.append({"panel": i})
        groups.append(frame(f"column{c}", (x0, 0.0, 0.0), slow=(0.0, 1.0, 0.0), children=kids))
    eye = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return {"__id__": "ExperimentList",
            "experiment": [{"__id__": "Experiment", "identifier": "", "beam": 0, "detector": 0, "goniometer": 0,
                            "scan": 0}],
            "beam": [{"__id__": "monochromatic", "direction": [0.0, 0.0, 1.0], "wavelength": wavelength,
                      "divergence": 0.0, "sigma_divergence": 0.0, "polarization_normal": [0.0, 1.0, 0.0],
                      "polarization_fraction": 0.999, "flux": 0.0, "transmission": 1.0}],
            "detector": [{"panels": panels, "hierarchy": frame("root", (0.0, 0.0, -distance_mm), slow=(0.0, 1.0, 0.0),
                                                               children=groups)}],
            "goniometer": [{"rotation_axis": [1.0, 0.0, 0.0], "fixed_rotation": eye, "setting_rotation": eye}],
            "scan": [{"image_range": [1, 1], "oscillation": [0.0, osc_deg], "batch_offset": 0,
                      "exposure_time": [1.0], "epochs": [0.0], "valid_image_ranges": {}}]}


def write_layout(path: Path, **kw) -> None:
    """Write ``mini_jungfrau(**kw)`` to ``path``."""
    Path(path).write_text(json.dumps(mini_jungfrau(**kw), indent=1) + "\n")
