"""Priors, box coding, the integral over a general distribution, and box overlaps.

Legend: P priors over all levels, L levels, N boxes, M gt boxes, n = reg_max (n + 1 bins).
Boxes are (x1, y1, x2, y2). Distances are (left, top, right, bottom) from a prior's centre.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Priors:
    """Every location of every level, flattened level by level in row-major order.

    One square anchor per location (side ``anchor_scale * stride``), centred on the location
    ``(x * stride, y * stride)`` with no half-pixel offset, as mmdetection 2.x's
    AnchorGenerator with ``center_offset=0`` produces for GFL/ATSS.
    """

    points: Tensor  # (P, 2) x, y in pixels
    anchors: Tensor  # (P, 4) xyxy in pixels
    strides: Tensor  # (P,) stride of each prior's level, pixels
    level_sizes: tuple[tuple[int, int], ...]  # (h, w) per level
    level_strides: tuple[int, ...]

    @property
    def num_per_level(self) -> list[int]:
        return [h * w for h, w in self.level_sizes]


def make_priors(
    level_sizes: list[tuple[int, int]],
    strides: list[int],
    anchor_scale: float = 8.0,
    device: torch.device | str = "cpu",
) -> Priors:
    points, strides_per_prior = [], []
    for (h, w), s in zip(level_sizes, strides, strict=True):
        ys, xs = torch.meshgrid(
            torch.arange(h, device=device, dtype=torch.float32) * s,
            torch.arange(w, device=device, dtype=torch.float32) * s,
            indexing="ij",
        )
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))  # (h*w, 2)
        strides_per_prior.append(torch.full((h * w,), float(s), device=device))
    pts = torch.cat(points)  # (P, 2)
    stride = torch.cat(strides_per_prior)  # (P,)
    half = 0.5 * anchor_scale * stride[:, None]  # (P, 1)
    anchors = torch.cat([pts - half, pts + half], dim=1)  # (P, 4)
    sizes = tuple((int(h), int(w)) for h, w in level_sizes)
    return Priors(pts, anchors, stride, sizes, tuple(int(s) for s in strides))


def valid_mask(priors: Priors, pad_shape: tuple[int, int]) -> Tensor:
    """(P,) bool: the prior lies inside the image's own padded area.

    mmdetection's valid_flags: on a level of stride s, columns < ceil(pad_w / s) and rows
    < ceil(pad_h / s) are valid; locations that exist only because of batch padding are not.
    """
    masks = []
    for (h, w), s in zip(priors.level_sizes, priors.level_strides, strict=True):
        vh = min(-(-pad_shape[0] // s), h)
        vw = min(-(-pad_shape[1] // s), w)
        m = torch.zeros(h, w, dtype=torch.bool, device=priors.points.device)
        m[:vh, :vw] = True
        masks.append(m.reshape(-1))
    return torch.cat(masks)  # (P,)


def integral(reg_logits: Tensor, reg_max: int) -> Tensor:
    """Expected value of each side's distribution: softmax over n + 1 bins dot [0, 1, ..., n].

    reg_logits: (..., 4 * (n + 1)) -> (..., 4) distances in bin (stride) units.
    """
    shape = reg_logits.shape[:-1]
    prob = F.softmax(reg_logits.reshape(*shape, 4, reg_max + 1), dim=-1)  # (..., 4, n+1)
    project = torch.arange(reg_max + 1, dtype=prob.dtype, device=prob.device)
    return prob @ project  # (..., 4)


def distance2bbox(points: Tensor, dist: Tensor, max_shape: tuple[int, int] | None = None) -> Tensor:
    """(N, 2) centres and (N, 4) ltrb distances -> (N, 4) boxes, optionally clipped to (h, w)."""
    x1 = points[:, 0] - dist[:, 0]
    y1 = points[:, 1] - dist[:, 1]
    x2 = points[:, 0] + dist[:, 2]
    y2 = points[:, 1] + dist[:, 3]
    if max_shape is not None:
        x1, x2 = x1.clamp(0, max_shape[1]), x2.clamp(0, max_shape[1])
        y1, y2 = y1.clamp(0, max_shape[0]), y2.clamp(0, max_shape[0])
    return torch.stack([x1, y1, x2, y2], dim=-1)


def bbox2distance(points: Tensor, boxes: Tensor, reg_max: int, eps: float = 0.1) -> Tensor:
    """(N, 2) centres and (N, 4) boxes -> (N, 4) ltrb distances clamped to [0, n - 0.1]."""
    left = points[:, 0] - boxes[:, 0]
    top = points[:, 1] - boxes[:, 1]
    right = boxes[:, 2] - points[:, 0]
    bottom = boxes[:, 3] - points[:, 1]
    return torch.stack([left, top, right, bottom], dim=-1).clamp(0, reg_max - eps)


def box_area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-6) -> Tensor:
    """Pairwise IoU (N, 4) x (M, 4) -> (N, M); the union is clamped at eps as mmdetection's."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter / union.clamp(min=eps)


def aligned_iou(boxes1: Tensor, boxes2: Tensor, giou: bool = False, eps: float = 1e-6) -> Tensor:
    """IoU (or GIoU) of row i with row i: (N, 4), (N, 4) -> (N,)."""
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = (box_area(boxes1) + box_area(boxes2) - inter).clamp(min=eps)
    iou = inter / union
    if not giou:
        return iou
    enclose_wh = (
        torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])
    ).clamp(min=0)
    enclose = (enclose_wh[:, 0] * enclose_wh[:, 1]).clamp(min=eps)
    return iou - (enclose - union) / enclose
