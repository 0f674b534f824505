"""Figs. 1c/d and 7 drawn from run folders: what a trained run's model predicted on its first
val images, as the probe ``gfl_repro.engine.examples`` wrote it into ``RUN/examples/``. No model
is run here; the choices (which detections, which image and gt) are made from those tables.

Legend: D candidates of an image (before NMS), S detections (after NMS), M gt boxes,
n = reg_max (n + 1 bins).

Boxes are in pixels of the resized image the network saw, saved beside them, so a side
distribution's bin times its stride is a distance on the drawn image.
"""

import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from gfl_repro.analysis.plots import save  # noqa: E402
from gfl_repro.engine.examples import BOX_COLS, GT_COLS, image_path  # noqa: E402
from gfl_repro.engine.lqe import SIDES  # noqa: E402
from gfl_repro.engine.runs import RunFolder  # noqa: E402

log = logging.getLogger(__name__)

MATCH_IOU = 0.5  # a detection matches a same-class gt from this IoU on
MIN_SCORE = 0.3  # an example is a confident detection
MIN_CONTRAST = 3.0  # Fig. 7's object stands out from its surroundings (see ``contrast``)
TOP_SCORES = 4  # Fig. 7 writes the four best scores on their boxes
PRED_COLOR, GT_COLOR = "lime", "white"  # the paper's colours on the image
BAR_COLOR, MEAN_COLOR, GT_SIDE_COLOR = "tab:green", "darkgreen", "black"  # on white axes
SIDE_NAMES = dict(zip(SIDES, ("left", "top", "right", "bottom"), strict=True))


# --- a run folder's examples -------------------------------------------------------------------


@dataclass(frozen=True)
class Examples:
    """The examples of one run folder (see ``gfl_repro.engine.examples`` for the columns)."""

    run: RunFolder
    info: dict  # examples.json
    detections: pd.DataFrame  # (S, columns)
    probability: np.ndarray | None  # (S, 4, n + 1), None for a dirac box
    candidates: pd.DataFrame  # (D over the images, columns)
    gt: pd.DataFrame  # (M over the images, columns)

    @property
    def image_ids(self) -> list[int]:
        """The images looked through, in loader order."""
        return [int(image["image_id"]) for image in self.info["images"]]

    def candidates_of(self, image_id: int) -> pd.DataFrame:
        return self.candidates[self.candidates["image_id"] == image_id].reset_index(drop=True)

    def gt_of(self, image_id: int) -> pd.DataFrame:
        return self.gt[self.gt["image_id"] == image_id].reset_index(drop=True)

    def image(self, image_id: int) -> np.ndarray:
        """(h, w, 3) uint8: the image as the network saw it."""
        with Image.open(image_path(self.run.path, image_id)) as image:
            return np.asarray(image.convert("RGB"))


