"""Item 8 of `gfl-repro bench`: what each speed lever does to a training step of a preset.

Every lever is timed against the preset's own step in the same call, repetitions interleaved
(lever, base, lever, base, ...), so that a load on the machine lands on both alike. Two kinds:

- levers that leave what is computed unchanged (the numbers stay those of the preset):
  channels_last memory format, ``torch.compile`` of the forward (its compilation is a warm-up
  repetition, not timed; the note gives how long it took);
- levers that change the experiment (image side, network width, images per step): candidates
  of the regime search in docs/differences.md, never taken for speed alone. A step of a
  smaller batch is reported per image (ours and the base both in seconds per image).

A whole run (item 9) is timed too, the preset's against the lever of the mini regime: two short
runs of each (setup, training steps, evaluation of the val set, LQE dump: the run's own code
path), the line through their times extended to the preset's number of steps.

Legend: B images per step, S image side in pixels.
"""

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gfl_repro.config import Config, ModelConfig
from gfl_repro.engine.bench.timing import median_times
from gfl_repro.engine.bench.workloads import gfl_step, random_images, random_targets, seeded_model
from gfl_repro.models.backbone import GN_GROUPS


@dataclass(frozen=True)
class Lever:
    """A change of the step: ``changes`` says how (for the table), ``same_numbers`` whether the
    model computes what the base does."""

    name: str
    changes: str
    same_numbers: bool
    size: int | None = None  # image side S; None keeps the preset's
    batch: int | None = None  # images per step B; None keeps the preset's
    width: float = 1.0  # multiplies every channel count of the backbone, FPN and head
    channels_last: bool = False
    compile: bool = False


LEVERS = (
    Lever("channels_last", "memory format of the model and images", True, channels_last=True),
    Lever("compile", "torch.compile of the forward (inductor)", True, compile=True),
    Lever("size 256", "image side 256 instead of the preset's", False, size=256),
    Lever("size 224", "image side 224 instead of the preset's", False, size=224),
    Lever("width 0.75", "every channel count x 0.75", False, width=0.75),
    Lever("width 0.5", "every channel count x 0.5", False, width=0.5),
    Lever("batch 4", "4 images per step instead of the preset's (per image)", False, batch=4),
    Lever("size 256 width 0.75", "side 256, channels x 0.75", False, size=256, width=0.75),
    Lever("size 224 width 0.75", "side 224, channels x 0.75", False, size=224, width=0.75),
)


def scaled_model(cfg: ModelConfig, width: float) -> ModelConfig:
    """``cfg`` with every channel count of the mini backbone, FPN and head times ``width``,
    rounded to the nearest multiple of its GroupNorm's groups (the backbone's GN_GROUPS, the
    head's gn_groups for the FPN and head), at least one multiple."""
    if width == 1.0:
        return cfg

    def scale(channels: int, groups: int) -> int:
        return max(groups, round(channels * width / groups) * groups)

    g = cfg.head.gn_groups
    head = dataclasses.replace(cfg.head, feat_channels=scale(cfg.head.feat_channels, g))
    widths = tuple(scale(c, GN_GROUPS) for c in cfg.mini_widths)
    return dataclasses.replace(cfg, mini_widths=widths, fpn_channels=scale(cfg.fpn_channels, g),
                               head=head)  # fmt: skip


def lever_step(cfg: Config, lever: Lever | None, boxes: int) -> tuple[Callable[[], object], int]:
    """One training step of ``cfg`` changed by ``lever`` (None: the preset's own) on random
    images with ``boxes`` random gt boxes each, and its number of images."""
    size = (lever and lever.size) or cfg.data.train_scale[0]
    batch = (lever and lever.batch) or cfg.data.images_per_process
    model = seeded_model(scaled_model(cfg.model, lever.width if lever else 1.0))
    images = random_images(batch, size)  # (B, 3, S, S)
    if lever and lever.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    targets = random_targets(batch, (size, size), boxes)
    compiled = lever is not None and lever.compile
    step = _compiled_step(model, images, targets) if compiled else gfl_step(model, images, targets)
    return step, batch


def _compiled_step(model, images, targets) -> Callable[[], object]:
    from gfl_repro.engine.bench.workloads import _sgd
    from gfl_repro.engine.train import train_step

    compiled = torch.compile(model)  # the forward; the losses stay eager
    optimizer = _sgd(model)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    model.train()
    return lambda: train_step(model, compiled, optimizer, scaler, images, targets, 0)


def bench_levers(cfg: Config, reps: int, warmup: int, boxes: int,
                 levers: tuple[Lever, ...] = LEVERS) -> list[dict]:  # fmt: skip
    """Per lever: seconds per image of its step and of the preset's (interleaved), their ratio,
    and the seconds of the first (warm-up) call, which holds a compilation."""
    records = []
    for lever in levers:
        base, base_batch = lever_step(cfg, None, boxes)
        changed, batch = lever_step(cfg, lever, boxes)
        tic = time.perf_counter()
        changed()  # the first call: compiles where the lever compiles
        first = time.perf_counter() - tic
        ours, ref = median_times([changed, base], reps, warmup)
        records.append({"lever": lever, "ours": ours / batch, "base": ref / base_batch,
                        "first_call_s": first})  # fmt: skip
    return records


