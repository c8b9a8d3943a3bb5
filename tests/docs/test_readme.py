"""Every command and Python block of README.md runs, offline, in a directory holding only what a fresh clone has.

The README's `python -m nanobrag_torch ...` lines run through the CLI's entry point in-process (the same argv;
``tools.cmdlog.run_in_process``) in a temporary directory that holds copies of the repository files they name
(the Phase D matrix, our water table), and the outputs the README quotes must be what the run prints. The
Python blocks run in that directory too. Shell-only lines (activating an environment, pip) are not run here.
"""
from __future__ import annotations

import re
import shlex
import shutil

import numpy as np
import pytest

from tools import REPO
from tools.cmdlog import run_in_process

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.DOTALL)
REPO_FILES = ["tests/data/live_corpus/inputs/A.mat", "examples/data/water.stol"]


def commands(text: str) -> list[tuple[list[str], list[str]]]:
    """(argv after `python -m nanobrag_torch`, the `# ...` output lines quoted under it) of each bash block."""
    out = []
    for lang, body in BLOCK.findall(text):
        if lang != "bash":
            continue
        joined = body.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("python -m nanobrag_torch"):
                out.append((shlex.split(line.split(" #")[0])[3:], []))
            elif line.startswith("#") and out and not line.startswith("# note"):
                out[-1][1].append(line.lstrip("# ").replace("...", "").strip())
    return out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    for name in REPO_FILES:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, d / name)
    return d


def test_the_readme_names_only_files_a_fresh_clone_has():
    # Every relative input path of a README command is a tracked file (no upstream tables, no golden corpus).
    inputs = {a for argv, _ in commands(README) for a in argv if "/" in a and not a.startswith("-")}
    assert inputs == set(REPO_FILES)
    assert all((REPO / name).is_file() for name in inputs)


def test_every_readme_command_runs_and_prints_what_the_readme_quotes(fresh):
    cmds = commands(README)
    assert len(cmds) >= 7  # -h, two examples, the four steps of the recipe
    for argv, quoted in cmds:
        r = run_in_process(argv, fresh)
        assert r.exit_code == 0, (argv, r.stderr[-2000:])
        for q in quoted:  # e.g. "max_I = 126.865  at 0.00585 0.00075"
            assert q in r.stdout, (q, r.stdout[-2000:])
    # The recipe's files exist and hold what it says: the sum of spots and water, then detector counts.
    spots, water, total = (np.fromfile(fresh / f"{n}.bin", "<f4") for n in ("spots", "water", "total"))
    assert np.array_equal(total, spots + water) and water.min() > 0
    assert (fresh / "noisy.img").stat().st_size > 1024 * 1024 * 2


def test_every_readme_python_block_runs(fresh, monkeypatch):
    blocks = [body for lang, body in BLOCK.findall(README) if lang == "python"]
    assert blocks
    monkeypatch.chdir(fresh)
    for body in blocks:
        namespace: dict = {}
        exec(compile(body, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
        assert namespace["cell"].grad is not None and namespace["cell"].grad.abs().sum() > 0
    assert (fresh / "api.bin").stat().st_size == 128 * 128 * 4
