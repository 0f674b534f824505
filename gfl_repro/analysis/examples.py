"""Figs. 1c/d and 7: val images with what a trained run's model predicts on them.

Legend: P priors over all levels, Q priors kept per level, D candidates (a kept prior and a class
above the score threshold, before NMS), S detections after NMS, M gt boxes, C classes,
n = reg_max (n + 1 bins).

These figures need per-image outputs that no run folder holds, so, as ``lqe.run_lqe`` does, they
rebuild the run's model from its resolved config and latest checkpoint and run it over the first
val images, loaded and batched as evaluation does. Boxes are in pixels of the resized image the
network saw (the frame of a val batch's gt boxes), so a side distribution's bin times its stride is
a distance on the drawn image.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch import Tensor  # noqa: E402

from gfl_repro.analysis.figures import save  # noqa: E402
from gfl_repro.config import Config  # noqa: E402
from gfl_repro.data.coco import CocoDetection  # noqa: E402
from gfl_repro.data.transforms import MEAN, STD  # noqa: E402
from gfl_repro.engine import lqe  # noqa: E402
from gfl_repro.engine.data import val_loader  # noqa: E402
from gfl_repro.engine.distributed import DistInfo  # noqa: E402
from gfl_repro.engine.lqe import SIDES, _to  # noqa: E402
from gfl_repro.models.box_coding import Priors, box_iou, distance2bbox  # noqa: E402
from gfl_repro.models.detector import Detector  # noqa: E402
from gfl_repro.models.heads.gfl import GFLHead, HeadOutput  # noqa: E402
from gfl_repro.models.postprocess import multiclass_nms, topk_per_level  # noqa: E402

log = logging.getLogger(__name__)

MATCH_IOU = 0.5  # a detection matches a same-class gt from this IoU on
MIN_SCORE = 0.3  # an example is a confident detection
TOP_SCORES = 4  # Fig. 7 writes the four best scores on their boxes
EXAMPLE_IMAGES = 100  # val images looked through by default
PRED_COLOR, GT_COLOR = "lime", "white"  # the paper's colours
BOX_COLS = ["x1", "y1", "x2", "y2"]
GT_COLS = ["gx1", "gy1", "gx2", "gy2"]
SIDE_NAMES = dict(zip(SIDES, ("left", "top", "right", "bottom"), strict=True))
OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="black")]  # white on light pixels


# --- a run's model on its val images -----------------------------------------------------------


def load_run_model(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[Config, Detector]:
    """The resolved config of a run folder and its GFL model at the latest checkpoint, frozen."""
    cfg, model = lqe.load_run_model(run_dir)
    if not isinstance(model.head, GFLHead):
        raise TypeError(f"{run_dir}: needs a GFL head, got {type(model.head).__name__}")
    return cfg, model.to(device).eval().requires_grad_(False)


def val_outputs(
    cfg: Config, model: Detector, limit: int | None, device: torch.device | str = "cpu"
) -> Iterator[tuple[dict, HeadOutput, Priors, int]]:
    """Per val image in loader order, the first ``limit`` (all for None): its target, the head
    output and priors of its batch, and its index in the batch. The model is frozen, so no
    autograd graph is built without a no_grad block (which a generator could not scope)."""
    seen = 0
    for images, targets in val_loader(cfg.data, DistInfo()):
        out = model(images.to(device))
        priors = model.priors(out)
        for i, target in enumerate(targets):
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield _to(target, device), out, priors, i


def resized_image(dataset: CocoDetection, image_id: int) -> np.ndarray:
    """(h, w, 3) uint8: an image of the val set (``val_loader(...).dataset``) as the network saw
    it (resized, padding cut off)."""
    index = next(k for k, r in enumerate(dataset.records) if r.image_id == image_id)
    image, target = dataset[index]  # (3, H, W) normalised and padded
    h, w = target["img_shape"]
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    pixels = (image[:, :h, :w] * std + mean).clamp(0, 255).round().to(torch.uint8)  # (3, h, w)
    return pixels.permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class Candidates:
    """One image's candidates before NMS, formed as ``GFLHead.predict`` forms them (resized
    image's pixels instead of the original's)."""

    prior: Tensor  # (D,) index into the P priors
    label: Tensor  # (D,)
    box: Tensor  # (D, 4) xyxy pixels
    score: Tensor  # (D,) joint score J at the label
    kept: Tensor  # (D,) bool: survives NMS, i.e. is a final detection


def candidates(
    model: Detector, out: HeadOutput, priors: Priors, i: int, img_shape: tuple[int, int]
) -> Candidates:
    """Image ``i`` of a batch's candidates, with the prior of each and whether NMS keeps it."""
    head, cfg = model.head, model.inference
    keep = topk_per_level(out.scores[i], priors.num_per_level, cfg.nms_pre)  # (Q,)
    dist = head.distances(out.reg[i, keep]) * priors.strides[keep, None]  # (Q, 4) pixels
    boxes = distance2bbox(priors.points[keep], dist, tuple(img_shape))  # (Q, 4)
    scores = out.scores[i, keep]  # (Q, C)
    rows, labels = torch.nonzero(scores > cfg.score_thr, as_tuple=True)  # (D,), (D,)
    _, _, det_labels, det_rows = multiclass_nms(boxes, scores, cfg, return_index=True)  # (S,)
    c = scores.shape[1]
    kept = torch.isin(rows * c + labels, det_rows * c + det_labels)  # (D,) (row, class) pairs
    return Candidates(keep[rows], labels, boxes[rows], scores[rows, labels], kept)


