"""`gfl-repro bench-model RUN_DIR ...`: training and inference speed of trained runs, the
"Training Hours" and "Inference FPS" of Table 8 and the latency axis of Fig. 6.

Each run is rebuilt from its folder (config.json, env.json, the latest iter_*.pth, or the
run's seed's fresh initialisation when it has no checkpoint) on its config's device with a
fixed number of threads, then timed as the engine runs it:

- inference: batch 1 from the val loader, ``model.predict`` (forward + decoding + NMS) under
  no_grad, the host-to-device copy included; ``warmup`` images untimed, then ``images`` timed.
  ``ms`` is the median per image, ``fps = 1000 / ms``; ``ms_mean`` is the mean.
- training: ``Trainer.step`` (learning rate of the schedule, autocast, forward, losses, finiteness
  check, backward, SGD update) on the run's own training batches (``images_per_process``
  images); ``train_warmup`` steps untimed, then ``train_iters`` timed; ``train_s_per_iter`` is the
  median. Inference is timed first, so it sees the checkpoint's weights, not ones moved by the
  timed steps.

Loading the next batch is outside every timer; on CUDA the device is synchronised before each
timer read. ``training_hours = train_s_per_iter x iterations / 3600``, where ``iterations`` is
the run's schedule (epochs x iterations per epoch, capped by max_iters) counted for the number
of processes it was trained with (env.json). Nothing else enters it: at COCO scale it is the
wall time of one of the run's processes (per-GPU time; device-hours are ``processes`` times
it), gradient all-reduce and evaluation excluded.

Each run gets ``bench_model.json``; ``results/<preset>/bench_model.csv`` holds one row per run,
replaced when the run is benchmarked again.

Legend: B images in a batch.
"""

import dataclasses
import socket
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from gfl_repro.config import Config
from gfl_repro.data.sampler import GroupSampler
from gfl_repro.engine import checkpoint as ckpt
from gfl_repro.engine.bench.table import format_table, read_csv, write_csv
from gfl_repro.engine.bench.timing import time_calls
from gfl_repro.engine.data import ensure_dataset, val_loader
from gfl_repro.engine.distributed import DistInfo, resolve_device
from gfl_repro.engine.runs import RunFolder, load_run_config
from gfl_repro.engine.train import Trainer
from gfl_repro.io import atomic_write_json

COLUMNS = ("experiment", "seed", "preset", "run", "weights", "device", "threads",
           "images_per_process", "train_warmup", "train_iters", "train_s_per_iter",
           "train_s_per_iter_mean", "processes", "iterations", "training_hours", "warmup",
           "images", "ms", "ms_mean", "fps", "torch", "host", "time")  # fmt: skip
ENV_KEYS = ("preset", "experiment", "seed")
DEFAULT_THREADS = 2  # when neither --threads nor the run's runtime.threads fixes them


@dataclass(frozen=True)
class ModelBenchOptions:
    threads: int = 0  # 0: the run's runtime.threads, else DEFAULT_THREADS
    train_iters: int = 10
    train_warmup: int = 3
    images: int = 50
    warmup: int = 5

    def __post_init__(self) -> None:
        if self.train_iters < 1 or self.images < 1:
            raise ValueError("--train-iters and --images must be at least 1")
        if self.train_warmup < 0 or self.warmup < 0 or self.threads < 0:
            raise ValueError("--train-warmup, --warmup and --threads must not be negative")


@dataclass(frozen=True)
class Run:
    folder: Path
    cfg: Config
    env: dict


def read_run(folder: str | Path) -> Run:
    """The run's config and env.json; a folder that is not a run is an error that names it."""
    folder = Path(folder)
    if not RunFolder(folder).is_run:
        raise FileNotFoundError(
            f"{folder}: no config.json; not a run folder (gfl-repro train writes config.json "
            "and env.json into each run folder)"
        )
    env = RunFolder(folder).env
    missing = [key for key in ENV_KEYS if env.get(key) is None]
    if missing:
        raise ValueError(f"{folder}: env.json is missing or lacks {', '.join(missing)}")
    return Run(folder, load_run_config(folder), env)


def run_iterations(cfg: Config, aspect_flags, processes: int) -> int:
    """Iterations of the run's schedule with ``processes`` processes, counted as Trainer does:
    the grouped sampler's batches per process x epochs, capped by max_iters."""
    batch = cfg.data.images_per_process
    per_epoch = len(GroupSampler(aspect_flags, batch, processes)) // batch
    total = per_epoch * cfg.schedule.epochs
    return min(total, cfg.schedule.max_iters) if cfg.schedule.max_iters else total


