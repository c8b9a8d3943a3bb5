"""dxtbx (DIALS's file layer) reads our multi-panel files (issue 24) as the detector we simulated: for two
4-panel layouts in two groups (one panel turned 90 degrees in its plane; two panels tilted), the NXmx series
(one NXdetector_module per panel) and the truth (-exptout) give dxtbx 4 panels whose origin, fast and slow
axes, pixel size and image size are those dxtbx itself reads from the -expt file we simulated from, and the
pixels of each panel are the photons of that panel in C's noise image (the SMV file, panels one under
another). One subprocess of DIALS's Python (tools/interop/readback.py) reads every file.

Without DIALS these tests skip, saying so; NB_REQUIRE_DIALS=1 (nox -s interop) turns the skip into a failure."""
from __future__ import annotations


import numpy as np
import pytest

from nanobrag_torch.io.smv import read_smv
from tests.helpers.cli import run_inproc
from tests.helpers.expt import write_expt
from tests.helpers.dials import dxtbx_readback, require_dials

pytestmark = pytest.mark.dials
LAYOUTS = ("turn", "tilt")
ARGS = "-cell 40 40 40 90 90 90 -misset 10 20 30 -N 3 -default_F 100 -oversample 1 -workers 0 -seed 3".split()
TOL_MM = 1e-6  # the tolerance; what we write agrees to rounding (~1e-12 mm)


@pytest.fixture(scope="module")
def dxtbx_read(tmp_path_factory):
    """Per layout: the -expt input (with a goniometer: spindle +x, so our frame is the file's), a 2-frame
    series written as NXmx, SMV noise images and the truth; {(layout, kind): what dxtbx read}."""
    require_dials()
    root = tmp_path_factory.mktemp("dxtbx_panels")
    files = {}
    for layout in LAYOUTS:
        d = root / layout
        d.mkdir()
        write_expt(d / "in.expt", layout, scan=(0.0, 0.5))
        r = run_inproc(["-expt", "in.expt", *ARGS, "-frames", "2", "-nexus", "s.h5", "-noisefile", "n_#.img",
                        "-exptout", "t.expt"], d)
        assert r.returncode == 0, r.stderr
        files.update({(layout, "input"): d / "in.expt", (layout, "nxmx"): d / "s.h5", (layout, "truth"): d / "t.expt"})
    return dxtbx_readback(files), root


def _shape(node):
    """The hierarchy without names: nested lists of panel indices."""
    return [_shape(c) for c in node[1:]] if isinstance(node, list) else node


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", ["nxmx", "truth"])
def test_dxtbx_reads_every_panel_where_the_input_put_it(dxtbx_read, layout, fmt):
    got, _ = dxtbx_read
    ref, img = got[(layout, "input")], got[(layout, fmt)]
    assert "error" not in img, img.get("error")
    assert "error" not in ref, ref.get("error")
    assert img["panels"] == ref["panels"] == 4
    for p, (a, b) in enumerate(zip(ref["all_panels"], img["all_panels"])):
        for key in ("origin", "fast", "slow"):
            assert np.abs(np.subtract(a[key], b[key])).max() < TOL_MM, (p, key)
        assert b["pixel_size"] == pytest.approx([0.172, 0.172], abs=1e-12) and b["image_size"] == [32, 24]
    assert img["s0"] == pytest.approx([0, 0, -1]) and img["axis"] == pytest.approx([1, 0, 0], abs=1e-12)
    # the input's two groups of two panels under one group; dxtbx's NXmx reader puts the detector's root above
    # it and makes each module's offset a group of one panel
    tree = _shape(img["hierarchy"])
    assert tree == ([[[[0], [1]], [[2], [3]]]] if fmt == "nxmx" else [[0, 1], [2, 3]])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dxtbx_reads_each_panels_photons(dxtbx_read, layout):
    got, root = dxtbx_read
    img = got[(layout, "nxmx")]
    assert img["format"] == "FormatNXmx" and img["num_images"] == 2
    photons = read_smv(root / layout / "n_1.img", "n")[1].astype(np.int64) - 40  # C's SMV: default -adc 40
    assert photons.shape == (4 * 24, 32) and photons.max() > 0
    for p in range(4):
        assert np.array_equal(np.asarray(img["panel_pixels"][p]), photons[24 * p:24 * (p + 1)]), p


def test_truth_loads_with_its_images(dxtbx_read):
    got, _ = dxtbx_read
    truth = got[("tilt", "truth")]
    assert truth["images_checked"] and truth["experiments"] == 1 and truth["imageset_sizes"] == [2]
