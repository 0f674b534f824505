"""From dense scores and boxes of one image to its final detections.

Legend: P priors over all levels, Q kept priors, C classes, D candidates / detections.
"""

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class InferenceConfig:
    nms_pre: int = 1000  # per level, by max-class score, before any threshold
    score_thr: float = 0.05
    iou_thr: float = 0.6
    max_per_img: int = 100


def topk_per_level(scores: Tensor, num_per_level: list[int], nms_pre: int) -> Tensor:
    """Indices (Q,) of the ``nms_pre`` priors of highest max-class score in each level."""
    keep, start = [], 0
    max_scores = scores.max(dim=1).values  # (P,)
    for n in num_per_level:
        level = max_scores[start : start + n]
        if nms_pre > 0 and n > nms_pre:
            keep.append(level.topk(nms_pre).indices + start)
        else:
            keep.append(torch.arange(start, start + n, device=scores.device))
        start += n
    return torch.cat(keep)  # (Q,)


def multiclass_nms(
    boxes: Tensor, scores: Tensor, cfg: InferenceConfig, return_index: bool = False
) -> tuple[Tensor, ...]:
    """Every (box, class) pair above the threshold is a candidate, so a box may be detected
    under several classes; class-aware NMS; the ``max_per_img`` best.

    boxes (Q, 4), scores (Q, C) -> boxes (D, 4), scores (D,), labels (D,), and with
    ``return_index`` also the row (D,) of ``boxes`` each detection came from (which prior an
    analysis of the head's outputs should look at).
    """
    box_idx, labels = torch.nonzero(scores > cfg.score_thr, as_tuple=True)  # (D,), (D,)
    cand_boxes = boxes[box_idx]  # (D, 4)
    cand_scores = scores[box_idx, labels]  # (D,)
    keep = batched_nms(cand_boxes, cand_scores, labels, cfg.iou_thr)[: cfg.max_per_img]
    if return_index:
        return cand_boxes[keep], cand_scores[keep], labels[keep], box_idx[keep]
    return cand_boxes[keep], cand_scores[keep], labels[keep]
