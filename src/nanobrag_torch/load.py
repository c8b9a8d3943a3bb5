"""Config -> model: read the files a ``SimConfig`` names (``read_inputs``) and build the tensors
(``build_model``). ``load_model`` does both. Everything that decides a count (N from the crystal size, the
automatic oversampling, the mosaic draws) happens here, once, exactly where the C program decides it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import SimConfig
from .crystal import cell_parameters, crystal_counts, crystal_geometry
from .errors import InputError, UsageError
from .errors import warn as default_warn
from .geometry import place_detector
from .io.expt import Experiment, check_one_size, read_expt
from .io.hkl import HKLTable, read_fdump, read_hkl
from .io.mat import read_mat
from .io.mtz import read_mtz
from .io.p1 import Reflections, within_resolution
from .io.structure import model_reflections, read_structure, structure_cell
from .io.smv import read_smv
from .io.sourcefile import read_sourcefile_lines
from .budget import check_memory
from .model import SETUP_DTYPE, Beam, Crystal, LoadInfo, Model, Sampling, detector_from_config, setup_tensor
from .crandom.streams import CRandom, mosaic_draws, random_misset
from .panels import Panels
from .sources import file_sources, grid_sources
from .structure_factors import structure_factors_from_table, table_of, table_resolution
from .validate import validate_model


@dataclass
class Inputs:
    """What the input files hold: structure factors, MOSFLM matrix rows, source rows, detector mask."""

    hkl: HKLTable | None = None
    matrix: tuple | None = None  # (a*, b*, c*) as written (lambda-scaled), see io.mat.read_mat
    source_rows: list | None = None
    source_lines: list[int] | None = None  # the line of each source row in its file
    mask: np.ndarray | None = None
    files: dict[str, str] = field(default_factory=dict)  # flag -> the file read for it (for messages)
    structure: object | None = None  # -pdb: the gemmi.Structure (F computed once the resolution is known)
    reflections: Reflections | None = None  # -mtz: the P1 data, all of it (cut once the resolution is known)
    cell: tuple | None = None  # the -pdb/-mtz file's cell: a, b, c (A), alpha, beta, gamma (deg)
    experiment: Experiment | None = None  # -expt: the DIALS experiment list's first experiment


def read_inputs(config: SimConfig, workdir: str | Path = ".", warn=default_warn, log=None) -> Inputs:
    """Read every file ``config`` names (relative to ``workdir``); raise one-line errors for bad files.

    Structure factors come from -hkl, -pdb or -mtz, else from a dump file (Fdump.bin) left in the working
    directory by an earlier -hkl run, as in C; with none and no -default_F there is nothing to render.
    """
    log = log or (lambda msg: None)
    wd = Path(workdir)
    cc, dc, bc, sc = config.crystal, config.detector, config.beam, config.structure
    out = Inputs()
    if cc.hkl is not None:
        out.hkl = read_hkl(wd / cc.hkl, cc.default_F, warn)
        out.files["-hkl"] = cc.hkl
    elif sc.pdb is not None:
        out.structure = read_structure(wd / sc.pdb)
        out.cell = structure_cell(out.structure)
        out.files["-pdb"] = sc.pdb
    elif sc.mtz is not None:
        out.reflections = read_mtz(wd / sc.mtz, sc.mtz_labels, warn=warn)
        out.cell = out.reflections.cell
        out.files["-mtz"] = sc.mtz
    elif (wd / cc.dump).is_file():
        out.hkl = read_fdump(wd / cc.dump)
        out.files["-hkl"] = cc.dump
        log(f"reading Fs from {cc.dump}")
    elif cc.default_F == 0.0:
        raise UsageError("no structure factors: give -hkl FILE, -pdb FILE, -mtz FILE or -default_F F "
                         f"(or keep a {cc.dump} from an earlier run in the working directory)")
    if config.expt is not None:
        out.experiment = read_expt(wd / config.expt)
        out.files["-expt"] = config.expt
    if cc.mat is not None:
        out.matrix = read_mat(wd / cc.mat)
        out.files["-mat"] = cc.mat
    if bc.sourcefile is not None:
        out.source_rows, out.source_lines = read_sourcefile_lines(wd / bc.sourcefile, warn)
        out.files["-sourcefile"] = bc.sourcefile
    if dc.mask is not None:
        out.files["-mask"] = dc.mask
        _, m = read_smv(wd / dc.mask, "-mask")
        if m.shape != (dc.spixels, dc.fpixels):
            raise InputError(f"-mask: {dc.mask}: {m.shape[1]}x{m.shape[0]} pixels, detector is "
                             f"{dc.fpixels}x{dc.spixels}")
        out.mask = m
    return out


def _crystal(config: SimConfig, inputs: Inputs, info: LoadInfo, device) -> Crystal:
    """The crystal tensors; C's random state is consumed in its order (misset, then mosaic domains)."""
    cc, bc = config.crystal, config.beam
    matrix = None
    if inputs.matrix is not None:  # the file holds a*/lambda etc.: divide by the -lambda given, as C
        matrix = setup_tensor(inputs.matrix, device) * (1e-10 / bc.wavelength if bc.wavelength else math.inf)
    misset = cc.misset
    if cc.misset_random:
        _, misset = random_misset(cc.misset_seed, info.rng)
        info.misset_angles_deg = tuple(math.degrees(x) for x in misset)
    draws = mosaic_draws(cc.mosaic_spread, cc.mosaic_domains, cc.mosaic_seed, info.rng)  # always drawn, as C
    mosaic = cc.mosaic_spread > 0.0
    cell = cc.cell
    xtal = inputs.experiment.crystal if inputs.experiment is not None else None
    if matrix is None and cell is None and xtal is not None:  # -expt's crystal: rows a*, b*, c* = inverse(A)^T
        matrix = torch.linalg.inv(setup_tensor(xtal, device)).T
    if cell is None and inputs.cell is not None and matrix is None:  # the -pdb/-mtz file's cell
        cell = (*inputs.cell[:3], *(math.radians(x) for x in inputs.cell[3:]))
    return Crystal(
        cell=None if cell is None else setup_tensor(cell, device), matrix=matrix,
        misset=setup_tensor(misset if misset is not None else (0.0, 0.0, 0.0), device),
        N=setup_tensor(tuple(max(n, 1) for n in (cc.Na, cc.Nb, cc.Nc)), device), shape=cc.shape,
        fudge=setup_tensor(cc.fudge, device),
        scale=setup_tensor(1.0, device),
        mosaic_spread=setup_tensor(cc.mosaic_spread, device), mosaic_reference_spread=draws.spread if mosaic else 0.0,
        mosaic_axes=setup_tensor(draws.axes, device) if mosaic else None,
        mosaic_angles=setup_tensor(draws.angles, device) if mosaic else None,
        mosaic_umats=setup_tensor(draws.umats, device) if mosaic else None,
        phi0=setup_tensor(cc.phi0, device), phistep=setup_tensor(cc.phistep, device), phisteps=cc.phisteps,
        spindle_axis=setup_tensor(cc.spindle_axis, device), osc=cc.osc,
    )