def load_examples(run_dir: str | Path) -> Examples:
    """The examples that ``gfl_repro.engine.examples.write_examples`` wrote into a run folder."""
    run = RunFolder(run_dir)
    info = run.read(RunFolder.EXAMPLES_INFO)
    if not info:
        raise FileNotFoundError(
            f"no {RunFolder.EXAMPLES_INFO} in {run.path}: run the probe first "
            "(gfl_repro.engine.examples.write_examples; analysis/figures.py runs it)"
        )
    dist = run / RunFolder.EXAMPLES_DISTRIBUTIONS
    probability = None
    if info["box"] == "distribution":
        with np.load(dist, allow_pickle=False) as z:
            probability = z["probability"]
    tables = (RunFolder.EXAMPLES_DETECTIONS, RunFolder.EXAMPLES_CANDIDATES, RunFolder.EXAMPLES_GT)
    detections, cands, gt = (pd.read_csv(run / name) for name in tables)
    return Examples(run, info, detections, probability, cands, gt)


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Pairwise IoU (N, 4) x (M, 4) -> (N, M) of xyxy boxes, the union clamped at eps as
    ``models.box_coding.box_iou`` does."""
    lt = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (M,)
    return inter / np.maximum(area1[:, None] + area2[None, :] - inter, eps)


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


def _outline(lw: float) -> list:
    """A black rim around a white line, so that it shows on light pixels too."""
    return [patheffects.withStroke(linewidth=lw + 1.5, foreground="black")]


def _box(ax: plt.Axes, box, color: str, lw: float = 1.5, ls: str | tuple = "-") -> None:
    """An xyxy box in pixels; pixel i covers [i - 0.5, i + 0.5] on the image axes."""
    x1, y1, x2, y2 = box
    rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color=color, lw=lw, ls=ls)
    if color == GT_COLOR:
        rect.set_path_effects(_outline(lw))
    ax.add_patch(rect)


# --- Fig. 1c/d: a sharp and a flat side distribution ------------------------------------------


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
    """Long table, one row per example, side and bin: example, image_id, side, bin (stride
    units), distance_px (bin * stride), probability, gt_bin (the gt side's distance from the
    prior point in stride units, NaN without a gt), then the example's detection columns, class
    and the rule it was picked by."""
    parts = []
    for example, row in picks.items():
        det = dets.loc[[row]].drop(columns="image_id")  # (1, columns), keeps the dtypes
        n_bins, stride = probs.shape[2], dets.at[row, "stride"]
        part = pd.DataFrame({"example": example, "image_id": dets.at[row, "image_id"],
                             "side": np.repeat(SIDES, n_bins), "bin": np.tile(np.arange(n_bins), 4),
                             "probability": probs[row].reshape(-1)})  # fmt: skip
        part.insert(4, "distance_px", part["bin"] * stride)
        part.insert(6, "gt_bin", part["side"].map(_gt_distances(dets.loc[row])) / stride)
        part = part.merge(det, how="cross")
        part["class"] = class_names[dets.at[row, "label"]]
        parts.append(part.assign(rule=rule))
    return pd.concat(parts, ignore_index=True)


def _gt_distances(det: pd.Series) -> dict[str, float]:
    """The gt's l, t, r, b distances (pixels) from the detection's prior point."""
    return {"l": det["px"] - det["gx1"], "t": det["py"] - det["gy1"],
            "r": det["gx2"] - det["px"], "b": det["gy2"] - det["py"]}  # fmt: skip


def _example_crop(ax: plt.Axes, det: pd.Series, image: np.ndarray) -> None:
    """The crop around a detection: its gt (white, wide) under its box (green, dashed), so that
    each shows where they coincide, and the prior point its sides are measured from."""
    boxes = np.array([det[BOX_COLS], det[GT_COLS]], dtype=np.float64)  # (2, 4)
    _crop(ax, image, boxes)
    _box(ax, det[GT_COLS], GT_COLOR, lw=3.0)
    _box(ax, det[BOX_COLS], PRED_COLOR, lw=1.5, ls=(0, (4, 2)))
    ax.plot(det["px"] - 0.5, det["py"] - 0.5, "+", color=PRED_COLOR, ms=9, mew=2)
    ax.set_title(
        f"{det['example']}: mean Top-1 {det['top1_mean']:.2f}, IoU {det['iou']:.2f}\n"
        f"{det['class']}, score {det['score']:.2f}, stride {det['stride']:g} px "
        f"(image {det['image_id']})",
        fontsize=9,
    )


def _side_distribution(ax: plt.Axes, bars: pd.DataFrame, stride: float) -> None:
    """One side's P(y_i) over its n + 1 bins in stride units (pixels on the top axis), the
    predicted side (the distribution's mean) and the gt side (clipped to the axis, marked when
    it lies beyond)."""
    bins, prob = bars["bin"].to_numpy(), bars["probability"].to_numpy()  # (n + 1,), (n + 1,)
    n = int(bins.max())
    ax.bar(bins, prob, width=0.8, color=BAR_COLOR)
    ax.axvline(float(bins @ prob), color=MEAN_COLOR, lw=1.5)
    gt = float(bars["gt_bin"].iloc[0])
    if np.isfinite(gt):
        shown = float(np.clip(gt, -0.5, n + 0.5))
        ax.axvline(shown, color=GT_SIDE_COLOR, ls="--", lw=1.2)
        if shown != gt:
            ax.annotate(f"gt at {gt:.1f}", (shown, 0.9), ha="right" if gt > n else "left",
                        fontsize=8)  # fmt: skip
    ax.set(xlim=(-0.6, n + 0.6), ylim=(0, 1), xlabel="distance y (stride units)")
    ax.set_xticks(np.arange(0, n + 1, 2 if n <= 16 else 4))
    top = ax.secondary_xaxis("top", functions=(lambda b: b * stride, lambda d: d / stride))
    top.tick_params(labelsize=7, pad=1)
    top.set_xlabel("distance (px)", fontsize=7, labelpad=2)
    ax.set_title(f"{SIDE_NAMES[bars['side'].iloc[0]]} side, top-1 {prob.max():.2f}", fontsize=10)


def _fig1cd_legend() -> list:
    gt = Line2D([], [], color=GT_COLOR, lw=3, path_effects=_outline(3))
    return [
        (Line2D([], [], color=PRED_COLOR, lw=1.5, ls=(0, (4, 2))), "predicted box"),
        (gt, "ground-truth box"),
        (Line2D([], [], color=PRED_COLOR, marker="+", ls="", ms=9, mew=2), "prior point"),
        (Patch(color=BAR_COLOR), "predicted distribution P(y)"),
        (Line2D([], [], color=MEAN_COLOR, lw=1.5), "predicted side (mean of P)"),
        (Line2D([], [], color=GT_SIDE_COLOR, ls="--", lw=1.2), "ground-truth side"),
    ]


def draw_fig1cd(table: pd.DataFrame, images: dict[int, np.ndarray]) -> plt.Figure:
    """One row per example: the image crop with its predicted box over its gt, then its four
    side distributions over their bins in stride units, as the paper draws them."""
    names = table["example"].unique()
    fig, axes = plt.subplots(
        len(names), 5, figsize=(15, 3.6 * len(names)), squeeze=False, layout="constrained"
    )
    for ax_row, example in zip(axes, names, strict=True):
        rows = table[table["example"] == example]
        det = rows.iloc[0]
        _example_crop(ax_row[0], det, images[int(det["image_id"])])
        for ax, side in zip(ax_row[1:], SIDES, strict=True):
            _side_distribution(ax, rows[rows["side"] == side], float(det["stride"]))
        ax_row[1].set_ylabel("probability")
    handles, labels = zip(*_fig1cd_legend(), strict=True)
    fig.legend(handles, labels, loc="outside lower center", ncol=6, fontsize=9, facecolor="0.75")
    fig.suptitle(f"Side distributions of detections ({table['rule'].iloc[0]})", fontsize=10)
    return fig


def fig1cd(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Fig. 1c/d: the detections of sharpest and flattest side distributions (highest and lowest
    mean top-1) among the matched confident detections of a GFL run's examples, with their
    boxes, gt and four side distributions."""
    ex = load_examples(run_dir)
    if ex.probability is None:
        raise ValueError(f"side distributions need head.box 'distribution', not {ex.info['box']!r}")
    sharp, flat, rule = pick_sharp_flat(ex.detections)
    picks = {"sharp": sharp, "flat": flat}
    table = distribution_table(ex.detections, ex.probability, picks, rule, ex.info["class_names"])
    images = {i: ex.image(int(i)) for i in table["image_id"].unique()}
    return save(draw_fig1cd(table, images), table, out_dir, "fig1cd_distributions")


