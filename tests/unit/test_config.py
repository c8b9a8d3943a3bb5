"""Unit tests of nanobrag_torch.cmdline.replay.build_config: the C program's defaults and auto-selection rules.

Every table row here is a row of docs/c-behaviour.md §2 (defaults, auto rules) or §3.1 (conventions, beam centres);
the comment on each case quotes the rule it checks. Configs are built through ``config_from_argv`` (the
same path the CLI takes), without rendering anything.
"""

from __future__ import annotations

import math

import pytest
import torch

from nanobrag_torch import config_from_argv
from nanobrag_torch.errors import UsageError
from nanobrag_torch.sources import build_sources, divergence_grid

RAD = math.pi / 180
BASE = ["-cell", "100", "-default_F", "1"]


def cfg(argv: str = ""):
    return config_from_argv(BASE + argv.split())


# ------------------------------------------------------------------------------------------------ phi
@pytest.mark.parametrize(
    "argv, steps, osc_deg, step_deg",
    [
        ("", 1, 0.0, 0.0),  # nothing: 1 step, osc 0, step 0
        ("-phistep 0.1", 2, 0.1, 0.1),  # step only: osc = step, 2 steps
        ("-osc 1", 2, 1.0, 0.5),  # osc only: 2 steps, step = osc/2
        ("-osc 1 -phistep 0.3", 4, 1.0, 0.3),  # both: steps = ceil(1/0.3) = 4 (overshoots osc)
        ("-phisteps 4", 4, 1.0, 0.25),  # count only: osc = 1 deg, step = 1/N
        ("-phisteps 4 -phistep 0.1", 2, 0.1, 0.1),  # count + step: osc = step, count forced to 2
        ("-phisteps 4 -osc 2", 4, 2.0, 0.5),  # count + osc: step = osc/N
        ("-phisteps 3 -osc 2 -phistep 0.5", 3, 2.0, 0.5),  # all three: as given
    ],
)
def test_phi_auto_rule(argv, steps, osc_deg, step_deg):
    c = cfg(argv).crystal
    assert c.phisteps == steps
    assert c.osc == pytest.approx(osc_deg * RAD)
    assert c.phistep == pytest.approx(step_deg * RAD)


def test_phi_rule_counts_zero_steps_as_one():
    # C: a count of 0 is treated as 1 (then the count-only row: osc 1 deg, step 1 deg). The command line
    # refuses -phisteps 0 (issue 12: counts >= 1), so the rule is checked on the function itself.
    from nanobrag_torch.cmdline.c_rules import phi_steps

    assert phi_steps(0, -1.0, -1.0) == (1, pytest.approx(RAD), pytest.approx(RAD))
    with pytest.raises(UsageError, match=r"^-phisteps: must be at least 1, got 0"):
        cfg("-phisteps 0")


# ----------------------------------------------------------------------------------------- divergence
@pytest.mark.parametrize(
    "argv, steps, range_mrad, step_mrad",
    [
        ("", 1, 0.0, 0.0),  # nothing: 1 point, range 0
        ("-hdivstep 0.1", 2, 0.1, 0.1),  # step only: range = step, 2 points
        ("-hdivrange 0.2", 2, 0.2, 0.2),  # range only: step = range, 2 points at +-range/2
        ("-hdivrange 0.28 -hdivstep 0.02", 14, 0.28, 0.02),  # range & step: ceil(range/step) = 14 (C run)
        ("-hdivsteps 3", 3, 1000.0, 1000.0 / 3),  # count only: range = 1 RADIAN, step = 1/N
        ("-hdivsteps 5 -hdivstep 0.1", 2, 0.1, 0.1),  # count & step: range = step, count forced to 2
        ("-hdivsteps 3 -hdivrange 0.2", 3, 0.2, 0.1),  # count & range: step = range/(N-1)
        ("-hdivsteps 1 -hdivrange 0.2", 2, 0.2, 0.2),  # ... with N < 2 forced to 2
    ],
)
def test_divergence_auto_rule(argv, steps, range_mrad, step_mrad):
    b = cfg(argv).beam
    assert b.hdiv_steps == steps
    assert b.hdiv_range == pytest.approx(range_mrad * 1e-3)
    assert b.hdiv_step == pytest.approx(step_mrad * 1e-3)
    assert (b.vdiv_steps, b.vdiv_range) == (1, 0.0)  # the vertical axis was not touched


