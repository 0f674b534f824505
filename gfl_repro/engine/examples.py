"""The probe behind Figs. 1c/d and 7: a trained run's model over its first val images, written
into the run folder, from which ``gfl_repro.analysis.examples`` draws without a model.

Legend: P priors over all levels, Q priors kept per level, D candidates (a kept prior and a class
above the score threshold, before NMS), S detections after NMS, M gt boxes, C classes,
n = reg_max (n + 1 bins).

As ``lqe.run_lqe`` does, the probe rebuilds the run's model from its resolved config and latest
checkpoint and runs it over the first val images, loaded and batched as evaluation does. Boxes
are in pixels of the resized image the network saw (the frame of a val batch's gt boxes), which
is saved beside them, so a side distribution's bin times its stride is a distance on the drawn
image. It writes, under the names ``RunFolder`` gives them:

- ``examples/detections.csv``: every detection after NMS: image_id, label, score, iou and
  gx1..gy2 of its best same-class gt (0 and NaN without), top1_mean (NaN for a dirac box),
  stride, px, py of its prior, x1..y2;
- ``examples/distributions.npz``: ``probability`` (S, 4, n + 1), the side distributions of
  those detections, row for row (distribution boxes only);
- ``examples/candidates.csv``: every candidate before NMS: image_id, label, score, x1..y2,
  kept (a final detection);
- ``examples/gt.csv``: image_id, gt (its index in the image), label, gx1..gy2;
- ``examples/images/<image_id>.jpg``: each image as the network saw it (resized, no padding);
- ``examples/examples.json``, last: the checkpoint, the images asked for and looked through
  (ids and sizes in loader order), the class names, the box kind and NMS's IoU threshold.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from gfl_repro.config import Config
from gfl_repro.data.transforms import MEAN, STD
from gfl_repro.engine import lqe
from gfl_repro.engine.checkpoint import latest_checkpoint
from gfl_repro.engine.data import val_loader
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.lqe import _to
from gfl_repro.engine.runs import RunFolder
from gfl_repro.io import atomic_write_json
from gfl_repro.models.box_coding import Priors, box_iou, distance2bbox
from gfl_repro.models.detector import Detector
from gfl_repro.models.heads.gfl import GFLHead, HeadOutput
from gfl_repro.models.postprocess import multiclass_nms, topk_per_level

EXAMPLE_IMAGES = 100  # val images looked through by default
JPEG_QUALITY = 95  # the saved images are for drawing, not for measuring
BOX_COLS = ["x1", "y1", "x2", "y2"]
GT_COLS = ["gx1", "gy1", "gx2", "gy2"]
DETECTION_COLS = ["image_id", "label", "score", "iou", "top1_mean", "stride", "px", "py",
                  *BOX_COLS, *GT_COLS]  # fmt: skip
CANDIDATE_COLS = ["image_id", "label", "score", *BOX_COLS, "kept"]
GT_TABLE_COLS = ["image_id", "gt", "label", *GT_COLS]
TABLES = {RunFolder.EXAMPLES_DETECTIONS: DETECTION_COLS,
          RunFolder.EXAMPLES_CANDIDATES: CANDIDATE_COLS,
          RunFolder.EXAMPLES_GT: GT_TABLE_COLS}  # fmt: skip


def image_path(run_dir: str | Path, image_id: int) -> Path:
    return RunFolder(run_dir) / RunFolder.EXAMPLES_IMAGES / f"{image_id}.jpg"


# --- a run's model on its val images -----------------------------------------------------------


def load_run_model(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[Config, Detector]:
    """The resolved config of a run folder and its GFL model at the latest checkpoint, frozen."""
    cfg, model = lqe.load_run_model(run_dir)
    if not isinstance(model.head, GFLHead):
        raise TypeError(f"{run_dir}: needs a GFL head, got {type(model.head).__name__}")
    return cfg, model.to(device).eval().requires_grad_(False)


def val_outputs(
    loader: DataLoader, model: Detector, limit: int | None, device: torch.device | str = "cpu"
) -> Iterator[tuple[Tensor, dict, HeadOutput, Priors, int]]:
    """Per image of a val loader (``val_loader``), the first ``limit`` (all for None): the
    image (3, H, W) as the batch holds it, its target, the head output and priors of its batch,
    and its index in the batch. The model is frozen, so no autograd graph is built without a
    no_grad block (which a generator could not scope)."""
    seen = 0
    for images, targets in loader:
        out = model(images.to(device))
        priors = model.priors(out)
        for i, target in enumerate(targets):
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield images[i], _to(target, device), out, priors, i


def pixels(image: Tensor, img_shape: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8: a normalised, padded val image (3, H, W) as the network saw it."""
    h, w = img_shape
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    image = image[:, :h, :w].cpu() * std + mean  # (3, h, w)
    return image.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class Candidates:
    """One image's candidates before NMS, formed as ``GFLHead.predict`` forms them (resized
    image's pixels instead of the original's)."""

    prior: Tensor  # (D,) index into the P priors
    label: Tensor  # (D,)
    box: Tensor  # (D, 4) xyxy pixels
    score: Tensor  # (D,) joint score J at the label
    kept: Tensor  # (D,) bool: survives NMS, i.e. is a final detection


