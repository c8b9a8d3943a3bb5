"""A detector of P flat panels (modules), each placed by its own origin and axes, with a hierarchy of groups.

``Panels`` is the multi-panel counterpart of ``model.Detector``: where the C program places one panel from a
distance, a beam centre and a convention, a panel here is given directly as DIALS (dxtbx) gives it — the
origin (the outer corner of pixel (0,0)) and the unit fast and slow axes in the lab frame. Every panel
quantity is a tensor that may carry a gradient:

* ``origin`` (P, 3) m, ``fast``/``slow`` (P, 3) unit axes: the base geometry (as read from a file);
* ``offset`` (P, 3) m and ``rotation`` (P, 3) rad: a per-panel move — the panel turns by the rotation vector
  (axis x angle, Rodrigues: the axes stay orthonormal for any value) about its own centre, then shifts;
* ``groups``: panel index lists (DIALS's hierarchy, innermost groups first; a panel may sit in nested
  groups), each moved as a rigid body by ``group_offset`` (G, 3) m and ``group_rotation`` (G, 3) rad about
  the centre of its panels' base geometry.

All panels have one size (``fpixels`` x ``spixels``, ``pixel_size``), one sensor (``thickness``, ``mu``,
``thicksteps``) and share the ROI window; ``mask`` (P, S, F) is per panel. A render of P panels is
(P, spixels, fpixels). ``panels_from_detector`` turns C's single panel (placed by its convention) into P = 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .errors import UsageError
from .geometry import DetectorGeometry, place_detector, unitize
from .io.expt import custom_placement
from .model import Detector, setup_tensor


@dataclass
class Panels:
    """P panels of one size; see the module docstring. ``normal`` (P, 3) overrides fast x slow (C's odet)."""

    origin: torch.Tensor
    fast: torch.Tensor
    slow: torch.Tensor
    fpixels: int
    spixels: int
    pixel_size: torch.Tensor
    offset: torch.Tensor | None = None
    rotation: torch.Tensor | None = None
    groups: tuple[tuple[int, ...], ...] = ()
    group_offset: torch.Tensor | None = None
    group_rotation: torch.Tensor | None = None
    normal: torch.Tensor | None = None
    thickness: torch.Tensor | float = 0.0
    mu: torch.Tensor | float = 0.0
    thicksteps: int = 1
    layer_divisor: int = 1
    point_pixel: bool = False
    roi: tuple[int, int, int, int] | None = None
    mask: torch.Tensor | None = None
    names: tuple[str, ...] = field(default=())
    curved: bool = False  # never: a curved detector is C's single sphere, not a set of panels
    DISCRETE: ClassVar[tuple[str, ...]] = ("fpixels", "spixels", "groups", "thicksteps", "layer_divisor",
                                           "point_pixel", "roi", "mask", "names", "curved")

    @property
    def panels(self) -> int:
        return int(self.origin.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.panels, self.spixels, self.fpixels

    @property
    def thickstep(self):
        """Distance between sensor layers (m)."""
        return self.thickness / self.layer_divisor

    def renders_every_pixel(self) -> bool:
        """No mask and an ROI (if any) covering the whole panel: ``rendered_mask()`` is all True."""
        return Detector.renders_every_pixel(self)

    def rendered_mask(self) -> torch.Tensor:
        """(P, spixels, fpixels) bool: pixels rendered — inside the ROI window and not masked."""
        dev = self.pixel_size.device
        f = torch.arange(self.fpixels, device=dev)[None, None, :]
        s = torch.arange(self.spixels, device=dev)[None, :, None]
        xmin, xmax, ymin, ymax = self.roi if self.roi is not None else (0, self.fpixels, 0, self.spixels)
        m = ((f >= xmin) & (f <= xmax) & (s >= ymin) & (s <= ymax)).expand(self.panels, -1, -1)
        if self.mask is not None:
            m = m & self.mask.to(dev)
        return m


def rotation_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation by the rotation vector(s) ``rotvec`` (..., 3) (axis x angle, right-handed;
    Rodrigues' formula, with its series near 0 so the gradient is finite at the identity)."""
    t2 = (rotvec * rotvec).sum(-1)[..., None, None]
    small = t2 < 1e-8
    safe = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(safe)
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - torch.cos(t)) / safe)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * k + b * (k @ k)


def _rotate(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """m @ v over the last axis (v (..., 3), m (..., 3, 3))."""
    return (m @ v[..., None])[..., 0]


def panel_centres(panels: Panels) -> torch.Tensor:
    """(P, 3) centres of the panels' base geometry (m): origin + (F fast + S slow) pixel/2."""
    dev = panels.origin.device
    px = setup_tensor(panels.pixel_size, dev)
    return (setup_tensor(panels.origin, dev) + 0.5 * px * (panels.fpixels * setup_tensor(panels.fast, dev)
                                                            + panels.spixels * setup_tensor(panels.slow, dev)))


def panel_axes(panels: Panels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(origin, fast, slow, normal), each (P, 3) float64: the base geometry moved by each panel's rotation
    (about its centre) and offset, then by every group containing it, innermost first (about the base
    centre of the group's panels). With zero moves the base geometry comes back exactly."""
    dev = panels.origin.device
    P = panels.panels
    origin = setup_tensor(panels.origin, dev)
    fast = setup_tensor(panels.fast, dev)
    slow = setup_tensor(panels.slow, dev)
    normal = (unitize(torch.linalg.cross(fast, slow)) if panels.normal is None
              else setup_tensor(panels.normal, dev))
    px = setup_tensor(panels.pixel_size, dev)
    if panels.rotation is not None:
        rot = rotation_matrix(setup_tensor(panels.rotation, dev).expand(P, 3))
        half = 0.5 * px * (panels.fpixels * fast + panels.spixels * slow)
        fast, slow, normal = _rotate(rot, fast), _rotate(rot, slow), _rotate(rot, normal)
        origin = origin + (half - 0.5 * px * (panels.fpixels * fast + panels.spixels * slow))
    if panels.offset is not None:
        origin = origin + setup_tensor(panels.offset, dev)
    if panels.groups:
        centres = panel_centres(panels).detach()
        g_off = None if panels.group_offset is None else setup_tensor(panels.group_offset, dev)
        g_rot = None if panels.group_rotation is None else rotation_matrix(setup_tensor(panels.group_rotation, dev))
        for g, members in enumerate(panels.groups):
            sel = torch.zeros(P, 1, dtype=torch.bool, device=dev)
            sel[list(members)] = True
            pivot = centres[list(members)].mean(0)
            o, f, s, n = origin, fast, slow, normal
            if g_rot is not None:
                o = pivot + _rotate(g_rot[g], o - pivot)
                f, s, n = _rotate(g_rot[g], f), _rotate(g_rot[g], s), _rotate(g_rot[g], n)
            if g_off is not None:
                o = o + g_off[g]
            origin = torch.where(sel, o, origin)
            fast, slow, normal = torch.where(sel, f, fast), torch.where(sel, s, slow), torch.where(sel, n, normal)
    return origin, fast, slow, normal


def place_panels(panels: Panels, beam_vector: torch.Tensor) -> DetectorGeometry:
    """The placed panels as a ``DetectorGeometry`` whose vectors are (P, 3) and scalars (P,): C's values for
    each panel as its own detector (pix0 = origin, close distance = origin . normal, the beam centre where the
    beam crosses the panel's plane)."""
    origin, fast, slow, normal = panel_axes(panels)
    beam = unitize(setup_tensor(beam_vector, origin.device))
    px = setup_tensor(panels.pixel_size, origin.device)
    ratio = (normal * beam).sum(-1)
    close = (origin * normal).sum(-1)
    distance = close / ratio
    w = distance[:, None] * beam - origin
    fclose = -(origin * fast).sum(-1)
    sclose = -(origin * slow).sum(-1)
    dials = 1000.0 * origin
    return DetectorGeometry(
        fdet=fast, sdet=slow, odet=normal, beam=beam.expand_as(origin), pix0=origin, close_distance=close,
        distance=distance, fbeam=(fast * w).sum(-1), sbeam=(slow * w).sum(-1), fclose=fclose, sclose=sclose,
        orgx=fclose / px + 0.5, orgy=sclose / px + 0.5, dials_origin=dials, odet_regenerated=False,
    )


def place(det, beam_vector) -> DetectorGeometry:
    """The placed geometry of either kind of detector: ``place_panels`` for ``Panels`` ((P, 3) vectors), C's
    ``geometry.place_detector`` for a ``model.Detector``."""
    return (place_panels if isinstance(det, Panels) else place_detector)(det, beam_vector)


def panels_from_detector(det, beam_vector) -> Panels:
    """C's single panel (a ``model.Detector`` placed by its convention, rotations and pivot) as P = 1."""
    if det.curved:
        raise UsageError("-curved_det: a curved detector is one sphere, not a panel; render it as a Detector")
    g = place_detector(det, setup_tensor(beam_vector, det.pixel_size.device))
    mask = None if det.mask is None else det.mask[None]
    return Panels(origin=g.pix0[None], fast=g.fdet[None], slow=g.sdet[None], normal=g.odet[None],
                  fpixels=det.fpixels, spixels=det.spixels, pixel_size=det.pixel_size, thickness=det.thickness,
                  mu=det.mu, thicksteps=det.thicksteps, layer_divisor=det.layer_divisor,
                  point_pixel=det.point_pixel, roi=det.roi, mask=mask)


def panel_as_detector(panels: Panels, i: int, beam_vector) -> Detector:
    """Panel ``i`` as the C program's single detector: the CUSTOM convention with the panel's axes
    (odet = its normal) and the distance and beam centre (beam pivot) that put pix0 at its origin — the
    flags ``io.expt.c_flags`` gives the C program (values only: no gradient flows through this)."""
    with torch.no_grad():
        origin, fast, slow, normal = (v[i] for v in panel_axes(panels))
        beam = setup_tensor(beam_vector, origin.device)
        d, xb, yb = custom_placement(origin.cpu().numpy(), fast.cpu().numpy(), slow.cpu().numpy(),
                                     beam.cpu().numpy())
    t = lambda v: setup_tensor(v, origin.device)  # noqa: E731
    px = setup_tensor(panels.pixel_size, origin.device).detach()
    return Detector(convention="CUSTOM", pivot="beam", fpixels=panels.fpixels, spixels=panels.spixels,
                    pixel_size=px, distance=t(d), close_distance=None, beam_center=t((xb, yb)),
                    near_point=t((xb, yb)), rotations=t((0.0, 0.0, 0.0)), twotheta=t(0.0), fdet=fast, sdet=slow,
                    odet=normal, twotheta_axis=t((0.0, 0.0, 1.0)), detsize_s=float(px) * panels.spixels,
                    thickness=panels.thickness, mu=panels.mu, thicksteps=panels.thicksteps,
                    layer_divisor=panels.layer_divisor, point_pixel=panels.point_pixel, roi=panels.roi,
                    mask=None if panels.mask is None else panels.mask[i])


__all__ = ["Panels", "rotation_matrix", "panel_axes", "place", "place_panels", "panels_from_detector",
           "panel_as_detector", "panel_centres"]