def match(boxes: Tensor, labels: Tensor, target: dict) -> tuple[Tensor, Tensor]:
    """IoU (S,) of each box with its best same-class gt and that gt's index (S,), -1 without."""
    ious = box_iou(boxes, target["boxes"].to(boxes))  # (S, M)
    ious = torch.where(labels[:, None] == target["labels"][None, :], ious, 0.0)  # (S, M)
    ious = torch.cat([ious, ious.new_zeros(len(boxes), 1)], dim=1)  # (S, M + 1)
    iou, gt = ious.max(dim=1)  # (S,), (S,)
    return iou, torch.where(iou > 0, gt, -1)


def _crop(ax: plt.Axes, image: np.ndarray, boxes: np.ndarray, margin: float = 0.5) -> None:
    """Show the part of ``image`` around ``boxes`` (N, 4), NaN rows ignored, with a margin of
    ``margin`` times the larger side of their union."""
    h, w = image.shape[:2]
    lo, hi = np.nanmin(boxes[:, :2], axis=0), np.nanmax(boxes[:, 2:], axis=0)  # (2,), (2,)
    pad = margin * max(hi - lo)
    ax.imshow(image)
    ax.set_xlim(max(lo[0] - pad, 0) - 0.5, min(hi[0] + pad, w) - 0.5)
    ax.set_ylim(min(hi[1] + pad, h) - 0.5, max(lo[1] - pad, 0) - 0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax: plt.Axes, box, color: str, lw: float = 1.5) -> None:
    x1, y1, x2, y2 = box
    rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color=color, lw=lw)
    if color == GT_COLOR:
        rect.set_path_effects(OUTLINE)
    ax.add_patch(rect)


# --- Fig. 1c/d: a sharp and a flat side distribution ------------------------------------------


