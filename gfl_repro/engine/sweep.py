"""Sweeps: plan the runs of a paper table, check their data, run only what is missing, locally
or on Slurm, then time the runs the speed columns need.

A run is identified by its resolved config and seed. Rows whose configs are equal (the GFLV2
default sits in Tables 1-5) map to one run folder, ``runs/<preset>/<canonical name>/seed<S>``,
where the canonical name is the first registry entry with that config. A complete run
(``metrics.json`` present) is skipped, an incomplete one resumes from its last checkpoint, and
the rest start from nothing.
"""

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gfl_repro.config import Config, to_dict
from gfl_repro.engine.checkpoint import latest_checkpoint
from gfl_repro.engine.runs import (
    RunFolder,
    check_same_config,
    default_run_dir,
    identity,
    is_complete,
    recorded_seconds,
)

log = logging.getLogger(__name__)


@dataclass
class PlannedRun:
    name: str  # canonical experiment name: the run folder's name
    seed: int
    config: Config
    run_dir: Path
    rows: list[str] = field(default_factory=list)  # every requested row this run stands for

    @property
    def status(self) -> str:
        if is_complete(self.run_dir):
            return "complete"
        return "partial" if latest_checkpoint(self.run_dir) else "new"


def plan(
    rows: list[str],
    preset: str,
    seeds: int,
    resolve: Callable[[str, str], Config],
    canonical: Callable[[str, str], str],
    root: str | Path = "runs",
) -> list[PlannedRun]:
    """One PlannedRun per distinct (config, seed) among ``rows`` x seeds, in row order."""
    runs: dict[tuple[str, int], PlannedRun] = {}
    for row in rows:
        name = canonical(row, preset)
        for seed in range(seeds):
            key = (name, seed)
            if key not in runs:
                cfg = resolve(name, preset)
                runs[key] = PlannedRun(name, seed, cfg, default_run_dir(preset, name, seed, root))
            runs[key].rows.append(row)
    for run in runs.values():
        check_same_config(run.run_dir, run.config)
    return list(runs.values())


