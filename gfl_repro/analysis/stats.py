"""Statistics for the analysis: Pearson correlation, bootstrap intervals, a paired image-level
bootstrap of COCO AP between two runs, the interval of a difference over training seeds, Holm's
correction, and a verdict on a claim from an interval.

Legend: N rows (samples), R bootstrap resamples, I val images, K categories, A = 4 area ranges,
S training seeds, m comparisons.
"""

import contextlib
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gfl_repro.engine.evaluation import load_gt

VERDICTS = ("supported", "within noise", "contradicted")
NOT_ENOUGH_SEEDS = "not enough seeds"
MIN_SEEDS = 3  # fewer seeds than this measure no training noise: no verdict is given


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


class SeedInterval(NamedTuple):
    """A difference over training seeds: its mean, the ``level`` interval, the standard error,
    the two-sided p-value of "the difference is 0", the seeds' sample std and their count."""

    mean: float
    low: float
    high: float
    se: float
    p: float
    std: float
    n: int


def seed_interval(diffs, sample_var: float = 0.0, level: float = 0.95) -> SeedInterval:
    """Student-t interval of the mean of the per-seed differences ``diffs`` (S,), n - 1 degrees
    of freedom. Its squared standard error is the seed-to-seed variance of the mean, s^2 / n,
    plus ``sample_var``: the variance of the mean difference over resamples of the evaluation
    sample (val images, or val positives for a PCC). With ``sample_var`` 0 this is the textbook
    t-interval (scipy's ``stats.t.interval`` with ``scale`` = s / sqrt(n)); adding the sample
    variance counts the seed-by-image part of the noise twice, which errs on the wide side."""
    from scipy import stats as sps

    d = np.asarray(diffs, dtype=np.float64)  # (S,)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"seed_interval needs at least 2 seeds' differences, got {d.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n, mean, std = d.size, float(d.mean()), float(d.std(ddof=1))
    se = float(np.sqrt(std**2 / n + sample_var))
    if se == 0:  # every seed gave the same difference and the sample does not vary
        return SeedInterval(mean, mean, mean, 0.0, float(mean == 0), std, n)
    half = float(sps.t.ppf(0.5 + level / 2, df=n - 1)) * se
    p = float(2 * sps.t.sf(abs(mean) / se, df=n - 1))
    return SeedInterval(mean, mean - half, mean + half, se, p, std, n)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (m,), in the input order: the i-th smallest p is
    multiplied by m - i + 1 (i from 1), made non-decreasing along that order and capped at 1.
    Rejecting where the adjusted p < alpha keeps the family-wise error rate at alpha."""
    p = np.asarray(p_values, dtype=np.float64)  # (m,)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))  # (m,)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def verdict_over_seeds(interval: SeedInterval) -> str:
    """Verdict on ``diff > 0`` from the interval over seeds; with fewer than ``MIN_SEEDS`` the
    training noise is not measured and no verdict is given."""
    if interval.n < MIN_SEEDS:
        return NOT_ENOUGH_SEEDS
    return verdict(interval.mean, interval.low, interval.high)


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
    gt = load_gt(ann_file)
    tables = (match_table(match(gt, dets_a)), match_table(match(gt, dets_b)))
    weights = image_weights(tables[0].npig.shape[1], n, seed)  # (R, I)
    diffs, draws = paired_ap_draws([tables], weights)  # (1,), (R, 1)
    low, high = _percentiles(draws[:, 0], level)
    return {"diff": float(diffs[0]), "low": low, "high": high}


def image_weights(n_img: int, n: int, seed: int = 0) -> np.ndarray:
    """(R, I) counts: how often each val image is drawn in each of ``n`` bootstrap resamples
    (I draws with replacement each)."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n_img, n_img), minlength=n_img)
                     for _ in range(n)]).astype(float)  # fmt: skip


def paired_ap_draws(pairs: list[tuple["MatchTable", "MatchTable"]],
                    weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """AP(b) - AP(a) in percent for each (a, b) pair of runs evaluated on the same val images
    (one pair per seed): on the full set (S,), and under each resample of ``weights`` (R, I),
    the same draw of images for every pair (R, S), so the mean over seeds can be resampled too."""
    ones = np.ones(weights.shape[1])
    diffs = np.array([weighted_ap(b, ones) - weighted_ap(a, ones) for a, b in pairs])  # (S,)
    draws = [[weighted_ap(b, w) - weighted_ap(a, w) for a, b in pairs] for w in weights]
    return diffs, np.array(draws).reshape(len(weights), len(pairs))  # (R, S)


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