def test_divergence_range_only_points_are_symmetric():
    # range only -> 2 sources at hdiv = -range/2 and +range/2 (a zero v range never trims, §5.2).
    b = cfg("-hdivrange 0.2").beam
    assert build_sources(b, None, torch.float64, "cpu").count == 2
    assert [h for h, _ in divergence_grid(b)] == pytest.approx([-1e-4, 1e-4])


def test_divergence_range_and_step_is_asymmetric():
    # 0.28/0.02 mrad: 14 points from -0.14 to +0.12 mrad, not symmetric (C run, §2.5).
    pts = divergence_grid(cfg("-hdivrange 0.28 -hdivstep 0.02 -square_div").beam)
    h = [p[0] for p in pts]
    assert len(h) == 14
    assert h[0] == pytest.approx(-0.14e-3) and h[-1] == pytest.approx(0.12e-3)


def test_divergence_flag_sets_both_axes_and_round_trimming():
    # -divergence 0.4 -divsteps 5: a 5x5 grid trimmed to an ellipse keeps 13 points; -square_div keeps 25.
    assert len(divergence_grid(cfg("-divergence 0.4 -divsteps 5").beam)) == 13
    assert len(divergence_grid(cfg("-divergence 0.4 -divsteps 5 -square_div").beam)) == 25
    assert len(divergence_grid(cfg("-divergence 0.4 -divsteps 4").beam)) == 12


# ----------------------------------------------------------------------------------------- dispersion
def test_dispersion_alone_gives_two_wavelengths():
    # -dispersion 10 (%) alone: range only -> 2 wavelengths lambda0 (1 -+ D/2) = 0.95 and 1.05 A.
    b = cfg("-dispersion 10").beam
    assert b.disp_steps == 2
    s = build_sources(b, None, torch.float64, "cpu")
    assert s.wavelengths.tolist() == pytest.approx([0.95e-10, 1.05e-10])


def test_dispsteps_alone_gives_one_wavelength():
    # dispersion defaults to 0 (not -1): count with range 0 is reset to 1 by the sanity pass.
    b = cfg("-dispsteps 5").beam
    assert (b.disp_steps, b.dispersion, b.disp_step) == (1, 0.0, 0.0)


# ------------------------------------------------------------------------------------- detector layers
@pytest.mark.parametrize(
    "argv, layers, thick_um, step_um",
    [
        ("", 1, 0.0, 0.0),  # nothing: 1 layer
        ("-detector_thick 100", 2, 100.0, 50.0),  # T only: 2 layers, step T/2
        ("-detector_thick 100 -thicksteps 5", 5, 100.0, 25.0),  # T and N: step T/(N-1)
        ("-detector_thick 100 -thicksteps 1", 2, 100.0, 100.0),  # N < 2 forced to 2: step T
    ],
)
def test_thickness_auto_rule(argv, layers, thick_um, step_um):
    d = cfg(argv).detector
    assert d.thicksteps == layers
    assert d.thickness == pytest.approx(thick_um * 1e-6)
    assert d.thickstep == pytest.approx(step_um * 1e-6)


def test_thickness_sets_mu_when_unset():
    # thickness > 0 and mu never set: mu = 1/thickness (in 1/m); an explicit -detector_abs wins.
    assert cfg("-detector_thick 100").detector.mu == pytest.approx(1 / 100e-6)
    assert cfg("-detector_thick 100 -detector_abs 500").detector.mu == pytest.approx(1 / 500e-6)
    # -detector_abs inf also zeroes the thickness (only a later -detector_thick sets it again)
    d = cfg("-detector_thick 100 -detector_abs inf").detector
    assert (d.thickness, d.mu, d.thicksteps) == (0.0, 0.0, 1)


# --------------------------------------------------------------------------------------------- mosaic
@pytest.mark.parametrize(
    "argv, domains, spread_deg",
    [
        ("", 1, 0.0),  # unset: 1 domain, spread 0
        ("-mosaic 0.5", 10, 0.5),  # spread without count: 10 domains (with a warning)
        ("-mosaic_domains 5", 1, 0.0),  # count without spread: 1 domain
        ("-mosaic 0 -mosaic_domains 5", 1, 0.0),  # spread exactly 0: 1 domain
        ("-mosaic 0.5 -mosaic_domains 3", 3, 0.5),  # both: as given
    ],
)
def test_mosaic_auto_rule(argv, domains, spread_deg):
    c = cfg(argv)
    assert c.crystal.mosaic_domains == domains
    assert c.crystal.mosaic_spread == pytest.approx(spread_deg * RAD)
    if argv == "-mosaic 0.5":
        assert any("10 mosaic domains" in w for w in c.warnings)


