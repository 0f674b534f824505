"""COCO box evaluation with pycocotools or faster-coco-eval, and conversion of model outputs to
COCO result dicts.

Legend: N detections of an image; T = 10 IoU thresholds, R = 101 recall points, K categories,
A = 4 area ranges, D = 3 max-detection settings (COCOeval's precision array is (T, R, K, A, D)).
"""

import contextlib
import copy
import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from gfl_repro.data.coco import DatasetError
from gfl_repro.engine.runs import RunFolder

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
BACKENDS = ("pycocotools", "faster")


def to_coco_results(
    image_id: int,
    boxes: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    label_to_cat_id: list[int],
) -> list[dict]:
    """COCO result dicts of one image.

    Args:
        boxes: (N, 4) xyxy in original-image pixels.
        scores: (N,).
        labels: (N,) contiguous labels, mapped to category ids by ``label_to_cat_id``.
    Returns:
        N dicts {image_id, category_id, bbox [x, y, w, h] with w = x2 - x1, h = y2 - y1, score}.
    """
    boxes = torch.as_tensor(boxes).detach().cpu().to(torch.float64).reshape(-1, 4)  # (N, 4)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()  # (N, 4)
    scores = torch.as_tensor(scores).detach().cpu().reshape(-1).tolist()
    labels = torch.as_tensor(labels).detach().cpu().reshape(-1).tolist()
    return [
        {
            "image_id": int(image_id),
            "category_id": int(label_to_cat_id[int(label)]),
            "bbox": box,
            "score": float(score),
        }
        for box, score, label in zip(xywh, scores, labels, strict=True)
    ]


def load_gt(ann_file: str | Path):
    """The COCO ground truth of ``ann_file`` (pycocotools' index, its prints silenced). A missing
    file is a DatasetError that names it (a path recorded relative to another working directory,
    or a built-in set not generated here)."""
    from pycocotools.coco import COCO

    if not Path(ann_file).is_file():
        raise DatasetError(
            f"annotation file {ann_file} not found (from {Path.cwd()}): generate the built-in set "
            "with `gfl-repro data mini --out data/mini`, put COCO there, or pass the file "
            "(--ann-file where the command has it)"
        )

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def _load_detections(detections: list[dict] | str | Path) -> list[dict]:
    if isinstance(detections, str | Path):
        with open(detections, encoding="utf-8") as f:
            detections = json.load(f)
    if not isinstance(detections, list):
        raise ValueError(f"detections must be a list of COCO result dicts, got {type(detections)}")
    # Both APIs add keys (area, id, ...) to the dicts they are given; work on copies.
    return copy.deepcopy(detections)


def _check_image_ids(detections: list[dict], gt_image_ids: set[int], ann_file: Path) -> None:
    unknown = {d["image_id"] for d in detections} - gt_image_ids
    if unknown:
        sample = sorted(unknown)[:5]
        raise ValueError(f"{len(unknown)} detection image ids not in {ann_file}, e.g. {sample}")


def _run_pycocotools(ann_file: Path, detections: list[dict]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        _check_image_ids(detections, set(gt.getImgIds()), ann_file)
        if detections:
            dt = gt.loadRes(detections)
        else:  # loadRes cannot take an empty list: an empty result set with the same images
            dt = COCO()
            dt.dataset = {
                "images": gt.dataset["images"],
                "categories": gt.dataset["categories"],
                "annotations": [],
            }
            dt.createIndex()
        coco_eval = COCOeval(gt, dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return gt, coco_eval


def _run_faster(ann_file: Path, detections: list[dict]):
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError as err:
        raise ImportError(
            "backend='faster' needs the faster-coco-eval package: pip install gfl-repro[fasteval]"
        ) from err

    def quiet(*args, **kwargs):
        return None

    gt = COCO(str(ann_file), print_function=quiet)
    _check_image_ids(detections, set(gt.getImgIds()), ann_file)
    dt = gt.loadRes(detections)
    coco_eval = COCOeval_faster(gt, dt, "bbox", print_function=quiet)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return gt, coco_eval


def per_class_ap(coco_eval) -> list[float]:
    """AP over IoU 0.5:0.95, all areas, 100 detections, per category (in params.catIds order);
    -1 where a category has no ground truth."""
    precision = np.asarray(coco_eval.eval["precision"])  # (T, R, K, A, D)
    aps = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k, 0, -1]  # (T, R)
        p = p[p > -1]
        aps.append(float(p.mean()) if p.size else -1.0)
    return aps


def _write_per_class(path: Path, gt, coco_eval) -> None:
    cat_ids = list(coco_eval.params.catIds)
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["category_id", "name", "AP"])
        for cat_id, ap in zip(cat_ids, per_class_ap(coco_eval), strict=True):
            writer.writerow([cat_id, names[cat_id], f"{ap:.6f}"])


def evaluate(
    ann_file: str | Path,
    detections: list[dict] | str | Path,
    out_dir: str | Path | None = None,
    backend: str = "pycocotools",
) -> dict[str, float]:
    """COCO box AP of ``detections`` (result dicts or a json of them) against ``ann_file``.

    Returns {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'} as floats in [0, 1]; -1 where COCO leaves
    a value undefined (an area range without ground truth). No detections give 0 wherever ground
    truth exists. With ``out_dir``, also writes ``out_dir/per_class_ap.csv`` (category_id, name,
    AP).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    ann_file = Path(ann_file)
    detections = _load_detections(detections)
    run = _run_pycocotools if backend == "pycocotools" else _run_faster
    gt, coco_eval = run(ann_file, detections)
    results = {name: float(v) for name, v in zip(METRICS, coco_eval.stats[:6], strict=True)}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_per_class(out_dir / RunFolder.PER_CLASS, gt, coco_eval)
    return results
