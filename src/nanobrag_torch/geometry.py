"""Detector geometry: rotations, conventions, detector placement and pixel positions (§3)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from .config import DetectorConfig

DBL_MIN = 2.2250738585072014e-308


def rotate_xyz(v: torch.Tensor, rx, ry, rz) -> torch.Tensor:
    """C rotate(): about lab x by rx, then y by ry, then z by rz (fixed axes); v is (..., 3)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    rx, ry, rz = (torch.as_tensor(t, dtype=v.dtype, device=v.device) for t in (rx, ry, rz))
    cx, sx = torch.cos(rx), torch.sin(rx)
    y, z = y * cx - z * sx, y * sx + z * cx
    cy, sy = torch.cos(ry), torch.sin(ry)
    x, z = x * cy + z * sy, -x * sy + z * cy
    cz, sz = torch.cos(rz), torch.sin(rz)
    x, y = x * cz - y * sz, x * sz + y * cz
    return torch.stack((x, y, z), dim=-1)


def rotate_axis(v: torch.Tensor, axis: torch.Tensor, phi) -> torch.Tensor:
    """C rotate_axis(): right-handed rotation of v about a (unit, not checked) axis by phi; broadcasts."""
    phi = torch.as_tensor(phi, dtype=v.dtype, device=v.device)
    c = torch.cos(phi)[..., None]
    s = torch.sin(phi)[..., None]
    dot = (axis * v).sum(-1, keepdim=True) * (1.0 - c)
    return axis * dot + v * c + torch.cross(axis.expand_as(v), v, dim=-1) * s


def unitize(v: torch.Tensor) -> torch.Tensor:
    """C unitize(): v/|v|, and a zero vector stays zero."""
    n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    return torch.where(n > 0, v / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(v))


@dataclass
class DetectorGeometry:
    """Placed detector: unit axes, pix0 (outer corner of pixel 0,0) and the values C reports (m)."""

    fdet: torch.Tensor
    sdet: torch.Tensor
    odet: torch.Tensor
    beam: torch.Tensor
    pix0: torch.Tensor
    close_distance: torch.Tensor
    distance: torch.Tensor
    fbeam: torch.Tensor
    sbeam: torch.Tensor
    fclose: torch.Tensor
    sclose: torch.Tensor
    orgx: torch.Tensor
    orgy: torch.Tensor
    dials_origin: torch.Tensor  # mm
    odet_regenerated: bool


def beam_offsets(convention: str, beam_center: torch.Tensor, pixel_size, detsize_s: float):
    """(Fbeam, Sbeam) in m from the convention's (Xbeam, Ybeam): MOSFLM swaps them onto slow/fast and adds
    half a pixel, DENZO swaps them, ADXV flips Y about the detector height, the others take them as is."""
    X, Y = beam_center.unbind(-1)
    if convention == "ADXV":
        return X, detsize_s - Y
    if convention == "MOSFLM":
        return Y + 0.5 * pixel_size, X + 0.5 * pixel_size
    if convention == "DENZO":
        return Y, X
    return X, Y


