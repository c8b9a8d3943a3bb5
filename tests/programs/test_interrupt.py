"""Issue 12.2: nothing half-written, ever. Ctrl-C (SIGINT) or SIGTERM in the middle of a render, a disk that
fills up while a file is written, a directory that cannot be written: one line on stderr, the exit code that
says what happened (130 for SIGINT, 143 for SIGTERM, 1 for the file), no output file and no temporary
(``*.part*``) left behind.

The signal tests start a real render in a subprocess (2048x2048 pixels x 10 mosaic domains x 4 phi steps with
the eager kernel: tens of seconds of work), wait until its setup report is out (the render starts right
after it), send the signal and expect the process to end within seconds. The full disk is a real one for the
process: a file-size limit (RLIMIT_FSIZE) makes the write of the float image fail half way.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nanobrag_torch.io import atomic, outputs
from tests.helpers.cli import run_inproc

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
       "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
SMALL = "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 32 -oversample 1 -seed 3 -noprogress".split()
BIG = ("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 2048 -mosaic 1 -mosaic_domains 10 "
       "-phisteps 4 -osc 1 -oversample 1 -seed 3 -kernel torch -noprogress").split()


def _default_sigint():
    """The child takes Ctrl-C as a terminal would deliver it, even when this test runs with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code, line", [
    (signal.SIGINT, 130, "nanobrag-torch: interrupted (SIGINT)"),
    (signal.SIGTERM, 143, "nanobrag-torch: terminated (SIGTERM)"),
])
def test_a_signal_mid_render_leaves_nothing(tmp_path, sig, code, line):
    proc = subprocess.Popen([sys.executable, "-m", "nanobrag_torch", *BIG], cwd=tmp_path, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint)
    try:
        for out in proc.stdout:  # the setup report ends with the ROI line; render_details is the next call
            if out.lstrip().startswith("roi:"):
                break
        time.sleep(0.5)
        assert proc.poll() is None, "the render ended before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert err.splitlines() == [line]
    assert os.listdir(tmp_path) == [], "an output file or temporary was left behind"


def _fsize_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # the disk is "full" after 64 KiB a file


def test_a_disk_that_fills_up_mid_write_leaves_nothing(tmp_path):
    # 256x256 float32 = 256 KiB: the write of floatimage.bin fails after 64 KiB (EFBIG, Python ignores SIGXFSZ);
    # the temporaries of the files written before it are removed too, and no target appears.
    argv = [a if a != "32" else "256" for a in SMALL]
    proc = subprocess.run([sys.executable, "-m", "nanobrag_torch", *argv, "-kernel", "torch"], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=_fsize_limit, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == ["nanobrag-torch: error: cannot write floatimage.bin: File too large"]
    assert os.listdir(tmp_path) == []


def run(argv, cwd: Path):
    """cli.main in ``cwd``: (exit code, stderr lines, the names in ``cwd`` afterwards)."""
    r = run_inproc(argv, cwd)
    return r.returncode, r.stderr.splitlines(), r.files


def test_no_space_left_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    # ENOSPC from the PGM writer after part of its file was written: one line naming image.pgm (not its
    # temporary), and neither the PGM nor the float/int images written before it.
    def full_disk(path, shape, blocks, scale):
        Path(path).write_bytes(b"P5 partial")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(outputs, "write_pgm_blocks", full_disk)
    code, lines, files = run(SMALL, tmp_path / "run")
    assert (code, lines, files) == (1, ["nanobrag-torch: error: cannot write image.pgm: No space left on device"], [])


@pytest.mark.parametrize("target, reason", [
    ("missing_dir/f.bin", "no folder missing_dir"),
    ("a_file/f.bin", "a_file is not a folder"),
    ("a_dir", "it is a directory"),
])
def test_an_unwritable_output_path_is_named_and_nothing_is_written(tmp_path, target, reason):
    # A float image in a directory that does not exist, under a regular file, or with the name of a
    # directory: one line naming the flag and the path, said before the render (issue 21: a mistyped folder
    # costs nothing); the int image (next in line, in a writable place) is not written.
    d = tmp_path / "run"
    d.mkdir()
    (d / "a_file").write_text("x")
    (d / "a_dir").mkdir()
    code, lines, files = run([*SMALL, "-nonoise", "-nopgm", "-floatfile", target], d)
    assert (code, lines) == (1, [f"nanobrag-torch: error: -floatfile: cannot write {target}: {reason}"])
    assert files == ["a_dir", "a_file"] and os.listdir(d / "a_dir") == []


def test_ctrl_c_while_writing_leaves_nothing(tmp_path, monkeypatch):
    # Ctrl-C half way through the PGM (the float and int images are already written under their temporary
    # names): exit 130, and neither the files nor their temporaries.
    def interrupted(path, shape, blocks, scale):
        Path(path).write_bytes(b"P5 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_pgm_blocks", interrupted)
    code, lines, files = run(SMALL, tmp_path / "run")
    assert (code, lines, files) == (130, ["nanobrag-torch: interrupted (SIGINT)"], [])


def test_a_signal_during_the_renames_waits_until_every_file_is_in_place(tmp_path, monkeypatch):
    # SIGINT arriving between the renames of two outputs is acted on after the last one: the set of files is
    # complete (never two new and one old), no temporary is left, and the interrupt still surfaces.
    real = os.replace
    calls = []

    def replace_and_interrupt(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler has run (deferred) before the next rename
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace_and_interrupt)
    names = [tmp_path / n for n in ("a.bin", "b.bin", "c.bin")]
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # what a Python program starts with
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic.write_atomically([(p, p.name.encode(), None) for p in names])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after the renames
    finally:
        signal.signal(signal.SIGINT, before)
    assert [p.read_bytes() for p in names] == [b"a.bin", b"b.bin", b"c.bin"]
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin", "c.bin"]


def test_the_sigterm_handler_is_the_cli_entry_points_only(tmp_path):
    # main() installs its SIGTERM handler for the run and restores the previous one after.
    before = signal.getsignal(signal.SIGTERM)
    code, _, files = run([*SMALL, "-nonoise", "-nopgm"], tmp_path / "run")
    assert code == 0 and files == ["floatimage.bin", "intimage.img"]
    assert signal.getsignal(signal.SIGTERM) == before
    assert np.fromfile(tmp_path / "run" / "floatimage.bin", dtype="<f4").size == 32 * 32
