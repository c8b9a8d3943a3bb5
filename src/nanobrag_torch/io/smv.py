"""SMV images: the header the C program writes and reads, and uint16 pixel data."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ..checks import check_readable_file
from ..errors import InputError

HEADER_BYTES = 512


def format_header(fields: list[tuple[str, str]], pixel_type: str = "unsigned_short") -> bytes:
    """'{' + 'KEY=VALUE;' lines + '}' + form feed, padded with spaces to 512 bytes (never truncated, as C).
    ``pixel_type``: the TYPE line (``long_integer`` for noisify's 32-bit images)."""
    order = "little_endian" if sys.byteorder == "little" else "big_endian"
    lines = ["{", "HEADER_BYTES=512;", "DIM=2;", f"BYTE_ORDER={order};", f"TYPE={pixel_type};"]
    for key, value in fields:
        lines.append(f"{key}={value}" if key == "DIALS_ORIGIN" else f"{key}={value};")
    text = ("\n".join(lines) + "\n}\f").encode("ascii")
    if len(text) < HEADER_BYTES:
        text += b" " * (HEADER_BYTES - len(text))
    return text


def nanobragg_header(model, geometry) -> list[tuple[str, str]]:
    """The header values nanoBragg writes into its SMV images (lengths in mm, angles in degrees, %g).

    ``model`` is a ``model.Model`` and ``geometry`` its placed detector (``geometry.place_detector``): the
    beam centre in every convention's meaning, the DIALS origin, XDS ORGX/ORGY and the rotation start/range.
    """
    det, g = model.detector, geometry
    f = lambda x: f"{float(x):g}"  # noqa: E731
    px = float(det.pixel_size)
    xbeam, ybeam = (float(v) for v in det.beam_center)
    deg = 180.0 / math.pi
    return [
        ("SIZE1", str(det.fpixels)), ("SIZE2", str(det.spixels)), ("PIXEL_SIZE", f(px * 1000)),
        ("DISTANCE", f(g.distance * 1000)), ("WAVELENGTH", f(model.beam.wavelength * 1e10)),
        ("BEAM_CENTER_X", f(xbeam * 1000)), ("BEAM_CENTER_Y", f(ybeam * 1000)),
        ("ADXV_CENTER_X", f(g.fbeam * 1000)), ("ADXV_CENTER_Y", f((det.detsize_s - float(g.sbeam)) * 1000)),
        ("MOSFLM_CENTER_X", f((float(g.sbeam) - 0.5 * px) * 1000)),
        ("MOSFLM_CENTER_Y", f((float(g.fbeam) - 0.5 * px) * 1000)),
        ("DENZO_X_BEAM", f(g.sbeam * 1000)), ("DENZO_Y_BEAM", f(g.fbeam * 1000)),
        ("DIALS_ORIGIN", ",".join(f"{float(x):g}" for x in g.dials_origin)),
        ("XDS_ORGX", f(g.orgx)), ("XDS_ORGY", f(g.orgy)), ("CLOSE_DISTANCE", f(g.close_distance * 1000)),
        ("PHI", f(float(model.crystal.phi0) * deg)), ("OSC_START", f(float(model.crystal.phi0) * deg)),
        ("OSC_RANGE", f(model.crystal.osc * deg)), ("TWOTHETA", f(float(det.twotheta) * deg)),
        ("DETECTOR_SN", "000"), ("BEAMLINE", "fake"),
    ]


def adc_offset_field(adc: float) -> tuple[str, str]:
    """The header key dxtbx's reader of simulated SMV images (``BEAMLINE=fake``) takes the pedestal from:
    ``ADC_OFFSET`` (it assumes 1 without it). Not a key C writes: added only with -adc_header."""
    return ("ADC_OFFSET", f"{float(adc):g}")


def nonbragg_header(geometry, fpixels: int, spixels: int, pixel_size: float, wavelength: float, detsize_s: float,
                    phi0: float, osc: float, twotheta: float) -> list[tuple[str, str]]:
    """The header values nonBragg writes (§12.6): its placed ``geometry`` (``geometry.place_detector``) in mm,
    BEAM_CENTER_Y measured from the far edge, ORGX/ORGY as near point / pixel (no half pixel), angles in
    degrees (``phi0``, ``osc``, ``twotheta`` in rad), %g."""
    g = geometry
    f = lambda x: f"{float(x):g}"  # noqa: E731
    deg = 180.0 / math.pi
    return [
        ("SIZE1", str(fpixels)), ("SIZE2", str(spixels)), ("PIXEL_SIZE", f(pixel_size * 1000.0)),
        ("DISTANCE", f(float(g.distance) * 1000.0)), ("WAVELENGTH", f(wavelength * 1e10)),
        ("BEAM_CENTER_X", f(float(g.fbeam) * 1000.0)), ("BEAM_CENTER_Y", f((detsize_s - float(g.sbeam)) * 1000)),
        ("ORGX", f(float(g.fclose) / pixel_size)), ("ORGY", f(float(g.sclose) / pixel_size)),
        ("CLOSE_DISTANCE", f(float(g.close_distance) * 1000.0)),
        ("PHI", f(phi0 * deg)), ("OSC_START", f(phi0 * deg)), ("OSC_RANGE", f(osc * deg)),
        ("TWOTHETA", f(twotheta * deg)), ("DETECTOR_SN", "000"), ("BEAMLINE", "fake"),
    ]


def write_smv(path: str | Path, pixels: np.ndarray, fields: list[tuple[str, str]]) -> None:
    """Write an SMV file: header (see ``format_header``) then native-endian uint16 [slow][fast]."""
    data = np.ascontiguousarray(pixels, dtype=np.uint16)
    with open(path, "wb") as fh:
        fh.write(format_header(fields))
        data.tofile(fh)


def parse_header(text: str) -> dict[str, str]:
    """KEY=VALUE pairs of an SMV header (the last occurrence of a key wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip().rstrip(";")
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def header_value(header: dict[str, str] | str, key: str) -> float | None:
    """C's ValueOf(): the number after the LAST occurrence of ``key=`` as a substring of the header text
    (so 'DISTANCE' also matches 'CLOSE_DISTANCE=' when that comes later, as in C)."""
    text = header if isinstance(header, str) else header["__text__"]
    pos = text.rfind(key + "=")
    if pos < 0:
        return None
    rest = text[pos + len(key) + 1 :]
    num = ""
    for ch in rest:
        if ch in "0123456789+-.eE":
            num += ch
        else:
            break
    try:
        return float(num)
    except ValueError:
        return None


def _read_smv_bytes(path: str | Path, flag: str) -> tuple[bytes, dict[str, str], int, int, int]:
    """The bytes of the SMV file named by ``flag`` and its header: (data, header dict incl. '__text__',
    HEADER_BYTES, SIZE1, SIZE2)."""
    p = check_readable_file(flag, str(path))
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    if not data.startswith(b"{\nHEADER_BYT"):
        raise InputError(f"{flag}: {path}: not an SMV image (no '{{ HEADER_BYTES' header)")
    end = data.find(b"}")
    text = data[: end if end > 0 else HEADER_BYTES].decode("ascii", errors="replace")
    header = parse_header(text)
    header["__text__"] = text
    try:
        hbytes = int(float(header.get("HEADER_BYTES", "512")))
        width = int(float(header["SIZE1"]))
        height = int(float(header["SIZE2"]))
    except (KeyError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise InputError(f"{flag}: {path}: SMV header lacks HEADER_BYTES/SIZE1/SIZE2") from None
    if hbytes < 0 or width <= 0 or height <= 0:
        raise InputError(f"{flag}: {path}: bad SMV header (HEADER_BYTES={hbytes}, SIZE1={width}, SIZE2={height})")
    return data, header, hbytes, width, height


def read_smv_header(path: str | Path, flag: str) -> tuple[dict[str, str], bytes, int, int]:
    """The header of the SMV file named by ``flag``, as noisify's ``-header`` takes it: (header dict incl.
    '__text__', its first HEADER_BYTES bytes verbatim, SIZE1, SIZE2). The pixels need not be there, but C
    reads 512 bytes first, so the file must hold at least 512 bytes and at least HEADER_BYTES (§11.7)."""
    data, header, hbytes, width, height = _read_smv_bytes(path, flag)
    if hbytes == 0:
        raise InputError(f"{flag}: {path}: bad SMV header (HEADER_BYTES=0)")
    need = max(hbytes, HEADER_BYTES)
    if len(data) < need:
        raise InputError(f"{flag}: {path}: truncated SMV header ({len(data)} bytes, expected at least {need})")
    return header, data[:hbytes], width, height


def read_smv(path: str | Path, flag: str) -> tuple[dict[str, str], np.ndarray]:
    """Read an SMV file named by ``flag``: (header dict incl. '__text__', uint16 image [slow][fast])."""
    data, header, hbytes, width, height = _read_smv_bytes(path, flag)
    need = hbytes + 2 * width * height
    if len(data) < need:
        raise InputError(f"{flag}: {path}: truncated SMV image ({len(data)} bytes, expected {need})")
    img = np.frombuffer(data[hbytes:need], dtype=np.uint16).reshape(height, width).copy()
    return header, img
