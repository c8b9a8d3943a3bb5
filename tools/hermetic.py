"""Hermetic CLI runs: a fresh working directory holding only the listed inputs, and the checks that flag
inputs which would change C's result silently.

The C behaviour behind each check (the program's, not ours): C reads structure factors from a ``Fdump.bin``
in its working directory whenever ``-hkl`` is absent, and without either and without ``-default_F`` it only
prints its usage (exit 9); its HKL reader stops at a ``#`` line; its source-file reader splits lines on
space, tab, comma, semicolon, colon and ``!`` and turns every ``#`` line into an extra source at the origin
with zero wavelength, and zeroes the weight and wavelength of a CRLF line or of an unterminated last line;
a missing ``-mat`` file is skipped silently (NaN image, exit 0); without ``-oversample`` the sub-pixel count
follows the spot size.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tools import REPO
from tools.cbin import sha256_file
from tools.files import rel

# Characters C's source-file tokenizer treats as delimiters.
_SOURCE_DELIMS = " \t,;:!"


@dataclass(frozen=True)
class Hazard:
    code: str  # short id, e.g. "source_comments"
    message: str  # one line: what C does differently and why it matters


def _flag_value(argv, flag: str):
    """Value of the LAST occurrence of ``flag`` in argv (C: the last one wins), or None."""
    value = None
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            value = argv[i + 1]
    return value


def comment_lines(data: bytes, delims: str = _SOURCE_DELIMS) -> list[int]:
    """1-based numbers of the lines whose first non-delimiter character is ``#``."""
    out = []
    for n, line in enumerate(data.decode("latin-1").split("\n"), 1):
        if line.lstrip(delims).startswith("#"):
            out.append(n)
    return out


def scan_hazards(argv, run_dir) -> list[Hazard]:
    """Things in this command and its working directory that make C's result differ from the intent."""
    run_dir = Path(run_dir)
    argv = [str(a) for a in argv]
    found: list[Hazard] = []
    if "-oversample" not in argv:
        found.append(Hazard("oversample_implicit",
                            "-oversample not given: C auto-selects the oversampling from the spot size"))
    hkl = _flag_value(argv, "-hkl")
    fdump = run_dir / "Fdump.bin"
    if fdump.exists() and hkl is None:
        found.append(Hazard("fdump_present",
                            "Fdump.bin is in the working directory and no -hkl is given: C reads structure "
                            "factors from it"))
    try:
        default_f = float(_flag_value(argv, "-default_F") or 0.0)
    except ValueError:
        default_f = 0.0  # C's atof of a non-number
    if hkl is None and not fdump.exists() and default_f == 0.0:
        found.append(Hazard("no_structure_factors",
                            "no -hkl, no Fdump.bin and no -default_F: C prints its usage and exits 9"))
    if hkl is not None and (run_dir / hkl).is_file():
        lines = comment_lines((run_dir / hkl).read_bytes(), delims=" \t")
        if lines:
            found.append(Hazard("hkl_comments",
                                f"{hkl} has '#' lines {lines}: C rejects the file (exit 9); PyTorch skips them"))
    src = _flag_value(argv, "-sourcefile")
    if src is not None and (run_dir / src).is_file():
        data = (run_dir / src).read_bytes()
        lines = comment_lines(data)
        if lines:
            found.append(Hazard("source_comments",
                                f"{src} has '#' lines {lines}: C reads each as an extra source at the origin "
                                f"with zero wavelength (counted in steps, may set the polarization); "
                                f"PyTorch skips them"))
        if b"\r\n" in data:
            found.append(Hazard("source_crlf", f"{src} has CRLF line ends: C sets weight and wavelength to 0"))
        if data and not data.endswith(b"\n"):
            found.append(Hazard("source_no_final_newline",
                                f"{src} does not end with a newline: C sets the last source's weight and "
                                f"wavelength to 0"))
    mat = _flag_value(argv, "-mat")
    if mat is not None and not (run_dir / mat).is_file():
        found.append(Hazard("mat_missing", f"-mat {mat} is missing: C ignores it silently (NaN image, exit 0)"))
    return found


def prepare_run_dir(run_dir, inputs, root=REPO) -> list[dict]:
    """Create the fresh ``run_dir`` and copy ``inputs`` into it by basename; return their (repo-relative)
    sources and checksums."""
    run_dir = Path(run_dir)
    names = [Path(p).name for p in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"inputs share a basename: {names}")
    run_dir.mkdir(parents=True, exist_ok=False)
    out = []
    for src in inputs:
        src = Path(src)
        if not src.is_file():
            raise FileNotFoundError(f"input {src} does not exist")
        dst = run_dir / src.name
        shutil.copyfile(src, dst)
        out.append({"name": src.name, "source": rel(src, root), "sha256": sha256_file(dst),
                    "bytes": dst.stat().st_size})
    return out


def finish_run_dir(run_dir, input_names, floatfile: str, dest) -> dict:
    """After a run: hash every file it wrote, move the float image to ``dest`` and delete the other
    outputs (C's default int/PGM/noise images and Fdump.bin) so the bundle stays small.

    Returns {"written": {name: {"sha256", "bytes"}}, "removed": [names], "float_image": dest or None}.
    """
    run_dir = Path(run_dir)
    written, removed = {}, []
    for p in sorted(run_dir.iterdir()):
        if p.name in input_names or not p.is_file():
            continue
        written[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    moved = None
    src = run_dir / floatfile
    if src.is_file():
        dest = Path(dest)
        shutil.move(str(src), dest)
        moved = str(dest)
    for name in written:
        p = run_dir / name
        if p.exists():
            p.unlink()
            removed.append(name)
    return {"written": written, "removed": removed, "float_image": moved}


# C prints "  1x1 pixel oversample steps" and "  2 sources" on lines of their own; our CLI prints them on
# one line ("2 sources, 1 mosaic domains, 1 phi steps, 1x1 pixel oversample steps, ...").
_OVERSAMPLE_RE = re.compile(r"\b(\d+)x(\d+) pixel oversample steps")
_SOURCES_RE = re.compile(r"\b(\d+) sources\b")


def reported(stdout_text: str) -> dict:
    """Values the program printed about its sampling: ``oversample`` and ``sources`` (None if absent)."""
    m = _OVERSAMPLE_RE.search(stdout_text)
    s = _SOURCES_RE.search(stdout_text)
    return {"oversample": int(m.group(1)) if m else None, "sources": int(s.group(1)) if s else None}


def hazards_as_dicts(hazards) -> list[dict]:
    return [asdict(h) for h in hazards]
