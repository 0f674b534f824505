"""Label assigners: one image's priors against its ground truth.

Legend: P priors over all levels, V valid priors, M gt boxes, K candidates per gt.

An assigner is a plain callable ``(anchors (P, 4), num_per_level, gt_boxes (M, 4), valid (P,))
-> (P,) long`` giving the index of the assigned gt for each prior, -1 for background, or
``IGNORE`` (-2) for a prior that is neither (no classification loss). Parameters of an assigner
are bound with ``functools.partial``. The point-based assigners use the anchors' centres.
"""

import torch
from torch import Tensor

from gfl_repro.models.box_coding import box_area, box_iou

IGNORE = -2

FCOS_REGRESS_RANGES = ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, 1e8))
FOVEA_SCALE_RANGES = ((1.0, 64.0), (32.0, 128.0), (64.0, 256.0), (128.0, 512.0), (256.0, 2048.0))


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
    # IoUs of the candidate pairs only (no (V, M) matrix): the same arithmetic as box_iou.
    cand_iou = _candidate_iou(boxes[candidates], gt_boxes)  # (K, M)
    threshold = cand_iou.mean(0) + cand_iou.std(0)  # (M,)
    is_pos = cand_iou >= threshold[None, :]  # (K, M)

    cand_centres = centres[candidates]  # (K, M, 2)
    side_dist = torch.cat(
        [cand_centres - gt_boxes[None, :, :2], gt_boxes[None, :, 2:] - cand_centres], dim=2
    )  # (K, M, 4)
    is_pos &= side_dist.min(dim=2).values > 0.01

    gt_cols = torch.arange(num_gt, device=anchors.device).expand_as(candidates)  # (K, M)
    assigned[valid_idx] = _best_gt(
        candidates[is_pos], gt_cols[is_pos], cand_iou[is_pos], valid_idx.numel()
    )
    return assigned