# --- a whole run ---------------------------------------------------------------------------------

# The lever of the mini regime's decision 1 (docs/differences.md); its fallbacks, in turn:
# "size 256 width 0.75", then "size 224 width 0.75" (bench --whole-run-lever).
WHOLE_RUN_LEVER = "width 0.5"
SHORT_RUNS = (10, 40)  # the lengths, in steps, of the two short runs a whole run is fitted from


def lever_named(name: str) -> Lever:
    """The lever of LEVERS called ``name``; an unknown name is an error that lists them."""
    for lever in LEVERS:
        if lever.name == name:
            return lever
    raise ValueError(f"no lever {name!r}; the levers: {', '.join(lv.name for lv in LEVERS)}")


def changed_config(cfg: Config, lever: Lever) -> Config:
    """``cfg`` as a training run with ``lever``: its width, image side and images per step;
    a lever that keeps the numbers (memory format, compilation) is not a config of a run."""
    if lever.same_numbers:
        raise ValueError(f"lever {lever.name!r} keeps the numbers: it is not a run's config")
    data = cfg.data
    if lever.size:
        data = dataclasses.replace(data, train_scale=(lever.size, lever.size),
                                   test_scale=(lever.size, lever.size))  # fmt: skip
    if lever.batch:
        data = dataclasses.replace(data, images_per_process=lever.batch)
    return dataclasses.replace(cfg, model=scaled_model(cfg.model, lever.width), data=data)


def whole_run_estimate(short: dict[int, tuple[float, float]], total: int
                       ) -> tuple[float, float, float]:  # fmt: skip
    """From two short runs, {steps: (wall seconds, seconds of the training loop)}, each a whole
    run but shorter: the fixed seconds (setup, evaluation of the val set, LQE dump, the loop's
    own start), the seconds per step and the seconds of a run of ``total`` steps. The step is the
    slope of the training loop's seconds alone: the evaluation's cost varies with how far the
    model has trained (how many boxes pass the score threshold), so the wall times of a 10- and
    a 40-step run do not differ by 30 steps only."""
    if len(short) != 2:
        raise ValueError("whole_run_estimate: two short runs of different lengths are needed")
    (n1, (_, loop1)), (n2, (wall2, loop2)) = sorted(short.items())
    step = (loop2 - loop1) / (n2 - n1)
    fixed = wall2 - loop2 + (loop1 - n1 * step)
    return fixed, step, fixed + total * step


def _short_run(cfg: Config, steps: int, root: Path) -> tuple[float, float]:
    """Wall seconds of ``cfg``'s run stopped after ``steps`` steps, in a new folder under root,
    and the seconds of its training loop (``train_seconds`` of its metrics.json)."""
    from gfl_repro.engine.runs import RunFolder
    from gfl_repro.engine.train import train_run

    run_cfg = dataclasses.replace(
        cfg,
        schedule=dataclasses.replace(cfg.schedule, max_iters=steps),
        runtime=dataclasses.replace(cfg.runtime, tensorboard=False),
    )
    folder = Path(tempfile.mkdtemp(prefix=f"run{steps}_", dir=root))
    tic = time.perf_counter()
    train_run(run_cfg, folder, seed=0, resume="none")
    return time.perf_counter() - tic, RunFolder(folder).metrics["train_seconds"]


def bench_whole_run(cfg: Config, lever_name: str = WHOLE_RUN_LEVER,
                    lengths: tuple[int, int] = SHORT_RUNS) -> list[dict]:  # fmt: skip
    """A whole run of ``cfg`` and of ``cfg`` with the lever, in seconds: each fitted from two
    short runs of ``lengths`` steps, the four runs interleaved (preset, lever, preset, lever),
    then extended to the preset's number of steps (its schedule over its training set)."""
    from gfl_repro.engine.data import train_loader
    from gfl_repro.engine.distributed import DistInfo
    from gfl_repro.engine.train import total_iters

    lever = lever_named(lever_name)
    configs = {"preset": cfg, lever.name: changed_config(cfg, lever)}
    total = total_iters(len(train_loader(cfg.data, DistInfo(), 0)), cfg.schedule)
    times: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in configs}
    with tempfile.TemporaryDirectory(prefix="bench_whole_run_") as root:
        for steps in lengths:
            for name, run_cfg in configs.items():
                times[name][steps] = _short_run(run_cfg, steps, Path(root))
    records = []
    for name, short in times.items():
        fixed, step, whole = whole_run_estimate(short, total)
        records.append({"name": name, "fixed": fixed, "step": step, "whole": whole,
                        "total": total, "short": short})  # fmt: skip
    return records
