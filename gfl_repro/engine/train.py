"""Training: SGD with linear warm-up and step decay by epoch, DDP, checkpoints, resume, logs.

A run folder holds ``config.json`` (the resolved config), ``env.json`` (versions, commit, device,
processes), ``metrics.jsonl``, ``train.log``, checkpoints ``iter_N.pth``, and at the end
``detections.json``, ``per_class_ap.csv`` and ``metrics.json``; ``metrics.json`` is written last
and marks the run complete.
"""

import logging
import math
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from gfl_repro.build import build_model
from gfl_repro.config import Config, ScheduleConfig, to_dict
from gfl_repro.engine import checkpoint as ckpt
from gfl_repro.engine.data import check_val_set, ensure_dataset, train_loader, val_loader
from gfl_repro.engine.distributed import DistInfo, init_distributed
from gfl_repro.engine.inference import evaluate_run
from gfl_repro.engine.logger import MetricsLogger, setup_logging
from gfl_repro.engine.lqe import class_first, lqe_dump, lqe_summary, save_lqe
from gfl_repro.engine.runs import RunFolder, check_same_config, is_complete, write_run_files
from gfl_repro.models.heads.gfl import GFLHead

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Schedule:
    """The learning rate at an iteration: linear warm-up, x gamma after each step epoch."""

    lr: float  # after the linear scaling rule
    iters_per_epoch: int
    total_iters: int
    cfg: object  # ScheduleConfig

    def lr_at(self, iteration: int) -> float:
        s = self.cfg
        epoch = iteration // self.iters_per_epoch
        lr = self.lr * s.gamma ** sum(epoch >= step for step in s.steps)
        if iteration < s.warmup_iters:  # mmdetection's 'linear' warm-up
            lr *= 1 - (1 - iteration / s.warmup_iters) * (1 - s.warmup_ratio)
        return lr


def scaled_lr(cfg: Config, world_size: int) -> float:
    """Linear scaling rule: lr x (total images per iteration / base_batch)."""
    total = cfg.data.images_per_process * world_size
    return cfg.schedule.lr * total / cfg.schedule.base_batch


def build_optimizer(model: torch.nn.Module, cfg: Config, lr: float) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    s = cfg.schedule
    return torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay)


def _autocast(cfg: Config, device: torch.device):
    if cfg.runtime.amp == "none" or device.type != "cuda":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if cfg.runtime.amp == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _check_finite(losses: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
    # One host-device sync for all terms, not one per term.
    values = dict(
        zip(losses, torch.stack([v.detach() for v in losses.values()]).tolist(), strict=True)
    )
    for key, value in values.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"iteration {iteration}: loss term {key} = {value}; stopping. The last good "
                "checkpoint is kept; lower schedule.lr or check the data."
            )
    return values


