"""Raw float and PGM images."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..checks import check_readable_file
from ..errors import InputError


def write_float_image(path: str | Path, image: np.ndarray) -> None:
    """Raw native float32, [slow][fast], no header (C -floatfile). Written through a Python file, so that a
    failed write (a full disk) raises the OSError of its cause, not numpy's byte count."""
    data = np.ascontiguousarray(image, dtype=np.float32).reshape(-1).view(np.uint8)  # no copy of the image
    with open(path, "wb") as fh:
        fh.write(memoryview(data))


def write_pgm(path: str | Path, pixels: np.ndarray, scale: float) -> None:
    """Binary P5 greymap with C's comment line recording the scale."""
    write_pgm_blocks(path, pixels.shape, [np.ascontiguousarray(pixels, dtype=np.uint8)], scale)


def write_pgm_blocks(path: str | Path, shape: tuple[int, int], blocks, scale: float) -> None:
    """``write_pgm`` of an image of ``shape`` (spixels, fpixels) given as raster-order uint8 blocks."""
    spixels, fpixels = shape
    write_with_header(path, f"P5\n{fpixels} {spixels}\n# pixels scaled by {scale:g}\n255\n".encode("ascii"), blocks)


def write_with_header(path: str | Path, header: bytes, blocks) -> None:
    """``header``, then the bytes of each contiguous array of ``blocks`` in order, without copying them (SMV
    and PGM files written block by block)."""
    with open(path, "wb") as fh:
        fh.write(header)
        for block in blocks:
            fh.write(memoryview(np.ascontiguousarray(block).reshape(-1).view(np.uint8)))


def read_float_image(path: str | Path, flag: str) -> np.ndarray:
    """A raw native float32 image named by ``flag`` (C -floatfile layout), flat; one line naming the file if
    it is missing, unreadable, empty or not a whole number of 4-byte floats."""
    p = check_readable_file(flag, str(path))
    try:
        with open(p, "rb") as fh:  # read straight into the array (no bytes object to copy from)
            size = os.fstat(fh.fileno()).st_size
            out = np.empty(size // 4, dtype=np.float32)
            got = fh.readinto(memoryview(out).cast("B")) if out.size else 0
            rest = len(fh.read())
    except OSError as exc:
        raise InputError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    total = got + rest
    if total % 4 or got != out.nbytes:
        raise InputError(f"{flag}: {path}: {total} bytes is not a whole number of 4-byte floats")
    if not total:
        raise InputError(f"{flag}: {path}: 0 bytes, an empty file")
    return out
