"""Reflection lists in P1: amplitudes of the symmetry-unique reflections expanded to every Miller index the
crystal's symmetry makes equivalent, with both Friedel mates, as the C program's table wants them (it applies
no symmetry itself, §4.5). Vectorised numpy: one array operation per symmetry operation, no loop over
reflections.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Reflections:
    """P1 amplitudes: ``hkl`` (N, 3) int64, unique rows, and ``F`` (N,) float64; the ``cell`` (a, b, c in A,
    alpha, beta, gamma in deg) and space group (Hermann-Mauguin) they were computed in or measured in;
    ``source`` names the flag and file for messages."""

    hkl: np.ndarray
    F: np.ndarray
    cell: tuple[float, float, float, float, float, float]
    spacegroup: str
    source: str

    def __len__(self) -> int:
        return len(self.F)


def symmetry_rotations(spacegroup) -> np.ndarray:
    """(n, 3, 3) int64: the rotation parts of a gemmi SpaceGroup's symmetry operations (centring
    translations leave amplitudes alone), acting on row vectors of Miller indices as h' = h R."""
    ops = spacegroup.operations()
    rots = np.array([op.rot for op in ops.sym_ops], dtype=np.int64)
    return rots // ops.sym_ops[0].DEN


def _keys(hkl: np.ndarray) -> np.ndarray:
    """One int64 per Miller index (for sorting and de-duplication)."""
    m = int(np.abs(hkl).max(initial=0)) + 1
    w = 2 * m + 1
    return ((hkl[:, 0] + m) * w + (hkl[:, 1] + m)) * w + (hkl[:, 2] + m)


def expand_to_p1(hkl, f_plus, f_minus, rotations) -> tuple[np.ndarray, np.ndarray]:
    """(hkl (M, 3) int64, F (M,)) in P1: every h R gets F(+) of h and every -h R gets F(-) of h (the Bijvoet
    mate; pass ``f_minus = f_plus`` for Friedel's law), for every rotation R. A non-finite F (a missing F(-))
    lists nothing. Where two inputs land on one index (centric and special reflections, or equivalent inputs)
    the first wins, the F(+) of the earliest input and operation before any F(-); rows are sorted by h, k, l."""
    h = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    fp = np.asarray(f_plus, dtype=np.float64).reshape(-1)
    fm = np.asarray(f_minus, dtype=np.float64).reshape(-1)
    rots = np.asarray(rotations, dtype=np.int64).reshape(-1, 3, 3)
    moved = np.einsum("nj,rjk->rnk", h, rots).reshape(-1, 3)  # op-major: input order kept within each op
    all_h = np.concatenate((moved, -moved))
    all_F = np.concatenate((np.tile(fp, len(rots)), np.tile(fm, len(rots))))
    keep = np.isfinite(all_F)
    all_h, all_F = all_h[keep], all_F[keep]
    _, first = np.unique(_keys(all_h), return_index=True)  # sorted keys: h, then k, then l ascending
    return all_h[first], all_F[first]


def inverse_d_squared(hkl, cell) -> np.ndarray:
    """1/d^2 (1/A^2) of each Miller index in the cell (a, b, c in A; alpha, beta, gamma in deg): h G* h^T with
    G* the inverse of the real-space metric tensor."""
    a, b, c = cell[:3]
    al, be, ga = np.radians(cell[3:6])
    G = np.array([[a * a, a * b * np.cos(ga), a * c * np.cos(be)],
                  [a * b * np.cos(ga), b * b, b * c * np.cos(al)],
                  [a * c * np.cos(be), b * c * np.cos(al), c * c]])
    h = np.asarray(hkl, dtype=np.float64).reshape(-1, 3)
    return np.einsum("ni,ij,nj->n", h, np.linalg.inv(G), h)


def within_resolution(refl: Reflections, d_min: float | None) -> Reflections:
    """The reflections with d >= ``d_min`` (A; None or 0: all of them)."""
    if not d_min:
        return refl
    keep = inverse_d_squared(refl.hkl, refl.cell) <= 1.0 / (d_min * d_min)
    return replace(refl, hkl=refl.hkl[keep], F=refl.F[keep])