def train_step(model, ddp, optimizer, scaler, images, targets, iteration: int,
               grad_clip: float = 0.0) -> dict[str, float]:  # fmt: skip
    """One SGD step: forward through ``ddp`` (the model, or its DDP wrapper), the losses of
    ``model``, a finiteness check that names the term, backward, the gradients' total L2 norm
    clipped to ``grad_clip`` when it is set, update."""
    device = next(model.parameters()).device
    images = images.to(device, non_blocking=True)
    targets = [{k: _to(v, device) for k, v in t.items()} for t in targets]
    out = ddp(images)
    with torch.autocast(device.type, enabled=False):
        losses = model.losses(out, targets)  # float32, QFL included
    values = _check_finite(losses, iteration)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(sum(losses.values())).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # frozen ones have no grad
    scaler.step(optimizer)
    scaler.update()
    return values


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, seed: int, dist: DistInfo):
        self.cfg, self.run_dir, self.seed, self.dist = cfg, Path(run_dir), seed, dist
        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        self.model = build_model(cfg.model).to(dist.device)
        self.ddp = self.model
        if dist.world_size > 1:
            ids = [dist.device.index] if dist.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.loader = train_loader(cfg.data, dist, seed)
        self._check_classes()
        iters_per_epoch = len(self.loader)
        self.schedule = Schedule(
            scaled_lr(cfg, dist.world_size),
            iters_per_epoch,
            total_iters(iters_per_epoch, cfg.schedule),
            cfg.schedule,
        )
        self.optimizer = build_optimizer(self.model, cfg, self.schedule.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.runtime.amp == "fp16")
        self.iteration = 0
        self.train_seconds = 0.0  # wall time of the training loop, summed over resumes
        self._started: float | None = None
        self.metrics = MetricsLogger(run_dir, dist.is_main, cfg.runtime.tensorboard)

    def _check_classes(self) -> None:
        found = self.loader.dataset.dataset.num_classes
        if found != self.cfg.model.num_classes:
            raise ValueError(
                f"the training set has {found} categories but model.num_classes = "
                f"{self.cfg.model.num_classes}; set --set model.num_classes={found}"
            )

    def resume(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.iteration = state["iteration"]
        self.train_seconds = state.get("train_seconds", 0.0)
        ckpt.set_rng_state(state["rng"])
        dropped = self.metrics.drop_after(self.iteration)
        log.info("resumed from %s at iteration %d (%d metrics lines past it dropped)", path,
                 self.iteration, dropped)  # fmt: skip

    def save(self) -> None:
        if not self.dist.is_main:
            return
        path = self.run_dir / f"iter_{self.iteration}.pth"
        extra = {"model_config": to_dict(self.cfg.model), "scaler": self.scaler.state_dict(),
                 "category_ids": self.loader.dataset.dataset.cat_ids,
                 "train_seconds": self.elapsed()}  # fmt: skip
        ckpt.save_checkpoint(
            path, model=self.model, optimizer=self.optimizer, iteration=self.iteration, extra=extra
        )
        ckpt.prune_checkpoints(self.run_dir, self.cfg.runtime.keep_checkpoints)

    def step(self, images: torch.Tensor, targets: list[dict]) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr_at(self.iteration)
        with _autocast(self.cfg, self.dist.device):
            values = train_step(self.model, self.ddp, self.optimizer, self.scaler, images,
                                targets, self.iteration, self.cfg.schedule.grad_clip)  # fmt: skip
        self.iteration += 1
        return values

    def elapsed(self) -> float:
        """Training wall seconds so far: the resumed checkpoint's plus this process's loop."""
        if self._started is None:
            return self.train_seconds
        return self.train_seconds + time.perf_counter() - self._started

    def train(self) -> None:
        interactive = self.dist.is_main and sys.stderr.isatty()
        bar = tqdm(total=self.schedule.total_iters, initial=self.iteration, disable=not interactive,
                   unit="it", dynamic_ncols=True)  # fmt: skip
        self._started = time.perf_counter()
        with bar, logging_redirect_tqdm():
            self._train(bar)
        self.train_seconds, self._started = self.elapsed(), None

    def _train(self, bar: tqdm) -> None:
        sched, window = self.schedule, _Window()
        while self.iteration < sched.total_iters:
            epoch, done = divmod(self.iteration, sched.iters_per_epoch)
            self.loader.sampler.set_epoch(epoch, skip_batches=done)
            tic = time.perf_counter()
            for images, targets in self.loader:
                data_time = time.perf_counter() - tic
                values = self.step(images, targets)
                window.add(values, data_time, time.perf_counter() - tic)
                bar.update(1)
                if self.iteration % self.cfg.runtime.log_every == 0:
                    self._log(epoch, window)
                if self.cfg.runtime.checkpoint_every and (
                    self.iteration % self.cfg.runtime.checkpoint_every == 0
                ):
                    self.save()
                if self.iteration >= sched.total_iters:
                    break
                tic = time.perf_counter()
            self.save()
            if self.cfg.runtime.lqe_every_epoch:
                self.log_lqe(epoch)
            if self.cfg.runtime.eval_every_epoch and self.iteration < sched.total_iters:
                self.evaluate(final=False)

    def _log(self, epoch: int, window: "_Window") -> None:
        record = {"mode": "train", "iter": self.iteration, "epoch": epoch,
                  "lr": self.optimizer.param_groups[0]["lr"], **window.means()}  # fmt: skip
        if self.dist.device.type == "cuda":
            record["memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        else:  # peak resident memory of this process (Linux reports KiB)
            record["memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.metrics.write(record)
        losses = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("loss"))
        log.info("iter %d/%d lr %.5f %s %.3f s/it (data %.3f s)", self.iteration,
                 self.schedule.total_iters, record["lr"], losses, record["time"],
                 record["data_time"])  # fmt: skip
        window.reset()

    def log_lqe(self, epoch: int) -> None:
        """The LQE summary of the val positives at this checkpoint, as a "lqe" metrics line
        (rank 0, GFL heads); the model goes back to training with its trainable set intact."""
        if not self.dist.is_main or not isinstance(self.model.head, GFLHead):
            return
        trainable = [p.requires_grad for p in self.model.parameters()]
        loader = val_loader(self.cfg.data, DistInfo(device=self.dist.device))
        summary = lqe_summary(lqe_dump(self.model, loader, self.dist.device, "positives"))
        for p, flag in zip(self.model.parameters(), trainable, strict=True):
            p.requires_grad_(flag)
        self.model.train()
        self.metrics.write({"mode": "lqe", "iter": self.iteration, "epoch": epoch, **summary})
        log.info("LQE at iter %d: PCC(J, IoU) %.3f, PCC(I, IoU) %.3f, I %.3f ± %.3f, gt class "
                 "first at %.1f %% of positives", self.iteration, summary["pcc_joint"],
                 summary["pcc_quality"], summary["quality_mean"], summary["quality_std"],
                 100 * summary["class_first"])  # fmt: skip

    def dump_lqe(self) -> dict:
        """lqe.npz (or lqe_detections.npz) in the run folder: the LQE analysis reads it.
        Returns what metrics.json records of it: lqe_seconds (0 where the run dumps nothing)
        and, of a dump of the val positives, class_first."""
        protocol = self.cfg.runtime.lqe
        if protocol == "none" or not self.dist.is_main or not isinstance(self.model.head, GFLHead):
            return {"lqe_seconds": 0.0}
        tic = time.perf_counter()
        loader = val_loader(self.cfg.data, DistInfo(device=self.dist.device))
        frame = lqe_dump(self.model, loader, self.dist.device, protocol)
        save_lqe(frame, self.run_dir, RunFolder.lqe_name(protocol))
        self.model.train()
        record = {"lqe_seconds": round(time.perf_counter() - tic, 2)}
        if protocol == "positives":
            record["class_first"] = class_first(frame)
        return record

    def evaluate(self, final: bool = True, record: dict | None = None) -> dict | None:
        """Evaluate on the val set; the final evaluation writes metrics.json with ``record``."""
        loader = val_loader(self.cfg.data, self.dist)
        metrics = evaluate_run(self.model, loader, self.dist, self.run_dir,
                               write_detections=final, record=record)  # fmt: skip
        if metrics is not None and self.dist.is_main:
            self.metrics.write({"mode": "val", "iter": self.iteration, **metrics})
        return metrics


class _Window:
    """Running means of the loss terms and timings between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, values: dict[str, float], data_time: float, total: float) -> None:
        for key, value in {**values, "data_time": data_time, "time": total}.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.sums["loss"] = self.sums.get("loss", 0.0) + sum(values.values())
        self.n += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}


def total_iters(iters_per_epoch: int, schedule: ScheduleConfig) -> int:
    """The steps of a run: its epochs of ``iters_per_epoch``, cut at ``max_iters`` when set."""
    total = iters_per_epoch * schedule.epochs
    return min(total, schedule.max_iters) if schedule.max_iters else total


def _to(value, device: torch.device):
    return value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value


def train_run(
    cfg: Config, run_dir: Path, seed: int, resume: str | None = None, meta: dict | None = None
) -> dict | None:
    """Train and evaluate one run; resumes from ``resume`` ('auto' = latest in run_dir)."""
    dist = init_distributed(cfg.runtime.device)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    run_dir = Path(run_dir)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir, dist.is_main)
    if is_complete(run_dir) and resume == "auto":
        log.info("%s is complete (metrics.json exists); nothing to do", run_dir)
        return None
    try:
        return _train_and_evaluate(cfg, run_dir, seed, dist, resume, meta)
    except Exception as err:
        if dist.is_main:  # the run's own log keeps the whole story; the CLI prints one line
            with open(run_dir / RunFolder.TRAIN_LOG, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%H:%M:%S')} ERROR run failed: {err}\n")
                f.write(traceback.format_exc())
        raise


def _train_and_evaluate(cfg: Config, run_dir: Path, seed: int, dist: DistInfo,
                        resume: str | None, meta: dict | None) -> dict | None:  # fmt: skip
    check_same_config(run_dir, cfg)
    ensure_dataset(cfg.data, dist)
    check_val_set(cfg.data)  # before the first iteration, not after the last
    if dist.is_main:
        write_run_files(run_dir, cfg, seed, dist, meta or {})
    trainer = Trainer(cfg, run_dir, seed, dist)
    if resume == "auto":
        path = ckpt.latest_checkpoint(run_dir)
    else:
        path = None if resume in (None, "", "none") else Path(resume)
    if path is not None:
        trainer.resume(path)
    log.info("training %d iterations (%d per epoch), lr %.5f, %d process(es)",
             trainer.schedule.total_iters, trainer.schedule.iters_per_epoch, trainer.schedule.lr,
             dist.world_size)  # fmt: skip
    trainer.train()
    log.info("training took %.1f min (summed over resumes)", trainer.train_seconds / 60)
    lqe = trainer.dump_lqe()  # before metrics.json, which marks the run complete
    # The loop's seconds to 0.1 ms: bench item 9 fits a step from the loops of two short runs,
    # which 10-ms rounding could make equal.
    record = {"train_seconds": round(trainer.train_seconds, 4), **lqe}
    metrics = trainer.evaluate(final=True, record=record)
    trainer.metrics.close()
    return metrics
