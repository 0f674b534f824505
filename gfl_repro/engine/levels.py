"""Where a preset's training objects land in the pyramid: the positives its own assigner gives each
level over the training set, with the model's priors at the training scale (no flip).

``gfl-repro levels --preset mini`` prints them; a level without positives is never trained.

Legend: P priors, M gt boxes of an image, L levels.
"""

from collections import Counter

import numpy as np
import torch

from gfl_repro.build import build_model
from gfl_repro.config import Config
from gfl_repro.data.coco import CocoDetection
from gfl_repro.data.transforms import rescale_size
from gfl_repro.engine.data import dataset_paths
from gfl_repro.models.box_coding import Priors, valid_mask
from gfl_repro.models.detector import Detector


def level_priors(model: Detector, height: int, width: int) -> Priors:
    """The model's priors for a padded input of ``height`` x ``width`` (level sizes from a forward
    of the backbone and neck on zeros, so they are the model's own)."""
    with torch.no_grad():
        feats = model.neck(model.backbone(torch.zeros(1, 3, height, width)))
    return model.priors_at(tuple(tuple(f.shape[-2:]) for f in feats), torch.device("cpu"))


def positives_per_level(cfg: Config, limit: int | None = None) -> dict:
    """Positives per level, gt boxes by the level holding most of their positives, and gt boxes
    without any positive, over the first ``limit`` (default all) kept training images."""
    model = build_model(cfg.model).eval()
    ann, images = dataset_paths(cfg.data, "train")
    dataset = CocoDetection(ann, images, filter_empty=True)  # annotations only; no image is read
    records = dataset.records[:limit] if limit else dataset.records
    cache: dict[tuple[int, int], Priors] = {}
    positives, majority, unassigned, total = Counter(), Counter(), 0, 0
    for rec in records:
        new_w, new_h = rescale_size(rec.width, rec.height, tuple(cfg.data.train_scale))
        pad = (-(-new_h // 32) * 32, -(-new_w // 32) * 32)
        if pad not in cache:
            cache[pad] = level_priors(model, *pad)
        priors = cache[pad]
        factor = np.array([new_w / rec.width, new_h / rec.height] * 2, np.float32)
        boxes = torch.from_numpy(rec.boxes * factor)  # (M, 4) at the training scale
        valid = valid_mask(priors, (new_h, new_w))  # (P,)
        assigned = model.assigner(priors.anchors, priors.num_per_level, boxes, valid)  # (P,)
        level = torch.repeat_interleave(
            torch.arange(len(priors.num_per_level)), torch.tensor(priors.num_per_level)
        )  # (P,)
        hit = assigned >= 0
        positives.update(level[hit].tolist())
        for j in range(len(boxes)):
            mine = level[assigned == j]
            if len(mine) == 0:
                unassigned += 1
            else:
                majority[int(torch.mode(mine).values)] += 1
        total += len(boxes)
    names = [f"P{3 + i}" for i in range(len(model.strides))]
    return {
        "images": len(records),
        "gt_boxes": total,
        "positives": {n: positives[i] for i, n in enumerate(names)},
        "gt_by_majority_level": {n: majority[i] for i, n in enumerate(names)},
        "gt_without_positive": unassigned,
    }


def format_levels(stats: dict) -> str:
    lines = [f"{stats['images']} training images, {stats['gt_boxes']} gt boxes"]
    lines.append("level  positives  gt boxes (majority level)")
    for name, n in stats["positives"].items():
        lines.append(f"{name:5}  {n:9d}  {stats['gt_by_majority_level'][name]:8d}")
    lines.append(f"gt boxes without a positive: {stats['gt_without_positive']}")
    return "\n".join(lines)
