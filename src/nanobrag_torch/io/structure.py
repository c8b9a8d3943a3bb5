"""Structure factors from an atomic model (PDB or mmCIF) through gemmi: |F| to a resolution, in P1, with
both Friedel mates (issue 23). The C program takes only a P1 text table (§4.5); upstream users make one from
a model with CCP4 (sfall, cad, mtz2various). Here gemmi does the same job:

* F of the model: gemmi's FFT structure-factor calculation (``DensityCalculatorX``: IT92 form factors, the
  atoms' B or anisotropic U, occupancies; every symmetry mate through the space group of the file), with
  gemmi's recommended blur removed again, to ``d_min`` (``FFT_RATE``);
* ``anomalous``: f' and f'' of every element at the wavelength (gemmi's Cromer-Liberman), so that
  F(h) = sum (f0 + f' + i f'') T exp(2 pi i h.x) and |F(h)| != |F(-h)| (f' enters the density, the f'' part is
  a second density of constant form factors added as i times its transform);
* ``bulk_solvent``: gemmi's solvent mask (Refmac radii), F = F_model + k_sol exp(-B_sol s^2/4) F_mask;
* ``b_factor``: every atom's B set to one value (anisotropic U dropped) before the calculation;
* F(000) is left out (as in CCP4 tables; it would put the direct beam on the detector), systematic absences
  are listed with F = 0.

The unique reflections are then expanded to P1 (``io.p1.expand_to_p1``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..checks import check_readable_file
from ..errors import InputError, UsageError
from .p1 import Reflections, expand_to_p1, symmetry_rotations, within_resolution

if TYPE_CHECKING:  # gemmi is imported where a file is read: runs without -mtz/-pdb do not load it
    import gemmi

DEFAULT_K_SOL = 0.35  # e/A^3: the usual flat bulk-solvent level (Refmac/phenix start from about this)
DEFAULT_B_SOL = 46.0  # A^2
# Grid sampling of the FFT calculation (gemmi's default 1.5): at 2.5, with gemmi's Refmac-style blur, |F| is
# within about 1e-5 of the direct sum (the float32 grid's floor); it costs about 0.7 s for 2000 atoms to 2 A.
# A grid that would exceed FFT_MAX_POINTS (large cells at high resolution) is sampled at gemmi's default
# instead (about 1e-4; 4.6 times fewer points).
FFT_RATE = 2.5
FFT_RATE_LARGE = 1.5
FFT_MAX_POINTS = 1 << 27  # 512 MiB of float32 density


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_structure(path: str | Path, flag: str = "-pdb") -> gemmi.Structure:
    """The model of a PDB or mmCIF file (its first model; NCS copies the file only describes are generated),
    with a crystal cell and a known space group; InputError naming ``flag`` and the file otherwise."""
    import gemmi

    p = check_readable_file(flag, str(path))
    try:
        st = gemmi.read_structure(str(p))
    except (RuntimeError, ValueError, OSError, IndexError) as exc:
        raise InputError(f"{flag}: {path}: not a readable PDB or mmCIF file ({_first_line(exc)})") from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(f"{flag}: {path}: no atoms in the file")
    if not st.cell.is_crystal():
        raise InputError(f"{flag}: {path}: no crystal unit cell (CRYST1 record or _cell category)")
    if st.find_spacegroup() is None:
        raise InputError(f"{flag}: {path}: unknown space group {st.spacegroup_hm!r}")
    while len(st) > 1:  # an ensemble: the first model
        del st[len(st) - 1]
    if any(not op.given for op in st.ncs):
        st.expand_ncs(gemmi.HowToNameCopiedChain.Short)
    unknown = [cra for cra in st[0].all() if cra.atom.element == gemmi.Element("X")]
    if unknown:
        cra = unknown[0]
        raise InputError(f"{flag}: {path}: {len(unknown)} atoms of unknown element, the first "
                         f"{cra.atom.name!r} in residue {cra.residue.name} {cra.residue.seqid} of chain "
                         f"{cra.chain.name}")
    return st


def structure_cell(st: gemmi.Structure) -> tuple[float, float, float, float, float, float]:
    """The model's cell: a, b, c (A), alpha, beta, gamma (deg)."""
    c = st.cell
    return (c.a, c.b, c.c, c.alpha, c.beta, c.gamma)