def place_detector(det, beam_vector: torch.Tensor) -> DetectorGeometry:
    """Place a ``model.Detector`` exactly as C does: vector clean-up, rotations, pivot, re-derivation.

    C normalises the beam and detector axes, replaces a non-unit odet by unit(f x s), rotates the axes about
    lab x, y, z and then about the (never normalised) two-theta axis, puts pix0 (outer corner of pixel 0,0)
    from the near point (sample pivot, before rotating) or from the beam centre (beam pivot, after), and
    re-derives the beam centre, near point and distances from pix0.
    """
    beam = unitize(beam_vector)
    fdet = unitize(det.fdet)
    sdet = unitize(det.sdet)
    o_raw = det.odet
    odet = unitize(o_raw)
    regenerated = float(torch.linalg.vector_norm(o_raw.detach())) != 1.0
    if regenerated:
        odet = unitize(torch.cross(fdet, sdet, dim=-1))
    axis = det.twotheta_axis
    rx, ry, rz = det.rotations.unbind(-1)
    two_theta = det.twotheta
    px = det.pixel_size

    ratio = (beam * rotate_xyz(odet, rx, ry, rz)).sum()
    ratio = torch.where(ratio == 0, torch.full_like(ratio, DBL_MIN), ratio)
    distance = det.distance
    if det.close_distance is None:
        close_distance = torch.abs(ratio * distance)
    else:
        close_distance = det.close_distance
    distance = close_distance / ratio

    if det.pivot == "sample":
        near = det.beam_center if det.convention == "CUSTOM" else det.near_point
        fclose0, sclose0 = near.unbind(-1)
        pix0 = -fclose0 * fdet - sclose0 * sdet + close_distance * odet
        pix0 = rotate_axis(rotate_xyz(pix0, rx, ry, rz), axis, two_theta)
    fdet = rotate_axis(rotate_xyz(fdet, rx, ry, rz), axis, two_theta)
    sdet = rotate_axis(rotate_xyz(sdet, rx, ry, rz), axis, two_theta)
    odet = rotate_axis(rotate_xyz(odet, rx, ry, rz), axis, two_theta)
    if det.pivot == "beam":
        fbeam0, sbeam0 = beam_offsets(det.convention, det.beam_center, px, det.detsize_s)
        pix0 = -fbeam0 * fdet - sbeam0 * sdet + distance * beam

    fclose = -(pix0 * fdet).sum()
    sclose = -(pix0 * sdet).sum()
    close_distance = (pix0 * odet).sum()
    w = close_distance / ratio * beam - pix0
    fbeam = (fdet * w).sum()
    sbeam = (sdet * w).sum()
    distance = close_distance / ratio
    dials = 1000.0 * torch.stack((pix0[2], pix0[1], -pix0[0]))
    return DetectorGeometry(
        fdet=fdet, sdet=sdet, odet=odet, beam=beam, pix0=pix0, close_distance=close_distance,
        distance=distance, fbeam=fbeam, sbeam=sbeam, fclose=fclose, sclose=sclose,
        orgx=fclose / px + 0.5, orgy=sclose / px + 0.5, dials_origin=dials, odet_regenerated=regenerated,
    )


def build_detector(cfg: DetectorConfig, beam_vector, dtype: torch.dtype, device) -> DetectorGeometry:
    """Place the detector a ``DetectorConfig`` describes (see ``place_detector``)."""
    from .model import detector_from_config

    det = detector_from_config(cfg, device)
    geom = place_detector(det, torch.as_tensor(beam_vector, dtype=det.pixel_size.dtype, device=device))
    if dtype != geom.pix0.dtype:
        geom = replace(geom, **{f.name: getattr(geom, f.name).to(dtype) for f in fields(geom)
                                if isinstance(getattr(geom, f.name), torch.Tensor)})
    return geom


def pixel_positions(geom: DetectorGeometry, fpix: torch.Tensor, spix: torch.Tensor, pixel_size: float,
                    oversample: int, thickstep: float, thicksteps: int, curved: bool) -> torch.Tensor:
    """Lab positions (m) of every (pixel, layer, sub-pixel): shape (P, T, os*os, 3), §3.6-§3.7.

    ``fpix``/``spix`` are integer pixel indices (P,). Sub-pixel order is subS outer, subF inner, as in C.
    Indices of any leading shape (e.g. (panels, pixels) against vectors (panels, 1, 1, 1, 3)) give positions
    of that shape followed by (T, os*os, 3).
    """
    dtype, device = geom.pix0.dtype, geom.pix0.device
    sub = pixel_size / oversample
    ticks = torch.arange(oversample, device=device, dtype=dtype)
    subS, subF = torch.meshgrid(ticks, ticks, indexing="ij")
    subS, subF = subS.reshape(-1), subF.reshape(-1)
    fpix = fpix.to(dtype)[..., None]
    spix = spix.to(dtype)[..., None]
    Fdet = sub * (fpix * oversample + subF) + sub / 2.0  # (P, S)
    Sdet = sub * (spix * oversample + subS) + sub / 2.0
    Odet = torch.arange(thicksteps, device=device, dtype=dtype) * thickstep  # (T,)
    pos = (Fdet[..., None, :, None] * geom.fdet + Sdet[..., None, :, None] * geom.sdet
           + Odet[:, None, None] * geom.odet + geom.pix0)
    if curved:
        # C: start from distance*beam, rotate about s by y/distance, then about f by z/distance
        d = geom.distance
        base = (d * geom.beam).expand_as(pos)
        pos = rotate_axis(rotate_axis(base, geom.sdet, pos[..., 1] / d), geom.fdet, pos[..., 2] / d)
    return pos
