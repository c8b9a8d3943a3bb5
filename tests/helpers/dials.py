"""DIALS (Debian's python3-dials) for the tests that read our files with it."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tools.interop.run import check_dials, dials_python


def require_dials() -> None:
    """Skip the calling test when DIALS cannot run here, or fail it when NB_REQUIRE_DIALS is set (the interop
    session: a skip is not a pass there)."""
    missing = check_dials()
    if missing is None:
        return
    if os.environ.get("NB_REQUIRE_DIALS"):
        pytest.fail(f"NB_REQUIRE_DIALS is set but {missing}")
    pytest.skip(missing)


READBACK = Path(__file__).resolve().parents[2] / "tools" / "interop" / "readback.py"


def dxtbx_readback(files: dict) -> dict:
    """What dxtbx reads from each file of ``files`` ({key: path}), in one run of DIALS's Python
    (tools/interop/readback.py): {key: what it read}."""
    out = subprocess.run([dials_python(), str(READBACK), *map(str, files.values())], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)
    return {key: got[str(path)] for key, path in files.items()}