# --- Fig. 7: boxes before and after NMS, GFLV1 beside GFLV2 ------------------------------------


def gt_confidence(cands: pd.DataFrame, gt: pd.DataFrame) -> np.ndarray:
    """(M,) per gt of an image, the best score of the detections matching it (same class,
    IoU >= 0.5), 0 without."""
    ious = box_iou(cands[BOX_COLS].to_numpy(float), gt[GT_COLS].to_numpy(float))  # (D, M)
    same = cands["label"].to_numpy()[:, None] == gt["label"].to_numpy()[None, :]  # (D, M)
    ok = (ious >= MATCH_IOU) & same & cands["kept"].to_numpy(bool)[:, None]  # (D, M)
    scores = np.where(ok, cands["score"].to_numpy(float)[:, None], 0.0)  # (D, M)
    return scores.max(axis=0, initial=0.0)  # (M,)


def nms_region(cands: pd.DataFrame, gt: pd.Series, iou_thr: float) -> np.ndarray:
    """Mask (D,) of an image's candidates that NMS weighs against the model's top detection of
    gt ``gt`` (a row of gt.csv): that detection (the best-scoring match of the gt, else the
    same-class detection overlapping it most) and every same-class candidate overlapping it by
    more than ``iou_thr``."""
    boxes, score = cands[BOX_COLS].to_numpy(float), cands["score"].to_numpy(float)  # (D, 4), (D,)
    same = cands["label"].to_numpy() == gt["label"]  # (D,)
    iou_gt = box_iou(boxes, gt[GT_COLS].to_numpy(float)[None])[:, 0]  # (D,)
    dets = np.flatnonzero(same & cands["kept"].to_numpy(bool))  # (S',)
    if len(dets) == 0:
        return np.zeros_like(same)
    matched = dets[iou_gt[dets] >= MATCH_IOU]
    top = matched[score[matched].argmax()] if len(matched) else dets[iou_gt[dets].argmax()]
    region = same & (box_iou(boxes, boxes[top, None])[:, 0] > iou_thr)  # (D,)
    region[top] = True
    return region


