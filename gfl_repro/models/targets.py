"""Per-image training targets from an assigner, apart from the loss.

Legend: B images, P priors over all levels, M gt boxes, C classes (C is the background label).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gfl_repro.models.assigners import IGNORE, atss_assign
from gfl_repro.models.box_coding import Priors, valid_mask

Assigner = Callable[[Tensor, list[int], Tensor, Tensor], Tensor]


@dataclass
class Targets:
    labels: Tensor  # (B, P) long, C for background
    boxes: Tensor  # (B, P, 4) assigned gt box in pixels (zeros for background)
    label_weights: Tensor  # (B, P) float, 0 where the prior is in the batch padding or ignored
    num_pos: Tensor  # (B,) long
    num_classes: int

    @property
    def pos_mask(self) -> Tensor:
        return self.labels < self.num_classes  # (B, P)


def image_targets(
    priors: Priors,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    pad_shape: tuple[int, int],
    num_classes: int,
    assigner: Assigner = atss_assign,
) -> tuple[Tensor, Tensor, Tensor]:
    """One image: (P,) labels, (P, 4) boxes, (P,) label weights.

    A prior the assigner ignores (IGNORE) is labelled background with label weight 0.
    """
    valid = valid_mask(priors, pad_shape)  # (P,)
    assigned = assigner(priors.anchors, priors.num_per_level, gt_boxes, valid)  # (P,)
    pos = assigned >= 0
    labels = torch.full_like(assigned, num_classes)
    labels[pos] = gt_labels[assigned[pos]]
    boxes = torch.zeros_like(priors.anchors)
    boxes[pos] = gt_boxes[assigned[pos]].to(boxes.dtype)
    return labels, boxes, (valid & (assigned != IGNORE)).float()


def batch_targets(
    priors: Priors, targets: list[dict], num_classes: int, assigner: Assigner = atss_assign
) -> Targets:
    per_image = [
        image_targets(priors, t["boxes"], t["labels"], tuple(t["pad_shape"]), num_classes, assigner)
        for t in targets
    ]
    labels, boxes, weights = (torch.stack(x) for x in zip(*per_image, strict=True))
    num_pos = (labels < num_classes).sum(dim=1)
    return Targets(labels, boxes, weights, num_pos, num_classes)
