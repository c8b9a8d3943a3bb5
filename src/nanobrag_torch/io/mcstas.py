"""NeXus's McStas frame and the conventions our NXmx writer (``io.nexus``) and reader (``io.nxmx_in``) share;
a leaf module (numpy only), so the -expt reader can use it.

* ``MCSTAS_TO_IMGCIF``: McStas (NeXus: beam along +z, y up) -> imgCIF (dxtbx/DIALS: x along the goniometer
  axis, z towards the source): a rotation by 180 degrees about y, its own inverse, as dxtbx converts NeXus
  geometry.
* ``NO_SENSOR_THICKNESS_MM``: C's default -detector_thick 0 (every photon stops at the sensor's surface: no
  parallax). NXmx requires a sensor thickness and dxtbx refuses 0 (it builds a parallax correction from it),
  so that detector is written as the limit of a thin sensor: 1 nm of silicon, whose parallax (dxtbx's model)
  is below 1e-11 mm; read back, it is no sensor.
"""
from __future__ import annotations

import numpy as np

MCSTAS_TO_IMGCIF = np.diag([-1.0, 1.0, -1.0])
NO_SENSOR_THICKNESS_MM = 1e-6
NO_SENSOR_NOTE = ("nanoBragg -detector_thick 0: no sensor depth, no parallax; written as 1 nm because NXmx readers "
                  "need a positive thickness")

__all__ = ["MCSTAS_TO_IMGCIF", "NO_SENSOR_THICKNESS_MM", "NO_SENSOR_NOTE"]
