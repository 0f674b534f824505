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

    pycocotools cannot take duplicate image ids, and relabelling each drawn copy with a fresh
    id would re-match every image at every resample. Instead each run is matched once
    (``COCOeval.evaluate``) and each resample only re-accumulates the per-(category, area, image)
    match records of the drawn images, duplicates included, in draw order. A record depends on its
    own image's gt and detections only, so this equals evaluating the relabelled copies (the
    tests check that equality against an explicit relabelling).
    """
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
    eval_a, eval_b = match(gt, dets_a), match(gt, dets_b)
    img_ids = eval_a.img_ids  # (I,) sorted
    diff = resampled_ap(eval_b, img_ids) - resampled_ap(eval_a, img_ids)
    rng = np.random.default_rng(seed)
    draws = np.empty(n)  # (R,)
    for r in range(n):
        ids = [img_ids[i] for i in rng.integers(0, len(img_ids), len(img_ids))]  # (I,)
        draws[r] = resampled_ap(eval_b, ids) - resampled_ap(eval_a, ids)
    low, high = _percentiles(draws, level)
    return {"diff": diff, "low": low, "high": high}


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


def resampled_ap(matched: Matched, img_ids: list[int]) -> float:
    """AP (IoU 0.50:0.95, all areas, 100 detections) in percent over ``img_ids`` (duplicates
    count as separate images), from the records ``evaluate`` stored for the original images."""
    coco_eval = matched.coco_eval
    pos = {img: i for i, img in enumerate(matched.img_ids)}
    n_img, n_area = len(matched.img_ids), len(coco_eval.params.areaRng)
    records = [
        matched.records[(k * n_area + a) * n_img + pos[img]]
        for k in range(len(coco_eval.params.catIds))
        for a in range(n_area)
        for img in img_ids
    ]  # (K * A * I,) in COCOeval's order
    coco_eval.evalImgs = records
    coco_eval.params.imgIds = list(img_ids)
    coco_eval._paramsEval.imgIds = list(img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.accumulate()
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # (T, R, K) all areas, 100 dets
    valid = precision[precision > -1]
    return 100 * float(valid.mean()) if valid.size else float("nan")
