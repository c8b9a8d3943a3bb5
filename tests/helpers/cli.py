"""Running the command line in-process: ``cli.main(argv)`` in a working directory, with its output captured."""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from types import SimpleNamespace

from nanobrag_torch.cli import main as cli_main


def run_inproc(args, cwd: Path) -> SimpleNamespace:
    """cli.main(args) in ``cwd`` (created if needed): the fields of a CompletedProcess (returncode, stdout,
    stderr) plus ``files``, the sorted names in ``cwd`` afterwards."""
    cwd.mkdir(parents=True, exist_ok=True)
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(list(args))
    finally:
        os.chdir(old)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue(),
                           files=sorted(os.listdir(cwd)))