def total_iterations(cfg: Config, train_images: int, world_size: int = 1) -> int:
    per_iter = cfg.data.images_per_process * world_size
    total = -(-train_images // per_iter) * cfg.schedule.epochs
    return min(total, cfg.schedule.max_iters) if cfg.schedule.max_iters else total


class CostModel(Protocol):
    """What a preset's runs cost (experiments.presets.Cost is one)."""

    train_images: int  # after the training filter
    processes: int  # devices per run

    def run_seconds(self, experiment: str, iterations: int) -> float: ...


def device_seconds(cost: CostModel, run: PlannedRun) -> float:
    """Estimated device-seconds of ``run``: its wall time on ``cost.processes`` devices, times
    their number."""
    iterations = total_iterations(run.config, cost.train_images, cost.processes)
    return cost.run_seconds(run.name, iterations) * cost.processes


def wall_seconds(cost: CostModel, run: PlannedRun) -> float:
    """Estimated wall time of ``run`` on its ``cost.processes`` devices."""
    return device_seconds(cost, run) / cost.processes


def check_data(runs: list[PlannedRun]) -> None:
    """Each distinct data set of the planned runs: present (the built-in one is generated) and
    its val annotations and images valid; a broken val set stops the sweep before anything runs
    or is submitted."""
    from gfl_repro.engine.data import check_val_set, ensure_dataset
    from gfl_repro.engine.distributed import DistInfo

    for data in {run.config.data for run in runs}:
        ensure_dataset(data, DistInfo())
        check_val_set(data)


def format_plan(runs: list[PlannedRun], seconds_per_run: Callable[[PlannedRun], float],
                unit: str = "hours", scale: float = 1 / 3600) -> str:  # fmt: skip
    """The plan as a table: each run's estimated cost and, for a complete run that recorded it,
    what it took (both in ``unit``), then the totals."""
    lines = [f"{'run':<28} {'seed':>4}  {'status':<8}  {'est. ' + unit:>12}  {'took':>6}  rows"]
    todo, took, timed = 0.0, 0.0, 0
    for run in runs:
        cost = seconds_per_run(run) * scale
        recorded = recorded_seconds(run.run_dir)
        if run.status != "complete":
            todo += cost
        if recorded is not None:
            took, timed = took + recorded * scale, timed + 1
        spent = "" if recorded is None else f"{recorded * scale:.2f}"
        lines.append(f"{run.name:<28} {run.seed:>4}  {run.status:<8}  {cost:>12.2f}  {spent:>6}  "
                     f"{', '.join(sorted(set(run.rows)))}")  # fmt: skip
    done = sum(r.status == "complete" for r in runs)
    spent = f", {timed} of them took {took:.1f} {unit}" if timed else ""
    lines.append(f"{len(runs)} distinct runs ({done} complete{spent}); "
                 f"estimated {todo:.1f} {unit} to go")  # fmt: skip
    return "\n".join(lines)


def unbenched(runs: list[PlannedRun], rows: set[str]) -> list[Path]:
    """Folders of the complete runs standing for any of ``rows`` that have a checkpoint and no
    bench_model.json yet: what ``gfl-repro bench-model`` still has to time for the tables' speed
    columns. A run without a checkpoint (unpacked from a record) is not timed: bench-model would
    time a fresh initialisation, whose post-processing sees almost no detection."""
    return [
        run.run_dir
        for run in runs
        if set(run.rows) & rows
        and run.status == "complete"
        and not (run.run_dir / RunFolder.BENCH).is_file()
        and latest_checkpoint(run.run_dir) is not None
    ]


def bench_unbenched(runs: list[PlannedRun], rows: set[str], results: Path) -> list[dict]:
    """bench-model, with its defaults, on the complete runs standing for any of ``rows`` that
    were not benchmarked yet (unbenched); prints their table. Returns their records."""
    from gfl_repro.engine.bench.model import ModelBenchOptions, bench_runs, format_records

    folders = unbenched(runs, rows)
    if not folders:
        return []
    print(f"bench-model: timing {len(folders)} run(s) for the speed columns", flush=True)
    records = bench_runs(folders, ModelBenchOptions(), results)
    print(format_records(records), flush=True)
    return records


def train_command(run: PlannedRun, preset: str) -> list[str]:
    where = ["--preset", preset, "--seed", str(run.seed), "--work-dir", str(run.run_dir)]
    rows = ["--rows", ",".join(sorted(set(run.rows)))]
    return [sys.executable, "-m", "gfl_repro.cli", "train", run.name, *where, *rows,
            "--resume", "auto"]  # fmt: skip


def run_local(runs: list[PlannedRun], preset: str, seconds_per_run: Callable[[PlannedRun], float],
              jobs: int = 1, on_done: Callable[[PlannedRun], None] | None = None,
              clock: Callable[[], float] = time.monotonic) -> list[PlannedRun]:  # fmt: skip
    """Run the runs that are not complete, in order, ``jobs`` at once: each slot (its GPU, or its
    share of the CPU cores) takes the next run as soon as its own run ends, so a short run never
    waits for a long one beside it. ``on_done`` is called with each run that completes, in its
    slot (to pack its record). Returns the runs that failed, in order.

    Each start prints the time left: the estimates of the runs not yet ended, shared among the
    ``jobs`` slots and, once runs have completed here, scaled by what they took over what they were
    estimated to take (the cost model's timings come from another machine or code)."""
    pending = [r for r in runs if r.status != "complete"]
    failed, start, lock = set(), clock(), threading.Lock()
    pace = _Pace(sum(seconds_per_run(r) for r in pending), max(1, jobs))
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(jobs):
        slots.put(slot)

    def one(i: int, run: PlannedRun) -> None:
        slot = slots.get()
        began = clock()
        try:
            with lock:
                elapsed = (began - start) / 60
                print(f"[run {i + 1}/{len(pending)}] {run.name} seed{run.seed} | {elapsed:.0f} min "
                      f"elapsed, {pace.describe()}", flush=True)  # fmt: skip
            proc = subprocess.Popen(train_command(run, preset), env=_device_env(slot, jobs))
            ok = proc.wait() == 0 and is_complete(run.run_dir)
            if ok and on_done is not None:
                on_done(run)
        finally:
            slots.put(slot)
        with lock:
            if not ok:
                failed.add(i)
                print(f"run failed: {run.run_dir} (see its train.log)", flush=True)
            pace.ended(seconds_per_run(run), clock() - began if ok else None)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, range(len(pending)), pending))
    return [run for i, run in enumerate(pending) if i in failed]


