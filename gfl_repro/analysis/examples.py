"""Figs. 1c/d and 7 drawn from run folders: what a trained run's model predicted on its first
val images, as the probe ``gfl_repro.engine.examples`` wrote it into ``RUN/examples/``. No model
is run here; the choices (which detections, which image and gt) are made from those tables.

Legend: D candidates of an image (before NMS), S detections (after NMS), M gt boxes,
n = reg_max (n + 1 bins).

Boxes are in pixels of the resized image the network saw, saved beside them, so a side
distribution's bin times its stride is a distance on the drawn image.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from gfl_repro.analysis.plots import save  # noqa: E402
from gfl_repro.engine.examples import BOX_COLS, GT_COLS, image_path  # noqa: E402
from gfl_repro.engine.lqe import SIDES  # noqa: E402
from gfl_repro.engine.runs import RunFolder  # noqa: E402

log = logging.getLogger(__name__)

MATCH_IOU = 0.5  # a detection matches a same-class gt from this IoU on
MIN_SCORE = 0.3  # an example is a confident detection
TOP_SCORES = 4  # Fig. 7 writes the four best scores on their boxes
PRED_COLOR, GT_COLOR = "lime", "white"  # the paper's colours
SIDE_NAMES = dict(zip(SIDES, ("left", "top", "right", "bottom"), strict=True))
OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="black")]  # white on light pixels


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


def _box(ax: plt.Axes, box, color: str, lw: float = 1.5) -> None:
    x1, y1, x2, y2 = box
    rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color=color, lw=lw)
    if color == GT_COLOR:
        rect.set_path_effects(OUTLINE)
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


def choose_nms_example(
    runs: dict[str, Examples], image_id: int | None = None
) -> tuple[int, int, str]:
    """The image (``image_id``, else the first of the shared images with a gt that every run
    detects with score >= 0.3, else the one closest to that), its gt (index in gt.csv's rows of
    the image) whose weakest run's detection scores highest, and the rule it was chosen by."""
    ids = shared_images(runs)
    if image_id is not None and image_id not in ids:
        raise ValueError(f"image {image_id} is not among the {len(ids)} val images of the examples")
    best = None  # (confidence, image, gt)
    for i in [image_id] if image_id is not None else ids:
        per_run = [gt_confidence(ex.candidates_of(i), ex.gt_of(i)) for ex in runs.values()]
        conf = np.min(per_run, axis=0)  # (M,) the weakest run's confidence per gt
        if len(conf) and (best is None or conf.max() > best[0]):
            best = (float(conf.max()), i, int(conf.argmax()))
        if best is not None and best[0] >= MIN_SCORE:
            break
    if best is None:
        where = f"the first {len(ids)} val images" if image_id is None else f"image {image_id}"
        raise ValueError(f"no gt box in {where}")
    rule = f"first with score >= {MIN_SCORE}" if image_id is None else f"image {image_id} as asked"
    if image_id is None and best[0] < MIN_SCORE:
        rule = f"fallback, none with score >= {MIN_SCORE}: best of the first {len(ids)}"
        log.warning("Fig. 7 image: %s", rule)
    return best[1], best[2], rule


def nms_table(runs: dict[str, Examples], image_id: int, gt: int, rule: str) -> pd.DataFrame:
    """One row per run, stage (before | after NMS) and box of the NMS region around gt ``gt`` of
    image ``image_id``: model, stage, rank (by score before NMS), top4 (its score is written on
    the figure), x1..y2, score, label, class, iou_gt, and the image, gt box and rule."""
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
        after = before[before["kept"]].assign(stage="after")
        for stage in (before, after):
            stage["top4"] = np.arange(len(stage)) < TOP_SCORES
        parts += [before.drop(columns="kept"), after.drop(columns="kept")]
    table = pd.concat(parts, ignore_index=True)
    table["class"] = [names[int(k)] for k in table["label"]]
    table["image_id"] = image_id
    table[GT_COLS] = gt_row[GT_COLS].to_numpy(float)
    table["gt_class"] = names[int(gt_row["label"])]
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
    gflv1_run: str | Path, gflv2_run: str | Path, out_dir: str | Path, image_id: int | None = None
) -> list[Path]:
    """Fig. 7: on one val image of both runs' examples, GFLV1's and GFLV2's candidates around
    one gt before NMS and what NMS keeps of them, with their top-4 joint scores J (the score NMS
    ranks by)."""
    runs = {"GFLV1": load_examples(gflv1_run), "GFLV2": load_examples(gflv2_run)}
    image_id, gt, rule = choose_nms_example(runs, image_id)
    table = nms_table(runs, image_id, gt, rule)
    return save(draw_fig7(table, runs["GFLV2"].image(image_id)), table, out_dir, "fig7_nms")
