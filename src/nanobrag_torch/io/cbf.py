"""CBF frames (-cbf), written so that dxtbx/DIALS and XDS read them: one file per frame, byte-offset compressed
int32 pixels, and a header describing the geometry.

* A **miniCBF** (a Pilatus-style text header, ``_array_data.header_convention "GENERIC_MINI"``: dxtbx's
  convention for simulated pixel-array data of any size, so no Pilatus module gaps are inferred) when the
  header can say everything: dxtbx's miniCBF reader puts the detector normal to the beam with its fast axis
  along the spindle (imgCIF +x) and its slow axis along imgCIF -y (``minicbf_fits``). Written with fabio.
* A **full imgCIF** header otherwise (two-theta, -detector_rot*, a spindle that is not the fast axis, the
  ADXV/XDS/DIALS conventions' mirrored or swapped axes, ...): the ``axis`` categories give the spindle, the
  detector's normal and the pixel axes as vectors in the imgCIF frame (``lab_frame``), so any placement is
  exact. Read by cbflib (dxtbx's ``FormatCBFFull``); a still has an oscillation of 0.

Counts are photons unless -adc was given (``io.dataset``); the sensor line / thickness only with a sensor
(-detector_thick > 0).
"""
from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from .lab_frame import imgcif_setup

COUNT_CUTOFF = 65535  # the noise and integer images are C's uint16 images


@dataclass(frozen=True)
class CbfFrame:
    """Per-frame values of the header: start angle and increment (deg), and when it was 'exposed'."""

    start_angle: float
    angle_increment: float
    timestamp: datetime


