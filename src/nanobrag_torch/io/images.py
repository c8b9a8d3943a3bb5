"""Raw float and PGM images."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_float_image(path: str | Path, image: np.ndarray) -> None:
    """Raw native float32, [slow][fast], no header (C -floatfile)."""
    np.ascontiguousarray(image, dtype=np.float32).tofile(str(path))


def write_pgm(path: str | Path, pixels: np.ndarray, scale: float) -> None:
    """Binary P5 greymap with C's comment line recording the scale."""
    spixels, fpixels = pixels.shape
    with open(path, "wb") as fh:
        fh.write(f"P5\n{fpixels} {spixels}\n# pixels scaled by {scale:g}\n255\n".encode("ascii"))
        fh.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
