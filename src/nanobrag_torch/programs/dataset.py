"""The command line for datasets (-frames / -stills, issue 13): parse -> load once -> render frames (here or
on a dask cluster) -> write each frame -> assemble the NeXus file.

Resuming: a run keeps a record next to its first output (``ANCHOR.series.json``: a fingerprint of the flags
that decide the pixels, the sha256 of every input file it read, the seeds it used when none were given, and the
start time its headers record). ``-resume`` refuses a record made by different flags or from input files that
have changed since, reuses its seeds and start time, and skips the frames whose files are all present and read
back whole (``io.dataset.DatasetWriter.complete``); a run without ``-resume`` starts over. Every check that
can refuse a run (flags, input files, output names, the cluster) comes before the first file is touched, so
a refused run leaves the folder as it was. With the same record, an interrupted run resumed gives the same
files as one that was never interrupted (set SOURCE_DATE_EPOCH to fix the recorded start time across separate
runs as well).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError, UsageError, warn

RECORD_FORMAT = "nanobrag-torch dataset record 2"  # 2: with the sha256 of the input files
# Flags that change how or where frames are rendered, never their pixels: left out of the fingerprint.
NOT_IN_FINGERPRINT = {"resume", "workers", "scheduler", "quiet", "progress", "noprogress", "device", "kernel",
                      "exptout", "max_memory_gb", "help"}
_OUTPUT_KEYS = ("floatfile", "intfile", "noisefile", "pgmfile")


def fingerprint(events) -> str:
    """sha256 of the flags (in order) that decide the dataset's pixels and headers."""
    kept = [[k, v] for k, v in events if k not in NOT_IN_FINGERPRINT]
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def _start_time() -> datetime:
    """Now (UTC), or SOURCE_DATE_EPOCH when set (reproducible headers)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        try:
            return datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH: expected an integer, got {epoch!r}") from None
    return datetime.now(timezone.utc).replace(microsecond=0)


def open_record(path: Path, events, config, resume: bool, warn) -> tuple[dict, bool]:
    """(run record, whether it is new): the earlier one when resuming with the same flags, else a new one
    (written by the caller once the earlier run's files are gone: ``write_record``)."""
    fp = fingerprint(events)
    if resume and path.is_file():
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            rec = None
        if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
            raise UsageError(f"-resume: {path} is not a dataset record (of this version); run without -resume "
                             "to start over")
        if rec.get("fingerprint") != fp:
            raise UsageError(f"-resume: the frames of {path} were made with different flags; run without -resume "
                             "to start over")
        return rec, False
    if resume:
        warn(f"-resume: no record of an earlier run ({path}): starting from the first frame")
    return {"format": RECORD_FORMAT, "fingerprint": fp,
            "seed": config.output.seed if config.output.seed is not None else int(time.time()),
            "misset_seed": config.crystal.misset_seed, "start_time": _start_time().isoformat()}, True


def input_files(events, config, model) -> dict[str, str]:
    """flag -> the input file the run read for it: -hkl (or the Fdump.bin read in its place), -mat, -sourcefile,
    -mask (``model.info.files``), the -img whose header set the geometry, and -stills_file."""
    files = dict(model.info.files)
    img = dict(events).get("img")
    if img is not None:
        files["-img"] = str(img)
    if config.dataset.stills_file is not None:
        files["-stills_file"] = config.dataset.stills_file
    return dict(sorted(files.items()))


def file_hashes(files: dict[str, str]) -> dict[str, list[str]]:
    """flag -> [file, sha256 of its bytes], the inputs a run record pins."""
    out = {}
    for flag, name in files.items():
        try:
            with open(name, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise InputError(f"{flag}: cannot read {name}: {exc.strerror or exc}") from None
        out[flag] = [name, digest]
    return out


def check_inputs(rec: dict, hashes: dict[str, list[str]], path: Path) -> None:
    """-resume: every input file is the one the interrupted run read (same name, same sha256), else one line."""
    old = rec.get("inputs", {})
    for flag in sorted(set(old) | set(hashes)):
        if old.get(flag) != hashes.get(flag):
            name = (hashes.get(flag) or old.get(flag))[0]
            raise UsageError(f"-resume: {name} ({flag}) is not the file the frames of {path} were made from "
                             "(changed, added or removed since); run without -resume to start over")


def write_record(path: Path, rec: dict) -> None:
    from ..io.atomic import write_atomically

    write_atomically([(path, (json.dumps(rec, indent=1) + "\n").encode(), None)])


def dataset_files(events, config):
    """The files a dataset writes: -nexus, -cbf and the C outputs given by name (templates), nothing else."""
    from ..datasets.writer import DatasetFiles, check_template

    given = {k for k, _ in events}
    oc, ds = config.output, config.dataset
    names = {}
    for key in _OUTPUT_KEYS:
        value = getattr(oc, key)
        if key in given and value is not None:
            names[key] = check_template(f"-{key}", value)
    if ds.cbf is not None:
        check_template("-cbf", ds.cbf)
    files = DatasetFiles(cbf=ds.cbf, nexus=ds.nexus, scale=oc.scale, pgmscale=oc.pgmscale, adc=oc.adc,
                         data_adc=data_adc(events, config), adc_header=oc.adc_header, **names)
    if files.anchor is None:
        raise UsageError("-frames/-stills: nothing to write: give -nexus FILE.h5, -cbf frame_#####.cbf or a "
                         "per-frame name such as -floatfile frame_#####.bin / -intfile / -noisefile")
    return files


def data_adc(events, config) -> float:
    """The offset of the NXmx/CBF counts: -adc when it was given, else 0 (photon counts, which is what readers
    of those formats take the counts for; C's default 40 stays in the SMV files)."""
    return config.output.adc if "adc" in {k for k, _ in events} else 0.0


def make_series_plan(events, config, rec):
    """The SeriesPlan of the flags (seeds from the record when not given)."""
    from ..io.stills import read_stills
    from ..datasets.series import SeriesPlan

    ds, given = config.dataset, {k for k, _ in events}
    noise = config.output.noisefile is not None
    seed = (config.output.seed if "seed" in given else rec["seed"]) if noise else None
    adc = config.output.adc
    counts_adc = data_adc(events, config) if ds.nexus is not None or ds.cbf is not None else None
    if ds.frames and (ds.stills or ds.stills_file):
        raise UsageError("-frames and -stills/-stills_file: a dataset is a rotation series or stills, not both")
    for flag, n in (("-frames", ds.frames), ("-stills", ds.stills)):
        if n < 0:
            raise UsageError(f"{flag}: must be positive, got {n}")
    if ds.frames:
        return SeriesPlan(frames=ds.frames, rotation=True, phi=ds.phi_deg, osc=ds.osc_deg, seed=seed, adc=adc,
                          counts_adc=counts_adc)
    if ds.stills_file is not None:
        missets = read_stills(ds.stills_file)
        n = ds.stills or len(missets)
        if n > len(missets):
            raise UsageError(f"-stills: {n} stills but {ds.stills_file} holds {len(missets)} orientations")
        return SeriesPlan(frames=n, rotation=False, missets=tuple(missets[:n]), seed=seed, adc=adc,
                          counts_adc=counts_adc)
    if config.crystal.misset is not None:
        raise UsageError("-stills: the orientations are random (-misset_seed + i) or from -stills_file; "
                         "a fixed -misset would make every still the same")
    return SeriesPlan(frames=ds.stills, rotation=False, misset_seed=config.crystal.misset_seed, seed=seed, adc=adc,
                      counts_adc=counts_adc)


def _meta(plan, model, rec, config):
    from ..io.nexus import NexusMeta
    from ..crandom.streams import CRandom, random_misset

    missets = None
    if not plan.rotation:
        if plan.missets is not None:
            missets = plan.missets
        else:
            missets = tuple(tuple(math.degrees(x) for x in random_misset(plan.misset_seed + i, CRandom())[1])
                            for i in range(plan.frames))
    kind = f"{plan.frames}-frame rotation series" if plan.rotation else f"{plan.frames} stills"
    return NexusMeta(
        frames=plan.frames, start_time=datetime.fromisoformat(rec["start_time"]), exposure=config.dataset.exposure,
        omega=tuple(plan.phi_deg(i) for i in range(plan.frames)) if plan.rotation else None, osc=plan.osc,
        missets_deg=missets, adc=plan.counts_adc if plan.seed is not None else None,
        title=f"nanobrag-torch simulation: {kind}")


def dataset_experiments(model, plan, meta, files, exptout: str) -> dict:
    """The truth of a dataset as a DIALS experiment list (``io.experiments``): a rotation scan over the frames,
    or one experiment per still (each with its frame's crystal); the images are the CBFs, else the NXmx file,
    else the -noisefile/-intfile frames."""
    from ..io.experiments import ImageFiles, ScanRange, experiment_list
    from ..datasets.writer import frame_name
    from ..datasets.series import frame_model

    images = (ImageFiles(files.cbf) if files.cbf else ImageFiles(files.nexus, multi=True) if files.nexus
              else next((ImageFiles(t) for t in (files.noisefile, files.intfile) if t is not None), None))
    where = Path(exptout).resolve().parent
    if images is not None:
        images = ImageFiles(str(Path(images.name).resolve()), images.multi)
    if plan.rotation:
        scan = ScanRange(plan.phi_deg(0, model), plan.osc, plan.frames, meta.exposure, meta.start_time.timestamp())
        return experiment_list(model, scan=scan, images=images, relative_to=where)
    stills = [frame_model(model, plan, i) for i in range(plan.frames)]
    return experiment_list(model, stills=stills, images=images, frame_name=frame_name, relative_to=where)


def check_engine(config) -> None:
    """The engine flags, before anything is read or written."""
    ds = config.dataset
    if ds.workers is not None and ds.workers < 0:
        raise UsageError(f"-workers: must be 0 or more, got {ds.workers}")


def _engine(config, todo: int, log):
    """(cluster handle or None): -scheduler attaches, -workers N>=1 starts N, -workers 0 or a default of one
    worker renders here."""
    from ..datasets.cluster import default_workers, open_client

    ds = config.dataset
    check_engine(config)
    if ds.scheduler is None and (ds.workers == 0 or todo <= 1 or (ds.workers is None and default_workers() == 1)):
        return None
    handle = open_client(workers=ds.workers, scheduler=ds.scheduler)
    where = f"cluster at {ds.scheduler}" if ds.scheduler else "embedded local cluster"
    print(f"dask: {where}, {handle.workers} workers" + (f"; dashboard {handle.dashboard}" if handle.dashboard
                                                         else ""), file=sys.stderr, flush=True)
    return handle


def _check_writers_importable(files) -> None:
    """Before anything is rendered: the packages the requested writers need (one line if one is missing)."""
    import importlib

    needs = (["h5py", "hdf5plugin"] if files.nexus else []) + (["fabio"] if files.cbf else [])
    for name in needs:
        try:
            importlib.import_module(name)
        except ImportError:
            flag = "-cbf" if name == "fabio" else "-nexus"
            raise UsageError(f"{flag} needs the Python package {name}: pip install {name}") from None


@dataclass
class _SeriesRun:
    """A dataset run checked and set up, nothing written yet (see ``run_series``)."""

    config: object
    files: object
    record_path: Path
    rec: dict
    new_record: bool
    plan: object
    model: object
    writer: object
    todo: list[int]


def run_series(events, config, out=print) -> int:
    """The dataset run of ``config`` (``config.dataset.active``); returns the exit code. Everything that can
    refuse comes first (``_prepare_series``), then the frames are rendered and written (``_render_and_write``)."""
    run = _prepare_series(events, config, out)
    dt = _render_and_write(run, out)
    done, frames = len(run.todo), run.plan.frames
    out(f"{frames} frames: {done} rendered" + (f", {frames - done} already complete" if done < frames else "")
        + (f" in {dt:.3g} s ({done / dt:.3g} frames/s)" if done else ""))
    return 0


def _prepare_series(events, config, out) -> _SeriesRun:
    """Check every flag, input file, output name and the record before any file is touched: a refused run (bad
    flag, bad input file, a name that cannot be written) leaves the folder as it was. Loads the model once."""
    from .. import __version__
    from ..datasets.writer import DatasetWriter
    from ..io.atomic import check_output_path
    from ..load import load_model

    files = dataset_files(events, config)
    _check_writers_importable(files)
    check_engine(config)
    ds = config.dataset
    record_path = Path(f"{files.anchor}.series.json")
    check_output_path(files.anchor_flag, record_path)
    if config.output.exptout is not None:
        check_output_path("-exptout", config.output.exptout)
    rec, new_record = open_record(record_path, events, config, ds.resume, warn)
    if "misset_seed" not in {k for k, _ in events}:  # -misset random without a seed: the recorded one
        config = replace(config, crystal=replace(config.crystal, misset_seed=rec["misset_seed"]))
    plan = make_series_plan(events, config, rec)
    if plan.rotation and plan.frames > 1 and plan.osc == 0.0:
        warn("-frames: -osc is 0, so every frame has the same orientation (frame i starts at phi + i*osc)")
    model = load_model(config.with_engine(device="cpu"), log=None if config.output.quiet else out)
    hashes = file_hashes(input_files(events, config, model))
    if new_record:
        rec["inputs"] = hashes
    else:
        check_inputs(rec, hashes, record_path)
    if (files.nexus or files.cbf) and files.data_adc != 0:
        warn(f"-adc {files.data_adc:g}: the NeXus/CBF counts carry this offset, which DIALS and XDS take for "
             "photons (leave -adc out for photon counts)")
    writer = DatasetWriter(files, model, plan, _meta(plan, model, rec, config), __version__)
    writer.check_targets()
    todo = [i for i in range(plan.frames) if new_record or not writer.complete(i)]
    return _SeriesRun(config, files, record_path, rec, new_record, plan, model, writer, todo)


def _render_and_write(run: _SeriesRun, out) -> float:
    """Render the frames still to do (here or on the cluster), write each as it comes, then the NeXus file, the
    truth (-exptout) and the tables (Fdump, -hklout); returns the seconds that took (without the cluster's
    start-up)."""
    from ..datasets.series import Progress, render_series, resolve_device
    from ..io.atomic import write_atomically

    config, plan, model, writer = run.config, run.plan, run.model, run.writer
    exptout = config.output.exptout
    device = config.engine.device
    handle = _engine(config, len(run.todo), out) if run.todo else None
    try:
        if run.new_record:  # starting over: no file of an earlier run may pass for a frame of this one
            writer.reset()
            if exptout is not None:
                Path(exptout).unlink(missing_ok=True)
            write_record(run.record_path, run.rec)
        t0 = time.perf_counter()  # frames/s counts rendering and writing, not the cluster's start-up
        progress = Progress(plan.frames, skipped=plan.frames - len(run.todo),
                            enabled=config.output.progress is not False)
        local = model if handle is not None else model.to(resolve_device(device))
        for frame in render_series(local, plan=plan, indices=run.todo, client=handle, kernel=config.engine.kernel,
                                   max_memory_gb=config.engine.max_memory_gb,
                                   device=device if handle is not None else None):
            writer.write(frame)
            progress(frame)
    finally:
        if handle is not None:
            handle.close()
    writer.finish()
    if exptout is not None:
        from ..io.experiments import experiments_json

        expts = dataset_experiments(model, plan, writer.meta, run.files, exptout)
        write_atomically([(exptout, experiments_json(expts), None)])
    table = model.info.hkl_table
    if table is not None:
        from ..io.hkl import write_fdump, write_hkl

        tables = [(config.crystal.dump, None, lambda p: write_fdump(p, table))] if config.crystal.hkl else []
        if config.output.hklout is not None:
            tables.append((config.output.hklout, None, lambda p: write_hkl(p, table)))
        write_atomically(tables)
    return time.perf_counter() - t0
