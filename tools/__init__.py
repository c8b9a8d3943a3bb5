"""The parity-evidence tooling around the simulator, grouped by role.

* ``tools.evidence``: the Phase D evidence bundle (``invoke phase-d``): case files, the steps, the bundle
  state, its summary/blocking text, the ledger and plan updates, the environment record.
* ``tools.matrix``: ``corpus`` runs a golden-format corpus case by case against our programs (and, live, the
  C suite's), ``parity_matrix`` the worst-first report over a whole corpus (``invoke parity-matrix``).
* ``tools.perf``: ``bench`` (``invoke bench``), ``bench_grad`` (``invoke bench-grad``) and ``profile``
  (``invoke profile``): measurements, never assertions.
* ``tools.device``: ``check``, CUDA against the CPU, and timings on a GPU.
* Shared by all of them: ``cmdlog`` (the one subprocess runner, the command log, the UTC stamp),
  ``files`` (atomic writes under a lock, JSON, repo-relative paths), ``cbin`` (where the C program is),
  ``hermetic`` (fresh run directories and the input checks), ``metrics`` + ``thresholds`` (how close is
  close enough), ``compare_images`` (pictures) and ``mosflm_matrix`` (A.mat files).

``REPO`` is the repository root, the one place it is computed.
"""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
