"""Statistics for the analysis: Pearson correlation, bootstrap intervals, a paired image-level
bootstrap of COCO AP between two runs, and a verdict on a claim from an interval.

Legend: N rows (samples), R bootstrap resamples, I val images, K categories, A = 4 area ranges.
"""

import contextlib
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

VERDICTS = ("supported", "within noise", "contradicted")


class Matched(NamedTuple):
    """One run matched to the gt once: the COCOeval, its image ids (I,) and its per-(category,
    area, image) match records (K * A * I,) in COCOeval's order."""

    coco_eval: object
    img_ids: list[int]
    records: list


class Interval(NamedTuple):
    value: float  # the statistic on the full sample
    low: float
    high: float


def pearson(x, y) -> float:
    """Pearson correlation of two (N,) arrays, in float64. NaN in either input, or a constant
    input, gives NaN (nothing is dropped silently)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pearson needs two (N,) arrays of one length, got {x.shape}, {y.shape}")
    xc, yc = x - x.mean(), y - y.mean()  # (N,)
    denom = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    return float((xc * yc).sum() / denom) if denom > 0 else float("nan")


def bootstrap_ci(
    x,
    y,
    stat: Callable[[np.ndarray, np.ndarray], float] = pearson,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of ``stat(x, y)``, resampling rows (pairs) with
    replacement ``n`` times."""
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    draws = np.empty(n)  # (R,)
    for r in range(n):
        idx = rng.integers(0, len(x), len(x))  # (N,)
        draws[r] = stat(x[idx], y[idx])
    low, high = _percentiles(draws, level)
    return Interval(stat(x, y), low, high)


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return float(v.mean()), std


def verdict(diff: float, low: float, high: float) -> str:
    """Verdict on the claim ``diff > 0`` from its interval [low, high]."""
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "within noise"


def paired_bootstrap_ap(
    ann_file: str | Path,
    dets_a: list[dict] | str | Path,
    dets_b: list[dict] | str | Path,
    n: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """AP(b) - AP(a) in AP points (percent) on the full val set, with a paired percentile
    bootstrap interval: each resample draws the val images with replacement, the same draw for
    both runs.

    Each run is matched once (``COCOeval.evaluate``); a resample only re-accumulates the stored
    match records, each image weighted by how often it was drawn (``weighted_ap``), which equals
    evaluating the drawn copies relabelled as separate images (checked in the tests).
    """
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
    table_a, table_b = match_table(match(gt, dets_a)), match_table(match(gt, dets_b))
    n_img = table_a.npig.shape[1]
    ones = np.ones(n_img)
    diff = weighted_ap(table_b, ones) - weighted_ap(table_a, ones)
    rng = np.random.default_rng(seed)
    draws = np.empty(n)  # (R,)
    for r in range(n):
        counts = np.bincount(rng.integers(0, n_img, n_img), minlength=n_img).astype(float)  # (I,)
        draws[r] = weighted_ap(table_b, counts) - weighted_ap(table_a, counts)
    low, high = _percentiles(draws, level)
    return {"diff": diff, "low": low, "high": high}


class MatchTable(NamedTuple):
    """A run's match records at area "all" and 100 detections, per category: its detections in
    descending score order (stable over images in id order) with their image (D,), whether each
    is a true (T, D) or false (T, D) positive at each IoU threshold (ignored ones are neither),
    and the non-ignored gt count of every image (K, I)."""

    image: list[np.ndarray]
    tp: list[np.ndarray]
    fp: list[np.ndarray]
    npig: np.ndarray
    rec_thrs: np.ndarray  # (R,) COCO's 101 recall thresholds


def match_table(matched: Matched) -> MatchTable:
    params = matched.coco_eval.params
    n_img, n_area = len(matched.img_ids), len(params.areaRng)
    area = params.areaRngLbl.index("all")
    images, tps, fps = [], [], []
    npig = np.zeros((len(params.catIds), n_img))  # (K, I)
    for k in range(len(params.catIds)):
        scores, image, tp, fp = [np.empty(0)], [np.empty(0, int)], [], []
        for i in range(n_img):
            record = matched.records[(k * n_area + area) * n_img + i]
            if record is None:
                continue
            npig[k, i] = np.count_nonzero(np.asarray(record["gtIgnore"]) == 0)
            matches = np.asarray(record["dtMatches"]) > 0  # (T, D_i)
            counted = ~np.asarray(record["dtIgnore"], dtype=bool)  # (T, D_i)
            scores.append(np.asarray(record["dtScores"], dtype=float))
            image.append(np.full(len(record["dtScores"]), i))
            tp.append(matches & counted)
            fp.append(~matches & counted)
        order = np.argsort(-np.concatenate(scores), kind="mergesort")  # (D,)
        empty = np.zeros((len(params.iouThrs), 0), bool)
        images.append(np.concatenate(image)[order])
        tps.append(np.concatenate([empty, *tp], axis=1)[:, order])
        fps.append(np.concatenate([empty, *fp], axis=1)[:, order])
    return MatchTable(images, tps, fps, npig, np.asarray(params.recThrs))


def weighted_ap(table: MatchTable, weights: np.ndarray) -> float:
    """COCO AP (IoU 0.50:0.95, area all, 100 detections) in percent with image i counted
    ``weights[i]`` times, as pycocotools' ``accumulate`` would give for that many relabelled
    copies. Copies of a detection tie in score and sit together in the ranking, so one weighted
    step equals their run of unit steps at its end, and the points inside the run never raise
    the interpolated precision. The one difference: detections of different images with exactly
    equal scores are ranked in image-id order here and in draw order by pycocotools."""
    eps = np.spacing(1)
    precisions = []
    for k, image in enumerate(table.image):
        npig = float(table.npig[k] @ weights)
        if npig == 0:  # no gt drawn: pycocotools leaves the category out (-1)
            continue
        w = weights[image]  # (D,)
        tp, fp = np.cumsum(table.tp[k] * w, axis=1), np.cumsum(table.fp[k] * w, axis=1)  # (T, D)
        recall, precision = tp / npig, tp / (tp + fp + eps)
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # (T, D)
        q = np.zeros((tp.shape[0], len(table.rec_thrs)))  # (T, R)
        for t in range(tp.shape[0]):
            at = np.searchsorted(recall[t], table.rec_thrs, side="left")  # (R,)
            reached = at < tp.shape[1]
            q[t, reached] = envelope[t, at[reached]]
        precisions.append(q)
    return 100 * float(np.mean(precisions)) if precisions else float("nan")


def match(gt, detections: list[dict] | str | Path) -> Matched:
    """``detections`` matched to the gt of every gt image (``COCOeval.evaluate`` only)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(detections, str | Path):
        detections = json.loads(Path(detections).read_text())
    detections = copy.deepcopy(detections)  # loadRes adds keys to the dicts it is given
    with contextlib.redirect_stdout(io.StringIO()):
        if detections:
            dt = gt.loadRes(detections)
        else:  # loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {**gt.dataset, "annotations": []}
            dt.createIndex()
        coco_eval = COCOeval(gt, dt, "bbox")
        coco_eval.params.imgIds = sorted(gt.getImgIds())
        coco_eval.evaluate()
    return Matched(coco_eval, list(coco_eval.params.imgIds), coco_eval.evalImgs)
