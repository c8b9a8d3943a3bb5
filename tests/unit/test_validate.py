"""Issue 12.1: every physically meaningless input is refused before anything is rendered, with one line that
names the flag (as typed) or the file (and line), and the value; exit 2 for usage, 1 for an input file; no
output file, no traceback. One or more cases per class of the issue, each checking the exact line.

What the C program does with the same inputs (zeros, NaN, a silent default) was measured with nanoBragg and
is listed in docs/c-differences.md; these tests only need our side. The command line runs in-process
(``cli.main``) in a fresh directory per case, so the whole module takes a few seconds.
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

import nanobrag_torch as nb
from nanobrag_torch.errors import InputError, UsageError
from nanobrag_torch.io.smv import format_header
from nanobrag_torch.model import Sampling
from nanobrag_torch.budget import check_memory
from nanobrag_torch.validate import validate_model
from tests.helpers.cli import run_inproc

BASE = "-cell 100 100 100 90 90 90 -default_F 100 -N 2 -detpixels 8 -pixel 0.1 -distance 100 -oversample 1".split()
QUIET = "-nonoise -nopgm -noprogress".split()
MAT_ZERO = "0 0 0\n0 0 0\n0 0 0\n"
MAT_RANK2 = "0.01 0.01 0\n0 0 0\n0 0 0.01\n"  # a* = b* = (0.01, 0, 0)
MAT_HUGE = "1e200 0 0\n0 1e200 0\n0 0 1e200\n"  # finite numbers, but the cell volume (1e-600) is not


def _smv(width, height, value) -> bytes:
    header = format_header([("SIZE1", str(width)), ("SIZE2", str(height)), ("PIXEL_SIZE", "0.1")])
    return header + np.full((height, width), value, dtype=np.uint16).tobytes()


def run(tmp_path, argv, files=None):
    """cli.main(argv) in a fresh directory holding ``files``: (exit code, stderr lines, files written)."""
    d = tmp_path / "run"
    d.mkdir()
    for name, data in (files or {}).items():
        (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    r = run_inproc(argv, d)
    return r.returncode, r.stderr.strip().splitlines(), sorted(set(r.files) - set(files or {}))


# name: (flags replacing/adding to BASE, input files, exit code, the one stderr line after "nanobrag-torch: error: ")
CASES = {
    # lengths, pixel sizes and counts: positive and finite
    "distance_zero": ("-distance 0", None, 2, "-distance: must be positive, got 0"),
    "distance_negative": ("-distance -100", None, 2, "-distance: must be positive, got -100"),
    "distance_inf": ("-distance inf", None, 2, "-distance: expected a finite number, got 'inf'"),
    "close_distance": ("-close_distance -50", None, 2, "-close_distance: must be positive, got -50"),
    "pixel_zero": ("-pixel 0", None, 2, "-pixel: must be positive, got 0"),
    "pixel_overflow": ("-pixel 1e999", None, 2, "-pixel: expected a finite number, got '1e999'"),
    "detsize_zero": ("-detsize_x 0", None, 2, "-detsize_x: must be positive, got 0"),
    "detpixels_zero": ("-detpixels_x 0", None, 2, "-detpixels_x: must be at least 1, got 0"),
    "N_negative": ("-Nb -3", None, 2, "-Nb: must not be negative, got -3"),
    "xtal_size_negative": ("-xtalsize -0.1", None, 2, "-xtalsize: must not be negative, got -0.1"),
    "detector_thick_negative": ("-detector_thick -100", None, 2, "-detector_thick: must not be negative, got -100"),
    "water_negative": ("-water -5", None, 2, "-water: must not be negative, got -5"),
    "fluence_zero": ("-fluence 0", None, 2, "-fluence: must be positive, got 0"),
    "flux_negative": ("-flux -1e12", None, 2, "-flux: must not be negative, got -1e+12"),
    "beamsize_zero": ("-flux 1e12 -beamsize 0", None, 2,
                      "-beamsize: must not be 0 (negative switches the crystal-size clipping off, as in C)"),
    "fudge_zero": ("-round_xtal -fudge 0", None, 2, "-fudge: must be positive, got 0"),
    "polar_out_of_range": ("-polar 2", None, 2, "-polar: the Kahn polarization factor must lie in [-1, 1], got 2"),
    "Xbeam_inf": ("-Xbeam inf", None, 2, "-Xbeam: expected a finite number, got 'inf'"),
    # wavelengths and energies: positive
    "lambda_zero": ("-lambda 0", None, 2, "-lambda: must be positive, got 0"),
    "wave_negative": ("-wave -1", None, 2, "-wave: must be positive, got -1"),
    "energy_zero": ("-energy 0", None, 2, "-energy: must be positive, got 0"),
    "dispersion_300": ("-dispersion 300 -dispsteps 3", None, 2,
                       "-dispersion: every wavelength must stay positive (a spread below 200%), got wavelengths "
                       "down to -0.5 A (Beam.dispersion_factors)"),
    "source_wavelength_zero": ("-sourcefile s.txt", {"s.txt": "-10 0 0 1 1e-10\n-10 0 0 1 0\n"}, 1,
                               "-sourcefile: s.txt line 2: the wavelength must be positive, got 0 m "
                               "(Beam.source_wavelengths)"),
    # cell lengths positive, angles forming a real cell; matrices
    "cell_a_negative": ("-cell -100 100 100 90 90 90", None, 2, "-cell: the length a must be positive, got -100"),
    "cell_b_negative": ("-cell 100 -100 100 90 90 90", None, 2,
                        "-cell: the length b must be positive (0 takes a, as in C), got -100"),
    "cell_angle_200": ("-cell 100 100 100 90 90 200", None, 2,
                       "-cell: the angle gamma must lie between 0 and 180 degrees (0 takes 90, as in C), got 200"),
    "cell_flat": ("-cell 100 100 100 120 120 120", None, 2,
                  "-cell: the angles form no real cell (each must be less than the sum of the other two, and all "
                  "three less than 360 degrees), got 100 100 100 120 120 120 (Crystal.cell)"),
    "cell_triangle": ("-cell 50 60 70 30 30 90", None, 2,
                      "-cell: the angles form no real cell (each must be less than the sum of the other two, and "
                      "all three less than 360 degrees), got 50 60 70 30 30 90 (Crystal.cell)"),
    "mat_zero": ("-mat z.mat", {"z.mat": MAT_ZERO}, 1,
                 "-mat: z.mat: the matrix is singular: a*, b*, c* are not linearly independent (zero cell volume) "
                 "(Crystal.matrix)"),
    "mat_rank2": ("-mat r.mat", {"r.mat": MAT_RANK2}, 1,
                  "-mat: r.mat: the matrix is singular: a*, b*, c* are not linearly independent (zero cell volume) "
                  "(Crystal.matrix)"),
    "mat_huge": ("-mat h.mat", {"h.mat": MAT_HUGE}, 1,
                 "-mat: h.mat: the crystal cell is degenerate: its volume or vectors are not finite numbers "
                 "(Crystal.matrix)"),
    # beam, polarization and detector vectors non-zero
    "beam_vector_zero": ("-beam_vector 0 0 0", None, 2, "-beam_vector: must be a non-zero vector, got 0 0 0"),
    "polar_vector_zero": ("-polar_vector 0 0 0", None, 2, "-polar_vector: must be a non-zero vector, got 0 0 0"),
    "fdet_zero": ("-fdet_vector 0 0 0", None, 2, "-fdet_vector: must be a non-zero vector, got 0 0 0"),
    "sdet_zero": ("-sdet_vector 0 0 0", None, 2, "-sdet_vector: must be a non-zero vector, got 0 0 0"),
    "odet_zero": ("-odet_vector 0 0 0", None, 2, "-odet_vector: must be a non-zero vector, got 0 0 0"),
    "spindle_zero": ("-spindle_axis 0 0 0", None, 2, "-spindle_axis: must be a non-zero vector, got 0 0 0"),
    "twotheta_axis_zero": ("-twotheta_axis 0 0 0", None, 2, "-twotheta_axis: must be a non-zero vector, got 0 0 0"),
    "fdet_parallel_sdet": ("-fdet_vector 0 0 1 -sdet_vector 0 0 2", None, 2,
                           "-sdet_vector: the fast and slow axes (-fdet_vector, -sdet_vector) are parallel: the "
                           "pixels span no plane, got 0 0 2 (Detector.sdet)"),
    "polar_vector_along_beam": ("-polar 0.5 -polar_vector 2 0 0", None, 2,
                                "-polar_vector: is parallel to the beam (-beam_vector): the polarization plane is "
                                "undefined, got 2 0 0 (Beam.polar_vector)"),
    # source directions that cannot be normalised: the file and the line (comments and blanks counted)
    "source_at_sample": ("-sourcefile s.txt", {"s.txt": "-10 0 0 1 1e-10\n\n0 0 0 1 1e-10\n"}, 1,
                         "-sourcefile: s.txt line 3: the source position gives no direction (it is at the sample, "
                         "or not finite), got 0 0 0 (Beam.source_directions)"),
    # an ROI must overlap the detector; a mask must leave a pixel
    "roi_outside": ("-roi 10 20 0 7", None, 2,
                    "-roi: the window x 10..20, y 0..7 does not overlap the 8x8 detector (x 0..7, y 0..7) "
                    "(Detector.roi)"),
    "roi_inverted": ("-roi 5 2 0 7", None, 2,
                     "-roi: the window x 5..2, y 0..7 does not overlap the 8x8 detector (x 0..7, y 0..7) "
                     "(Detector.roi)"),
    "mask_all_zero": ("-mask m.img", {"m.img": _smv(8, 8, 0)}, 1,
                      "-mask: m.img: no pixel left to render: the mask is zero everywhere (Detector.mask)"),
    # oversampling, steps and domains >= 1
    "oversample_zero": ("-oversample 0", None, 2,
                        "-oversample: must be at least 1, got 0 (leave the flag out for the automatic choice)"),
    "phisteps_negative": ("-phisteps -3", None, 2,
                          "-phisteps: must be at least 1, got -3 (leave the flag out for the automatic choice)"),
    "mosaic_domains_zero": ("-mosaic 1 -mosaic_domains 0", None, 2,
                            "-mosaic_domains: must be at least 1, got 0 (leave the flag out for the automatic "
                            "choice)"),
    "thicksteps_zero": ("-detector_thick 100 -detector_thicksteps 0", None, 2,
                        "-detector_thicksteps: must be at least 1, got 0 (leave the flag out for the automatic "
                        "choice)"),
    "divsteps_negative": ("-divergence 1 -divsteps -2", None, 2,
                          "-divsteps: must be at least 1, got -2 (leave the flag out for the automatic choice)"),
    "mosaic_negative": ("-mosaic -1", None, 2, "-mosaic: must not be negative, got -1"),
    "max_memory_zero": ("-max_memory_gb 0", None, 2, "-max_memory_gb: must be positive, got 0"),
    "frames_zero": ("-frames 0", None, 2, "-frames: must be at least 1, got 0"),  # not a single image instead
}


def _argv(flags: str) -> list[str]:
    extra = flags.split()
    base = list(BASE)
    if "-cell" in extra or "-mat" in extra:
        del base[:7]
    if "-mask" in extra:  # the mask's header sets the detector size
        i = base.index("-detpixels")
        del base[i:i + 2]
    return base + extra + QUIET


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_with_one_line_naming_the_flag_or_file(tmp_path, name):
    flags, files, code, message = CASES[name]
    got, lines, written = run(tmp_path, _argv(flags), files)
    assert (got, lines) == (code, [f"nanobrag-torch: error: {message}"])
    assert written == [], "an output file was written despite the error"


def test_valid_limits_are_accepted(tmp_path):
    # The edges that stay allowed: C's documented zeros (-N 0 is one unit cell, -mosaic 0 no mosaicity,
    # -exposure 0 no flux rule, -detector_abs 0 no absorption), a Kahn factor of exactly 1, a negative beam
    # size (C's switch for "no clipping") and an ROI of one pixel at the detector's last corner.
    flags = ("-N 0 -mosaic 0 -flux 1e12 -exposure 0 -detector_abs 0 -polar 1 -beamsize -1 -roi 7 7 7 7 "
             "-floatfile f.bin -intfile i.img")
    code, lines, written = run(tmp_path, _argv(flags))
    assert (code, lines, written) == (0, [], ["f.bin", "i.img"])
    image = np.fromfile(tmp_path / "run" / "f.bin", dtype="<f4").reshape(8, 8)
    assert image[7, 7] > 0 and np.count_nonzero(image) == 1  # only the ROI pixel is rendered


# ------------------------------------------------------------------------------------------ the Python API
@pytest.fixture(scope="module")
def model():
    return nb.load_model(nb.config_from_argv(BASE))


@pytest.mark.parametrize("change, error, message", [
    ({"detector__distance": torch.tensor(-0.1, dtype=torch.float64)}, UsageError,
     "-distance: must be positive and finite, got -100 mm (Detector.distance)"),
    ({"detector__pixel_size": torch.tensor(math.nan, dtype=torch.float64)}, UsageError,
     "-pixel: must be positive and finite, got nan mm (Detector.pixel_size)"),
    ({"beam__wavelength": torch.tensor(0.0, dtype=torch.float64)}, UsageError,
     "-lambda: must be positive and finite, got 0 A (Beam.wavelength)"),
    ({"beam__fluence": torch.tensor(-1.0, dtype=torch.float64)}, UsageError,
     "-fluence: must be positive and finite, got -1 photons/m^2 (Beam.fluence)"),
    ({"crystal__cell": torch.tensor([100, 100, 100, 2.0, 2.0, 2.5], dtype=torch.float64)}, UsageError,
     "-cell: the angles form no real cell (each must be less than the sum of the other two, and all three less "
     "than 360 degrees), got 100 100 100 114.592 114.592 143.239 (Crystal.cell)"),
    ({"crystal__N": torch.tensor([2.0, 0.0, 2.0], dtype=torch.float64)}, UsageError,
     "-N: must be positive and finite, got 0 (Crystal.N)"),
    ({"crystal__matrix": torch.zeros(3, 3, dtype=torch.float64)}, InputError,
     "-mat: the matrix is singular: a*, b*, c* are not linearly independent (zero cell volume) (Crystal.matrix)"),
    ({"beam__polar_vector": torch.zeros(3, dtype=torch.float64)}, UsageError,
     "-polar_vector: must be a non-zero, finite vector, got 0 0 0 (Beam.polar_vector)"),
    ({"beam__source_directions": torch.zeros(1, 3, dtype=torch.float64)}, InputError,
     "-sourcefile: source 1: the source position gives no direction (it is at the sample, or not finite), got 0 0 0 "
     "(Beam.source_directions)"),
    ({"beam__kahn": torch.tensor(-1.5, dtype=torch.float64)}, UsageError,
     "-polar: the Kahn polarization factor must lie in [-1, 1], got -1.5 (Beam.kahn)"),
    ({"detector__roi": (0, 7, 8, 9)}, UsageError,
     "-roi: the window x 0..7, y 8..9 does not overlap the 8x8 detector (x 0..7, y 0..7) (Detector.roi)"),
])
def test_python_api_gets_the_command_lines_message(model, change, error, message):
    # The model knows each field's C flag (validate.FIELDS): a Python user is told the same flag, the value in
    # the flag's units and the field; render refuses before computing anything.
    bad = model.replace(**change)
    with pytest.raises(error) as exc:
        nb.render(bad)
    assert str(exc.value) == message


def test_oversample_of_the_api_is_checked(model):
    bad = dataclasses.replace(model, sampling=Sampling(oversample=0))
    with pytest.raises(UsageError, match=re.escape("-oversample: must be an integer >= 1, got 0 "
                                                   "(Sampling.oversample)")):
        validate_model(bad)


def test_checks_leave_gradients_alone(model):
    # Validation reads detached values: a model whose parameters require grad passes, and the gradient flows.
    d = model.detector.distance.clone().requires_grad_(True)
    cell = model.crystal.cell.clone().requires_grad_(True)
    m = model.replace(detector__distance=d, crystal__cell=cell)
    validate_model(m)
    nb.render(m, kernel="torch").sum().backward()
    assert d.grad is not None and torch.isfinite(d.grad) and cell.grad is not None and torch.isfinite(cell.grad).all()


def test_a_model_built_in_python_is_refused_by_render(model):
    # Not loaded, so never validated: render runs every check.
    bad = nb.Model(crystal=model.crystal, beam=model.beam, structure_factors=model.structure_factors,
                   detector=dataclasses.replace(model.detector, distance=torch.tensor(-0.1, dtype=torch.float64)))
    with pytest.raises(UsageError, match=re.escape("-distance: must be positive and finite, got -100 mm")):
        nb.render(bad)
    # info=None stands for "nothing loaded", as the default does
    none = nb.Model(crystal=model.crystal, beam=model.beam, structure_factors=model.structure_factors,
                    detector=bad.detector, info=None)
    with pytest.raises(UsageError, match=re.escape("-distance: must be positive and finite, got -100 mm")):
        nb.render(none)


def test_a_loaded_model_changed_in_place_is_checked_again():
    # The loader's checks are not repeated by render, but a value assigned or changed in place afterwards is
    # (torch's in-place version counter tells a changed tensor from the one that passed).
    m = nb.load_model(nb.config_from_argv(BASE))
    m.crystal.fudge = torch.tensor(0.0, dtype=torch.float64)
    with pytest.raises(UsageError, match=re.escape("-fudge: must be positive and finite, got 0")):
        nb.render(m)
    m = nb.load_model(nb.config_from_argv(BASE))
    with torch.no_grad():
        m.beam.fluence.mul_(-1.0)
    with pytest.raises(UsageError, match=re.escape("-fluence: must be positive and finite, got -")):
        nb.render(m)
    m = nb.load_model(nb.config_from_argv(BASE))
    m.sampling = Sampling(oversample=0)
    with pytest.raises(UsageError, match=re.escape("-oversample: must be an integer >= 1, got 0")):
        nb.render(m)


def test_load_and_render_run_each_check_once(monkeypatch):
    # Each group of checks runs once for load_model + render (the loader's values are unchanged at render),
    # except the two the loader changes after its checks: N (set from the crystal size) and the oversampling
    # (C's automatic rule), whose new values render checks. A replace()d copy re-runs only the groups whose
    # values changed (a new distance: the detector's checks).
    from nanobrag_torch import validate

    runs = {name: 0 for name, _, _ in validate._GROUPS}

    def counted(name, check):
        def run(c):
            runs[name] += 1
            check(c)
        return run

    monkeypatch.setattr(validate, "_GROUPS", tuple((n, v, counted(n, f)) for n, v, f in validate._GROUPS))
    m = nb.load_model(nb.config_from_argv(BASE))
    nb.render(m)
    nb.render(m)
    once = {**dict.fromkeys(runs, 1), "counts": 2, "sampling": 2}
    assert runs == once
    nb.render(m.replace(detector__distance=torch.tensor(0.2, dtype=torch.float64)))
    assert runs == {**once, "detector": 2}


# ------------------------------------------------------------------------------------------- memory budget
def _needed_gib(message: str) -> float:
    return float(re.search(r"needs at least ([0-9.e+]+) GiB", message).group(1))


def test_a_render_that_cannot_fit_is_refused_up_front_with_its_size(tmp_path):
    # A 100000 x 100000 detector (1e10 pixels): refused while loading, before any buffer of that size exists,
    # naming the budget flag and the size; the stated size is what the check compares (a budget 1% above it
    # passes, 1% below refuses).
    code, lines, written = run(tmp_path, _argv("-detpixels 100000"))
    assert code == 2 and len(lines) == 1 and written == []
    assert lines[0].startswith("nanobrag-torch: error: -max_memory_gb: this render needs at least ")
    assert "(100000x100000 pixels in float64: " in lines[0] and "more than the budget of 2 GiB" in lines[0]
    need = _needed_gib(lines[0])
    m = nb.load_model(nb.config_from_argv(_argv("-detpixels 100000 -max_memory_gb 1e4")))
    check_memory(m, need * 1.01, eager=False)
    with pytest.raises(UsageError, match="needs at least"):
        check_memory(m, need * 0.99, eager=False)


def test_one_pixel_whose_evaluations_cannot_fit_is_refused_for_the_eager_kernel(tmp_path):
    # 1e3 mosaic domains x 1e5 phi steps x 10x10 sub-pixels: each pixel's 1e10 evaluations alone exceed the
    # budget in the eager kernel (which holds a chunk's evaluations at once); named with the per-pixel size.
    flags = "-mosaic 1 -mosaic_domains 1000 -phisteps 100000 -osc 1 -oversample 10 -kernel torch"
    code, lines, written = run(tmp_path, _argv(flags))
    assert code == 2 and len(lines) == 1 and written == []
    assert "of intermediates for each pixel" in lines[0] and lines[0].startswith(
        "nanobrag-torch: error: -max_memory_gb: this render needs at least ")


def test_the_record_of_passed_checks_keeps_no_superseded_tensor_alive():
    # In an optimisation loop each step assigns new tensors; the record of what passed holds them weakly, so a
    # replaced one (with its graph) is freed at once, not at the next check.
    import gc
    import weakref

    m = nb.load_model(nb.config_from_argv(BASE))
    nb.render(m)
    gone = weakref.ref(m.crystal.fudge)
    m.crystal.fudge = torch.tensor(2.0, dtype=torch.float64)
    gc.collect()
    assert gone() is None
    nb.render(m)  # and the new value is checked and recorded as before
    assert m._checked["crystal"] is not None


def test_a_validated_model_pickles_and_copies_without_its_record():
    # Dataset workers receive the model pickled: the weak record of passed checks stays behind, and the copy
    # is checked afresh (a bad value in it still refused).
    import copy
    import pickle

    m = nb.load_model(nb.config_from_argv(BASE))
    ref = nb.render(m)
    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert other._checked == {} and torch.equal(nb.render(other), ref)
        other.crystal.fudge = torch.tensor(-1.0, dtype=torch.float64)
        with pytest.raises(UsageError, match="-fudge"):
            nb.render(other)
