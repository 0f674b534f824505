"""Label assigners: one image's priors against its ground truth.

Legend: P priors over all levels, V valid priors, M gt boxes, K candidates per gt.

An assigner is a plain callable ``(anchors (P, 4), num_per_level, gt_boxes (M, 4), valid (P,))
-> (P,) long`` giving the index of the assigned gt for each prior, or -1 for background.
"""

import torch
from torch import Tensor

from gfl_repro.models.box_coding import box_iou


def atss_assign(
    anchors: Tensor,
    num_per_level: list[int],
    gt_boxes: Tensor,
    valid: Tensor,
    topk: int = 9,
) -> Tensor:
    """Adaptive Training Sample Selection (Zhang et al., CVPR 2020), as in mmdetection 2.x.

    Per level the ``topk`` valid anchors whose centres are nearest the gt centre are candidates;
    the IoU threshold of a gt is the mean + std (n - 1 denominator) of its candidates' IoUs; a
    candidate is positive if its IoU reaches the threshold and its centre lies inside the gt
    (every side distance > 0.01). An anchor positive for several gts takes the highest-IoU one.
    Only valid anchors take part, so padding changes neither the candidates nor the statistics.
    """
    assigned = anchors.new_full((anchors.shape[0],), -1, dtype=torch.long)  # (P,)
    num_gt = gt_boxes.shape[0]
    valid_idx = torch.nonzero(valid).squeeze(1)  # (V,)
    if num_gt == 0 or valid_idx.numel() == 0:
        return assigned
    level_of = torch.repeat_interleave(
        torch.arange(len(num_per_level), device=anchors.device),
        torch.tensor(num_per_level, device=anchors.device),
    )[valid_idx]  # (V,)
    boxes = anchors[valid_idx]  # (V, 4)
    overlaps = box_iou(boxes, gt_boxes)  # (V, M)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (V, 2)
    gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (M, 2)
    distances = torch.cdist(centres, gt_centres)  # (V, M)

    candidates = []
    for level in range(len(num_per_level)):
        in_level = torch.nonzero(level_of == level).squeeze(1)  # (V_l,)
        if in_level.numel() == 0:
            continue
        k = min(topk, in_level.numel())
        _, nearest = distances[in_level].topk(k, dim=0, largest=False)  # (k, M)
        candidates.append(in_level[nearest])  # (k, M) indices into V
    candidates = torch.cat(candidates)  # (K, M)
    gt_cols = torch.arange(num_gt, device=anchors.device)
    cand_iou = overlaps[candidates, gt_cols]  # (K, M)
    threshold = cand_iou.mean(0) + cand_iou.std(0)  # (M,)
    is_pos = cand_iou >= threshold[None, :]  # (K, M)

    cand_centres = centres[candidates]  # (K, M, 2)
    side_dist = torch.cat(
        [cand_centres - gt_boxes[None, :, :2], gt_boxes[None, :, 2:] - cand_centres], dim=2
    )  # (K, M, 4)
    is_pos &= side_dist.min(dim=2).values > 0.01

    # Keep the IoU only where (anchor, gt) is a positive pair, then the best gt per anchor.
    masked = torch.full_like(overlaps, -torch.inf)  # (V, M)
    pos_rows, pos_cols = candidates[is_pos], gt_cols.expand_as(candidates)[is_pos]
    masked[pos_rows, pos_cols] = overlaps[pos_rows, pos_cols]
    best_iou, best_gt = masked.max(dim=1)  # (V,)
    assigned[valid_idx] = torch.where(best_iou > -torch.inf, best_gt, -1)
    return assigned
