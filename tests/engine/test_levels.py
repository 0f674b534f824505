"""Positives per pyramid level with the mini preset's geometry (the recipe's, object_scale 1: GFL
anchors 64 * 2**l px on P3..P7) and a scaled one (object_scale 0.4: 25.6 * 2**l px), on
hand-placed boxes whose levels are worked out in the comments."""

import dataclasses
import json

from experiments.presets import preset
from gfl_repro.build import build_model
from gfl_repro.engine.levels import format_levels, positives_per_level


def _config(tmp_path, boxes, object_scale=None):
    images = [{"id": i + 1, "width": 320, "height": 320, "file_name": f"{i}.jpg"}
              for i in range(len(boxes))]  # fmt: skip
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": b, "area": b[2] * b[3],
             "iscrowd": 0} for i, b in enumerate(boxes)]  # fmt: skip
    (tmp_path / "annotations").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "annotations" / "train.json").write_text(json.dumps(coco))
    cfg = preset("mini")
    data = dataclasses.replace(
        cfg.data, dataset="custom", root=str(tmp_path), train_ann="annotations/train.json",
        train_images="images",
    )  # fmt: skip
    model = cfg.model
    if object_scale is not None:
        model = dataclasses.replace(model, object_scale=object_scale)
    return dataclasses.replace(cfg, data=data, model=model)


def test_mini_geometry_is_the_recipes():
    assert build_model(preset("mini").model).anchor_scale == 8.0


def test_recipe_geometry_puts_the_largest_object_on_p5(tmp_path):
    # A 300 px box [10, 310]^2: P5's 256 px anchor centred at (144, 144) lies inside it, IoU
    # 256^2 / 300^2 = 0.73; P6's best (512 px at (160, 160)) has 300^2 / 512^2 = 0.34, P7's
    # 300^2 / 1024^2 = 0.09, P4's <= 128^2 / 300^2 = 0.18, P3's <= 0.05. ATSS's threshold (mean +
    # std of the 45 candidates' IoUs) lies above 0.34, so only P5's anchors are positives: on
    # 320-px images P6 and P7 get none, as on COCO's small images.
    stats = positives_per_level(_config(tmp_path, [[10.0, 10.0, 300.0, 300.0]]))
    assert stats["positives"]["P5"] >= 1
    assert stats["positives"]["P5"] == sum(stats["positives"].values())
    assert stats["gt_without_positive"] == 0


def test_scaled_geometry_lets_the_largest_object_reach_p7(tmp_path):
    # A 300 px box centred in the image: the P7 anchor at (128, 128), side 409.6, holds it with
    # IoU 300^2 / 409.6^2 = 0.54, above ATSS's mean + std of its 45 candidates (about 0.37; the
    # 9 on P3..P5 have IoU 0.007, 0.03, 0.12). A 12 px box: only P3's 25.6 px anchors reach a
    # useful IoU (0.22; P4 0.05).
    cfg = _config(tmp_path, [[10.0, 10.0, 300.0, 300.0], [100.0, 100.0, 12.0, 12.0]], 0.4)
    stats = positives_per_level(cfg)
    assert stats["images"] == 2 and stats["gt_boxes"] == 2
    assert stats["positives"]["P7"] >= 1
    assert stats["gt_without_positive"] == 0
    small = positives_per_level(_config(tmp_path / "s", [[100.0, 100.0, 12.0, 12.0]], 0.4))
    assert small["positives"]["P3"] >= 1
    assert sum(small["positives"].values()) == small["positives"]["P3"]
    assert "P7" in format_levels(stats)


def test_object_scale_scales_fcos_and_foveabox_ranges():
    from gfl_repro.build import build_assigner, build_head
    from gfl_repro.config import ModelConfig

    fcos = build_assigner(ModelConfig(detector="fcos", object_scale=0.5))
    assert fcos.keywords["regress_ranges"][:2] == ((-0.5, 32.0), (32.0, 64.0))
    fovea = ModelConfig(detector="foveabox", object_scale=0.5)
    assert build_assigner(fovea).keywords["scale_ranges"][0] == (0.5, 32.0)
    head = dataclasses.replace(fovea.head, kind="native")
    native = dataclasses.replace(
        fovea, head=head, quality=dataclasses.replace(fovea.quality, kind="none")
    )
    assert build_head(native).base_edges == (8.0, 16.0, 32.0, 64.0, 128.0)