def _beam(config: SimConfig, inputs: Inputs, device) -> Beam:
    """The beam tensors: source-file sources (wavelength NaN = lambda0) or C's divergence/dispersion grid."""
    bc = config.beam
    if inputs.source_rows:
        dirs, lams = file_sources(bc, inputs.source_rows, SETUP_DTYPE, device)
        factors = torch.ones_like(lams)
    else:
        dirs, factors = grid_sources(bc, SETUP_DTYPE, device)
        lams = None
    return Beam(
        wavelength=setup_tensor(bc.wavelength, device), source_directions=dirs, source_wavelengths=lams,
        dispersion_factors=factors, source_weights=torch.ones_like(factors),
        beam_vector=setup_tensor(bc.beam_vector, device),
        polar_vector=setup_tensor(bc.polar_vector, device), kahn=setup_tensor(bc.kahn_factor, device),
        nopolar=bc.nopolar,
        fluence=setup_tensor(bc.fluence, device), water_size=setup_tensor(bc.water_size, device), dmin=bc.dmin,
    )


def _structure_factors(config: SimConfig, table: HKLTable | None, device):
    """F table (or none) and C's interpolation decision: the auto rule's choice, off without a table."""
    cc = config.crystal
    return structure_factors_from_table(table, cc.default_F, cc.interpolate, device)


