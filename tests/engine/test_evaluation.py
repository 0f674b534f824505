import csv
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from gfl_repro.data import inference_transforms
from gfl_repro.data.coco import DatasetError
from gfl_repro.data.mini import generate, mini_dataset
from gfl_repro.engine.evaluation import evaluate, load_gt, to_coco_results

HAS_FASTER = importlib.util.find_spec("faster_coco_eval") is not None
BACKENDS = ["pycocotools"] + (["faster"] if HAS_FASTER else [])


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_eval")
    generate(root, seed=1, n_train=1, n_val=4, size=96)
    return root


def write_gt(path, boxes, size=200):
    """One image of ``size`` x ``size``; boxes (xywh, category_id); categories 1 'a' and 2 'b'."""
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for i, (b, c) in enumerate(boxes)
    ]
    data = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": size, "height": size}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    path.write_text(json.dumps(data))
    return path


def det(bbox, score=1.0, category_id=1):
    return {"image_id": 1, "category_id": category_id, "bbox": bbox, "score": score}


def test_ground_truth_through_loader_and_back_scores_one(tiny_set):
    # load the val images through the inference pipeline (96 -> 128: scale 4/3), map the resized
    # target boxes back with scale_factor and submit them as detections
    dataset = mini_dataset(tiny_set, "val", transforms=inference_transforms((128, 128)))
    results = []
    for i in range(len(dataset)):
        _, target = dataset[i]
        assert target["img_shape"] == (128, 128)
        boxes = target["boxes"].as_subclass(torch.Tensor) / target["scale_factor"]
        scores = torch.ones(len(boxes))
        results += to_coco_results(
            target["image_id"], boxes, scores, target["labels"], dataset.cat_ids
        )
    assert len(results) == sum(len(r.labels) for r in dataset.records)
    for backend in BACKENDS:
        metrics = evaluate(dataset.ann_file, results, backend=backend)
        assert metrics["AP"] == metrics["AP50"] == metrics["AP75"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shifted_box_by_hand(tmp_path, backend):
    # GT 100 x 100 at (50, 50), area 10000 > 96^2 (large). A detection shifted right by 32 px
    # overlaps 68 x 100: IoU = 6800 / (10000 + 10000 - 6800) = 68 / 132 = 0.515, a match at
    # IoU threshold 0.50 only (of 0.50, 0.55, ..., 0.95): AP50 = 1, AP75 = 0, AP = 1 / 10.
    # Shifted by 10 px: IoU = 90 / 110 = 0.818, a match at 0.50 ... 0.80 (7 thresholds): AP = 0.7.
    ann_file = write_gt(tmp_path / "gt.json", [([50, 50, 100, 100], 1)])
    m = evaluate(ann_file, [det([82, 50, 100, 100])], backend=backend)
    assert m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(0.0)
    assert m["AP"] == pytest.approx(0.1) and m["APl"] == pytest.approx(0.1)
    assert m["APs"] == m["APm"] == -1.0  # no small or medium ground truth: undefined
    m = evaluate(ann_file, [det([60, 50, 100, 100])], backend=backend)
    assert m["AP"] == pytest.approx(0.7) and m["AP75"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_false_positive_ranked_first_by_hand(tmp_path, backend):
    # a false positive of class 'a' (score 0.9) above the true one (0.8): precision 0 at recall 0,
    # then 1/2 at recall 1; COCO's interpolated precision is the max to the right, 1/2 at every
    # recall point -> AP 0.5 at every IoU threshold. Class 'b' has no ground truth: -1 in the csv.
    ann_file = write_gt(tmp_path / "gt.json", [([50, 50, 100, 100], 1)])
    dets = [det([0, 0, 20, 20], 0.9), det([50, 50, 100, 100], 0.8), det([5, 5, 9, 9], 0.7, 2)]
    m = evaluate(ann_file, dets, out_dir=tmp_path / "out", backend=backend)
    assert m["AP"] == pytest.approx(0.5) and m["AP50"] == pytest.approx(0.5)
    with open(tmp_path / "out" / "per_class_ap.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["category_id"], r["name"]) for r in rows] == [("1", "a"), ("2", "b")]
    assert float(rows[0]["AP"]) == pytest.approx(0.5) and float(rows[1]["AP"]) == -1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_give_zeros(tmp_path, backend):
    # one small (20^2), one medium (50^2) and one large (120^2) ground truth box
    boxes = [([0, 0, 20, 20], 1), ([30, 30, 50, 50], 2), ([80, 80, 120, 120], 1)]
    ann_file = write_gt(tmp_path / "gt.json", boxes)
    m = evaluate(ann_file, [], out_dir=tmp_path, backend=backend)
    assert m == {k: 0.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


@pytest.mark.skipif(not HAS_FASTER, reason="faster_coco_eval is not importable")
def test_backends_agree(tiny_set, tmp_path):
    # the val ground truth jittered by up to 8 px, random scores and one false positive an image
    rng = np.random.default_rng(0)
    gt = json.loads((tiny_set / "annotations" / "instances_val.json").read_text())
    dets = []
    for a in gt["annotations"]:
        x, y, w, h = np.array(a["bbox"]) + rng.uniform(-8, 8, 4)
        dets.append(det([x, y, max(w, 1.0), max(h, 1.0)], rng.random(), a["category_id"]))
        dets[-1]["image_id"] = a["image_id"]
    for img in gt["images"]:
        dets.append({**det([10, 10, 30, 30], rng.random(), 3), "image_id": img["id"]})
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    ann_file = tiny_set / "annotations" / "instances_val.json"
    ref = evaluate(ann_file, path, out_dir=tmp_path / "ref")
    fast = evaluate(ann_file, path, out_dir=tmp_path / "fast", backend="faster")
    assert 0.05 < ref["AP"] < 0.95
    assert fast == pytest.approx(ref, abs=1e-9)
    ref_csv = (tmp_path / "ref" / "per_class_ap.csv").read_text()
    assert ref_csv == (tmp_path / "fast" / "per_class_ap.csv").read_text()


def test_to_coco_results_by_hand():
    boxes = np.array([[10.0, 20.0, 30.0, 60.0], [0.5, 1.5, 2.0, 4.0]])
    out = to_coco_results(9, torch.tensor(boxes), np.array([0.9, 0.2]), [1, 0], [4, 11])
    assert out == [
        {"image_id": 9, "category_id": 11, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.9},
        {"image_id": 9, "category_id": 4, "bbox": [0.5, 1.5, 1.5, 2.5], "score": 0.2},
    ]
    assert to_coco_results(9, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), [4]) == []


def test_detections_on_unknown_images_are_refused(tmp_path):
    ann_file = write_gt(tmp_path / "gt.json", [([50, 50, 100, 100], 1)])
    with pytest.raises(ValueError, match="not in"):
        evaluate(ann_file, [{**det([0, 0, 5, 5]), "image_id": 2}])
    with pytest.raises(ValueError, match="backend"):
        evaluate(ann_file, [], backend="nope")


def test_missing_faster_backend_says_how_to_install(tmp_path, monkeypatch):
    ann_file = write_gt(tmp_path / "gt.json", [([50, 50, 100, 100], 1)])
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install gfl-repro\[fasteval\]"):
        evaluate(ann_file, [], backend="faster")


def test_a_missing_annotation_file_is_an_error_that_names_it(tmp_path):
    missing = tmp_path / "data/mini/annotations/instances_val.json"
    with pytest.raises(DatasetError, match=f"annotation file {missing} not found"):
        load_gt(missing)
