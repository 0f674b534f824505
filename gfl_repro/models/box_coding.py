"""Priors, box coding, the integral over a general distribution, and box overlaps.

Legend: P priors over all levels, A anchors per location, L levels, N boxes, M gt boxes,
n = reg_max (n + 1 bins).
Boxes are (x1, y1, x2, y2). Distances are (left, top, right, bottom) from a prior's centre.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Priors:
    """Every location of every level, flattened level by level in row-major order, with the
    ``num_anchors`` anchors of a location next to each other (location-major), so a head's
    (B, A * K, H, W) output flattened to (B, H * W * A, K) lines up with them.

    The default is one square anchor per location (side ``anchor_scale * stride``), centred on
    ``(x * stride, y * stride)`` with no half-pixel offset, as mmdetection 2.x's AnchorGenerator
    with ``center_offset=0`` produces for GFL/ATSS.
    """

    points: Tensor  # (P, 2) x, y in pixels, repeated for each anchor of a location
    anchors: Tensor  # (P, 4) xyxy in pixels
    strides: Tensor  # (P,) stride of each prior's level, pixels
    level_sizes: tuple[tuple[int, int], ...]  # (h, w) per level
    level_strides: tuple[int, ...]
    num_anchors: int = 1  # A anchors per location

    @property
    def num_per_level(self) -> list[int]:
        return [h * w * self.num_anchors for h, w in self.level_sizes]

    @property
    def levels(self) -> Tensor:
        """(P,) long: the level index of each prior."""
        device = self.points.device
        counts = torch.tensor(self.num_per_level, device=device)
        return torch.repeat_interleave(torch.arange(len(counts), device=device), counts)


def anchor_shapes(
    anchor_scale: float, ratios: tuple[float, ...], scales_per_octave: int
) -> tuple[Tensor, Tensor]:
    """Widths and heights (A,) of a location's anchors in stride units, A = R * S.

    mmdetection's AnchorGenerator: scales = octave_base_scale * 2^(i / S), h_ratio = sqrt(ratio),
    w_ratio = 1 / h_ratio (ratio = h / w), ordered ratio-major then scale (its ``scale_major``).
    """
    octave = torch.arange(scales_per_octave, dtype=torch.float64) / scales_per_octave
    scales = anchor_scale * 2.0**octave  # (S,)
    h_ratios = torch.tensor(ratios, dtype=torch.float64).sqrt()  # (R,)
    w_ratios = 1.0 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # (A,)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)  # (A,)
    return ws.float(), hs.float()


def make_priors(
    level_sizes: list[tuple[int, int]],
    strides: list[int],
    anchor_scale: float = 8.0,
    device: torch.device | str = "cpu",
    ratios: tuple[float, ...] = (1.0,),
    scales_per_octave: int = 1,
    center_offset: float = 0.0,
) -> Priors:
    """Priors of every level. ``anchor_scale`` is mmdetection's octave_base_scale (8 for GFL and
    ATSS, 4 for RetinaNet with 3 scales per octave and ratios (0.5, 1, 2)); a location's centre is
    ``((x + center_offset) * stride, (y + center_offset) * stride)``: 0 for the anchor
    generators, 0.5 for mmdetection's FCOS and FoveaBox points.
    """
    ws, hs = anchor_shapes(anchor_scale, tuple(ratios), scales_per_octave)
    num_anchors = ws.numel()
    wh = torch.stack([ws, hs], dim=1).to(device)  # (A, 2) stride units
    points, strides_per_prior = [], []
    for (h, w), s in zip(level_sizes, strides, strict=True):
        ys, xs = torch.meshgrid(
            (torch.arange(h, device=device, dtype=torch.float32) + center_offset) * s,
            (torch.arange(w, device=device, dtype=torch.float32) + center_offset) * s,
            indexing="ij",
        )
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))  # (h*w, 2)
        strides_per_prior.append(torch.full((h * w,), float(s), device=device))
    pts = torch.cat(points).repeat_interleave(num_anchors, dim=0)  # (P, 2), P = A * locations
    stride = torch.cat(strides_per_prior).repeat_interleave(num_anchors)  # (P,)
    half = 0.5 * (stride[:, None] * wh.repeat(pts.shape[0] // num_anchors, 1))  # (P, 2)
    anchors = torch.cat([pts - half, pts + half], dim=1)  # (P, 4)
    sizes = tuple((int(h), int(w)) for h, w in level_sizes)
    return Priors(pts, anchors, stride, sizes, tuple(int(s) for s in strides), num_anchors)


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
        masks.append(m.reshape(-1).repeat_interleave(priors.num_anchors))  # (h*w*A,)
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


def bbox2delta(anchors: Tensor, boxes: Tensor, stds: tuple[float, ...] = (1.0,) * 4) -> Tensor:
    """mmdetection's DeltaXYWHBBoxCoder.encode (means 0): (N, 4) anchors and boxes -> (N, 4)
    (dx, dy, dw, dh) = ((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph)) / stds.
    """
    pwh = anchors[:, 2:] - anchors[:, :2]  # (N, 2)
    pxy = (anchors[:, :2] + anchors[:, 2:]) / 2
    gwh = boxes[:, 2:] - boxes[:, :2]
    gxy = (boxes[:, :2] + boxes[:, 2:]) / 2
    deltas = torch.cat([(gxy - pxy) / pwh, torch.log(gwh / pwh)], dim=1)  # (N, 4)
    return deltas / deltas.new_tensor(stds)


def delta2bbox(
    anchors: Tensor,
    deltas: Tensor,
    stds: tuple[float, ...] = (1.0,) * 4,
    max_shape: tuple[int, int] | None = None,
    wh_ratio_clip: float = 16 / 1000,
) -> Tensor:
    """mmdetection's DeltaXYWHBBoxCoder.decode (means 0): (N, 4) anchors and deltas -> (N, 4)
    boxes; dw, dh are clamped at |log(wh_ratio_clip)| and boxes optionally clipped to (h, w).
    """
    d = deltas * deltas.new_tensor(stds)  # (N, 4)
    max_ratio = abs(math.log(wh_ratio_clip))
    dwh = d[:, 2:].clamp(min=-max_ratio, max=max_ratio)
    pwh = anchors[:, 2:] - anchors[:, :2]  # (N, 2)
    pxy = (anchors[:, :2] + anchors[:, 2:]) / 2
    gxy = pxy + pwh * d[:, :2]
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh / 2, gxy + gwh / 2], dim=1)  # (N, 4)
    if max_shape is not None:
        limit = boxes.new_tensor([max_shape[1], max_shape[0]] * 2)
        boxes = torch.min(boxes.clamp(min=0), limit)
    return boxes
