"""Config checks at build time: every numeric range and every cross-field combination is an
error naming the field and the bad value, before any run folder exists."""

import pytest

from experiments.presets import preset
from gfl_repro.cli import main
from gfl_repro.config import RANGES, ConfigError, apply_overrides

# One value outside each range (the low end unless only the high end is bounded).
BAD = {
    "model.num_classes": "0", "model.frozen_stages": "5", "model.mini_widths": "16,0,64,128,256",
    "model.fpn_channels": "0", "model.object_scale": "0", "model.quality.hidden": "0",
    "model.quality.composed_dim": "0", "model.head.feat_channels": "0",
    "model.head.stacked_convs": "-1",
    "model.head.reg_max": "0", "model.head.gn_groups": "0", "model.head.anchor_scale": "0",
    "model.head.anchor_ratios": "-1", "model.head.scales_per_octave": "0",
    "model.head.center_offset": "1.0", "model.head.atss_topk": "0", "model.head.loss_qfl": "-1",
    "model.head.loss_bbox": "-0.5", "model.head.loss_dfl": "-0.25",
    "model.inference.nms_pre": "-1", "model.inference.score_thr": "1.5",
    "model.inference.iou_thr": "0", "model.inference.max_per_img": "0",
    "data.train_scale": "320,0", "data.test_scale": "0,320", "data.short_range": "0,480",
    "data.images_per_process": "0", "data.val_images_per_process": "0", "data.workers": "-1",
    "data.mini_train": "0", "data.mini_val": "0", "data.mini_size": "16",
    "data.mini_class_colour": "1.5", "data.mini_min_side": "0", "schedule.epochs": "0",
    "schedule.lr": "0", "schedule.base_batch": "0", "schedule.momentum": "-0.9",
    "schedule.weight_decay": "-0.0001", "schedule.warmup_iters": "-1",
    "schedule.warmup_ratio": "0", "schedule.steps": "0,5", "schedule.gamma": "1.5",
    "schedule.grad_clip": "-1", "schedule.max_iters": "-1", "runtime.threads": "-2",
    "runtime.log_every": "0", "runtime.checkpoint_every": "-1", "runtime.keep_checkpoints": "0",
}  # fmt: skip


def test_every_range_has_a_bad_value_here():
    assert set(BAD) == set(RANGES)


@pytest.mark.parametrize("key", sorted(BAD))
def test_each_numeric_range_is_checked_with_the_bad_value_named(key):
    with pytest.raises(ConfigError, match=rf"^{key} = .*must be in"):
        apply_overrides(preset("mini"), [f"{key}={BAD[key]}"])


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["model.head.anchor_ratios=0.5,1,2"], "the GFL head has one prior per location"),
        (["model.head.scales_per_octave=3"], "the GFL head has one prior per location"),
        (
            [
                "model.detector=fcos",
                "model.head.kind=native",
                "model.quality.kind=none",
                "model.head.anchor_ratios=0.5,1",
            ],
            "anchor-free",
        ),  # fmt: skip
        (["model.dcn=true"], "the mini backbone has no deformable convs"),
        (["model.pretrained=imagenet"], "no pretrained weights"),
        (["model.head.gn_groups=5"], "must divide model.head.feat_channels=32"),
        (["schedule.steps=4,9"], "a step after schedule.epochs=8"),
        (["data.mini_classes=ring,star,arrow"], "model.num_classes=12 but data.mini_classes has 3"),
        (["data.mini_classes=ring,blob", "model.num_classes=2"], "data.mini_classes: classes"),
    ],
)
def test_each_bad_combination_fails_at_config_build(items, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("mini"), items)


def test_the_retinanet_baseline_keeps_its_nine_anchors():
    cfg = apply_overrides(preset("coco-1x"), ["model.detector=retinanet", "model.head.kind=native",
                                              "model.quality.kind=none",
                                              "model.head.anchor_ratios=0.5,1,2",
                                              "model.head.scales_per_octave=3"])  # fmt: skip
    assert cfg.model.head.anchor_ratios == (0.5, 1.0, 2.0)


def test_a_bad_value_stops_train_before_any_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gflv2", "--work-dir", str(run), "--set", "runtime.log_every=0"]) == 2
    err = capsys.readouterr().err
    assert err == "gfl-repro: error: runtime.log_every = 0: must be in [1, inf]\n"
    assert not run.exists()