# -------------------------------------------------------------------------------------- beam centre
# Df = 10 mm (100 fast pixels), Ds = 6 mm (60 slow pixels), px = 0.1 mm; values in mm.
# columns: Xbeam, Ybeam, Fbeam, Sbeam, Fclose, Sclose, pivot
CENTRES = {
    "mosflm": (3.05, 5.05, 5.1, 3.1, 5.0, 3.0, "beam"),  # (Ds+px)/2, (Df+px)/2; F = Y + px/2, S = X + px/2
    "denzo": (3.05, 5.05, 5.05, 3.05, 5.0, 3.0, "beam"),  # same defaults, no half-pixel shift
    "adxv": (5.05, 2.95, 5.05, 3.05, 5.0, 3.0, "beam"),  # (Df+px)/2, (Ds-px)/2; F = X, S = Ds - Y
    "xds": (5.0, 3.0, 5.0, 3.0, 5.0, 3.0, "sample"),  # Xclose, Yclose = Df/2, Ds/2
    "dials": (5.0, 3.0, 5.0, 3.0, 5.0, 3.0, "sample"),
}


@pytest.mark.parametrize("conv", sorted(CENTRES))
def test_beam_centre_defaults_per_convention(conv):
    d = cfg(f"-{conv} -detpixels_f 100 -detpixels_s 60 -pixel 0.1").detector
    got = tuple(round(x * 1e3, 9) for x in (d.xbeam, d.ybeam, d.fbeam, d.sbeam, d.fclose, d.sclose))
    assert got == pytest.approx(CENTRES[conv][:6], abs=1e-9)
    assert d.pivot == CENTRES[conv][6]
    assert d.convention == conv.upper()


def test_custom_beam_centre_sets_close_too():
    # CUSTOM: Xbeam/Ybeam default to Xclose/Yclose, and Fclose = Xbeam, Sclose = Ybeam.
    d = cfg("-detpixels_f 100 -detpixels_s 60 -beam_vector 1 0 0 -Xbeam 4 -Ybeam 2").detector
    assert d.convention == "CUSTOM"
    assert (d.fbeam, d.sbeam, d.fclose, d.sclose) == pytest.approx((4e-3, 2e-3, 4e-3, 2e-3))


def test_mosflm_xbeam_is_slow():
    # In MOSFLM -Xbeam is the SLOW coordinate and -Ybeam the fast one (plus half a pixel).
    d = cfg("-detpixels 100 -Xbeam 2 -Ybeam 7").detector
    assert d.sbeam == pytest.approx(2.05e-3) and d.fbeam == pytest.approx(7.05e-3)


def test_named_convention_discards_parsed_pivot():
    # Pivot flags are honoured only in CUSTOM: MOSFLM stays BEAM with -twotheta/-pivot sample,
    # XDS stays SAMPLE.
    assert cfg("-twotheta 10 -pivot sample").detector.pivot == "beam"
    assert cfg("-xds -distance 100 -pivot beam").detector.pivot == "sample"
    assert cfg("-beam_vector 1 0 0 -pivot sample").detector.pivot == "sample"
    assert cfg("-beam_vector 1 0 0 -twotheta 10").detector.pivot == "sample"  # -twotheta -> SAMPLE
    assert cfg("-beam_vector 1 0 0").detector.pivot == "beam"  # CUSTOM default


# ----------------------------------------------------------------------------------- detector size
def test_detsize_is_not_rounded_to_pixels():
    # -detsize 10 -pixel 0.3: ceil(10/0.3 - 0.5) = 33 pixels but Df stays 10 mm (not 9.9), and the MOSFLM
    # default beam centre uses it: Ybeam = (10 + 0.3)/2 = 5.15 mm.
    d = cfg("-detsize 10 -pixel 0.3").detector
    assert (d.fpixels, d.spixels) == (33, 33)
    assert d.detsize_f == pytest.approx(0.010) and d.detsize_s == pytest.approx(0.010)
    assert d.ybeam == pytest.approx(5.15e-3)


def test_pixel_counts_override_size():
    # A pixel count recomputes the size: -detsize 50 -detpixels 20 -> 20 px of 0.1 mm, Df = 2 mm.
    d = cfg("-detsize 50 -detpixels 20").detector
    assert (d.fpixels, d.detsize_f) == (20, pytest.approx(2e-3))


