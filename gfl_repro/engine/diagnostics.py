"""Diagnostics of a run's val detections beyond COCO AP: class-agnostic AP and the TIDE error
breakdown (Bolya et al., ECCV 2020), written as ``diagnostics.json`` in the run folder.

Class-agnostic AP is COCO AP with categories ignored when matching (pycocotools'
``useCats = 0``): a box on an object counts whatever class it names, so AP_agnostic - AP is what
telling the classes apart costs.

TIDE (the ``tidecv-light`` package, the numpy-only fork of the authors' code) sorts every error
at IoU 0.5 (background below 0.1) into one type and gives, per type, the AP50 points that an
oracle fixing only that type would add (dAP):

- cls: IoU >= 0.5 with a gt of another class;
- loc: the right class, 0.1 <= IoU < 0.5 (or a box whose gt is matched already at >= 0.1 IoU);
- both: another class and 0.1 <= IoU < 0.5;
- dupe: the right class, IoU >= 0.5 with a gt a higher-scoring detection matched already;
- bkg: IoU < 0.1 with every gt;
- miss: a gt no detection matched nor mislocalised or misclassified.

Legend: D detections, G gt boxes.
"""

import contextlib
import io
import json
import time
from pathlib import Path

# TIDE's error names (short_name) -> ours
TIDE_ERRORS = {"Cls": "cls", "Loc": "loc", "Both": "both", "Dupe": "dupe", "Bkg": "bkg",
               "Miss": "miss"}  # fmt: skip
TIDE_CLASSES = {"ClassError": "cls", "BoxError": "loc", "OtherError": "both",
                "DuplicateError": "dupe", "BackgroundError": "bkg",
                "MissedError": "miss"}  # fmt: skip
MAX_DETS = 100  # per image, as COCO's AP


def _xyxy(box: list[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


def class_agnostic_ap(gt, detections: list[dict]) -> dict[str, float]:
    """COCO AP, AP50 and AP75 (in [0, 1]) of ``detections`` against the pycocotools index
    ``gt`` with categories ignored in the matching."""
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"AP_agnostic": 0.0, "AP50_agnostic": 0.0, "AP75_agnostic": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(gt, gt.loadRes([dict(d) for d in detections]), "bbox")
        coco_eval.params.useCats = 0
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    ap, ap50, ap75 = (float(v) for v in coco_eval.stats[:3])
    return {"AP_agnostic": ap, "AP50_agnostic": ap50, "AP75_agnostic": ap75}


def tide_errors(gt, detections: list[dict]) -> dict:
    """TIDE at IoU 0.5: AP50 (in percent, TIDE's unit), the dAP of each main error type, the
    dAP of fixing all false positives / all false negatives, and the count of each error."""
    from tidecv import TIDE, Data

    truth, preds = Data("gt", max_dets=MAX_DETS), Data("dets", max_dets=MAX_DETS)
    for image_id in gt.getImgIds():
        # TIDE looks every image up in both sets: register them all (its only way is private)
        truth._make_default_image(image_id)
        preds._make_default_image(image_id)
    for a in gt.dataset["annotations"]:
        if a.get("iscrowd", 0):
            truth.add_ignore_region(a["image_id"], a["category_id"], _xyxy(a["bbox"]))
        else:
            truth.add_ground_truth(a["image_id"], a["category_id"], _xyxy(a["bbox"]))
    for d in detections:
        preds.add_detection(d["image_id"], d["category_id"], d["score"], _xyxy(d["bbox"]))
    tide = TIDE()
    run = tide.evaluate(truth, preds, mode=TIDE.BOX, name="dets")
    main = tide.get_main_errors()["dets"]
    special = tide.get_special_errors()["dets"]
    counts = dict.fromkeys(TIDE_ERRORS.values(), 0)
    for error in run.errors:
        counts[TIDE_CLASSES[type(error).__name__]] += 1
    return {
        "AP50": float(run.ap),
        "dAP": {ours: float(main[name]) for name, ours in TIDE_ERRORS.items()},
        "dAP_false_pos": float(special["FalsePos"]),
        "dAP_false_neg": float(special["FalseNeg"]),
        "errors": counts,
    }


def diagnose(ann_file: str | Path, detections: list[dict] | str | Path) -> dict:
    """Class-agnostic AP and the TIDE breakdown of ``detections`` (result dicts or their json)
    against ``ann_file``, with the seconds it took."""
    from gfl_repro.engine.evaluation import load_gt

    tic = time.perf_counter()
    if isinstance(detections, str | Path):
        detections = json.loads(Path(detections).read_text())
    gt = load_gt(ann_file)
    out = {**class_agnostic_ap(gt, detections), "tide": tide_errors(gt, detections)}
    return {**out, "ann_file": str(ann_file), "seconds": round(time.perf_counter() - tic, 2)}


def summary_columns(diagnostics: dict) -> dict[str, float]:
    """The flat columns a table shows: class-agnostic AP in percent and TIDE's dAP per type."""
    if not diagnostics:
        return {}
    out = {k: 100 * diagnostics[k] for k in ("AP_agnostic", "AP50_agnostic", "AP75_agnostic")}
    out.update({f"dAP_{k}": v for k, v in diagnostics["tide"]["dAP"].items()})
    return out