def _table_from_structure(config: SimConfig, inputs: Inputs, model: Model, cr, log, warn) -> HKLTable:
    """-pdb/-mtz: the P1 table to the resolution the run needs (``table_resolution``), computed once."""
    cc, sc = config.crystal, config.structure
    flag = sc.flag
    name = sc.pdb if sc.pdb is not None else sc.mtz
    d = table_resolution(model, cc.interpolate, cr)
    if inputs.structure is not None:
        refl = model_reflections(inputs.structure, d, wavelength=config.beam.wavelength * 1e10,
                                 anomalous=sc.anomalous, b_factor=sc.b_factor, bulk_solvent=sc.bulk_solvent,
                                 k_sol=sc.k_sol, b_sol=sc.b_sol, source=f"{flag}: {name}")
    else:
        refl = within_resolution(inputs.reflections, d)
    if len(refl) == 0:
        raise InputError(f"{flag}: {name}: no reflection with d >= {d:.4g} A (the resolution this run reaches)")
    if cc.cell is not None or cc.mat is not None:
        _check_cell(refl.cell, cr, flag, name, "-mat " + cc.mat if cc.mat is not None else "-cell", warn)
    extra = f", anomalous at {config.beam.wavelength * 1e10:g} A" if sc.anomalous else ""
    log(f"structure factors: {len(refl)} P1 reflections (both Friedel mates) to {d:.4g} A from {name} "
        f"({refl.spacegroup}{extra})")
    return table_of(refl, cc.default_F)


def _check_cell(cell, cr, flag: str, name: str, given: str, warn) -> None:
    """Warn when the crystal's cell (-cell or -mat) is not the structure file's (0.2 % in length, 0.2 deg)."""
    if cr.a0.dim() != 1:  # a batch of crystals: each has its own cell
        return
    real, _ = cell_parameters(cr)
    if all(abs(x - y) <= 2e-3 * y for x, y in zip(real[:3], cell[:3])) and \
            all(abs(x - y) <= 0.2 for x, y in zip(real[3:], cell[3:])):
        return
    fmt = lambda c: " ".join(f"{x:.4g}" for x in c)  # noqa: E731
    warn(f"the crystal's cell ({given}: {fmt(real)}) differs from the cell of {flag} {name} ({fmt(cell)}); "
         "F is computed in the file's cell and looked up by the crystal's Miller indices")


def oversample_rule(crystal_size: float, wavelength: float, distance: float, pixel: float) -> int:
    """C's automatic oversampling: ceil(3 x crystal size / reciprocal pixel size), at least 1, where the
    reciprocal pixel size is lambda x distance / pixel (the real-space size one pixel resolves)."""
    return max(1, math.ceil(3.0 * crystal_size / (wavelength * distance / pixel)))


def build_model(config: SimConfig, inputs: Inputs, log=None, warn=default_warn) -> Model:
    """The model of ``config`` with the contents of its files; ``model.info`` says what was decided."""
    log = log or (lambda msg: None)
    dev = torch.device(config.engine.device)
    cc = config.crystal
    info = LoadInfo(hkl_table=inputs.hkl, rng=CRandom(), files=dict(inputs.files),
                    source_lines=inputs.source_lines if inputs.source_rows else None)
    crystal = _crystal(config, inputs, info, dev)
    mask = None if inputs.mask is None else torch.as_tensor(inputs.mask != 0, device=dev)
    detector = detector_from_config(config.detector, dev, mask)
    beam = _beam(config, inputs, dev)
    model = Model(crystal=crystal, detector=_expt_panels(config, inputs, detector, dev) or detector, beam=beam,
                  structure_factors=_structure_factors(config, inputs.hkl, dev),
                  dtype={"float32": torch.float32, "float64": torch.float64}[config.engine.dtype], info=info)
    validate_model(model)  # every quantity in its physical domain before anything is derived from it

    cr = crystal_geometry(model)
    if inputs.structure is not None or inputs.reflections is not None:  # the table depends on the geometry
        info.hkl_table = _table_from_structure(config, inputs, model, cr, log, warn)
        model.structure_factors = _structure_factors(config, info.hkl_table, dev)
    if config.output.hklout is not None and info.hkl_table is None:
        raise UsageError("-hklout: this run has no structure-factor table (only -default_F): nothing to write")
    info.N = crystal_counts(cr, cc.Na, cc.Nb, cc.Nc, cc.sample_x, cc.sample_y, cc.sample_z)
    model.crystal.N = setup_tensor(info.N, dev)
    info.oversample = _oversampling(config, detector, beam.beam_vector, cr, info.N, log, warn)
    sc = config.sampling
    model.sampling = Sampling(oversample=info.oversample, oversample_thick=sc.oversample_thick,
                              oversample_polar=sc.oversample_polar, oversample_omega=sc.oversample_omega)
    eager = config.engine.kernel == "torch" or dev.type != "cpu"  # else the fused kernel, at least for a C run
    check_memory(model, config.engine.max_memory_gb, eager)
    return model