def test_default_detector():
    # Defaults: 102.4 mm of 0.1 mm pixels -> 1024 x 1024, distance 100 mm, MOSFLM.
    d = cfg().detector
    assert (d.fpixels, d.spixels, d.convention) == (1024, 1024, "MOSFLM")
    assert d.distance == pytest.approx(0.1) and d.pixel_size == pytest.approx(1e-4)


# ------------------------------------------------------------------------------------------- fluence
def test_default_fluence_is_inverse_r_e_squared():
    # C's default fluence is 1/r_e^2 with its literal r_e^2 = 7.94079248018965e-30 m^2 (r_e = 2.818 fm, the
    # classical electron radius): 1.25932e29 photons/m^2.
    assert cfg().beam.fluence == pytest.approx(1 / 7.94079248018965e-30, rel=1e-12)
    assert cfg().beam.fluence == pytest.approx(1 / 2.8179403262e-15**2, rel=1e-6)  # CODATA r_e, C's digits


def test_fluence_from_flux_exposure_beamsize():
    # fluence = flux * exposure / beamsize^2 = 1e12 * 2 / (1e-4 m)^2 = 2e20 photons/m^2, and -flux wins
    # over -fluence whatever the order.
    assert cfg("-flux 1e12 -exposure 2 -beamsize 0.1").beam.fluence == pytest.approx(2e20)
    assert cfg("-flux 1e12 -exposure 2 -beamsize 0.1 -fluence 5").beam.fluence == pytest.approx(2e20)
    assert cfg("-fluence 5").beam.fluence == 5.0
    # exposure 0 disables the flux rule
    assert cfg("-flux 1e12 -exposure 0 -fluence 5").beam.fluence == 5.0


def test_crystal_size_clipped_to_beam_along_b_and_c_only():
    # -xtal_size 0.5 with the default 0.1 mm beam: b and c sizes clipped to 0.1 mm, the a size is not.
    c = cfg("-xtal_size 0.5").crystal
    assert (c.sample_x, c.sample_y, c.sample_z) == pytest.approx((5e-4, 1e-4, 1e-4))
    # a negative beam size switches the clipping off
    c = cfg("-xtal_size 0.5 -beamsize -1").crystal
    assert (c.sample_y, c.sample_z) == pytest.approx((5e-4, 5e-4))


# ------------------------------------------------------------------------------------- interpolation
@pytest.mark.parametrize(
    "argv, on",
    [
        ("-N 2", True),  # any raw N <= 2 -> on
        ("-N 3", False),  # all N > 2 -> off
        ("-Na 5 -Nb 5 -Nc 1", True),
        ("-xtal_size 0.1", True),  # size without -N: N is still 1 when C decides -> on
        ("-N 3 -xtal_size 0.1", False),
        ("-N 10 -interpolate", True),  # forced
        ("-N 1 -nointerpolate", False),
    ],
)
def test_interpolation_auto_rule(argv, on):
    c = cfg(argv).crystal
    assert c.interpolate is on
    assert c.interpolate_auto is ("interpolate" not in argv)


# -------------------------------------------------------------------------------------- polarization
def test_polar_and_nopolar_order():
    # -nopolar fixes the factor to 1; a LATER -polar clears it again (C handler order),
    # an earlier one does not.
    b = cfg("-polar 0.5 -nopolar").beam
    assert (b.kahn_factor, b.nopolar) == (0.5, True)
    b = cfg("-nopolar -polar 0.5").beam
    assert (b.kahn_factor, b.nopolar) == (0.5, False)
    assert cfg().beam.kahn_factor == 0.0  # default K = 0 (help text claims 1)


# -------------------------------------------------------------------------------- convention vs vectors
def test_vector_flag_selects_custom():
    d = cfg("-beam_vector 0 0 1").detector
    assert d.convention == "CUSTOM"
    assert cfg("-beam_vector 0 0 1").beam.beam_vector == (0.0, 0.0, 1.0)
    # -pix0_vector selects CUSTOM too (its value is discarded)
    assert cfg("-pix0_vector 0.1 0 0").detector.convention == "CUSTOM"


def test_later_convention_flag_overwrites_vectors():
    # vector flag then -xds: XDS with all of its own vectors.
    c = cfg("-beam_vector 1 0 0 -xds")
    assert c.detector.convention == "XDS"
    assert c.beam.beam_vector == (0, 0, 1) and c.detector.fdet_vector == (1, 0, 0)


