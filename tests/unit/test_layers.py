"""The package's layer contract (pyproject.toml [tool.importlinter], docs/api.md "Layers") holds: imports go down
only, function-local imports included — and the check does catch an upward import.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tools import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env={"PYTHONPATH": str(root / "src")},
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_layer_contract_is_kept():
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "3 kept, 0 broken" in r.stdout


def test_an_upward_function_local_import_breaks_it(tmp_path):
    # A copy of the package where the geometry (core) imports the renderer inside a function: the forbidden
    # contract must name it.
    shutil.copytree(REPO / "src" / "nanobrag_torch", tmp_path / "src" / "nanobrag_torch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    geometry = tmp_path / "src" / "nanobrag_torch" / "geometry.py"
    upward = "\n\ndef _upward():\n    from .renderer import render\n    return render\n"
    geometry.write_text(geometry.read_text() + upward)
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "nanobrag_torch.geometry -> nanobrag_torch.renderer" in r.stdout


def test_no_module_imports_itself_through_others():
    # No import cycle between modules, function-local imports included (grimp: the graph import-linter checks).
    # The old-path aliases (cli, series, detector_response) are the one exception: they import their new module.
    import grimp

    graph = grimp.build_graph("nanobrag_torch", include_external_packages=False, cache_dir=None)
    aliases = {f"nanobrag_torch.{m}" for m in ("cli", "series", "detector_response")}
    modules = sorted(m for m in graph.modules if m not in aliases)
    cycles = []
    for m in modules:
        for other in graph.find_modules_directly_imported_by(m):
            if other in aliases or other == m:
                continue
            back = graph.find_shortest_chain(importer=other, imported=m)
            if back:
                cycles.append((m, *back))
    assert cycles == [], cycles[:5]
