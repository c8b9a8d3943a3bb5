"""DIALS (Debian's python3-dials) for the tests that read our files with it."""
from __future__ import annotations

import os

import pytest

from tools.interop.run import check_dials


def require_dials() -> None:
    """Skip the calling test when DIALS cannot run here, or fail it when NB_REQUIRE_DIALS is set (the interop
    session: a skip is not a pass there)."""
    missing = check_dials()
    if missing is None:
        return
    if os.environ.get("NB_REQUIRE_DIALS"):
        pytest.fail(f"NB_REQUIRE_DIALS is set but {missing}")
    pytest.skip(missing)
