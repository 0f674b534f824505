"""The GFL losses as pure functions returning per-element losses (summed by the caller).

Legend: N samples (locations or positives), C classes, n = reg_max (n + 1 bins).
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from gfl_repro.models.box_coding import aligned_iou


def quality_focal_loss(scores: Tensor, labels: Tensor, iou: Tensor, beta: float = 2.0) -> Tensor:
    """QFL on probabilities (the head already outputs J in [0, 1]).

    scores: (N, C) J; labels: (N,) class index, C for background; iou: (N,) the soft target at
    the label's class (ignored for background). Returns (N,) the loss summed over classes.
    Every (location, class) is a negative, BCE(J, 0) * J^beta, except a positive's own class,
    BCE(J, IoU) * |IoU - J|^beta. torch's binary_cross_entropy clamps its logs at -100.
    """
    scores = scores.float()
    loss = F.binary_cross_entropy(scores, torch.zeros_like(scores), reduction="none")
    loss = loss * scores.pow(beta)  # (N, C)
    pos = torch.nonzero(labels < scores.shape[1]).squeeze(1)  # (N+,)
    if pos.numel():
        cls = labels[pos]
        p = scores[pos, cls]  # (N+,)
        target = iou[pos].to(p.dtype)
        pos_loss = F.binary_cross_entropy(p, target, reduction="none") * (target - p).abs().pow(
            beta
        )
        loss = loss.index_put((pos, cls), pos_loss)
    return loss.sum(dim=1)  # (N,)


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """DFL: (N, n + 1) logits, (N,) continuous targets in [0, n - 0.1] (bin units) -> (N,).

    Cross-entropy towards the two bins around the target, weighted by the distance to the
    other one, so the expected value of a perfect distribution is the target itself.
    """
    left = target.long()  # floor, targets are >= 0
    right = left + 1
    w_left = right.float() - target
    w_right = target - left.float()
    return (
        F.cross_entropy(logits, left, reduction="none") * w_left
        + F.cross_entropy(logits, right, reduction="none") * w_right
    )


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """1 - GIoU of aligned boxes: (N, 4), (N, 4) -> (N,)."""
    return 1 - aligned_iou(pred, target, giou=True, eps=eps)


def reduce_mean(value: Tensor) -> Tensor:
    """Mean of a tensor over the processes of a distributed run (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value.div_(dist.get_world_size()), op=dist.ReduceOp.SUM)
    return value
