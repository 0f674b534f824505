"""The losses as pure functions returning per-element losses (summed by the caller): GFL's, and
the focal loss and centerness of the RetinaNet / FCOS / ATSS / FoveaBox baselines (their L1 and
smooth L1 are torch's ``F.l1_loss`` / ``F.smooth_l1_loss``, the same formulas as mmdetection's).

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


def sigmoid_focal_loss(
    logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal loss (Lin et al., ICCV 2017) on logits: (N, C) logits, (N,) class index with C for
    background -> (N,) summed over classes.

    Per (sample, class): -alpha (1 - p)^gamma log p for the label's class, -(1 - alpha) p^gamma
    log(1 - p) for the others, as mmdetection's sigmoid_focal_loss.
    """
    logits = logits.float()
    num_classes = logits.shape[1]
    target = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(logits.dtype)  # (N, C)
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (N, C)
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t).pow(gamma) * ce).sum(dim=1)  # (N,)


def centerness_target(points: Tensor, boxes: Tensor) -> Tensor:
    """FCOS centerness of (N, 2) points inside their (N, 4) boxes -> (N,) in (0, 1]:
    sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)). Points must lie strictly inside.
    """
    lr = torch.stack([points[:, 0] - boxes[:, 0], boxes[:, 2] - points[:, 0]], dim=1)  # (N, 2)
    tb = torch.stack([points[:, 1] - boxes[:, 1], boxes[:, 3] - points[:, 1]], dim=1)  # (N, 2)
    ratio = (lr.min(dim=1).values / lr.max(dim=1).values) * (
        tb.min(dim=1).values / tb.max(dim=1).values
    )
    return ratio.sqrt()


def reduce_mean(value: Tensor) -> Tensor:
    """Mean of a tensor over the processes of a distributed run (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value.div_(dist.get_world_size()), op=dist.ReduceOp.SUM)
    return value