def _asu(grid: gemmi.FloatGrid, d_min: float, unblur: float) -> gemmi.ComplexAsuData:
    """The transform of a density grid on the reciprocal asymmetric unit to ``d_min`` (absences included)."""
    import gemmi

    return gemmi.transform_map_to_f_phi(grid, half_l=True).prepare_asu_data(dmin=d_min, unblur=unblur,
                                                                            with_sys_abs=True)


def fft_rate(cell: gemmi.UnitCell, d_min: float) -> float:
    """``FFT_RATE``, or ``FFT_RATE_LARGE`` where the density grid would pass ``FFT_MAX_POINTS``: a grid spacing
    of d_min / (2 rate) over the cell's volume."""
    points = cell.volume * (2 * FFT_RATE / d_min) ** 3
    return FFT_RATE if points <= FFT_MAX_POINTS else FFT_RATE_LARGE


def anomalous_terms(elements, wavelength: float) -> dict[str, tuple[float, float]]:
    """element name -> (f', f'') at ``wavelength`` (A), gemmi's Cromer-Liberman."""
    import gemmi

    energy = gemmi.hc / wavelength
    return {el.name: gemmi.cromer_liberman(z=el.atomic_number, energy=energy) for el in elements}


def model_reflections(st: gemmi.Structure, d_min: float, *, wavelength: float | None = None,
                      anomalous: bool = False, b_factor: float | None = None, bulk_solvent: bool = False,
                      k_sol: float = DEFAULT_K_SOL, b_sol: float = DEFAULT_B_SOL,
                      source: str = "-pdb") -> Reflections:
    """|F| of the model ``st`` (``read_structure``) for every P1 reflection with d >= ``d_min`` (A), both
    Friedel mates listed; see the module doc for the options (``wavelength`` in A, needed by ``anomalous``)."""
    import gemmi

    if not d_min > 0:
        raise UsageError(f"{source}: the resolution limit must be positive, got {d_min:g} A")
    if anomalous and not (wavelength and wavelength > 0):
        raise UsageError(f"{source}: anomalous scattering needs the wavelength")
    if b_factor is not None:
        st = st.clone()
        for cra in st[0].all():
            cra.atom.b_iso = b_factor
            cra.atom.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
    model = st[0]
    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min * (1 - 1e-9)  # a hair beyond: the exact cut is ours (within_resolution), in float64
    dc.rate = fft_rate(st.cell, d_min)
    dc.set_refmac_compatible_blur(model)
    dc.set_grid_cell_and_spacegroup(st)
    terms = {}
    if anomalous:
        terms = anomalous_terms({cra.atom.element for cra in model.all()}, wavelength)
        for name, (fprime, _) in terms.items():
            dc.addends.set(gemmi.Element(name), fprime)
    dc.put_model_density_on_grid(model)
    calc = _asu(dc.grid, dc.d_min, dc.blur)
    hkl = calc.miller_array
    f_plus = calc.value_array.astype(np.complex128)
    f_minus = np.conj(f_plus)
    if anomalous:  # i * (transform of the f'' density): adds i*B(h) to F(h) and i*conj(B(h)) to F(-h)
        dc.initialize_grid()
        for cra in model.all():
            dc.add_c_contribution_to_grid(cra.atom, terms[cra.atom.element.name][1])
        dc.grid.symmetrize_sum()
        fpp = _asu(dc.grid, dc.d_min, dc.blur).value_array.astype(np.complex128)
        f_plus = f_plus + 1j * fpp
        f_minus = f_minus + 1j * np.conj(fpp)
    if bulk_solvent:
        gemmi.SolventMasker(gemmi.AtomicRadiiSet.Refmac).put_mask_on_float_grid(dc.grid, model)
        mask = _asu(dc.grid, dc.d_min, 0.0)
        s2 = st.cell.calculate_1_d2_array(hkl.astype(np.int32))
        fmask = mask.value_array.astype(np.complex128) * (k_sol * np.exp(-b_sol * s2 / 4.0))
        f_plus = f_plus + fmask
        f_minus = f_minus + np.conj(fmask)
    ops = st.find_spacegroup().operations()
    absent = np.asarray(ops.systematic_absences(hkl.astype(np.int32)), dtype=bool)
    amp_plus, amp_minus = np.abs(f_plus), np.abs(f_minus)
    amp_plus[absent] = amp_minus[absent] = 0.0
    p1_hkl, F = expand_to_p1(hkl, amp_plus, amp_minus, symmetry_rotations(st.find_spacegroup()))
    refl = Reflections(p1_hkl, F, structure_cell(st), st.find_spacegroup().hm, source)
    return within_resolution(refl, d_min)
