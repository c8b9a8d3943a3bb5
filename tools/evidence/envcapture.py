"""What produced an evidence bundle: interpreter and library versions, machine, git state, C binary."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from tools import cmdlog
from tools.cbin import sha256_file
from tools.files import rel

# Environment variables that can change a result or its speed; recorded when set.
RELEVANT_ENV = (
    "NB_C_BIN", "NB_RUN_PARALLEL", "NB_GOLDEN_DIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "KMP_DUPLICATE_LIB_OK", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "TORCH_DEVICE", "PYTORCH_ENABLE_MPS_FALLBACK",
    "VIRTUAL_ENV",
)


def _git(repo, *args) -> str | None:
    out = cmdlog.run(["git", *args], cwd=repo, timeout_s=30, merge_stderr=False)
    # Only trailing newlines: porcelain status lines start with a meaningful space (" M path").
    return out.stdout.rstrip("\n") if out.exit_code == 0 else None


def git_state(repo, ignore_prefix=None) -> dict:
    """HEAD SHA and whether tracked files differ from it.

    ``ignore_prefix``: a path prefix, or a tuple of them, to leave out (files the pipeline itself writes:
    the bundle, the ledger, the plan).
    """
    sha = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    changed = []
    if status:
        for line in status.splitlines():
            path = line[3:]
            if ignore_prefix and path.startswith(ignore_prefix):  # str.startswith takes a tuple too
                continue
            changed.append(path)
    return {"sha": sha, "dirty": bool(changed) if status is not None else None, "changed": changed[:50]}


def c_binary_info(c_bin, banner: str | None = None) -> dict:
    """Path, SHA-256 and banner line (first line of its output) of the C binary."""
    if c_bin is None:
        return {"path": None, "sha256": None, "banner": None}
    p = Path(c_bin)
    return {"path": str(p), "sha256": sha256_file(p) if p.is_file() else None, "banner": banner}


def _env_value(value: str, repo) -> str:
    """An environment value with every path inside the repository made repo-relative."""
    return os.pathsep.join(rel(v, repo) if v.startswith("/") else v for v in value.split(os.pathsep))


def capture(repo, c_bin=None, c_banner: str | None = None, ignore_prefix=None) -> dict:
    """The env.json record. Imports torch and numpy of the running interpreter (the one the CLI used)."""
    info = {
        "python": sys.version.split()[0],
        "python_executable": rel(sys.executable, repo),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = bool(torch.cuda.is_available())
    except ImportError:
        info.update(torch=None, torch_cuda=None, torch_threads=None, cuda_available=None)
    info["git"] = git_state(repo, ignore_prefix)
    info["c_binary"] = c_binary_info(c_bin, c_banner)
    info["env"] = {k: _env_value(os.environ[k], repo) for k in RELEVANT_ENV if k in os.environ}
    return info