def candidates(
    model: Detector, out: HeadOutput, priors: Priors, i: int, img_shape: tuple[int, int]
) -> Candidates:
    """Image ``i`` of a batch's candidates, with the prior of each and whether NMS keeps it."""
    head, cfg = model.head, model.inference
    keep = topk_per_level(out.scores[i], priors.num_per_level, cfg.nms_pre)  # (Q,)
    dist = head.distances(out.reg[i, keep]) * priors.strides[keep, None]  # (Q, 4) pixels
    boxes = distance2bbox(priors.points[keep], dist, tuple(img_shape))  # (Q, 4)
    scores = out.scores[i, keep]  # (Q, C)
    rows, labels = torch.nonzero(scores > cfg.score_thr, as_tuple=True)  # (D,), (D,)
    _, _, det_labels, det_rows = multiclass_nms(boxes, scores, cfg, return_index=True)  # (S,)
    c = scores.shape[1]
    kept = torch.isin(rows * c + labels, det_rows * c + det_labels)  # (D,) (row, class) pairs
    return Candidates(keep[rows], labels, boxes[rows], scores[rows, labels], kept)


def match(boxes: Tensor, labels: Tensor, target: dict) -> tuple[Tensor, Tensor]:
    """IoU (S,) of each box with its best same-class gt and that gt's index (S,), -1 without."""
    ious = box_iou(boxes, target["boxes"].to(boxes))  # (S, M)
    ious = torch.where(labels[:, None] == target["labels"][None, :], ious, 0.0)  # (S, M)
    ious = torch.cat([ious, ious.new_zeros(len(boxes), 1)], dim=1)  # (S, M + 1)
    iou, gt = ious.max(dim=1)  # (S,), (S,)
    return iou, torch.where(iou > 0, gt, -1)


# --- one image's tables ------------------------------------------------------------------------


def _frame(cols: dict[str, Tensor]) -> pd.DataFrame:
    return pd.DataFrame({k: v.cpu().numpy() for k, v in cols.items()})


