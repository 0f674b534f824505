"""Inference over a val set: detections json, COCO metrics, and the run's completion marker."""

import json
import logging
import time
from pathlib import Path

import torch

from gfl_repro.engine.diagnostics import diagnose
from gfl_repro.engine.distributed import DistInfo, all_gather_objects
from gfl_repro.engine.evaluation import evaluate, to_coco_results
from gfl_repro.engine.runs import RunFolder
from gfl_repro.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_loader(model, loader, device: torch.device) -> list[dict]:
    """COCO result dicts of every image this process sees."""
    was_training = model.training
    model.eval()
    cat_ids = loader.dataset.cat_ids
    results = []
    for images, targets in loader:
        for t, det in zip(targets, model.predict(images.to(device), targets), strict=True):
            results += to_coco_results(
                t["image_id"], det["boxes"], det["scores"], det["labels"], cat_ids
            )
    model.train(was_training)
    return results


def evaluate_run(
    model, loader, dist: DistInfo, run_dir: Path, write_detections: bool = True,
    record: dict | None = None,
) -> dict | None:  # fmt: skip
    """Predict on the val loader (sharded over processes), then on rank 0 evaluate and, for the
    final evaluation, write detections.json, per_class_ap.csv, diagnostics.json (class-agnostic
    AP, TIDE errors) and, last, metrics.json (the metrics, the evaluation's seconds and
    ``record``)."""
    tic = time.perf_counter()
    parts = all_gather_objects(predict_loader(model, loader, dist.device))
    if not dist.is_main:
        return None
    detections = [d for part in parts for d in part]
    ann_file = loader.dataset.ann_file
    out_dir = Path(run_dir) if write_detections else None
    metrics = evaluate(ann_file, detections, out_dir=out_dir)
    seconds = time.perf_counter() - tic
    log.info("val: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f" ({seconds:.0f} s)")
    if write_detections:
        folder = RunFolder(run_dir)
        atomic_write_text(folder / folder.DETECTIONS, json.dumps(detections))
        atomic_write_json(folder / folder.DIAGNOSTICS, diagnose(ann_file, detections))
        saved = {**metrics, "ann_file": str(ann_file), "images": len(loader.dataset),
                 "eval_seconds": round(seconds, 2), **(record or {})}  # fmt: skip
        atomic_write_json(folder / folder.METRICS, saved)  # last: marks the run complete
    return metrics