def shared_images(runs: dict[str, Examples]) -> list[int]:
    """The images every run's examples looked through, in loader order (the runs' lists agree
    on their common length, else they do not share a val set)."""
    lists = [ex.image_ids for ex in runs.values()]
    n = min(len(ids) for ids in lists)
    if any(ids[:n] != lists[0][:n] for ids in lists):
        raise ValueError(f"the runs {list(runs)} do not share a val set")
    return lists[0][:n]


def contrast(image: np.ndarray, box) -> float:
    """How far the object in ``box`` (xyxy pixels) stands out from what surrounds it: the
    distance between the median colours (RGB, 0-255) of the box's central third and of a ring
    around the box (15 % of its longer side wide, at least 3 px), over the ring's mean
    per-channel std + 1 (a textured background needs a larger step). NaN where either region
    holds no pixel. On the first 100 mini val images the generator's low-contrast objects score
    a median 1.3, the others 3.6; blur is not measured (a blurred object of a strong step
    passes), nor a ring's or crescent's hole, which is background."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pad = max(3.0, 0.15 * max(x2 - x1, y2 - y1))
    ox1, oy1 = int(max(np.floor(x1 - pad), 0)), int(max(np.floor(y1 - pad), 0))
    ox2, oy2 = int(min(np.ceil(x2 + pad), w)), int(min(np.ceil(y2 + pad), h))
    ys, xs = np.mgrid[oy1:oy2, ox1:ox2] + 0.5  # (h', w') pixel centres in box coordinates
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)  # (h', w')
    rx, ry = max((x2 - x1) / 6, 1.0), max((y2 - y1) / 6, 1.0)
    centre = (np.abs(xs - (x1 + x2) / 2) <= rx) & (np.abs(ys - (y1 + y2) / 2) <= ry)  # (h', w')
    window = image[oy1:oy2, ox1:ox2].astype(np.float64)  # (h', w', 3)
    ring, middle = window[~inside], window[centre & inside]  # (R, 3), (C, 3)
    if not len(ring) or not len(middle):
        return float("nan")
    step = np.linalg.norm(np.median(middle, axis=0) - np.median(ring, axis=0))
    return float(step / (ring.std(axis=0).mean() + 1.0))


def gt_pool(runs: dict[str, Examples], ids: list[int]) -> pd.DataFrame:
    """One row per gt of the images ``ids``, in order: image_id, gt (its row among the image's
    gt), side (square root of its area, px), confidence (the weakest run's ``gt_confidence``),
    alone (no other gt box of the image overlaps it), suppressed (the fewest candidates that
    NMS removes around it, over the runs, ``nms_region``; for the confident gts only, 0 for the
    others) and contrast (``contrast``, for the confident lone gts only; NaN for the others)."""
    first, parts = next(iter(runs.values())), []
    for i in ids:
        gt = first.gt_of(i)  # (M, columns); the runs share their val set
        if not len(gt):
            continue
        boxes = gt[GT_COLS].to_numpy(float)  # (M, 4)
        cands = {name: ex.candidates_of(i) for name, ex in runs.items()}
        overlap = box_iou(boxes, boxes) > 0  # (M, M)
        np.fill_diagonal(overlap, False)
        part = pd.DataFrame({"image_id": i, "gt": np.arange(len(gt)),
                             "side": np.sqrt((boxes[:, 2:] - boxes[:, :2]).prod(axis=1)),
                             "confidence": np.min([gt_confidence(c, gt) for c in cands.values()],
                                                  axis=0),
                             "alone": ~overlap.any(axis=1)})  # fmt: skip
        confident = part["confidence"] >= MIN_SCORE
        part["suppressed"] = [
            min(int((nms_region(c, row, runs[n].info["iou_thr"]) & ~c["kept"]).sum())
                for n, c in cands.items()) if ok else 0
            for (_, row), ok in zip(gt.iterrows(), confident, strict=True)
        ]  # fmt: skip
        lone = confident & part["alone"]
        image = first.image(i) if lone.any() else None
        part["contrast"] = [
            contrast(image, box) if ok else np.nan for box, ok in zip(boxes, lone, strict=True)
        ]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def choose_nms_example(
    runs: dict[str, Examples], image_id: int | None = None
) -> tuple[int, int, str]:
    """The image and gt (its row among the image's gt) of Fig. 7, and the rule they were chosen
    by. Among the gts of the shared images (of image ``image_id`` only, when given): of those
    that every run detects (a kept same-class box of IoU >= 0.5 and score >= 0.3), that NMS
    removes candidates around in every run, that no other gt box overlaps (unoccluded) and of
    contrast >= 3 (it stands out from its surroundings, ``contrast``), the largest: an object a
    reader recognises at a glance. Falls back to the largest that every run detects,
    then to the one the weakest run scores highest. Every class of the built-in set is a plain
    shape, so the class does not enter the choice."""
    ids = shared_images(runs)
    if image_id is not None and image_id not in ids:
        raise ValueError(f"image {image_id} is not among the {len(ids)} val images of the examples")
    pool = gt_pool(runs, ids if image_id is None else [image_id])
    if not len(pool):
        where = f"the first {len(ids)} val images" if image_id is None else f"image {image_id}"
        raise ValueError(f"no gt box in {where}")
    detected = pool["confidence"] >= MIN_SCORE
    clear = detected & pool["alone"] & (pool["suppressed"] > 0)
    clear &= pool["contrast"] >= MIN_CONTRAST
    found = f"detected by every run (score >= {MIN_SCORE})"
    tiers = [
        (clear, "side", f"largest {found}, unoccluded, contrast >= {MIN_CONTRAST:g}, "
                        "with boxes NMS removes"),
        (detected, "side", f"fallback, none unoccluded and clear: largest {found}"),
        (pool["confidence"] >= 0, "confidence",
         f"fallback, none {found}: the one the weakest run scores highest"),
    ]  # fmt: skip
    mask, key, rule = next(t for t in tiers if t[0].any())
    if rule.startswith("fallback"):
        log.warning("Fig. 7 object: %s", rule)
    best = pool.loc[mask, key].idxmax()  # the first of a tie, in image order
    rule = rule if image_id is None else f"image {image_id} as asked; {rule}"
    return int(pool.at[best, "image_id"]), int(pool.at[best, "gt"]), rule


def nms_table(runs: dict[str, Examples], image_id: int, gt: int, rule: str) -> pd.DataFrame:
    """One row per run, stage (before | after NMS) and box of the NMS region around gt ``gt`` of
    image ``image_id``: model, stage, rank (by score before NMS), written (its score and IoU
    are written on the figure: the top-4 before NMS, every kept box after), x1..y2, score,
    label, class, iou_gt, and the image, gt box and rule."""
    first = next(iter(runs.values()))
    gt_row, names = first.gt_of(image_id).iloc[gt], first.info["class_names"]
    parts = []
    for name, ex in runs.items():
        cands = ex.candidates_of(image_id)
        region = cands[nms_region(cands, gt_row, ex.info["iou_thr"])]
        region = region.sort_values("score", ascending=False, kind="stable")  # (R, columns)
        iou_gt = box_iou(region[BOX_COLS].to_numpy(float), gt_row[GT_COLS].to_numpy(float)[None])
        before = pd.DataFrame({"model": name, "stage": "before", "rank": np.arange(len(region)),
                               "score": region["score"].to_numpy(),
                               "label": region["label"].to_numpy(), "iou_gt": iou_gt[:, 0],
                               "kept": region["kept"].to_numpy(bool)})  # fmt: skip
        before[BOX_COLS] = region[BOX_COLS].to_numpy()
        before["written"] = before["rank"] < TOP_SCORES
        after = before[before["kept"]].assign(stage="after", written=True)
        parts += [before.drop(columns="kept"), after.drop(columns="kept")]
    table = pd.concat(parts, ignore_index=True)
    table["class"] = [names[int(k)] for k in table["label"]]
    table["image_id"] = image_id
    table[GT_COLS] = gt_row[GT_COLS].to_numpy(float)
    table["gt_class"] = names[int(gt_row["label"])]
    table["rule"] = rule
    return table


def _nms_panel(ax: plt.Axes, rows: pd.DataFrame, gt: np.ndarray) -> None:
    """One model at one stage: the gt in white, under the candidates in the colour of their
    rank (the best-scored drawn last, on top); "J | IoU" on the written ones, stacked from the
    box's corner."""
    colors = plt.get_cmap("tab10")
    _box(ax, gt, GT_COLOR, lw=3.0)  # wider than a candidate: it shows on both sides of one
    lw = 1.2 if len(rows) > TOP_SCORES else 1.8
    for det in rows[::-1].itertuples():
        _box(ax, (det.x1, det.y1, det.x2, det.y2), colors(det.rank % 10), lw=lw)
    for k, det in enumerate(rows[rows["written"]].itertuples()):
        ax.annotate(f"{det.score:.2f} | IoU {det.iou_gt:.2f}", (det.x1, det.y1),
                    xytext=(2, -2 - 11 * k), textcoords="offset points", va="top", fontsize=8,
                    bbox={"facecolor": colors(det.rank % 10), "pad": 1, "lw": 0})  # fmt: skip


def _nms_title(name: str, stage: str, rows: pd.DataFrame) -> str:
    """What the panel shows: before NMS, the best IoU among the candidates and its rank; after,
    the IoU of the box NMS kept (the best-scored one)."""
    count = f"{len(rows)} box{'es' * (len(rows) != 1)}"
    if not len(rows):
        return f"{name}, {stage} NMS ({count})"
    if stage == "before":
        best = rows.loc[rows["iou_gt"].idxmax()]
        return f"{name}, before NMS ({count})\nbest IoU {best['iou_gt']:.2f}, rank {best['rank']}"
    return f"{name}, after NMS ({count})\nkept: IoU {rows['iou_gt'].iloc[0]:.2f} with the gt"


def draw_fig7(table: pd.DataFrame, image: np.ndarray) -> plt.Figure:
    """Rows before / after NMS, one column per model; the gt in white, each candidate in the
    colour of its rank, the top-4 scores J before NMS and every kept box's with their IoU with
    the gt written on their boxes."""
    models = table["model"].unique()
    fig, axes = plt.subplots(
        2, len(models), figsize=(4.5 * len(models), 9.5), squeeze=False, layout="constrained"
    )
    boxes = np.concatenate([table[BOX_COLS].to_numpy(), table[GT_COLS].to_numpy()[:1]])  # (N, 4)
    gt = table[GT_COLS].to_numpy(float)[0]  # (4,)
    for col, name in enumerate(models):
        for row, stage in enumerate(("before", "after")):
            ax, rows = axes[row, col], table[(table["model"] == name) & (table["stage"] == stage)]
            _crop(ax, image, boxes, margin=0.3)
            _nms_panel(ax, rows, gt)
            ax.set_title(_nms_title(name, stage, rows), fontsize=10)
    first = table.iloc[0]
    title = f"image {first['image_id']}, gt {first['gt_class']} ({first['rule']})"
    fig.suptitle(textwrap.fill(title, 80), fontsize=10)
    fig.supxlabel("white: ground truth; other colours: candidates by score rank (the same before "
                  "and after NMS)\non a box: its joint score J, which NMS ranks by | its IoU "
                  "with the ground truth", fontsize=8)  # fmt: skip
    return fig


def fig7(
    gflv1_run: str | Path, gflv2_run: str | Path, out_dir: str | Path, image_id: int | None = None
) -> list[Path]:
    """Fig. 7: on one val image of both runs' examples, GFLV1's and GFLV2's candidates around
    one gt (``choose_nms_example``) before NMS and what NMS keeps of them, with their top-4
    joint scores J (the score NMS ranks by) and every kept box's IoU with the gt."""
    runs = {"GFLV1": load_examples(gflv1_run), "GFLV2": load_examples(gflv2_run)}
    image_id, gt, rule = choose_nms_example(runs, image_id)
    table = nms_table(runs, image_id, gt, rule)
    return save(draw_fig7(table, runs["GFLV2"].image(image_id)), table, out_dir, "fig7_nms")