def cbf_header_lines(model, frame: CbfFrame, exposure: float, version: str) -> list[str]:
    """The '# ' lines of a miniCBF's ``_array_data.header_contents`` (the Pilatus 1.2 header lines, SI units);
    the sensor line only with a sensor (dxtbx builds a parallax correction from it, which needs thickness > 0)."""
    from ..geometry import place_detector

    det = model.detector
    g = place_detector(det, model.beam.beam_vector)
    px = float(det.pixel_size)
    kahn = float(model.beam.kahn)
    thick = float(det.thickness)
    sensor = [f"# Silicon sensor, thickness {thick:.6f} m"] if thick > 0 else []
    return [
        f"# Detector: nanoBragg simulation (nanobrag-torch {version}), S/N 000",
        "# " + frame.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        f"# Pixel_size {px:.6g} m x {px:.6g} m",
        *sensor,
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


def minicbf_fits(model, rotation: bool = True) -> bool:
    """Whether a miniCBF header describes ``model``'s geometry for dxtbx: in the imgCIF frame the fast axis is
    +x, the slow axis -y (so the detector is normal to the beam) and, for a rotation, the spindle is +x."""
    s = imgcif_setup(model)
    close = lambda a, b: bool(np.allclose(a, b, rtol=0.0, atol=1e-9))  # noqa: E731
    spindle_ok = not rotation or (s.spindle is not None and close(s.spindle, (1.0, 0.0, 0.0)))
    return close(s.fast, (1.0, 0.0, 0.0)) and close(s.slow, (0.0, -1.0, 0.0)) and spindle_ok


def write_cbf(path, pixels: np.ndarray, header_lines: list[str]) -> None:
    """One miniCBF: the header lines and the pixels as byte-offset compressed signed 32-bit integers."""
    from fabio.cbfimage import CbfImage

    header = {"_array_data.header_convention": '"GENERIC_MINI"',
              "_array_data.header_contents": "\r\n".join(header_lines)}
    CbfImage(data=np.ascontiguousarray(pixels, dtype=np.int32), header=header).write(str(path))


def _num(x: float) -> str:
    """A CIF number: shortest round-trip form, no negative zero."""
    return repr(float(x) + 0.0)


def _loop(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["loop_", *columns, *(" ".join(r) for r in rows), ""]


def imgcif_header(model, frame: CbfFrame, exposure: float, version: str) -> list[str]:
    """The CIF lines of a full imgCIF frame before its ``array_data`` (whose pixels ``write_imgcif`` adds): the
    beam, the goniometer (the spindle GONIOMETER_PHI, the frame's start angle and increment: 0 for a still,
    which dxtbx reads as a still; without a goniometer its full-CBF reader fails) and the
    detector as three translations in the imgCIF frame (``lab_frame``; mm): DETECTOR_Z along C's detector
    normal by the sample-to-plane distance, ELEMENT_X offset to the outer corner of pixel (0, 0) and along the
    fast axis, ELEMENT_Y along the slow axis. Pixel index 0 is at displacement 0, the outer corner: dxtbx
    takes the position of index (0, 0) for its panel origin (as its own imgCIF writer does); imgCIF's
    dictionary puts the first pixel's centre there, so a strict reader sees the panel half a pixel shifted."""
    st = imgcif_setup(model)
    det = model.detector
    px = st.pixel_size
    in_plane = st.origin - st.close_distance * st.normal
    n = lambda v: [_num(x) for x in v]  # noqa: E731
    pol = math.degrees(math.atan2(st.polarization_normal[0], st.polarization_normal[1]))
    when = frame.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    lines = [
        "_diffrn.id DS1",
        "_diffrn_source.diffrn_id DS1",
        "_diffrn_source.source simulation",
        f"_diffrn_source.type 'nanoBragg simulation (nanobrag-torch {version})'",
        "_diffrn_radiation.diffrn_id DS1",
        "_diffrn_radiation.wavelength_id WL1",
        "_diffrn_radiation.probe x-ray",
        # imgCIF: (Ip - In)/(Ip + In), which is C's -polar (kahn); the normal's angle from lab Y
        f"_diffrn_radiation.polarizn_source_ratio {_num(model.beam.kahn)}",
        f"_diffrn_radiation.polarizn_source_norm {_num(pol)}",
        "_diffrn_radiation_wavelength.id WL1",
        f"_diffrn_radiation_wavelength.wavelength {_num(st.wavelength)}",
        "_diffrn_radiation_wavelength.wt 1.0",
        "",
    ]
    lines += [
        "_diffrn_measurement.diffrn_id DS1",
        "_diffrn_measurement.id GONIOMETER",
        "_diffrn_measurement.method rotation",
        "_diffrn_measurement.number_of_axes 1",
        "_diffrn_measurement_axis.measurement_id GONIOMETER",
        "_diffrn_measurement_axis.axis_id GONIOMETER_PHI",
        "",
        "_diffrn_detector.diffrn_id DS1",
        "_diffrn_detector.id DETECTOR",
        "_diffrn_detector.type 'nanoBragg simulated pixel detector'",
        "_diffrn_detector.number_of_axes 1",
        "",
        # the detector's own axes only: cbflib adds the pixel axes (ELEMENT_X/Y) from array_structure_list
        "_diffrn_detector_axis.detector_id DETECTOR",
        "_diffrn_detector_axis.axis_id DETECTOR_Z",
        "",
        "_diffrn_detector_element.id ELEMENT1",
        "_diffrn_detector_element.detector_id DETECTOR",
        "",
        "_diffrn_data_frame.id FRAME1",
        "_diffrn_data_frame.detector_element_id ELEMENT1",
        "_diffrn_data_frame.array_id ARRAY1",
        "_diffrn_data_frame.binary_id 1",
        "",
        "_diffrn_scan.id SCAN1",
        "_diffrn_scan.frame_id_start FRAME1",
        "_diffrn_scan.frame_id_end FRAME1",
        "_diffrn_scan.frames 1",
        "",
        "_diffrn_scan_frame.frame_id FRAME1",
        "_diffrn_scan_frame.frame_number 1",
        f"_diffrn_scan_frame.integration_time {_num(exposure)}",
        "_diffrn_scan_frame.scan_id SCAN1",
        f"_diffrn_scan_frame.date {when}",
        "",
    ]
    start, inc = _num(frame.start_angle), _num(frame.angle_increment)
    axes = [["GONIOMETER_PHI", "rotation", "goniometer", ".", *n(st.spindle), "0", "0", "0"],
            ["SOURCE", "general", "source", ".", "0", "0", "1", "0", "0", "0"],
            ["DETECTOR_Z", "translation", "detector", ".", *n(st.normal), "0", "0", "0"],
            ["ELEMENT_X", "translation", "detector", "DETECTOR_Z", *n(st.fast), *n(in_plane)],
            ["ELEMENT_Y", "translation", "detector", "ELEMENT_X", *n(st.slow), "0", "0", "0"]]
    d = _num(st.close_distance)
    scan_axes = [["GONIOMETER_PHI", "SCAN1", start, inc, inc, "0", "0", "0"],
                 ["DETECTOR_Z", "SCAN1", "0", "0", "0", d, "0", "0"],
                 ["ELEMENT_X", "SCAN1", "0", "0", "0", "0", "0", "0"],
                 ["ELEMENT_Y", "SCAN1", "0", "0", "0", "0", "0", "0"]]
    frame_axes = [["FRAME1", "GONIOMETER_PHI", start, "0"], ["FRAME1", "DETECTOR_Z", "0", d],
                  ["FRAME1", "ELEMENT_X", "0", "0"], ["FRAME1", "ELEMENT_Y", "0", "0"]]
    lines += [
        *_loop(["_axis.id", "_axis.type", "_axis.equipment", "_axis.depends_on", "_axis.vector[1]",
                "_axis.vector[2]", "_axis.vector[3]", "_axis.offset[1]", "_axis.offset[2]", "_axis.offset[3]"],
               axes),
        *_loop(["_diffrn_scan_axis.axis_id", "_diffrn_scan_axis.scan_id", "_diffrn_scan_axis.angle_start",
                "_diffrn_scan_axis.angle_range", "_diffrn_scan_axis.angle_increment",
                "_diffrn_scan_axis.displacement_start", "_diffrn_scan_axis.displacement_range",
                "_diffrn_scan_axis.displacement_increment"], scan_axes),
        *_loop(["_diffrn_scan_frame_axis.frame_id", "_diffrn_scan_frame_axis.axis_id",
                "_diffrn_scan_frame_axis.angle", "_diffrn_scan_frame_axis.displacement"], frame_axes),
        *_loop(["_array_structure_list.array_id", "_array_structure_list.index", "_array_structure_list.dimension",
                "_array_structure_list.precedence", "_array_structure_list.direction",
                "_array_structure_list.axis_set_id"],
               [["ARRAY1", "1", str(det.fpixels), "1", "increasing", "ELEMENT_X"],
                ["ARRAY1", "2", str(det.spixels), "2", "increasing", "ELEMENT_Y"]]),
        *_loop(["_array_structure_list_axis.axis_set_id", "_array_structure_list_axis.axis_id",
                "_array_structure_list_axis.displacement", "_array_structure_list_axis.displacement_increment"],
               [["ELEMENT_X", "ELEMENT_X", "0.0", _num(px)], ["ELEMENT_Y", "ELEMENT_Y", "0.0", _num(px)]]),
        *_loop(["_array_element_size.array_id", "_array_element_size.index", "_array_element_size.size"],
               [["ARRAY1", "1", _num(px / 1000.0)], ["ARRAY1", "2", _num(px / 1000.0)]]),
        "_array_intensities.array_id ARRAY1",
        "_array_intensities.binary_id 1",
        "_array_intensities.linearity linear",
        "_array_intensities.gain 1.0",
        f"_array_intensities.overload {COUNT_CUTOFF}",
        "_array_intensities.undefined_value -1",
        "",
        "_array_structure.id ARRAY1",
        "_array_structure.encoding_type 'signed 32-bit integer'",
        "_array_structure.compression_type x-CBF_BYTE_OFFSET",
        "_array_structure.byte_order little_endian",
        "",
    ]
    return lines


def write_imgcif(path, pixels: np.ndarray, header_lines: list[str], block: str = "image") -> None:
    """One full imgCIF file: ``header_lines`` (``imgcif_header``) and the pixels as byte-offset compressed
    signed 32-bit integers in ``array_data`` (cbflib's binary section: MIME header, MD5)."""
    from fabio.compression import compByteOffset

    data = np.ascontiguousarray(pixels, dtype=np.int32)
    slow, fast = data.shape
    blob = compByteOffset(data)
    md5 = base64.b64encode(hashlib.md5(blob).digest())
    binary = b"\r\n".join([
        b"--CIF-BINARY-FORMAT-SECTION--",
        b"Content-Type: application/octet-stream;",
        b'     conversions="x-CBF_BYTE_OFFSET"',
        b"Content-Transfer-Encoding: BINARY",
        b"X-Binary-Size: %d" % len(blob),
        b"X-Binary-ID: 1",
        b'X-Binary-Element-Type: "signed 32-bit integer"',
        b"X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
        b"Content-MD5: " + md5,
        b"X-Binary-Number-of-Elements: %d" % data.size,
        b"X-Binary-Size-Fastest-Dimension: %d" % fast,
        b"X-Binary-Size-Second-Dimension: %d" % slow,
        b"X-Binary-Size-Padding: 4095",
        b"",
        b"\x0c\x1a\x04\xd5" + blob + b"\x00" * 4095,
        b"--CIF-BINARY-FORMAT-SECTION----",
    ])
    text = ["###CBF: VERSION 1.5, nanobrag-torch full imgCIF", "", f"data_{block}", "", *header_lines,
            "_array_data.array_id ARRAY1", "_array_data.binary_id 1", "_array_data.data", ";"]
    with open(path, "wb") as fh:
        fh.write("\r\n".join(text).encode("ascii") + b"\r\n" + binary + b"\r\n;\r\n")


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
