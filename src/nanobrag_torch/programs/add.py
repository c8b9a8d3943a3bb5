"""``python -m nanobrag_torch add a.bin b.bin ... -o sum.bin``: the sum of raw float images (float_add's job).

The float images of nanoBragg, nonBragg (and our subcommands) are headerless native float32 [slow][fast]; the
sum of several renders of one detector (spots, water, air, ...) is the image noise is then drawn from. Every
input must hold the same number of floats. The sum is taken in float64, file by file in the order given, and
stored as float32 (one rounding per pixel).
"""
from __future__ import annotations

import sys

import numpy as np

from ..errors import InputError, UsageError
from ..cmdline.flags import unknown_flag
from ..io.images import read_float_image

USAGE = """usage: nanobrag-torch add A.bin B.bin [C.bin ...] -o SUM.bin

Adds raw float32 images (the -floatfile of nanoBragg and nonBragg) pixel by pixel: the sum of a Bragg render
and its background renders, ready for a noise model. Every input must have the same size.

  -o, -outfile FILE   the sum (raw float32, the inputs' layout)
  -h, --help          show this help and exit
"""


def add_images(paths) -> np.ndarray:
    """The float32 sum of the raw float images at ``paths`` (summed in float64, in order)."""
    paths = list(paths)
    if not paths:
        raise UsageError("no input images")
    first = read_float_image(paths[0], "input image")
    total = first.astype(np.float64)
    for path in paths[1:]:
        img = read_float_image(path, "input image")
        if img.size != first.size:
            raise InputError(f"{path}: {img.size} floats, but {paths[0]} has {first.size} "
                             "(images of different sizes cannot be added)")
        total += img
    return total.astype(np.float32)


def parse(argv: list[str]) -> tuple[list[str], str | None, bool]:
    """(input files, output file, help asked) from the command line."""
    inputs, output, i = [], None, 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("-h", "-help", "--help"):
            return inputs, output, True
        if tok in ("-o", "-outfile", "-output"):
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise UsageError(f"{tok}: expects a file name")
            output = argv[i + 1]
            i += 2
            continue
        if tok.startswith("-") and tok != "-":
            raise unknown_flag(tok, ("-o", "-outfile", "-output", "-h", "-help", "--help"))
        inputs.append(tok)
        i += 1
    return inputs, output, False


def run(argv: list[str], out=print) -> int:
    """The ``add`` subcommand; returns the exit code, raising NanoBraggError for bad input."""
    from ..io.images import write_float_image
    from ..io.atomic import write_atomically

    inputs, output, want_help = parse(argv)
    if want_help or not argv:
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    if output is None:
        raise UsageError("no output file: give -o SUM.bin")
    if len(inputs) < 2:
        raise UsageError(f"expects at least two images to add, got {len(inputs)}")
    total = add_images(inputs)
    write_atomically([(output, None, lambda p: write_float_image(p, total))])
    out(f"wrote {output} as {total.size} 4-byte floats: the sum of {len(inputs)} images")
    return 0
