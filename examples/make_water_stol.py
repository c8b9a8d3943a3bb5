"""Write a .stol table for water: F per molecule against sin(theta)/lambda, our own data for the examples.

    python examples/make_water_stol.py [OUT]        # default examples/data/water.stol

F(s) of one H2O molecule by the Debye formula, I(s) = sum_ij f_i(s) f_j(s) sin(q r_ij)/(q r_ij) with q = 4 pi s,
from the IT92 (Cromer-Mann) form factors of O and H and the molecule's geometry (O-H 0.9572 A, H-O-H 104.52
deg); F = sqrt(I), 10 electrons at s = 0. It is a gas-phase table: liquid water's intermolecular peak near
s = 0.16 1/A is not in it. The format is nonBragg's: one 'stol F' pair per line.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# IT92 coefficients: f(s) = sum a_i exp(-b_i s^2) + c, s = sin(theta)/lambda in 1/A.
CROMER_MANN = {
    "O": ((3.0485, 2.2868, 1.5463, 0.867), (13.2771, 5.7011, 0.3239, 32.9089), 0.2508),
    "H": ((0.489918, 0.262003, 0.196767, 0.049879), (20.6593, 7.74039, 49.5519, 2.20159), 0.001305),
}
OH, ANGLE = 0.9572, np.deg2rad(104.52)


def form_factor(element: str, s: np.ndarray) -> np.ndarray:
    a, b, c = CROMER_MANN[element]
    return sum(ai * np.exp(-bi * s * s) for ai, bi in zip(a, b)) + c


def water_f(s: np.ndarray) -> np.ndarray:
    """|F| of one water molecule at sin(theta)/lambda ``s`` (1/A), orientation-averaged."""
    atoms = {"O": np.zeros(3), "H1": np.array([OH, 0.0, 0.0]),
             "H2": np.array([OH * np.cos(ANGLE), OH * np.sin(ANGLE), 0.0])}
    f = {name: form_factor(name[0], s) for name in atoms}
    q = 4 * np.pi * s
    intensity = np.zeros_like(s)
    for i, ri in atoms.items():
        for j, rj in atoms.items():
            qr = q * np.linalg.norm(ri - rj)
            intensity += f[i] * f[j] * np.sinc(qr / np.pi)  # np.sinc(x) = sin(pi x)/(pi x)
    return np.sqrt(intensity)


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or [Path(__file__).parent / "data" / "water.stol"])[0])
    s = np.round(np.arange(0.0, 1.0001, 0.01), 2)
    out.write_text("".join(f"{x:.2f} {f:.4f}\n" for x, f in zip(s, water_f(s))))
    print(f"wrote {out}: {s.size} rows, F(0) = {water_f(np.zeros(1))[0]:.3f} electrons")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
