"""Write and read MOSFLM orientation matrices (``A.mat``) from a unit cell and an orientation.

A MOSFLM A matrix holds the reciprocal basis scaled by the wavelength: rows x, y, z; columns a*, b*, c*
(so a* = (A[0,0], A[1,0], A[2,0]) / lambda, in 1/Angstrom). C nanoBragg reads the first nine numbers in
that order and divides by -lambda.

Orientation: the reciprocal basis is built in the standard frame (a* along x, b* in the x-y plane) and
then rotated about x, y and z by the misset angles, in that order (C's -misset convention).

    python -m tools.mosflm_matrix --cell 26.75 31.31 33.67 88.69 71.53 68.14 --wavelength 0.9768 \
        --misset 20 -35 50 -o A.mat
    python -m tools.mosflm_matrix --read A.mat --wavelength 0.9768      # prints the cell
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from nanobrag_torch.io.mat import format_mat, read_mat, write_mat

DECIMALS = 8  # digits after the point, as in MOSFLM-style matrix files


def real_basis(cell) -> np.ndarray:
    """Rows a, b, c (Angstrom) of the standard frame: a along x, b in the x-y plane."""
    a, b, c, al, be, ga = (float(x) for x in cell)
    al, be, ga = (math.radians(x) for x in (al, be, ga))
    cx = c * math.cos(be)
    cy = c * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    cz2 = c * c - cx * cx - cy * cy
    if cz2 <= 0:
        raise ValueError(f"cell {cell} has no volume")
    return np.array([[a, 0, 0], [b * math.cos(ga), b * math.sin(ga), 0], [cx, cy, math.sqrt(cz2)]])


def reciprocal_basis(real: np.ndarray) -> np.ndarray:
    """Rows a*, b*, c* (1/Angstrom) of the basis dual to the rows of ``real``: a*.a = 1, a*.b = 0, ..."""
    return np.linalg.inv(real).T


def rotation_xyz(rx, ry, rz) -> np.ndarray:
    """Rotation about x by rx, then y by ry, then z by rz (degrees): R = Rz Ry Rx (the simulator's rotate_xyz)."""
    import torch

    from nanobrag_torch.geometry import rotate_xyz

    basis = torch.eye(3, dtype=torch.float64)
    return rotate_xyz(basis, *(math.radians(v) for v in (rx, ry, rz))).numpy().T


def a_matrix(cell, wavelength, misset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """The MOSFLM A matrix: columns are wavelength * (a*, b*, c*) after the misset rotation."""
    recip = reciprocal_basis(real_basis(cell)) @ rotation_xyz(*misset).T  # rows rotated
    return wavelength * recip.T


def format_a_matrix(A: np.ndarray) -> str:
    A = np.asarray(A)
    return format_mat(A[:, 0], A[:, 1], A[:, 2], DECIMALS)


def write_a_matrix(path, A: np.ndarray) -> Path:
    A = np.asarray(A)
    return write_mat(path, A[:, 0], A[:, 1], A[:, 2])


def read_a_matrix(path) -> np.ndarray:
    """The first nine numbers of the file, as C reads them (rows x, y, z); the simulator's reader."""
    return np.array(read_mat(path)).T


def cell_from_a_matrix(A: np.ndarray, wavelength) -> tuple[float, ...]:
    """(a, b, c, alpha, beta, gamma) of the cell whose A matrix at ``wavelength`` is ``A``."""
    recip = np.asarray(A, dtype=float).T / wavelength  # rows a*, b*, c*
    real = np.linalg.inv(recip).T  # rows a, b, c
    a, b, c = (float(np.linalg.norm(v)) for v in real)

    def ang(u, v):
        return math.degrees(math.acos(float(np.dot(u, v)) / (np.linalg.norm(u) * np.linalg.norm(v))))

    return a, b, c, ang(real[1], real[2]), ang(real[0], real[2]), ang(real[0], real[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.mosflm_matrix", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", nargs=6, type=float, metavar=("A", "B", "C", "ALPHA", "BETA", "GAMMA"))
    ap.add_argument("--wavelength", type=float, required=True, help="Angstrom")
    ap.add_argument("--misset", nargs=3, type=float, default=(0.0, 0.0, 0.0), metavar=("RX", "RY", "RZ"))
    ap.add_argument("-o", "--output", help="write the matrix here (default: print it)")
    ap.add_argument("--read", help="print the cell of this matrix file instead")
    args = ap.parse_args(argv)
    if args.read:
        print(" ".join(f"{v:.4f}" for v in cell_from_a_matrix(read_a_matrix(args.read), args.wavelength)))
        return 0
    if not args.cell:
        ap.error("--cell is required unless --read is given")
    A = a_matrix(args.cell, args.wavelength, args.misset)
    if args.output:
        write_a_matrix(args.output, A)
    else:
        print(format_a_matrix(A), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