def detections_with_distributions(
    cfg: Config, model: Detector, max_images: int, device: torch.device | str = "cpu"
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every detection after NMS in the first ``max_images`` val images: a table (image_id,
    label, score, iou and gx1..gy2 of its best same-class gt (0 and NaN without), top1_mean,
    stride, px, py of its prior, x1..y2) and its side distributions (S, 4, n + 1)."""
    if model.head.box != "distribution":
        raise ValueError(f"side distributions need head.box 'distribution', not {model.head.box!r}")
    n = model.head.reg_max
    parts, probs = [], []
    for target, out, priors, i in val_outputs(cfg, model, max_images, device):
        c = candidates(model, out, priors, i, target["img_shape"])
        prior, label, box = c.prior[c.kept], c.label[c.kept], c.box[c.kept]  # (S,), (S,), (S, 4)
        iou, gt = match(box, label, target)  # (S,), (S,)
        no_gt = box.new_full((1, 4), float("nan"))
        gt_box = torch.cat([target["boxes"].to(box), no_gt])[gt]  # (S, 4); -1 picks the NaN row
        prob = out.reg[i, prior].reshape(-1, 4, n + 1).softmax(dim=-1)  # (S, 4, n+1)
        cols = {"image_id": torch.full_like(label, int(target["image_id"])), "label": label,
                "score": c.score[c.kept], "iou": iou,
                "top1_mean": prob.amax(dim=-1).mean(dim=1), "stride": priors.strides[prior],
                "px": priors.points[prior, 0], "py": priors.points[prior, 1]}  # fmt: skip
        cols.update({k: box[:, j] for j, k in enumerate(BOX_COLS)})
        cols.update({k: gt_box[:, j] for j, k in enumerate(GT_COLS)})
        parts.append(pd.DataFrame({k: v.cpu().numpy() for k, v in cols.items()}))
        probs.append(prob.cpu().numpy())
    if not parts:
        return pd.DataFrame(), np.zeros((0, 4, n + 1))
    return pd.concat(parts, ignore_index=True), np.concatenate(probs)


def pick_sharp_flat(dets: pd.DataFrame) -> tuple[int, int, str]:
    """Rows of the detection of highest and of lowest mean top-1 among the matched confident
    ones, and the rule they were picked by; falls back to looser pools when that one holds fewer
    than two detections."""
    if len(dets) == 0:
        raise ValueError("no detection to draw a side distribution of")
    matched, confident = dets["iou"] >= MATCH_IOU, dets["score"] >= MIN_SCORE
    tiers = [
        (matched & confident, f"IoU >= {MATCH_IOU} with a gt, score >= {MIN_SCORE}"),
        (matched, f"fallback, none with score >= {MIN_SCORE}: IoU >= {MATCH_IOU}, any score"),
        (dets["score"] > -1, f"fallback, under two matched at IoU >= {MATCH_IOU}: any detection"),
    ]
    mask, rule = next(((m, r) for m, r in tiers if m.sum() >= 2), tiers[-1])
    if rule.startswith("fallback"):
        log.warning("Fig. 1c/d examples: %s", rule)
    top1 = dets.loc[mask, "top1_mean"]
    return int(top1.idxmax()), int(top1.idxmin()), rule


def distribution_table(
    dets: pd.DataFrame, probs: np.ndarray, picks: dict[str, int], rule: str, class_names: list[str]
) -> pd.DataFrame:
    """Long table, one row per example, side and bin: example, image_id, side, bin,
    distance_px (bin * stride), probability, then the example's detection columns, class and
    the rule it was picked by."""
    parts = []
    for example, row in picks.items():
        det = dets.loc[[row]].drop(columns="image_id")  # (1, columns), keeps the dtypes
        n_bins = probs.shape[2]
        part = pd.DataFrame({"example": example, "image_id": dets.at[row, "image_id"],
                             "side": np.repeat(SIDES, n_bins), "bin": np.tile(np.arange(n_bins), 4),
                             "probability": probs[row].reshape(-1)})  # fmt: skip
        part.insert(4, "distance_px", part["bin"] * dets.at[row, "stride"])
        part = part.merge(det, how="cross")
        part["class"] = class_names[dets.at[row, "label"]]
        parts.append(part.assign(rule=rule))
    return pd.concat(parts, ignore_index=True)


def _gt_distances(det: pd.Series) -> dict[str, float]:
    """The gt's l, t, r, b distances (pixels) from the detection's prior point."""
    return {"l": det["px"] - det["gx1"], "t": det["py"] - det["gy1"],
            "r": det["gx2"] - det["px"], "b": det["gy2"] - det["py"]}  # fmt: skip


def draw_fig1cd(table: pd.DataFrame, images: dict[int, np.ndarray]) -> plt.Figure:
    """One row per example: the image crop with the predicted box (green) and its gt (white),
    then the four side distributions over distances in pixels (dashed: the gt's distance)."""
    names = table["example"].unique()
    fig, axes = plt.subplots(len(names), 5, figsize=(15, 3.2 * len(names)), squeeze=False)
    for ax_row, example in zip(axes, names, strict=True):
        rows = table[table["example"] == example]
        det = rows.iloc[0]
        boxes = np.array([det[BOX_COLS], det[GT_COLS]], dtype=np.float64)  # (2, 4)
        _crop(ax_row[0], images[int(det["image_id"])], boxes)
        _box(ax_row[0], det[GT_COLS], GT_COLOR)
        _box(ax_row[0], det[BOX_COLS], PRED_COLOR)
        ax_row[0].set_title(
            f"{example}: mean Top-1 {det['top1_mean']:.2f}\nIoU {det['iou']:.2f}, "
            f"score {det['score']:.2f} ({det['class']}, image {det['image_id']})",
            fontsize=9,
        )
        gt = _gt_distances(det)
        for ax, side in zip(ax_row[1:], SIDES, strict=True):
            bars = rows[rows["side"] == side]
            ax.bar(bars["distance_px"], bars["probability"], width=0.8 * det["stride"])
            if np.isfinite(gt[side]):
                ax.axvline(gt[side], color="0.3", ls="--", lw=1)
            ax.set(title=SIDE_NAMES[side], xlabel="distance (px)", ylim=(0, 1))
        ax_row[1].set_ylabel("probability")
    fig.suptitle(f"Side distributions of detections ({table['rule'].iloc[0]})", fontsize=10)
    fig.tight_layout()
    return fig


def fig1cd(
    run_dir: str | Path,
    out_dir: str | Path,
    max_images: int = EXAMPLE_IMAGES,
    device: torch.device | str = "cpu",
) -> list[Path]:
    """Fig. 1c/d: the detections of sharpest and flattest side distributions (highest and lowest
    mean top-1) among the first ``max_images`` val images' matched confident detections of a
    GFL run, with their boxes, gt and four side distributions."""
    cfg, model = load_run_model(run_dir, device)
    dets, probs = detections_with_distributions(cfg, model, max_images, device)
    sharp, flat, rule = pick_sharp_flat(dets)
    dataset = val_loader(cfg.data, DistInfo()).dataset
    picks = {"sharp": sharp, "flat": flat}
    table = distribution_table(dets, probs, picks, rule, dataset.class_names)
    images = {i: resized_image(dataset, i) for i in table["image_id"].unique()}
    return save(draw_fig1cd(table, images), table, out_dir, "fig1cd_distributions")


# --- Fig. 7: boxes before and after NMS, GFLV1 beside GFLV2 ------------------------------------


def gt_confidence(c: Candidates, target: dict) -> Tensor:
    """(M,) per gt, the best score of the detections matching it (same class, IoU >= 0.5), 0
    without."""
    ious = box_iou(c.box, target["boxes"].to(c.box))  # (D, M)
    same = c.label[:, None] == target["labels"][None, :]  # (D, M)
    ok = (ious >= MATCH_IOU) & same & c.kept[:, None]  # (D, M)
    scores = torch.where(ok, c.score[:, None], 0.0)  # (D, M)
    return torch.cat([scores, scores.new_zeros(1, scores.shape[1])]).amax(dim=0)  # (M,)


def nms_region(c: Candidates, target: dict, gt: int, iou_thr: float) -> Tensor:
    """Mask (D,) of the candidates NMS weighs against the model's top detection of gt ``gt``:
    that detection (the best-scoring match of the gt, else the same-class detection overlapping
    it most) and every same-class candidate overlapping it by more than ``iou_thr``."""
    same = c.label == target["labels"][gt]  # (D,)
    iou_gt = box_iou(c.box, target["boxes"][gt, None].to(c.box))[:, 0]  # (D,)
    dets = torch.nonzero(same & c.kept).squeeze(1)  # (S',)
    if len(dets) == 0:
        return torch.zeros_like(same)
    matched = dets[iou_gt[dets] >= MATCH_IOU]
    top = matched[c.score[matched].argmax()] if len(matched) else dets[iou_gt[dets].argmax()]
    region = same & (box_iou(c.box, c.box[top, None])[:, 0] > iou_thr)  # (D,)
    region[top] = True
    return region


def paired_candidates(
    runs: dict[str, tuple[Config, Detector]], limit: int | None, device: torch.device | str
) -> Iterator[tuple[dict, dict[str, Candidates]]]:
    """Per val image, the first ``limit``: its target and every run's candidates on it."""
    streams = [val_outputs(cfg, model, limit, device) for cfg, model in runs.values()]
    for items in zip(*streams, strict=True):
        if len({int(t["image_id"]) for t, *_ in items}) != 1:
            raise ValueError(f"the runs {list(runs)} do not share a val set")
        target, cands = items[0][0], {}
        for (name, (_, model)), (_, out, priors, i) in zip(runs.items(), items, strict=True):
            cands[name] = candidates(model, out, priors, i, target["img_shape"])
        yield target, cands


def choose_nms_example(
    runs: dict[str, tuple[Config, Detector]],
    image_id: int | None,
    max_images: int,
    device: torch.device | str = "cpu",
) -> tuple[dict, int, dict[str, Candidates], str]:
    """The image (``image_id``, else the first of the first ``max_images`` val images with a gt
    that every run detects with score >= 0.3, else the one closest to that), its gt whose weakest
    run's detection scores highest, each run's candidates on it, and the rule it was chosen by."""
    best = None  # (confidence, target, gt, candidates)
    limit = max_images if image_id is None else None
    for target, cands in paired_candidates(runs, limit, device):
        if image_id is not None and int(target["image_id"]) != image_id:
            continue
        conf = torch.stack([gt_confidence(c, target) for c in cands.values()]).amin(dim=0)  # (M,)
        if len(conf) and (best is None or conf.max() > best[0]):
            best = (float(conf.max()), target, int(conf.argmax()), cands)
        if image_id is not None or (best is not None and best[0] >= MIN_SCORE):
            break
    if best is None:
        where = f"the first {max_images} val images" if image_id is None else f"image {image_id}"
        raise ValueError(f"no gt box in {where}")
    rule = f"first with score >= {MIN_SCORE}" if image_id is None else f"image {image_id} as asked"
    if image_id is None and best[0] < MIN_SCORE:
        rule = f"fallback, none with score >= {MIN_SCORE}: best of the first {max_images}"
        log.warning("Fig. 7 image: %s", rule)
    return best[1], best[2], best[3], rule


def nms_table(
    runs: dict[str, tuple[Config, Detector]],
    cands: dict[str, Candidates],
    target: dict,
    gt: int,
    rule: str,
    class_names: list[str],
) -> pd.DataFrame:
    """One row per run, stage (before | after NMS) and box of the NMS region: model, stage,
    rank (by score before NMS), top4 (its score is written on the figure), x1..y2, score, label,
    class, iou_gt, and the image, gt box and rule."""
    parts = []
    for name, c in cands.items():
        region = nms_region(c, target, gt, runs[name][1].inference.iou_thr)  # (D,)
        order = torch.argsort(c.score[region], descending=True)  # (R,)
        idx = torch.nonzero(region).squeeze(1)[order]  # (R,) by score
        iou_gt = box_iou(c.box[idx], target["boxes"][gt, None].to(c.box))[:, 0]  # (R,)
        before = pd.DataFrame({"model": name, "stage": "before", "rank": np.arange(len(idx)),
                               "score": c.score[idx].cpu().numpy(),
                               "label": c.label[idx].cpu().numpy(),
                               "iou_gt": iou_gt.cpu().numpy(),
                               "kept": c.kept[idx].cpu().numpy()})  # fmt: skip
        before[BOX_COLS] = c.box[idx].cpu().numpy()
        after = before[before["kept"]].assign(stage="after")
        for stage in (before, after):
            stage["top4"] = np.arange(len(stage)) < TOP_SCORES
        parts += [before.drop(columns="kept"), after.drop(columns="kept")]
    table = pd.concat(parts, ignore_index=True)
    table["class"] = [class_names[int(k)] for k in table["label"]]
    table["image_id"] = int(target["image_id"])
    table[GT_COLS] = target["boxes"][gt].cpu().numpy()
    table["gt_class"] = class_names[int(target["labels"][gt])]
    table["rule"] = rule
    return table


def draw_fig7(table: pd.DataFrame, image: np.ndarray) -> plt.Figure:
    """Rows before / after NMS, one column per model; the gt in white, each candidate in the
    colour of its rank, the top-4 scores written on their boxes."""
    models = table["model"].unique()
    fig, axes = plt.subplots(2, len(models), figsize=(4.5 * len(models), 8.5), squeeze=False)
    boxes = np.concatenate([table[BOX_COLS].to_numpy(), table[GT_COLS].to_numpy()[:1]])  # (N, 4)
    colors = plt.get_cmap("tab10")
    for col, name in enumerate(models):
        for row, stage in enumerate(("before", "after")):
            ax, rows = axes[row, col], table[(table["model"] == name) & (table["stage"] == stage)]
            _crop(ax, image, boxes, margin=0.3)
            _box(ax, table[GT_COLS].iloc[0], GT_COLOR, lw=2)
            for k, det in enumerate(rows.itertuples()):
                color = colors(det.rank % 10)
                _box(ax, (det.x1, det.y1, det.x2, det.y2), color, lw=1.2)
                if det.top4:
                    ax.annotate(f"{det.score:.2f}", (det.x1, det.y1), xytext=(2, -2 - 11 * k),
                                textcoords="offset points", va="top", fontsize=8, color="black",
                                bbox={"facecolor": color, "pad": 1, "lw": 0})  # fmt: skip
            ax.set_title(f"{name}, {stage} NMS ({len(rows)} box{'es' * (len(rows) != 1)})")
    first = table.iloc[0]
    fig.suptitle(f"image {first['image_id']}, gt {first['gt_class']} ({first['rule']})")
    fig.tight_layout()
    return fig


def fig7(
    gflv1_run: str | Path,
    gflv2_run: str | Path,
    out_dir: str | Path,
    image_id: int | None = None,
    max_images: int = EXAMPLE_IMAGES,
    device: torch.device | str = "cpu",
) -> list[Path]:
    """Fig. 7: on one val image, GFLV1's and GFLV2's candidates around one gt before NMS and
    what NMS keeps of them, with their top-4 joint scores J (the score NMS ranks by)."""
    runs = {"GFLV1": load_run_model(gflv1_run, device), "GFLV2": load_run_model(gflv2_run, device)}
    target, gt, cands, rule = choose_nms_example(runs, image_id, max_images, device)
    dataset = val_loader(runs["GFLV2"][0].data, DistInfo()).dataset
    table = nms_table(runs, cands, target, gt, rule, dataset.class_names)
    image = resized_image(dataset, int(target["image_id"]))
    return save(draw_fig7(table, image), table, out_dir, "fig7_nms")