def _candidate_iou(cand_boxes: Tensor, gt_boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """(K, M, 4) candidate boxes of each gt and (M, 4) gts -> (K, M) IoU, bit for bit box_iou's."""
    lt = torch.max(cand_boxes[..., :2], gt_boxes[None, :, :2])  # (K, M, 2)
    rb = torch.min(cand_boxes[..., 2:], gt_boxes[None, :, 2:])  # (K, M, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (K, M)
    union = box_area(cand_boxes) + box_area(gt_boxes)[None, :] - inter
    return inter / union.clamp(min=eps)


def _best_gt(rows: Tensor, cols: Tensor, iou: Tensor, num_rows: int) -> Tensor:
    """Positive pairs (anchor row, gt col, IoU), each (N,) -> (V,) the gt of highest IoU per
    anchor, the lowest gt index on ties (as a max over the gts would pick), -1 for none."""
    best = iou.new_full((num_rows,), -torch.inf).scatter_reduce(0, rows, iou, "amax")  # (V,)
    is_best = iou == best[rows]  # (N,)
    none = torch.iinfo(torch.long).max
    gt = cols.new_full((num_rows,), none).scatter_reduce(0, rows[is_best], cols[is_best], "amin")
    return torch.where(gt < none, gt, -1)  # (V,)


def max_iou_assign(
    anchors: Tensor,
    num_per_level: list[int],
    gt_boxes: Tensor,
    valid: Tensor,
    pos_iou_thr: float = 0.5,
    neg_iou_thr: float = 0.4,
    min_pos_iou: float = 0.0,
) -> Tensor:
    """mmdetection's MaxIoUAssigner as RetinaNet uses it (gt_max_assign_all, no ignore boxes).

    A valid anchor whose best IoU is >= pos_iou_thr takes that gt, < neg_iou_thr is background,
    in between is IGNORE. Then every gt takes all the anchors that reach its own highest IoU
    (ties included) if that IoU is >= min_pos_iou, over-riding the above; gts are visited in
    order so a later gt wins a shared anchor. Unlike mmdetection, a gt that overlaps no anchor
    at all (its highest IoU is 0) takes nothing rather than every anchor.
    """
    assigned = anchors.new_full((anchors.shape[0],), -1, dtype=torch.long)  # (P,)
    valid_idx = torch.nonzero(valid).squeeze(1)  # (V,)
    num_gt = gt_boxes.shape[0]
    if num_gt == 0 or valid_idx.numel() == 0:
        return assigned
    overlaps = box_iou(anchors[valid_idx], gt_boxes)  # (V, M)
    best_iou, best_gt = overlaps.max(dim=1)  # (V,)
    out = torch.full_like(best_gt, IGNORE)
    out[best_iou < neg_iou_thr] = -1
    out = torch.where(best_iou >= pos_iou_thr, best_gt, out)

    gt_best = overlaps.max(dim=0).values  # (M,)
    eligible = (gt_best >= min_pos_iou) & (gt_best > 0)  # (M,)
    is_gt_best = (overlaps == gt_best[None, :]) & eligible[None, :]  # (V, M)
    order = torch.arange(1, num_gt + 1, device=anchors.device)
    last = (is_gt_best.long() * order).max(dim=1).values  # (V,) 1 + last such gt, 0 if none
    assigned[valid_idx] = torch.where(last > 0, last - 1, out)
    return assigned


def _level_index(num_per_level: list[int], device: torch.device) -> Tensor:
    """(P,) long: the level of each prior."""
    counts = torch.tensor(num_per_level, device=device)
    return torch.repeat_interleave(torch.arange(len(num_per_level), device=device), counts)


def _check_levels(num_per_level: list[int], **per_level: tuple) -> None:
    for name, values in per_level.items():
        if len(values) != len(num_per_level):
            raise ValueError(f"{name} has {len(values)} levels, the priors {len(num_per_level)}")


def _side_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """(P, 2) points and (M, 4) or (P, M, 4) boxes -> (P, M, 4) left, top, right, bottom."""
    return torch.cat([points[:, None] - boxes[..., :2], boxes[..., 2:] - points[:, None]], dim=-1)


def _smallest_area(candidate: Tensor, gt_boxes: Tensor) -> Tensor:
    """(P, M) bool -> (P,) the candidate gt of smallest area (lowest index on ties), or -1."""
    area = box_area(gt_boxes)[None, :].expand_as(candidate)  # (P, M)
    cost = torch.where(candidate, area, torch.full_like(area, torch.inf))
    min_area, best = cost.min(dim=1)  # (P,)
    return torch.where(min_area < torch.inf, best, -1)


def fcos_assign(
    anchors: Tensor,
    num_per_level: list[int],
    gt_boxes: Tensor,
    valid: Tensor,
    strides: tuple[int, ...] = (8, 16, 32, 64, 128),
    regress_ranges: tuple[tuple[float, float], ...] = FCOS_REGRESS_RANGES,
    center_sampling: bool = True,
    radius: float = 1.5,
) -> Tensor:
    """FCOS (Tian et al., ICCV 2019) with mmdetection 2.x's centre sampling, on anchor centres.

    A point is a candidate of a gt if it lies strictly inside the gt or, with center_sampling,
    strictly inside the gt's centre box (centre +- radius * the level's stride, clipped to the
    gt), and its largest side distance to the gt lies in its level's regress range (both ends
    inclusive). Among candidates the gt of smallest area wins. ``strides`` and
    ``regress_ranges`` are per level, in the order of ``num_per_level``.
    """
    _check_levels(num_per_level, strides=strides, regress_ranges=regress_ranges)
    if gt_boxes.shape[0] == 0 or not valid.any():
        return anchors.new_full((anchors.shape[0],), -1, dtype=torch.long)
    level = _level_index(num_per_level, anchors.device)  # (P,)
    points = (anchors[:, :2] + anchors[:, 2:]) / 2  # (P, 2)
    ranges = anchors.new_tensor(regress_ranges)[level]  # (P, 2)
    sides = _side_distances(points, gt_boxes)  # (P, M, 4)
    if center_sampling:
        centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (M, 2)
        r = radius * anchors.new_tensor(strides)[level][:, None, None]  # (P, 1, 1)
        region = torch.cat(
            [torch.max(centres - r, gt_boxes[:, :2]), torch.min(centres + r, gt_boxes[:, 2:])],
            dim=-1,
        )  # (P, M, 4)
        inside = _side_distances(points, region).min(dim=-1).values > 0  # (P, M)
    else:
        inside = sides.min(dim=-1).values > 0  # (P, M)
    reach = sides.max(dim=-1).values  # (P, M)
    in_range = (reach >= ranges[:, :1]) & (reach <= ranges[:, 1:])  # (P, M)
    return _smallest_area(inside & in_range & valid[:, None], gt_boxes)


def fovea_assign(
    anchors: Tensor,
    num_per_level: list[int],
    gt_boxes: Tensor,
    valid: Tensor,
    scale_ranges: tuple[tuple[float, float], ...] = FOVEA_SCALE_RANGES,
    sigma: float = 0.4,
) -> Tensor:
    """FoveaBox (Kong et al., TIP 2020) as mmdetection 2.x assigns it, on anchor centres.

    A gt goes to every level whose scale range holds sqrt(w * h) (both ends inclusive); there its
    positives are the points inside its fovea, the centre box (cx +- sigma * w / 2,
    cy +- sigma * h / 2), edges included. Overlaps go to the smallest gt (lowest index on ties).
    mmdetection selects feature cells whose centres (x + 0.5) * stride lie in the fovea, so
    build the priors with ``center_offset=0.5`` to match it; it also clamps the cell range to the
    map, which gives a fovea lying wholly between the border and the first cell centre that
    border cell; here such a gt has no positive on that level.
    """
    _check_levels(num_per_level, scale_ranges=scale_ranges)
    if gt_boxes.shape[0] == 0 or not valid.any():
        return anchors.new_full((anchors.shape[0],), -1, dtype=torch.long)
    level = _level_index(num_per_level, anchors.device)  # (P,)
    points = (anchors[:, :2] + anchors[:, 2:]) / 2  # (P, 2)
    ranges = anchors.new_tensor(scale_ranges)[level]  # (P, 2)
    scale = box_area(gt_boxes).sqrt()[None, :]  # (1, M)
    in_range = (scale >= ranges[:, :1]) & (scale <= ranges[:, 1:])  # (P, M)
    centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (M, 2)
    half = sigma * (gt_boxes[:, 2:] - gt_boxes[:, :2]) / 2  # (M, 2)
    offset = (points[:, None, :] - centres[None, :, :]).abs()  # (P, M, 2)
    in_fovea = (offset <= half[None, :, :]).all(dim=-1)  # (P, M)
    return _smallest_area(in_fovea & in_range & valid[:, None], gt_boxes)