def detection_table(
    head: GFLHead, out: HeadOutput, priors: Priors, i: int, target: dict, c: Candidates
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Image ``i``'s detections (its kept candidates) as rows of detections.csv, and their side
    distributions (S, 4, n + 1), None for a dirac box."""
    prior, label, box = c.prior[c.kept], c.label[c.kept], c.box[c.kept]  # (S,), (S,), (S, 4)
    iou, gt = match(box, label, target)  # (S,), (S,)
    no_gt = box.new_full((1, 4), float("nan"))
    gt_box = torch.cat([target["boxes"].to(box), no_gt])[gt]  # (S, 4); -1 picks the NaN row
    prob, top1 = None, box.new_full((len(box),), float("nan"))
    if head.box == "distribution":
        prob = out.reg[i, prior].reshape(-1, 4, head.reg_max + 1).softmax(dim=-1)  # (S, 4, n+1)
        top1 = prob.amax(dim=-1).mean(dim=1)  # (S,)
    cols = {"image_id": torch.full_like(label, int(target["image_id"])), "label": label,
            "score": c.score[c.kept], "iou": iou, "top1_mean": top1,
            "stride": priors.strides[prior], "px": priors.points[prior, 0],
            "py": priors.points[prior, 1]}  # fmt: skip
    cols.update({k: box[:, j] for j, k in enumerate(BOX_COLS)})
    cols.update({k: gt_box[:, j] for j, k in enumerate(GT_COLS)})
    return _frame(cols), None if prob is None else prob.cpu().numpy()


def candidate_table(c: Candidates, image_id: int) -> pd.DataFrame:
    cols = {"image_id": torch.full_like(c.label, image_id), "label": c.label, "score": c.score}
    cols.update({k: c.box[:, j] for j, k in enumerate(BOX_COLS)})
    return _frame({**cols, "kept": c.kept})


def gt_table(target: dict) -> pd.DataFrame:
    labels = target["labels"]  # (M,)
    cols = {"image_id": torch.full_like(labels, int(target["image_id"])),
            "gt": torch.arange(len(labels)), "label": labels}  # fmt: skip
    return _frame({**cols, **{k: target["boxes"][:, j] for j, k in enumerate(GT_COLS)}})


# --- the probe ---------------------------------------------------------------------------------


def write_examples(
    run_dir: str | Path, max_images: int = EXAMPLE_IMAGES, device: torch.device | str = "cpu"
) -> Path:
    """Run a GFL run's latest checkpoint over its first ``max_images`` val images and write
    ``RUN/examples/`` (see the module docstring); returns the path of examples.json."""
    run = RunFolder(run_dir)
    cfg, model = load_run_model(run.path, device)
    info_path = run / RunFolder.EXAMPLES_INFO
    info_path.unlink(missing_ok=True)  # the old examples are incomplete until the new info
    (run / RunFolder.EXAMPLES_IMAGES).mkdir(parents=True, exist_ok=True)
    loader = val_loader(cfg.data, DistInfo())
    tables, probs, images = probe(run, model, loader, max_images, device)
    for name, parts in tables.items():
        rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TABLES[name])
        rows.to_csv(run / name, index=False)
    if model.head.box == "distribution":
        n_bins = model.head.reg_max + 1
        prob = np.concatenate(probs) if probs else np.zeros((0, 4, n_bins), np.float32)
        np.savez(run / RunFolder.EXAMPLES_DISTRIBUTIONS, probability=prob)
    info = {"checkpoint": latest_checkpoint(run.path).name, "max_images": max_images,
            "images": images, "class_names": loader.dataset.class_names,
            "box": model.head.box, "iou_thr": model.inference.iou_thr}  # fmt: skip
    atomic_write_json(info_path, info)
    return info_path


def probe(
    run: RunFolder,
    model: Detector,
    loader: DataLoader,
    max_images: int,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, list[pd.DataFrame]], list[np.ndarray], list[dict]]:
    """Per image of the first ``max_images``: its rows of each table (by file name), its side
    distributions (distribution boxes only), its id and size; each image is saved as it goes."""
    tables, probs, images = {name: [] for name in TABLES}, [], []
    for image, target, out, priors, i in val_outputs(loader, model, max_images, device):
        image_id, shape = int(target["image_id"]), tuple(int(s) for s in target["img_shape"])
        c = candidates(model, out, priors, i, shape)
        det, prob = detection_table(model.head, out, priors, i, target, c)
        tables[RunFolder.EXAMPLES_DETECTIONS].append(det)
        tables[RunFolder.EXAMPLES_CANDIDATES].append(candidate_table(c, image_id))
        tables[RunFolder.EXAMPLES_GT].append(gt_table(target))
        probs += [] if prob is None else [prob]
        path = image_path(run.path, image_id)
        Image.fromarray(pixels(image, shape)).save(path, quality=JPEG_QUALITY)
        images.append({"image_id": image_id, "height": shape[0], "width": shape[1]})
    return tables, probs, images


def ensure_examples(
    run_dir: str | Path, max_images: int = EXAMPLE_IMAGES, device: torch.device | str = "cpu"
) -> Path:
    """The path of ``RUN/examples/examples.json``, after running the probe when the examples are
    missing or were written from another checkpoint or for another number of images. A folder
    without a checkpoint (copied back from a cluster without them) keeps what it holds."""
    run = RunFolder(run_dir)
    info, ckpt = run.read(RunFolder.EXAMPLES_INFO), latest_checkpoint(run.path)
    asked = {"checkpoint": ckpt and ckpt.name, "max_images": max_images}
    if not info or (ckpt is not None and any(info.get(k) != v for k, v in asked.items())):
        return write_examples(run.path, max_images, device)
    return run / RunFolder.EXAMPLES_INFO


def first_with_examples(
    runs_dir: str | Path, experiment: str, max_images: int = EXAMPLE_IMAGES
) -> Path | None:
    """The first seed folder of ``experiment`` under ``runs_dir`` with a checkpoint or examples,
    its examples written first where missing or stale (``ensure_examples``); None without."""
    for run in sorted((Path(runs_dir) / experiment).glob("seed*/")):
        if latest_checkpoint(run) or (RunFolder(run) / RunFolder.EXAMPLES_INFO).is_file():
            ensure_examples(run, max_images)
            return run
    return None