@dataclass
class _Pace:
    """The time a local sweep has left: the estimated seconds of the runs not yet ended, over
    the slots that run them, times the ratio of measured to estimated seconds of the runs that
    completed here (1 until one has)."""

    left: float  # estimated seconds of the runs not yet ended
    jobs: int
    estimated: float = 0.0  # of the runs that completed here
    measured: float = 0.0
    completed: int = 0

    def ended(self, estimate: float, took: float | None) -> None:
        """A run ended: ``took`` its seconds if it completed, None if it failed."""
        self.left -= estimate
        if took is not None and estimate > 0:
            self.estimated, self.measured = self.estimated + estimate, self.measured + took
            self.completed += 1

    def describe(self) -> str:
        minutes = self.left / self.jobs / 60
        if not self.completed:
            return f"about {minutes:.0f} min left (estimated)"
        ratio = self.measured / self.estimated
        return (f"about {minutes * ratio:.0f} min left (estimated, x{ratio:.2f} as the "
                f"{self.completed} run(s) completed here took)")  # fmt: skip


def _device_env(slot: int, jobs: int = 1) -> dict[str, str]:
    """The environment of the run in ``slot`` of ``jobs`` at once: its GPU (one per slot, from
    CUDA_VISIBLE_DEVICES) and, unless OMP_NUM_THREADS is set already, an equal share of the CPU
    cores as its threads, so that ``jobs`` runs on a CPU machine do not oversubscribe it."""
    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible:
        devices = visible.split(",")
        env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    return env


@dataclass(frozen=True)
class SlurmOptions:
    nodes: int = 1
    gpus_per_node: int = 8
    cpus_per_task: int = 5
    partition: str = ""
    time_min: int = 24 * 60
    mem_gb: int = 0  # 0 = the partition's default


def slurm_parameters(opts: SlurmOptions, name: str) -> dict:
    """submitit parameters: one task per GPU, so srun starts the DDP processes and each reads
    its rank from the Slurm environment (gfl_repro.engine.distributed)."""
    params = {
        "nodes": opts.nodes,
        "tasks_per_node": opts.gpus_per_node,
        "gpus_per_node": opts.gpus_per_node,
        "cpus_per_task": opts.cpus_per_task,
        "timeout_min": opts.time_min,
        "name": name,
    }
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.mem_gb:
        params["mem_gb"] = opts.mem_gb
    return params


def _train_task(config: dict, run_dir: str, seed: int, meta: dict) -> dict | None:
    from gfl_repro.config import from_dict
    from gfl_repro.engine.train import train_run

    return train_run(from_dict(Config, config), Path(run_dir), seed, resume="auto", meta=meta)


def submit_slurm(runs: list[PlannedRun], preset: str, opts: SlurmOptions, folder: Path,
                 cluster: str | None = None) -> list:  # fmt: skip
    """One submitit job per run that is not complete. ``cluster="local"`` runs the jobs as
    local processes (for tests); None lets submitit pick Slurm when it is there."""
    try:
        import submitit
    except ImportError as err:
        raise SystemExit(
            "the slurm launcher needs submitit: pip install 'gfl-repro[cluster]'"
        ) from err
    jobs = []
    for run in (r for r in runs if r.status != "complete"):
        executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        params = slurm_parameters(opts, f"gfl-{preset}-{run.name}-s{run.seed}")
        if cluster == "local":
            params = {"timeout_min": opts.time_min, "name": params["name"]}
        executor.update_parameters(**params)
        meta = identity(preset, run.name, run.rows)
        jobs.append(executor.submit(_train_task, to_dict(run.config), str(run.run_dir),
                                    run.seed, meta))  # fmt: skip
        print(f"submitted {run.name} seed{run.seed}: job {jobs[-1].job_id}", flush=True)
    return jobs