def test_vector_after_convention_builds_on_custom_defaults():
    # -xds then -beam_vector: CUSTOM built on the CUSTOM defaults, NOT on XDS's vectors: fdet (0,0,1),
    # and the CUSTOM 2theta axis (0,1,0) (differs from MOSFLM's (0,0,-1)).
    c = cfg("-xds -beam_vector 0 0 1")
    d = c.detector
    assert d.convention == "CUSTOM"
    assert d.fdet_vector == (0, 0, 1) and d.sdet_vector == (0, -1, 0) and d.twotheta_axis == (0, 1, 0)
    assert c.beam.beam_vector == (0.0, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- ROI
def test_roi_defaults_and_negatives():
    # Unset or negative values become 0 / fpixels / 0 / spixels (inclusive test, so the default is the image).
    assert cfg("-detpixels_f 40 -detpixels_s 30").detector.roi == (0, 40, 0, 30)
    assert cfg("-detpixels 40 -roi 5 20 10 30").detector.roi == (5, 20, 10, 30)
    assert cfg("-detpixels 40 -roi -1 20 -1 -1").detector.roi == (0, 20, 0, 40)


# ---------------------------------------------------------------------------------- required inputs
def test_missing_crystal_is_a_usage_error():
    with pytest.raises(UsageError, match="no crystal"):
        config_from_argv(["-default_F", "1"])


def test_units_converted_once():
    # -lambda in A -> m; -energy E eV -> 12398.42/E A; -distance mm -> m; -twotheta deg -> rad.
    assert cfg("-lambda 1.5").beam.wavelength == pytest.approx(1.5e-10)
    assert cfg("-energy 12398.42").beam.wavelength == pytest.approx(1e-10)
    c = cfg("-distance 250 -twotheta 20")
    assert c.detector.distance == pytest.approx(0.25) and c.detector.twotheta == pytest.approx(20 * RAD)


def _first_differing(c_form, other_form):
    """The first value of a grid of typed-looking numbers for which C's expression and the other one round
    to different doubles (so the check below can tell the two apart)."""
    for i in range(1, 10000):
        v = i / 100
        if c_form(v) != other_form(v):
            return v
    raise AssertionError("no differing value")


RTD = 180.0 / math.pi


@pytest.mark.parametrize("flag, get, c_form, other_form", [
    ("-distance", lambda c: c.detector.distance, lambda v: v / 1000.0, lambda v: v * 1e-3),
    ("-pixel", lambda c: c.detector.pixel_size, lambda v: v / 1000.0, lambda v: v * 1e-3),
    ("-lambda", lambda c: c.beam.wavelength, lambda v: v / 1e10, lambda v: v * 1e-10),
    ("-energy", lambda c: c.beam.wavelength, lambda v: (12398.42 / v) / 1e10, lambda v: (12398.42 / v) * 1e-10),
    ("-dispersion", lambda c: c.beam.dispersion, lambda v: v / 100.0, lambda v: v * 0.01),
    ("-water", lambda c: c.beam.water_size, lambda v: v / 1e6, lambda v: v * 1e-6),
    ("-mosaic", lambda c: c.crystal.mosaic_spread, lambda v: v / RTD, lambda v: v * (1 / RTD)),
    ("-detector_rotx", lambda c: c.detector.rot[0], lambda v: v / RTD, lambda v: v * (1 / RTD)),
    ("-phi", lambda c: c.crystal.phi0, lambda v: v / RTD, lambda v: v * (1 / RTD)),
    ("-detector_thick", lambda c: c.detector.thickness, lambda v: v * 1e-6, lambda v: v / 1e6),
    ("-dmin", lambda c: c.beam.dmin, lambda v: v * 1e-10, lambda v: v / 1e10),
])
def test_flag_values_are_converted_with_cs_operation(flag, get, c_form, other_form):
    # §1.1 item 9: C divides by the unit (mm, A, deg, %, water um) and multiplies for the sensor thickness and
    # dmin; the other form gives another double for some values, which would move every pixel by an ulp.
    v = _first_differing(c_form, other_form)
    config = config_from_argv(f"-cell 100 100 100 90 90 90 -default_F 1 {flag} {v!r}".split())
    assert get(config) == c_form(v)


def test_an_integer_that_does_not_fit_a_c_long_is_refused():
    # C reads seeds into a 64-bit long; a larger number would overflow the generator's arithmetic
    with pytest.raises(UsageError, match="-misset_seed: 999999999999999999999 does not fit in a 64-bit integer"):
        config_from_argv("-cell 100 100 100 90 90 90 -default_F 1 -misset random "
                         "-misset_seed 999999999999999999999".split())
    config = config_from_argv("-cell 100 100 100 90 90 90 -default_F 1 -seed -9223372036854775808".split())
    assert config.output.seed == -(2**63)
