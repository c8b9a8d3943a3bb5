"""miniCBF frames (-cbf): a Pilatus-style text header that XDS and DIALS (dxtbx's FormatCBFMini) read, and
byte-offset compressed int32 pixels, written with fabio.

The header describes the geometry as a Pilatus header does: the detector's perpendicular distance and the
foot of the perpendicular from the sample (Beam_xy, in pixels from the outer corner of the first pixel), a
two-theta swing, and a rotation axis along the detector's fast axis. A detector tilted in any other way, or
a spindle that is not along the fast axis, is fully described only by the NeXus file (``cbf_warnings``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

COUNT_CUTOFF = 65535  # the noise and integer images are C's uint16 images


@dataclass(frozen=True)
class CbfFrame:
    """Per-frame values of the header: start angle and increment (deg), and when it was 'exposed'."""

    start_angle: float
    angle_increment: float
    timestamp: datetime


def cbf_header_lines(model, frame: CbfFrame, exposure: float, version: str) -> list[str]:
    """The '# ' lines of ``_array_data.header_contents`` (Pilatus 1.2 header convention, SI units)."""
    from ..geometry import place_detector

    det = model.detector
    g = place_detector(det, model.beam.beam_vector)
    px = float(det.pixel_size)
    kahn = float(model.beam.kahn)
    thick = float(det.thickness)
    return [
        f"# Detector: nanoBragg simulation (nanobrag-torch {version}), S/N 000",
        "# " + frame.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        f"# Pixel_size {px:.6g} m x {px:.6g} m",
        f"# Silicon sensor, thickness {thick:.6f} m",
        f"# Exposure_time {exposure:.7f} s",
        f"# Exposure_period {exposure:.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {COUNT_CUTOFF} counts",
        "# Threshold_setting: 0 eV",
        "# N_excluded_pixels = 0",
        "# Excluded_pixels: (nil)",
        "# Flat_field: (nil)",
        "# Trim_file: (nil)",
        "# Image_path: ./",
        f"# Wavelength {float(model.beam.wavelength) * 1e10:.6f} A",
        f"# Detector_distance {float(g.close_distance):.6f} m",
        f"# Beam_xy ({float(g.fclose) / px:.2f}, {float(g.sclose) / px:.2f}) pixels",
        f"# Start_angle {frame.start_angle:.6f} deg.",
        f"# Angle_increment {frame.angle_increment:.6f} deg.",
        f"# Detector_2theta {math.degrees(float(det.twotheta)):.4f} deg.",
        f"# Polarization {(1.0 + kahn) / 2.0:.3f}",
        "# Alpha 0.0000 deg.",
        "# Kappa 0.0000 deg.",
        f"# Phi {frame.start_angle:.6f} deg.",
        f"# Phi_increment {frame.angle_increment:.6f} deg.",
        "# Chi 0.0000 deg.",
        "# Oscillation_axis X, CW",
        "# N_oscillations 1",
    ]


def cbf_warnings(model) -> list[str]:
    """What a Pilatus-style header cannot say about ``model``'s geometry (one line each)."""
    from ..geometry import place_detector

    det = model.detector
    g = place_detector(det, model.beam.beam_vector)
    out = []
    tilted = any(float(x) != 0.0 for x in det.rotations)
    if tilted or abs(abs(float((g.odet * g.beam).sum())) - 1.0) > 1e-9 and float(det.twotheta) == 0.0:
        out.append("-cbf: the CBF header describes a detector normal to the beam (plus two-theta); this detector "
                   "is tilted: use -nexus for its full orientation")
    spindle = model.crystal.spindle_axis
    if spindle is not None:
        s = spindle / spindle.norm()
        if float((s * g.fdet).sum()) < 1.0 - 1e-9:
            out.append("-cbf: the CBF header assumes the rotation axis along the detector's fast axis (Pilatus "
                       "'X, CW'); this spindle is not: use -nexus for the goniometer axis")
    return out


def write_cbf(path, pixels: np.ndarray, header_lines: list[str]) -> None:
    """One miniCBF: the header lines and the pixels as byte-offset compressed signed 32-bit integers."""
    from fabio.cbfimage import CbfImage

    header = {"_array_data.header_convention": '"PILATUS_1.2"',
              "_array_data.header_contents": "\r\n".join(header_lines)}
    CbfImage(data=np.ascontiguousarray(pixels, dtype=np.int32), header=header).write(str(path))


def read_cbf(path) -> tuple[dict[str, str], np.ndarray]:
    """(header values by key, int32 pixels) of a miniCBF: each '# ' line split at its first space (the
    'Silicon sensor, thickness' line under 'Silicon')."""
    import fabio

    img = fabio.open(str(path))
    values = {}
    for line in img.header.get("_array_data.header_contents", "").splitlines():
        line = line.strip()
        if line.startswith("# "):
            key, _, rest = line[2:].partition(" ")
            values[key.rstrip(":")] = rest
    return values, np.asarray(img.data)


def frame_timestamp(start: datetime, i: int, exposure: float) -> datetime:
    """When frame i was 'exposed': the series start plus i exposures."""
    return start + timedelta(seconds=i * exposure)
