"""Every registered experiment builds, trains one step and predicts on a tiny model."""

import math

import pytest
import torch

from experiments.registry import EXPERIMENTS, resolve, table
from gfl_repro.build import build_model
from gfl_repro.config import apply_overrides
from gfl_repro.engine.train import train_step

TINY = [
    "model.mini_widths=8,8,16,16,16",
    "model.fpn_channels=16",
    "model.head.feat_channels=16",
    "model.head.stacked_convs=1",
    "model.head.gn_groups=4",
    "model.quality.hidden=8",
]


def _batch():
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 60.0, 40.0]]),
         "labels": torch.tensor([0, 5]), "pad_shape": (64, 64), "img_shape": (64, 64)},
        {"boxes": torch.tensor([[10.0, 10.0, 26.0, 22.0]]), "labels": torch.tensor([11]),
         "pad_shape": (64, 64), "img_shape": (64, 64)},
    ]  # fmt: skip
    return images, targets


SWEPT_AT_MINI = sorted(n for n in EXPERIMENTS if not n.startswith("t7_") or n == "t7_r50")
CASES = [(name, "tiny widths") for name in sorted(EXPERIMENTS)] + [
    (name, "mini widths") for name in SWEPT_AT_MINI
]


@pytest.mark.parametrize(("name", "widths"), CASES)
def test_experiment_trains_one_step_and_predicts(name, widths):
    """Every experiment builds, takes a finite step and predicts boxes inside the image, at the
    tests' shrunken widths and, for each one `make all-tables PRESET=mini` trains, at the mini
    preset's own (so no row fails hours into a sweep on a width its options do not fit:
    GroupNorm groups, DGQP's input, region bins)."""
    torch.manual_seed(0)
    cfg = resolve(name, "mini", TINY if widths == "tiny widths" else [])
    model = build_model(cfg.model)
    images, targets = _batch()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    losses = train_step(model, model, opt, scaler, images, targets, 0)
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    model.eval()
    with torch.no_grad():
        det = model.predict(images[:1], targets[:1])[0]
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) <= 100
    if len(det["boxes"]):
        assert det["boxes"].min() >= 0 and det["boxes"].max() <= 64


def test_every_row_of_tables_1_to_5_has_an_entry():
    assert len(table(1)) == 6
    # Table 2 prints k = 4, p = 64 twice (once per sweep): 13 rows, 12 distinct entries
    assert {e.row for e in table(2)} >= {f"k = {k}, p = 64" for k in (1, 2, 3, 4, 8, 16)}
    assert {e.row for e in table(2)} >= {f"k = 4, p = {p}" for p in (8, 16, 32, 128, 256)}
    assert len(table(3)) == 9 and len(table(4)) == 7 and len(table(5)) == 8
    assert len(table(6)) == 4


def test_rows_equal_to_the_default_resolve_to_the_same_config():
    default = resolve("gflv2", "mini")
    for name in ("t1_topk_mean", "t2_k4_p64", "t3_distribution", "t4_decomposed", "t5_atss_gflv2"):
        assert resolve(name, "mini") == default
    assert resolve("t2_k0", "mini") == resolve("gflv1", "mini")


def test_retinanet_and_foveabox_baselines_differ_at_mini_only():
    """At mini the two baselines' towers get GroupNorm; every row keeps the preset's geometry,
    the recipe's (object_scale 1), at both scales."""
    baselines = ("t5_retinanet", "t5_foveabox")
    assert resolve("gflv2", "mini").model.object_scale == 1.0
    for name in baselines:
        mini, coco = resolve(name, "mini").model, resolve(name, "coco-1x").model
        assert (mini.head.plain_tower_norm, coco.head.plain_tower_norm) == ("gn", "none")
        assert "at mini: model.head.plain_tower_norm=gn" in EXPERIMENTS[name].describe()
    others = [n for n in EXPERIMENTS if n not in baselines]
    assert all(resolve(n, "mini").model.head.plain_tower_norm == "none" for n in others)
    assert all(resolve(n, "mini").model.object_scale == 1.0 for n in EXPERIMENTS)


@pytest.mark.parametrize("name", ["t5_retinanet_gflv2", "t5_foveabox_gflv2", "t5_fcos_gflv2",
                                  "t5_atss_gflv2"])  # fmt: skip
def test_dgqp_adds_1409_parameters_to_each_transplant(name):
    with_dgqp = resolve(name, "coco-1x", ["model.pretrained="])
    without = apply_overrides(with_dgqp, ["model.quality.kind=none"])
    count = lambda cfg: sum(p.numel() for p in build_model(cfg.model).parameters())  # noqa: E731
    assert count(with_dgqp) - count(without) == 4 * (4 + 1) * 64 + 64 + 64 + 1 == 1409


def test_run_cost_scales_the_step_by_the_experiments_relative_cost():
    from experiments.presets import COSTS, Cost

    cost = Cost(100, 1, 0.2, "hand", seconds_per_run=10.0, relative={"t3_region": 2.0})
    assert cost.run_seconds("t3_region", 100) == 100 * 0.4 + 10
    assert cost.run_seconds("gflv2", 100) == 100 * 0.2 + 10
    assert COSTS["mini"].relative["t3_deformable"] > 5  # measured: DCN sampling is the dearest


def test_a_table_finds_its_rows_in_the_run_folders_record(tmp_path):
    """A run folder that records standing for Table 6's GFLV2 row fills that row, whatever its
    folder is called; the registry is not asked which folder a recorded row lives in."""
    import json

    import pandas as pd

    from experiments.tables import paper_table

    run = tmp_path / "mini" / "custom" / "seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    env = {"preset": "mini", "experiment": "custom", "seed": 0, "rows": ["t6_gflv2"],
           "requested": "custom", "overrides": []}  # fmt: skip
    (run / "env.json").write_text(json.dumps(env))
    (run / "metrics.json").write_text(json.dumps({"AP": 0.3}))
    csv_path, _, _ = paper_table("6", "mini", tmp_path, tmp_path / "results")
    frame = pd.read_csv(csv_path).set_index("experiment")
    assert frame.loc["t6_gflv2", "run"] == "custom" and frame.loc["t6_gflv2", "AP"] == 30.0
    assert frame.loc["t6_gflv1", "seeds"] == 0  # no folder of it: missing, never filled in