def endless(loader: DataLoader) -> Iterator:
    """The loader's batches, epoch after epoch (a benchmark may want more than one epoch)."""
    if len(loader) == 0:
        raise ValueError("the loader yields no batch")
    set_epoch = getattr(loader.sampler, "set_epoch", None)
    epoch = 0
    while True:
        if set_epoch is not None:
            set_epoch(epoch)
        yield from loader
        epoch += 1


def _inference_ms(trainer: Trainer, opts: ModelBenchOptions) -> list[float]:
    """Milliseconds per val image, batch 1, forward + post-processing."""
    model, device = trainer.model, trainer.dist.device
    data = dataclasses.replace(trainer.cfg.data, val_images_per_process=1)
    batches = endless(val_loader(data, trainer.dist))

    @torch.no_grad()
    def infer(batch: tuple[torch.Tensor, list[dict]]) -> None:
        images, metas = batch  # (1, 3, H, W), the image's meta
        model.predict(images.to(device, non_blocking=True), metas)

    model.eval()
    try:
        (seconds,) = time_calls([infer], opts.images, opts.warmup, device, batches)
    finally:
        model.train()
        batches.close()
    return [1000 * s for s in seconds]


def _train_seconds(trainer: Trainer, opts: ModelBenchOptions) -> list[float]:
    """Seconds per training step on the run's own batches."""
    batches = endless(trainer.loader)
    try:
        (seconds,) = time_calls([lambda batch: trainer.step(*batch)], opts.train_iters,
                                opts.train_warmup, trainer.dist.device, batches)  # fmt: skip
        return seconds
    finally:
        batches.close()


def bench_run(run: Run, opts: ModelBenchOptions) -> dict:
    """Benchmark one run; returns the record of COLUMNS (seconds, milliseconds, hours)."""
    cfg = run.cfg
    threads = opts.threads or cfg.runtime.threads or DEFAULT_THREADS
    torch.set_num_threads(threads)
    dist = DistInfo(device=resolve_device(cfg.runtime.device))
    ensure_dataset(cfg.data, dist)
    # Without TensorBoard the trainer writes nothing into the run folder.
    quiet = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, tensorboard=False))
    trainer = Trainer(quiet, run.folder, run.env["seed"], dist)
    path = ckpt.latest_checkpoint(run.folder)
    if path is not None:
        trainer.resume(path)
    ms = _inference_ms(trainer, opts)
    step = _train_seconds(trainer, opts)
    processes = int(run.env.get("processes", 1))
    iterations = run_iterations(cfg, trainer.loader.dataset.dataset.aspect_flags(), processes)
    s_per_iter = statistics.median(step)
    return {
        "experiment": run.env["experiment"], "seed": run.env["seed"], "preset": run.env["preset"],
        "run": run_key(run.folder),
        "weights": path.name if path is not None else "fresh init (no checkpoint)",
        "device": str(dist.device), "threads": threads,
        "images_per_process": cfg.data.images_per_process, "train_warmup": opts.train_warmup,
        "train_iters": len(step), "train_s_per_iter": s_per_iter,
        "train_s_per_iter_mean": statistics.fmean(step), "processes": processes,
        "iterations": iterations, "training_hours": s_per_iter * iterations / 3600,
        "warmup": opts.warmup, "images": len(ms), "ms": statistics.median(ms),
        "ms_mean": statistics.fmean(ms), "fps": 1000 / statistics.median(ms),
        "torch": torch.__version__, "host": socket.gethostname(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def run_key(folder: Path) -> str:
    """The run's path as the CSV's key: relative to the working folder when inside it."""
    folder = folder.resolve()
    try:
        return str(folder.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def upsert_csv(path: Path, record: dict) -> None:
    """Write ``record`` into the CSV at ``path``, replacing the row of the same run."""
    rows = [row for row in read_csv(path) if row.get("run") != record["run"]]
    write_csv(path, COLUMNS, [*rows, record])


def bench_runs(folders: list[Path], opts: ModelBenchOptions, results: Path) -> list[dict]:
    """Benchmark each run folder (all are checked first); write run/bench_model.json and
    upsert results/<preset>/bench_model.csv after each run."""
    runs = [read_run(folder) for folder in folders]
    records = []
    for run in runs:
        record = bench_run(run, opts)
        atomic_write_json(run.folder / RunFolder.BENCH, record)
        upsert_csv(Path(results) / record["preset"] / "bench_model.csv", record)
        records.append(record)
    return records


def format_records(records: list[dict]) -> str:
    """The records as a table: what ran where, and its speed."""
    head = ("experiment", "seed", "weights", "device", "threads", "s/it", "train h", "ms", "fps")
    return format_table(head, (
        (r["experiment"], str(r["seed"]), r["weights"], r["device"], str(r["threads"]),
         f"{r['train_s_per_iter']:.4f}", f"{r['training_hours']:.3f}", f"{r['ms']:.2f}",
         f"{r['fps']:.2f}")
        for r in records
    ))  # fmt: skip
