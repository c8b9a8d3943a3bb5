"""Make the inputs of the noisify live corpus (inputs/): run from the repository root,

    python tests/data/live_corpus_noisify/make_inputs.py

spots64.bin and hdr172.img come from our nanoBragg port (a cubic crystal, as the README's first example, on a
64x64 detector); the other images are written here with numpy. Everything is deterministic.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "inputs"
CRYSTAL = "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -oversample 1 -nonoise -nopgm -quiet".split()


def nanobragg(argv: list[str], workdir: Path) -> None:
    subprocess.run([sys.executable, "-m", "nanobrag_torch", *argv], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        # Bragg spots, 0.04 to 104 photons/pixel, plus a flat background of 2 photons and a gentle ramp
        nanobragg([*CRYSTAL, "-distance", "100", "-pixel", "0.1", "-detpixels", "64", "-floatfile", "spots.bin",
                   "-intfile", "spots.img"], t)
        spots = np.fromfile(t / "spots.bin", dtype=np.float32).reshape(64, 64)
        ramp = np.linspace(0.0, 3.0, 64, dtype=np.float32)[None, :]
        (spots + np.float32(2.0) + ramp).astype(np.float32).tofile(HERE / "spots64.bin")
        # an SMV header from another geometry (pixel 0.172 mm, 150 mm): noisify -header copies it
        nanobragg([*CRYSTAL, "-distance", "150", "-pixel", "0.172", "-detpixels", "64", "-floatfile", "h.bin",
                   "-intfile", "hdr172.img"], t)
        (HERE / "hdr172.img").write_bytes((t / "hdr172.img").read_bytes())
    g = np.random.default_rng(20261206)
    # non-square (48 wide, 40 high) and odd-sized (45 x 37) images of smooth photons/pixel
    y, x = np.mgrid[0:40, 0:48]
    rect = 20.0 + 400.0 * np.exp(-((x - 30.0) ** 2 + (y - 12.0) ** 2) / 20.0) + g.random((40, 48)) * 5
    rect.astype(np.float32).tofile(HERE / "rect48x40.bin")
    (g.random((37, 45)) * 30.0).astype(np.float32).tofile(HERE / "odd45x37.bin")
    # bright pixels on the borders (the PSF's wrap from column xpixels into the next row) and inside
    edges = np.zeros((64, 64), dtype=np.float32)
    edges[:, 63] = 500.0
    edges[63, :] = 300.0
    edges[0, 0] = edges[0, 63] = edges[63, 0] = 4000.0
    edges[20, 30] = 9000.0
    edges.tofile(HERE / "edges64.bin")
    # every special value: zero, negative, tiny, moderate, over 12 (rejection), over 1e6 (Gaussian), over the
    # 16- and 32-bit ranges, NaN and the infinities
    special = (g.random((32, 32)) * 8.0).astype(np.float32)
    values = [0.0, -5.0, -0.5, 0.004, 0.02, 5.0, 11.9, 12.0, 50.0, 4.0e4, 7.0e4, 2.0e5, 3.0e6, 5.0e9, 3.0e10,
              np.nan, np.inf, -np.inf, -3.0e10]
    for k, v in enumerate(values):
        special[2 + k, 3 + k] = v
    special.tofile(HERE / "special32.bin")
    # the same photons under the name C's noisify takes as a bare argument
    (HERE / "floatimage.bin").write_bytes((HERE / "spots64.bin").read_bytes())
    # refused inputs: an empty image; an SMV header shorter than 512 bytes
    (HERE / "empty.bin").write_bytes(b"")
    (HERE / "short.img").write_bytes(b"{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\n"
                                     b"TYPE=unsigned_short;\nSIZE1=64;\nSIZE2=64;\nPIXEL_SIZE=0.1;\n}\f")


if __name__ == "__main__":
    main()
