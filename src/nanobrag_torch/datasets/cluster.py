"""Frames as tasks on a dask.distributed cluster (issue 13): an embedded local cluster or an existing one.

* ``open_client(workers=N)`` starts a ``LocalCluster`` of N worker processes, each with ``cores // N``
  threads (torch's intra-op threads and the fused kernel's); ``open_client(scheduler="tcp://host:port")``
  attaches to a running scheduler (dask-jobqueue, dask-kubernetes, ``dask scheduler`` + ``dask worker``...).
* ``map_frames`` ships the model to the cluster once, as the result of a task (so a worker that dies with
  it is recomputed from the scheduler's copy), renders each frame as one task and yields the frames as they
  finish. A worker keeps the model it received (moved to its GPU once with device "auto") for every frame
  it renders. A task whose worker dies is re-run on another one by the scheduler; frames are returned to
  the caller once each (duplicates of a re-run are dropped), so the dataset is complete and equals a serial
  render.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

from ..errors import UsageError

_WORKER_MODELS: dict = {}  # on a worker: (id of the shipped model, device) -> (shipped model, model on device)


def _hold(model):
    """The model as a task result (the scheduler keeps the task, so the result can be recomputed)."""
    return model


def resolve_device(device: str) -> str:
    """``auto``: cuda when this process sees a GPU, else cpu; any other name as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _worker_model(model, device: str | None):
    """The shipped model on ``device`` ("auto": this worker's GPU if it has one), moved once per worker."""
    if device is None:
        return model
    dev = resolve_device(device)
    key = (id(model), dev)
    hit = _WORKER_MODELS.get(key)
    if hit is None or hit[0] is not model:
        _WORKER_MODELS.clear()  # one dataset at a time: do not keep old models alive
        hit = _WORKER_MODELS[key] = (model, model.to(dev))
    return hit[1]


def _frame_task(model, plan, i, kernel, max_memory_gb, device, threads, frame_fn):
    """One frame on a worker (``threads`` torch threads; the model from this worker's cache)."""
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    frame = frame_fn(_worker_model(model, device), plan, i, kernel, max_memory_gb)
    try:
        from distributed import get_worker

        frame.worker = get_worker().address
    except (ImportError, ValueError):
        pass
    return frame


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise UsageError("-workers/-scheduler need dask.distributed: pip install 'dask[distributed]' "
                         "(or -workers 0 to render in this process)") from None
    return distributed


@dataclass
class ClusterHandle:
    """An open client and, for an embedded cluster, the cluster itself (closed by ``close``)."""

    client: object
    cluster: object | None
    threads: int | None  # torch threads per task on an embedded cluster (None: the worker's default)

    @property
    def dashboard(self) -> str | None:
        """The dashboard's address when the scheduler runs one (bokeh installed), else None."""
        try:
            services = self.client.scheduler_info().get("services", {})
        except Exception:  # pragma: no cover - scheduler gone
            return None
        return self.client.dashboard_link if "dashboard" in services else None

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def close(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a batch system's cgroup)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_workers(cores: int | None = None) -> int:
    """Workers of the default embedded cluster: one per two cores (each with two torch threads)."""
    return max(1, (cores or usable_cores()) // 2)


def open_client(workers: int | None = None, scheduler: str | None = None, threads: int | None = None,
                quiet_logs: bool = True) -> ClusterHandle:
    """A client on an existing scheduler (``scheduler`` address) or on a new embedded ``LocalCluster`` of
    ``workers`` processes with ``threads`` torch threads each (default: the cores shared out)."""
    distributed = _import_distributed()
    if quiet_logs:
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: not an address (no port, bad scheme)
            raise UsageError(f"-scheduler: cannot reach {scheduler}: {exc}") from None
        return ClusterHandle(client, None, threads)
    cores = usable_cores()
    n = workers if workers is not None else default_workers(cores)
    per = threads or max(1, cores // n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "dashboard needs bokeh"
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", memory_limit=0,
                                           env={"OMP_NUM_THREADS": str(per), "MKL_NUM_THREADS": str(per)})
        client = distributed.Client(cluster)
    return ClusterHandle(client, cluster, per)


def map_frames(client, model, plan, indices, *, kernel: str = "auto", max_memory_gb: float = 2.0,
               device: str | None = None, frame_fn, threads: int | None = None, window: int | None = None):
    """Render ``indices`` of ``plan`` as tasks on ``client``'s cluster, each frame by ``frame_fn`` (as
    ``series.render_frame``); yield each Frame once, as it finishes.

    At most ``window`` frames (default: 4 per worker thread) are in flight, so millions of stills need no
    million futures and finished frames do not pile up on the workers.
    """
    distributed = _import_distributed()
    if isinstance(client, ClusterHandle):
        threads = threads or client.threads
        client = client.client
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "large object in task graph": sent once, on purpose
        model_f = client.submit(_hold, model, pure=False)
    if window is None:
        info = client.scheduler_info().get("workers", {})
        window = 4 * max(1, sum(w.get("nthreads", 1) for w in info.values()))
    pending = list(indices)[::-1]
    seen: set[int] = set()
    ac = distributed.as_completed()

    def submit_next():
        i = pending.pop()
        ac.add(client.submit(_frame_task, model_f, plan, i, kernel, max_memory_gb, device, threads, frame_fn,
                             pure=False, key=f"nanobrag-frame-{i}-{os.urandom(4).hex()}"))

    for _ in range(min(window, len(pending))):
        submit_next()
    try:
        for fut in ac:
            frame = fut.result()
            fut.release()
            if pending:
                submit_next()
            if frame.index in seen:  # pragma: no cover - a re-run that also finished: keep the first
                continue
            seen.add(frame.index)
            yield frame
    finally:
        model_f.release()


__all__ = ["ClusterHandle", "default_workers", "map_frames", "open_client"]
