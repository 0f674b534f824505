"""The scales a run can be at. Each preset is the recipe's Config with a few fields changed.

- ``mini``: the built-in synthetic dataset and a small model on CPU, minutes per run;
- ``coco-1x``: COCO 2017 with the paper's R-50 1x settings exactly (RECIPE.md);
- ``coco-2x-ms``: multi-scale training [480, 960], 24 epochs, steps at 16 and 22 (Table 7).
"""

import dataclasses

from gfl_repro.config import (
    Config,
    DataConfig,
    HeadConfig,
    ModelConfig,
    RuntimeConfig,
    ScheduleConfig,
)


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
    """A small GN CNN (five stages of two 3x3 convs, widths 16-256; no batch statistics, so DDP
    equals one process with the whole batch), a 64-channel FPN and head with towers of two convs,
    320-px images, 8 per iteration, about six epochs of the built-in set."""
    return Config(
        model=ModelConfig(
            num_classes=12,
            backbone="mini",
            mini_norm="gn",
            fpn_channels=64,
            head=HeadConfig(feat_channels=64, stacked_convs=2, gn_groups=16),
        ),
        data=DataConfig(
            dataset="mini",
            root="data/mini",
            train_scale=(320, 320),
            test_scale=(320, 320),
            images_per_process=8,
            val_images_per_process=8,
            workers=1,
        ),
        schedule=ScheduleConfig(epochs=6, lr=0.16, base_batch=16, warmup_iters=200, steps=(4, 5)),
        runtime=RuntimeConfig(device="cpu", log_every=25, tensorboard=False),
    )


PRESETS = {"mini": mini, "coco-1x": coco_1x, "coco-2x-ms": coco_2x_ms}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]()
