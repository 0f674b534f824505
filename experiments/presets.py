"""The scales a run can be at. Each preset is the recipe's Config with a few fields changed.

- ``mini``: the built-in synthetic dataset and a small model on CPU, minutes per run;
- ``coco-1x``: COCO 2017 with the paper's R-50 1x settings exactly (docs/recipe.md);
- ``coco-2x-ms``: multi-scale training [480, 960], 24 epochs, steps at 16 and 22 (Table 7).
"""

import dataclasses
from dataclasses import dataclass, field

from gfl_repro.config import (
    Config,
    DataConfig,
    HeadConfig,
    ModelConfig,
    RuntimeConfig,
    ScheduleConfig,
)
from gfl_repro.data.mini import GENERATED_ROOTS


def coco_1x() -> Config:
    return Config(
        model=ModelConfig(num_classes=80, backbone="resnet50", pretrained="imagenet"),
        data=DataConfig(dataset="coco", root="data/coco", images_per_process=2),
        schedule=ScheduleConfig(),
        runtime=RuntimeConfig(),
    )


def coco_2x_ms() -> Config:
    cfg = coco_1x()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, short_range=(480, 960)),
        schedule=dataclasses.replace(cfg.schedule, epochs=24, steps=(16, 22)),
    )


def mini() -> Config:
    """A small GN CNN (five stages of two 3x3 convs, widths 8-128; no batch statistics, so DDP
    equals one process with the whole batch), a 32-channel FPN and head with towers of two convs,
    320-px images, 8 per iteration, 8 epochs of the built-in set (drops after epochs 6 and 7).

    Chosen by the regime search of docs/differences.md (criteria committed before its runs):
    every channel count x 0.5 for a run in 0.37 of the earlier preset's time; the recipe's object
    sizes of the level geometry (object_scale 1: GFL anchors 8 x stride, so 320-px images put no
    positive on P6 and P7, as COCO's small images do), +1.7 AP over object_scale 0.4 over 3
    seeds; lr 0.16 per 16 images; 8 epochs, the most the time budget allows (a 12-epoch run
    reaches about 40 AP, against 27-30 at 8: the schedule is set by the budget, not by a plateau;
    docs/results/mini/regime/decision{1..5}.md)."""
    return Config(
        model=ModelConfig(
            num_classes=12,
            backbone="mini",
            mini_widths=(8, 16, 32, 64, 128),
            mini_norm="gn",
            fpn_channels=32,
            object_scale=1.0,
            head=HeadConfig(feat_channels=32, stacked_convs=2, gn_groups=16),
        ),
        data=DataConfig(
            dataset="mini",
            root=GENERATED_ROOTS[0],
            train_scale=(320, 320),
            test_scale=(320, 320),
            images_per_process=8,
            val_images_per_process=8,
            workers=1,
        ),
        schedule=ScheduleConfig(epochs=8, lr=0.16, base_batch=16, warmup_iters=200, steps=(6, 7)),
        runtime=RuntimeConfig(device="cpu", log_every=25, tensorboard=False),
    )


def tiny() -> Config:
    """A smoke-test scale: a dozen 64-px images of the built-in set and a minimal model, seconds
    per run. Used by the tests of the sweep driver; not a result of any kind."""
    cfg = mini()
    m = cfg.model
    model = dataclasses.replace(
        m,
        mini_widths=(8, 8, 16, 16, 16),
        fpn_channels=16,
        object_scale=0.4,  # 64-px images: P3 anchors of 25.6 px, not the whole image
        head=dataclasses.replace(m.head, feat_channels=16, stacked_convs=1, gn_groups=4),
        quality=dataclasses.replace(m.quality, hidden=8),
    )
    data = dataclasses.replace(
        cfg.data,
        root=GENERATED_ROOTS[1],
        mini_train=12,
        mini_val=4,
        mini_size=64,
        train_scale=(64, 64),
        test_scale=(64, 64),
        images_per_process=4,
        val_images_per_process=4,
        workers=0,
    )
    schedule = dataclasses.replace(cfg.schedule, epochs=1, warmup_iters=2, steps=())
    runtime = dataclasses.replace(cfg.runtime, threads=1, log_every=1)
    return Config(model=model, data=data, schedule=schedule, runtime=runtime)


PRESETS = {"mini": mini, "coco-1x": coco_1x, "coco-2x-ms": coco_2x_ms, "tiny": tiny}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]()


@dataclass(frozen=True)
class Cost:
    """What a preset's runs cost, for the sweep's dry-run estimate."""

    train_images: int  # after the training filter
    processes: int  # devices per run (GPUs at COCO scale, 1 CPU process at mini)
    seconds_per_iter: float
    source: str  # where seconds_per_iter comes from
    seconds_per_run: float = 0.0  # start-up, evaluation and the LQE dump
    # Step time relative to GFLV2's, for experiments that differ by more than noise.
    relative: dict[str, float] = field(default_factory=dict)

    def run_seconds(self, experiment: str, iterations: int) -> float:
        """Estimated wall time of one run on its ``processes`` devices."""
        step = self.seconds_per_iter * self.relative.get(experiment, 1.0)
        return iterations * step + self.seconds_per_run


# Measured here at mini (gfl-repro experiment-cost, 2 CPU cores, each paired with a GFLV2 step
# in the same process): the Table 3 rows that sample convolutional features. The other rows are
# within 0.8-1.2 of GFLV2 and count as 1.
MINI_RELATIVE = {
    "t3_region": 3.28,
    "t3_border_dense": 1.45,
    "t3_border_middle": 1.24,
    "t3_border_extreme": 1.69,
    "t3_regular": 5.12,
    "t3_deformable": 5.30,
}


COSTS = {
    "tiny": Cost(12, 1, 0.01, "a guess: smoke tests only"),
    # Measured here: `gfl-repro bench` item 9 on 2 CPU cores (AMD EPYC, no AVX-512) at widths
    # 8-128, 0.245 s per iteration and 38 s per run besides (setup, evaluation, LQE dump). The
    # relative step times above were measured at the earlier widths 16-256.
    "mini": Cost(3000, 1, 0.245, "measured, mini runs on 2 CPU cores", 38.0, MINI_RELATIVE),
    # Not measured here (no GPU): the paper's Table 8, 8.2 h for 12 epochs of 7330 iterations
    # of 16 images on 8 RTX 2080Ti = 0.336 s per iteration.
    "coco-1x": Cost(117266, 8, 8.2 * 3600 / (12 * 7330), "paper Table 8 (8 RTX 2080Ti)"),
    "coco-2x-ms": Cost(117266, 8, 8.2 * 3600 / (12 * 7330), "paper Table 8 (8 RTX 2080Ti)"),
}
