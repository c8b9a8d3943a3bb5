"""Running the command line in-process: ``cli.main(argv)`` in a working directory, with its output captured."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from tools.cmdlog import run_in_process


def run_inproc(args, cwd: Path) -> SimpleNamespace:
    """cli.main(args) in ``cwd`` (created if needed) through ``tools.cmdlog.run_in_process``: the fields of a
    CompletedProcess (returncode, stdout, stderr) plus ``files``, the sorted names in ``cwd`` afterwards."""
    cwd.mkdir(parents=True, exist_ok=True)
    r = run_in_process(list(args), cwd)
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr, files=sorted(os.listdir(cwd)))
