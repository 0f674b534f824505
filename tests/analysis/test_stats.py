"""Statistics against numpy / scipy and hand-made COCO cases.

Legend: N rows, I images.
"""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from scipy import stats as sps

from gfl_repro.analysis.stats import (
    bootstrap_ci,
    match,
    match_table,
    mean_std,
    paired_bootstrap_ap,
    pearson,
    verdict,
    weighted_ap,
)


def test_pearson_equals_numpy_and_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)  # (N,)
    y = 0.3 * x + rng.normal(size=200)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert pearson(x, y) == pytest.approx(sps.pearsonr(x, y)[0], abs=1e-12)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_pearson_nan_for_constant_or_missing():
    assert np.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(pearson([np.nan, 1.0, 2.0], [1.0, 2.0, 3.0]))


def test_bootstrap_interval_contains_truth_and_shrinks_with_n():
    # x, y standard normal with correlation rho: the population Pearson is rho.
    rho, rng = 0.6, np.random.default_rng(1)
    widths = []
    for size in (100, 2000):
        x = rng.normal(size=size)  # (N,)
        y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=size)
        value, low, high = bootstrap_ci(x, y, n=300, seed=0)
        assert low < rho < high
        assert low <= value <= high
        assert value == pytest.approx(pearson(x, y))
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~ 1 / sqrt(N): 4.5x narrower for 20x the rows


def test_bootstrap_is_seeded_and_takes_any_statistic():
    x = np.arange(50.0)
    y = x**2
    assert bootstrap_ci(x, y, n=50, seed=3) == bootstrap_ci(x, y, n=50, seed=3)
    value, low, high = bootstrap_ci(x, y, stat=lambda a, b: float(np.mean(b - a)), n=100)
    assert value == pytest.approx(np.mean(y - x))
    assert low < value < high


def test_mean_std_and_verdict():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    mean, std = mean_std([4.0])
    assert mean == 4.0 and np.isnan(std)
    assert verdict(0.5, 0.1, 0.9) == "supported"
    assert verdict(0.1, -0.2, 0.4) == "within noise"
    assert verdict(-0.5, -0.9, -0.1) == "contradicted"


# ---- paired bootstrap of AP on a hand-made COCO set -------------------------------------------


def _coco(tmp_path, num_images=8, crowd=False):
    """Images of one or two 20x20 boxes of two categories (and with ``crowd`` a 30x30 crowd box
    of category 1 in image 2); returns the ann file and the non-crowd gt boxes."""
    rng = np.random.default_rng(0)
    images, anns, boxes = [], [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"})
        for j in range(1 + i % 2):
            x, y = rng.uniform(0, 70, size=2)
            box = [float(x), float(y), 20.0, 20.0]  # xywh
            cat = 1 + j
            anns.append(
                {"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": box,
                 "area": 400.0, "iscrowd": 0}
            )  # fmt: skip
            boxes.append((i, cat, box))
    if crowd:
        anns.append({"id": len(anns) + 1, "image_id": 2, "category_id": 1, "iscrowd": 1,
                     "bbox": [60.0, 60.0, 30.0, 30.0], "area": 900.0})  # fmt: skip
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, boxes


def _dets(boxes, shift):
    """A detection per gt box, shifted by ``shift`` pixels in x (IoU = (20-s) / (20+s))."""
    return [
        {"image_id": i, "category_id": c, "bbox": [b[0] + shift, b[1], b[2], b[3]], "score": 0.9}
        for i, c, b in boxes
    ]


def test_identical_detections_give_zero_with_zero_width(tmp_path):
    ann, boxes = _coco(tmp_path)
    dets = _dets(boxes, 3.0)
    out = paired_bootstrap_ap(ann, dets, copy.deepcopy(dets), n=20)
    assert out == {"diff": 0.0, "low": 0.0, "high": 0.0}


def test_better_on_every_image_gives_positive_interval(tmp_path):
    ann, boxes = _coco(tmp_path)
    out = paired_bootstrap_ap(ann, _dets(boxes, 5.0), _dets(boxes, 0.0), n=30)
    assert out["diff"] > 0 and out["low"] > 0 and out["high"] >= out["low"]
    assert verdict(**out) == "supported"
    swapped = paired_bootstrap_ap(ann, _dets(boxes, 0.0), _dets(boxes, 5.0), n=30)
    assert verdict(**swapped) == "contradicted"
    assert swapped["diff"] == pytest.approx(-out["diff"])


def _relabelled_ap(ann_file, dets, drawn_ids) -> float:
    """AP (percent) of a resample by explicit relabelling: the k-th drawn image becomes a fresh
    image k + 1 in copies of the gt and the detections, evaluated from scratch."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = json.loads(ann_file.read_text())
    images, anns, new_dets = [], [], []
    for k, img in enumerate(drawn_ids, start=1):
        images.append({"id": k, "width": 100, "height": 100})
        for a in data["annotations"]:
            if a["image_id"] == img:
                anns.append({**a, "id": len(anns) + 1, "image_id": k})
        new_dets += [{**d, "image_id": k} for d in dets if d["image_id"] == img]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": data["categories"]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(new_dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[0]


def test_weighted_ap_equals_explicit_relabelling(tmp_path):
    """Image weights equal evaluating relabelled duplicate images from scratch, with false
    positives, a crowd gt (ignored detections) and distinct scores ranked across images."""
    from pycocotools.coco import COCO

    ann, boxes = _coco(tmp_path, crowd=True)
    rng = np.random.default_rng(5)
    dets = _dets(boxes, 4.0)
    for d in dets:  # varied scores and shifts so the ranking across images matters
        d["score"] = float(rng.uniform(0.1, 1.0))
        d["bbox"][0] += float(rng.uniform(-4, 4))
    for img in (1, 2, 2, 5):  # false positives, one inside the crowd box of image 2
        dets.append({"image_id": img, "category_id": 1, "bbox": [62.0, 62.0, 20.0, 20.0],
                     "score": float(rng.uniform(0.1, 1.0))})  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        table = match_table(match(COCO(str(ann)), dets))
    for drawn in ([3, 3, 1, 8, 5, 5, 5, 2], [1, 2, 3, 4, 5, 6, 7, 8], [7, 7, 7, 7, 2, 2, 2, 2],
                  [2, 2, 2, 4, 4, 6, 6, 6]):  # fmt: skip
        counts = np.bincount(np.asarray(drawn) - 1, minlength=8).astype(float)  # (I,) ids 1..8
        expected = _relabelled_ap(ann, dets, drawn)
        assert weighted_ap(table, counts) == pytest.approx(expected, abs=1e-9)


def test_weighted_ap_of_all_ones_is_pycocotools_ap(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann, boxes = _coco(tmp_path, crowd=True)
    dets = _dets(boxes, 6.0)
    dets[0]["score"], dets[3]["score"] = 0.5, 0.7
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        table = match_table(match(gt, dets))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert weighted_ap(table, np.ones(8)) == pytest.approx(100 * ev.stats[0], abs=1e-9)