def _oversampling(config: SimConfig, detector, beam_vector, cr, N, log, warn) -> int:
    """-oversample, or C's automatic rule when it is not given (a note when the given one is below the rule's):
    the crystal's size from its vectors and N, the reciprocal pixel size from C's placement of ``detector``."""
    bc, dc = config.beam, config.detector
    geom = place_detector(detector, beam_vector)
    if geom.odet_regenerated:
        warn("odet_vector is not a unit vector: using fdet x sdet (as the C program does)")
    xtal = max(float(torch.linalg.vector_norm(v)) * n for v, n in ((cr.a0, N[0]), (cr.b0, N[1]), (cr.c0, N[2])))
    recommended = oversample_rule(xtal, bc.wavelength, float(geom.distance), dc.pixel_size)
    os_ = config.sampling.oversample
    if os_ <= 0:
        os_ = recommended
        log(f"auto-selected {os_}-fold oversampling")
    elif os_ < recommended:
        recip_px = bc.wavelength * float(geom.distance) / dc.pixel_size
        log(f"note: -oversample {recommended} is recommended: C's rule is ceil(3 x crystal size / reciprocal "
            f"pixel size) = ceil(3 x {xtal * 1e10:g} A / {recip_px * 1e10:g} A), where the reciprocal pixel "
            "size is wavelength x distance / pixel")
    return os_


# Flags that place or size C's single panel: with an -expt detector of P > 1 panels the file places them.
_PANEL_FLAGS = ("distance", "close_distance", "Xbeam", "Ybeam", "Xclose", "Yclose", "ORGX", "ORGY", "pivot",
                "detector_rotx", "detector_roty", "detector_rotz", "twotheta", "twotheta_axis", "pixel",
                "detpixels", "detpixels_f", "detpixels_s", "detsize", "detsize_f", "detsize_s", "fdet_vector",
                "sdet_vector", "odet_vector", "curved_det", "mask", "img", "conv_mosflm", "conv_denzo", "conv_adxv",
                "conv_xds", "conv_dials")


def _expt_panels(config: SimConfig, inputs: Inputs, det, device):
    """-expt with P > 1 panels: the ``Panels`` detector the file describes (lab frame, m), with the sensor, the
    layers and the ROI window of C's panel ``det`` (one for all panels); None for one panel (C's placement)."""
    exp = inputs.experiment
    if exp is None or len(exp.panels) == 1:
        return None
    check_one_size(exp, config.expt)
    given = sorted(config.given.intersection(_PANEL_FLAGS))
    if given:
        raise UsageError(f"-{given[0]}: the -expt file places its {len(exp.panels)} panels; flags that place or size "
                         "one panel do not apply")
    F, S = exp.panels[0].image_size
    mask = torch.ones((len(exp.panels), S, F), dtype=torch.bool, device=device)
    for i, p in enumerate(exp.panels):
        for f0, s0, f1, s1 in p.mask:
            mask[i, max(s0, 0):max(s1, 0), max(f0, 0):max(f1, 0)] = False
    t = lambda v: setup_tensor(v, device)  # noqa: E731
    zeros = torch.zeros(len(exp.groups), 3, dtype=SETUP_DTYPE, device=device)
    return Panels(origin=t([p.origin for p in exp.panels]) / 1000, fast=t([p.fast for p in exp.panels]),
                  slow=t([p.slow for p in exp.panels]), fpixels=F, spixels=S, pixel_size=det.pixel_size,
                  groups=exp.groups, group_offset=zeros, group_rotation=zeros.clone(), thickness=det.thickness,
                  mu=det.mu, thicksteps=det.thicksteps, layer_divisor=det.layer_divisor,
                  point_pixel=det.point_pixel, roi=det.roi, mask=None if bool(mask.all()) else mask,
                  names=tuple(p.name for p in exp.panels))


def load_model(config: SimConfig, workdir: str | Path = ".", log=None, warn=default_warn) -> Model:
    """``build_model(config, read_inputs(config, workdir))``: the model of a C command line."""
    return build_model(config, read_inputs(config, workdir, warn, log), log, warn)
