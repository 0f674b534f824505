"""Class-agnostic AP and the TIDE error breakdown on hand-made detections."""

import json

import pytest

from gfl_repro.engine.diagnostics import diagnose, summary_columns


def _write_gt(path, boxes: dict[int, tuple[int, list[float]]]) -> str:
    """``boxes``: image id -> (category id, [x, y, w, h]), one gt per 100 x 100 image."""
    coco = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in boxes],
        "annotations": [
            {"id": i, "image_id": i, "category_id": c, "bbox": b, "iscrowd": 0, "area": b[2] * b[3]}
            for i, (c, b) in boxes.items()
        ],  # fmt: skip
        "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)],
    }
    path.write_text(json.dumps(coco))
    return str(path)


def _det(image: int, cat: int, score: float, box: list[float]) -> dict:
    return {"image_id": image, "category_id": cat, "score": score, "bbox": box}


def test_each_tide_error_type_once(tmp_path):
    square = [10, 10, 40, 40]
    ann = _write_gt(tmp_path / "gt.json", {1: (1, square), 2: (1, square), 3: (2, [50, 50, 30, 30]),
                                           4: (1, square), 5: (3, square)})  # fmt: skip
    dets = [
        _det(1, 2, 0.9, square),  # right box, wrong class: classification
        _det(2, 1, 0.8, square),  # true positive
        _det(2, 1, 0.7, [11, 10, 40, 40]),  # the same gt again: duplicate
        _det(3, 2, 0.6, [65, 50, 30, 30]),  # right class, IoU 450 / 1350 = 0.33: localisation
        _det(4, 1, 0.5, [0, 80, 5, 5]),  # touches no gt: background
        _det(5, 1, 0.4, [25, 10, 40, 40]),  # wrong class, IoU 1000 / 2200 = 0.45: both
    ]
    out = diagnose(ann, dets)
    # Missed: a gt that no detection found, nor a classification or localisation error covers:
    # image 4's, and image 5's (a "both" error does not cover its gt).
    assert out["tide"]["errors"] == {"cls": 1, "loc": 1, "both": 1, "dupe": 1, "bkg": 1, "miss": 2}
    dap = out["tide"]["dAP"]
    assert dap["cls"] > 0 and dap["loc"] > 0 and dap["miss"] > 0
    assert 0 < out["tide"]["AP50"] < 100  # one true positive among five gt
    columns = summary_columns(out)
    assert columns["dAP_cls"] == dap["cls"] and 0 <= columns["AP_agnostic"] <= 100


def test_class_agnostic_ap_ignores_the_class(tmp_path):
    ann = _write_gt(tmp_path / "gt.json", {1: (1, [10, 10, 40, 40]), 2: (2, [20, 20, 30, 30])})
    swapped = [_det(1, 2, 0.9, [10, 10, 40, 40]), _det(2, 1, 0.8, [20, 20, 30, 30])]
    out = diagnose(ann, swapped)
    assert out["AP_agnostic"] == pytest.approx(1.0)  # every box is on its object
    assert out["tide"]["errors"]["cls"] == 2 and out["tide"]["AP50"] == pytest.approx(0.0)


def test_class_agnostic_ap_of_a_loose_box(tmp_path):
    # gt 50 x 50, detection 50 x 29 inside it: IoU 0.58, a match at IoU 0.50 and 0.55 only, so
    # AP = 2 / 10 thresholds x precision 1 at every recall point.
    ann = _write_gt(tmp_path / "gt.json", {1: (1, [0, 0, 50, 50])})
    out = diagnose(ann, [_det(1, 1, 0.9, [0, 0, 50, 29])])
    assert out["AP_agnostic"] == pytest.approx(0.2)
    assert out["AP50_agnostic"] == pytest.approx(1.0) and out["AP75_agnostic"] == pytest.approx(0)


def test_no_detections(tmp_path):
    ann = _write_gt(tmp_path / "gt.json", {1: (1, [0, 0, 50, 50])})
    out = diagnose(ann, [])
    assert out["AP_agnostic"] == 0.0 and out["tide"]["errors"]["miss"] == 1


def test_diagnose_command_writes_into_the_run_folder(tmp_path, capsys):
    from gfl_repro.cli import main

    ann = _write_gt(tmp_path / "gt.json", {1: (1, [0, 0, 50, 50])})
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"AP": 0.2, "ann_file": ann}))
    (run / "detections.json").write_text(json.dumps([_det(1, 1, 0.9, [0, 0, 50, 29])]))
    assert main(["diagnose", str(run)]) == 0
    assert json.loads((run / "diagnostics.json").read_text())["AP_agnostic"] == pytest.approx(0.2)
    assert "AP_agnostic 20.0" in capsys.readouterr().out
    assert main(["diagnose", str(run)]) == 0  # kept, not redone
    assert "exists (--force to redo)" in capsys.readouterr().out
