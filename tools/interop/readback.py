"""What dxtbx reads from files (run by DIALS's Python, not ours): the models as plain numbers, as JSON.

    python3 readback.py FILE ...   ->  {FILE: {...}} on stdout

An image file (NXmx, CBF, SMV) is opened with ``dxtbx.load``; a ``.expt`` file with
``ExperimentListFactory.from_json_file`` (check_format=True when the images it names exist, so they are opened
too). For each: the format class, the panel (origin, fast, slow, normal, pixel size, image size, thickness,
material, pedestal, trusted range, distance, beam centre in mm), the beam (s0, wavelength, polarization), the
goniometer axis, the scan (image range, oscillation, exposure), every crystal's real-space vectors, and for
images the first frame's raw pixels (as a list of rows) so tests can compare them with what was written.
A file that fails to load gives {"error": "..."}.
"""
import json
import os
import sys


def _panel(p, beam) -> dict:
    return {"origin": list(p.get_origin()), "fast": list(p.get_fast_axis()), "slow": list(p.get_slow_axis()),
            "normal": list(p.get_normal()), "pixel_size": list(p.get_pixel_size()),
            "image_size": list(p.get_image_size()), "thickness": p.get_thickness(), "material": p.get_material(),
            "pedestal": p.get_pedestal(), "trusted_range": list(p.get_trusted_range()),
            "distance": p.get_distance(), "beam_centre_mm": list(p.get_beam_centre(beam.get_s0())),
            "px_mm": p.get_px_mm_strategy().name()}


def _groups(node) -> list:
    """The hierarchy below ``node`` as nested lists: a group is [name, children...], a panel its index."""
    if not node.is_group():
        return node.index()
    return [node.get_name(), *(_groups(child) for child in node)]


def _models(beam, detector, gonio, scan) -> dict:
    out = {"panel": _panel(detector[0], beam), "panels": len(detector), "s0": list(beam.get_s0()),
           "all_panels": [_panel(p, beam) for p in detector], "hierarchy": _groups(detector.hierarchy()),
           "wavelength": beam.get_wavelength(), "polarization_normal": list(beam.get_polarization_normal()),
           "polarization_fraction": beam.get_polarization_fraction(), "axis": None, "scan": None}
    if gonio is not None:
        out["axis"] = list(gonio.get_rotation_axis())
    if scan is not None:
        out["scan"] = {"image_range": list(scan.get_image_range()), "oscillation": list(scan.get_oscillation()),
                       "exposure": scan.get_exposure_times()[0]}
    return out


def read_image(path) -> dict:
    import dxtbx

    img = dxtbx.load(path)
    out = _models(img.get_beam(), img.get_detector(), img.get_goniometer(), img.get_scan())
    out["format"] = type(img).__name__
    multi = hasattr(img, "get_num_images")  # a file of many frames (NXmx): frame 0
    data = img.get_raw_data(0) if multi else img.get_raw_data()
    parts = data if isinstance(data, tuple) else (data,)
    out["pixels"] = parts[0].as_numpy_array().tolist()
    if len(parts) > 1:  # P panels: every panel's pixels
        out["panel_pixels"] = [part.as_numpy_array().tolist() for part in parts]
    out["num_images"] = img.get_num_images() if multi else 1
    return out


def read_experiments(path) -> dict:
    from dxtbx.model.experiment_list import ExperimentListFactory

    try:
        el = ExperimentListFactory.from_json_file(path, check_format=True)
        checked = True
    except Exception:  # the images are not there (or not readable): the models alone
        el = ExperimentListFactory.from_json_file(path, check_format=False)
        checked = False
    e = el[0]
    out = _models(e.beam, e.detector, e.goniometer, e.scan)
    out["format"] = "ExperimentList"
    out["experiments"] = len(el)
    out["crystals"] = [[list(v) for v in x.crystal.get_real_space_vectors()] if x.crystal is not None else None
                       for x in el]
    out["images_checked"] = checked
    out["imageset_sizes"] = [len(x.imageset) if x.imageset is not None else None for x in el]
    out["imageset_paths"] = [x.imageset.paths() if x.imageset is not None else None for x in el]
    return out


def main(paths) -> dict:
    res = {}
    for p in paths:
        try:
            res[p] = read_experiments(p) if p.endswith(".expt") else read_image(p)
        except Exception as exc:  # reported, not raised: one bad file must not hide the others
            res[p] = {"error": f"{type(exc).__name__}: {exc}"}
    return res


if __name__ == "__main__":
    os.environ.setdefault("DXTBX_OVERLOAD_SCALE", "1")
    print(json.dumps(main(sys.argv[1:])))
