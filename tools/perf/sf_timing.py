"""Time the structure-factor paths of issue 23 on a protein-sized model this script writes itself.

    python -m tools.perf.sf_timing [--atoms 2000] [--d-min 2.0] [--repeats 3]

Writes a P 2_1 2_1 2_1 model of N atoms (C/N/O/S, random positions, B 10-40 A^2) in a 52 x 61 x 73 A cell to a
temporary directory, then times (best of --repeats, wall clock, this process): reading it, |F| in P1 to
d_min (plain, -anomalous, -bulk_solvent), the C grid of the table, -hklout's text, and the P1 expansion of
100,000 unique reflections alone. Prints a table; records numbers, asserts nothing.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gemmi
import numpy as np

from nanobrag_torch.io.hkl import table_from_reflections, write_hkl
from nanobrag_torch.io.p1 import expand_to_p1, symmetry_rotations
from nanobrag_torch.io.structure import model_reflections, read_structure

CELL = (52.0, 61.0, 73.0, 90.0, 90.0, 90.0)


def write_protein_like(path: Path, atoms: int, seed: int = 1) -> None:
    """A P 2_1 2_1 2_1 PDB of ``atoms`` atoms at random positions (elements in protein-like proportions)."""
    rng = np.random.default_rng(seed)
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*CELL)
    st.spacegroup_hm = "P 21 21 21"
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    elements = rng.choice(["C", "N", "O", "S"], size=atoms, p=[0.63, 0.17, 0.19, 0.01])
    for i, el in enumerate(elements):
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        at = gemmi.Atom()
        at.name, at.element = str(el), gemmi.Element(str(el))
        at.pos = st.cell.orthogonalize(gemmi.Fractional(*rng.random(3)))
        at.b_iso, at.occ = float(rng.uniform(10, 40)), 1.0
        res.add_atom(at)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.write_pdb(str(path))


def best(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=2000)
    ap.add_argument("--d-min", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pdb = Path(tmp) / "model.pdb"
        write_protein_like(pdb, args.atoms)
        t, st = best(lambda: read_structure(pdb), args.repeats)
        rows.append(("read the PDB", t, f"{args.atoms} atoms"))
        for name, kw in (("|F| in P1", {}), ("|F| in P1, -anomalous (1.0 A)", {"anomalous": True, "wavelength": 1.0}),
                         ("|F| in P1, -bulk_solvent", {"bulk_solvent": True})):
            t, refl = best(lambda kw=kw: model_reflections(st, args.d_min, **kw), args.repeats)
            rows.append((f"{name} to {args.d_min:g} A", t, f"{len(refl)} reflections"))
        t, table = best(lambda: table_from_reflections(refl.hkl, refl.F), args.repeats)
        rows.append(("C grid of the table", t, f"{table.grid.size} cells"))
        t, _ = best(lambda: write_hkl(Path(tmp) / "P1.hkl", table), args.repeats)
        rows.append(("-hklout text", t, f"{(Path(tmp) / 'P1.hkl').stat().st_size / 1e6:.1f} MB"))
    h = np.stack(np.meshgrid(*(np.arange(0, 47),) * 3, indexing="ij"), -1).reshape(-1, 3)[1:100_001]
    rots = symmetry_rotations(gemmi.SpaceGroup("P 21 21 21"))
    t, (out, _) = best(lambda: expand_to_p1(h, np.ones(len(h)), np.ones(len(h)), rots), args.repeats)
    rows.append(("P1 expansion of 100,000 unique reflections", t, f"{len(out)} P1 reflections (P 21 21 21)"))
    print(f"{'step':<48} {'seconds':>8}  size")
    for name, t, what in rows:
        print(f"{name:<48} {t:8.3f}  {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
