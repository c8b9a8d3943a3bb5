"""Physical constants and unit factors, as the C programs define them (the one place each is written)."""
from __future__ import annotations

import math

RTD = 180.0 / math.pi  # degrees per radian
R_E_SQR = 7.94079248018965e-30  # classical electron radius squared (m^2): the Thomson cross section, as in C
DEFAULT_FLUENCE = 125932015286227086360700780544.0  # = 1/r_e^2 photons/m^2, C's default
AVOGADRO = 6.02214179e23  # C's value
WATER_F = 2.57  # C's structure factor of water for its -water background (electrons)

__all__ = ["RTD", "R_E_SQR", "DEFAULT_FLUENCE", "AVOGADRO", "WATER_F"]
