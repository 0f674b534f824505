"""Localization-quality estimation (LQE) dumps: per sample of the val set, the predicted quality,
the joint score, the distribution's top-k statistics and the real IoU of the decoded box
(Table 6's PCC, Fig. 1b's Top-1 vs IoU, Figs. 8 and 9).

Legend: B images, P priors over all levels, S samples of a batch (positives or detections),
C classes, n = reg_max (n + 1 bins), K = top-k, Q kept priors, M gt boxes.

Two protocols:

- ``"positives"`` (default, as the authors): every positive sample of the val set, assigned by
  the model's own training assigner against the val gt. Table 6's text computes the PCC over "all
  the positive samples on COCO minival", and the authors logged the Top-1 / IoU relation inside
  the loss computation (implus/GFocal issue 19), i.e. on positives with the loss's IoU: the
  decoded box in stride units against the gt in stride units.
- ``"detections"``: the post-NMS detections, each matched to the same-class gt of highest IoU
  (in resized-image pixels); a detection without a same-class gt keeps IoU 0.
"""

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from gfl_repro.build import build_model
from gfl_repro.config import LQE_PROTOCOLS, Config
from gfl_repro.engine.checkpoint import latest_checkpoint, load_checkpoint
from gfl_repro.engine.data import val_loader
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.runs import RunFolder, load_run_config
from gfl_repro.models.box_coding import Priors, aligned_iou, box_iou, distance2bbox
from gfl_repro.models.detector import Detector
from gfl_repro.models.heads.gfl import GFLHead, HeadOutput
from gfl_repro.models.postprocess import topk_per_level
from gfl_repro.models.targets import batch_targets

TOPK = 4
SIDES = ("l", "t", "r", "b")


def lqe_dump(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, list[dict]]],
    device: torch.device | str = "cpu",
    protocol: str = "positives",
) -> pd.DataFrame:
    """One row per sample (see the module docstring for the protocols), columns: image_id,
    level, location (prior index within the level, row-major), label (gt class; the detected
    class for detections), top_label (the class of highest J at the sample), quality (I, NaN
    without a quality branch), joint (J at the label), iou,
    top1_mean (top-1 probability averaged over the four sides), and per side s in l, t, r, b:
    top1_s .. top4_s and topk_mean_s (the mean of the four). Distribution columns are NaN for a
    dirac box. The model is frozen and put in eval mode."""
    if protocol not in LQE_PROTOCOLS:
        raise ValueError(f"protocol must be one of {LQE_PROTOCOLS}, got {protocol!r}")
    if not isinstance(model.head, GFLHead):
        raise TypeError(f"LQE needs a GFL head, got {type(model.head).__name__}")
    model.to(device).eval().requires_grad_(False)
    select = _positives if protocol == "positives" else _detections
    parts = []
    with torch.no_grad():
        for images, targets in loader:
            targets = [_to(t, device) for t in targets]
            out = model(images.to(device))
            priors = model.priors(out)
            b, p, labels, iou = select(model, out, priors, targets)
            parts.append(_columns(model.head, out, priors, targets, b, p, labels, iou))
    cols = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]} if parts else {}
    return pd.DataFrame(cols)


def _to(target: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in target.items()}


def _positives(
    model: nn.Module, out: HeadOutput, priors: Priors, targets: list[dict]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Positives (S,) image and prior indices, gt labels, and the loss's IoU (stride units)."""
    head = model.head
    tgt = batch_targets(priors, targets, head.num_classes, model.assigner)
    b, p = torch.nonzero(tgt.pos_mask, as_tuple=True)  # (S,), (S,)
    stride = priors.strides[p, None]  # (S, 1)
    pred = distance2bbox(priors.points[p] / stride, head.distances(out.reg[b, p]))  # (S, 4)
    iou = aligned_iou(pred, tgt.boxes[b, p] / stride)  # (S,)
    return b, p, tgt.labels[b, p], iou


def _detections(
    model: nn.Module, out: HeadOutput, priors: Priors, targets: list[dict]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Post-NMS detections (S,): image and prior indices, detected class, IoU (pixels) with the
    best same-class gt. The steps are those of ``GFLHead.predict``, keeping prior indices."""
    found = [_image_detections(model, out, priors, i, t) for i, t in enumerate(targets)]
    b, p, labels, iou = (torch.cat(x) for x in zip(*found, strict=True))  # each (S,)
    return b, p, labels, iou


def _image_detections(
    model: nn.Module, out: HeadOutput, priors: Priors, i: int, target: dict
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    head, cfg = model.head, model.inference
    keep = topk_per_level(out.scores[i], priors.num_per_level, cfg.nms_pre)  # (Q,)
    dist = head.distances(out.reg[i, keep]) * priors.strides[keep, None]  # (Q, 4) pixels
    boxes = distance2bbox(priors.points[keep], dist, tuple(target["img_shape"]))  # (Q, 4)
    scores = out.scores[i, keep]  # (Q, C)
    q, labels = torch.nonzero(scores > cfg.score_thr, as_tuple=True)  # (D,), (D,)
    nms = batched_nms(boxes[q], scores[q, labels], labels, cfg.iou_thr)[: cfg.max_per_img]
    q, labels = q[nms], labels[nms]  # (S,), (S,)
    ious = box_iou(boxes[q], target["boxes"].to(boxes))  # (S, M)
    same = labels[:, None] == target["labels"][None, :]  # (S, M)
    ious = torch.cat([torch.where(same, ious, 0.0), ious.new_zeros(len(q), 1)], dim=1)  # (S, M+1)
    return torch.full_like(q, i), keep[q], labels, ious.amax(dim=1)


def _columns(
    head: GFLHead,
    out: HeadOutput,
    priors: Priors,
    targets: list[dict],
    b: Tensor,
    p: Tensor,
    labels: Tensor,
    iou: Tensor,
) -> dict[str, np.ndarray]:
    """The dump's columns for samples (S,) at images ``b`` and priors ``p``."""
    levels = priors.levels  # (P,)
    starts = torch.tensor([0, *priors.num_per_level], device=p.device).cumsum(0)  # (L + 1,)
    image_ids = torch.tensor([int(t["image_id"]) for t in targets], device=b.device)  # (B,)
    nan = torch.full_like(iou, float("nan"))  # (S,)
    cols = {
        "image_id": image_ids[b],
        "level": levels[p],
        "location": p - starts[levels[p]],
        "label": labels,
        "quality": out.quality[b, p] if out.quality is not None else nan,
        "joint": out.scores[b, p, labels],
        "top_label": out.scores[b, p].argmax(dim=-1),
        "iou": iou,
    }
    cols.update(_topk_columns(head, out.reg[b, p], nan))
    return {k: v.detach().cpu().numpy() for k, v in cols.items()}


def _topk_columns(head: GFLHead, reg: Tensor, nan: Tensor) -> dict[str, Tensor]:
    """reg (S, 4(n+1)) logits -> top1_mean, top{j}_{side}, topk_mean_{side}; NaN for dirac."""
    names = [f"top{j + 1}_{s}" for s in SIDES for j in range(TOPK)]
    names += [f"topk_mean_{s}" for s in SIDES]
    if head.box != "distribution":
        return {"top1_mean": nan, **{name: nan for name in names}}
    prob = reg.reshape(-1, 4, head.reg_max + 1).softmax(dim=-1)  # (S, 4, n+1)
    k = min(TOPK, head.reg_max + 1)
    top = prob.topk(k, dim=-1).values  # (S, 4, k)
    cols = {"top1_mean": top[..., 0].mean(dim=1)}
    for side, s in enumerate(SIDES):
        for j in range(TOPK):
            cols[f"top{j + 1}_{s}"] = top[:, side, j] if j < k else nan
        cols[f"topk_mean_{s}"] = top[:, side].mean(dim=1)
    return cols


def _pcc(x, y) -> float:
    """Pearson correlation (numpy's); NaN for fewer than 2 samples, a NaN or a constant input."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.corrcoef(x, y)[0, 1])


def class_first(frame: pd.DataFrame) -> float:
    """The share of samples whose label has the highest J of all classes (NaN for no sample or
    a dump written before top_label was)."""
    if "top_label" not in frame or frame.empty:
        return float("nan")
    return float((frame["top_label"] == frame["label"]).mean())


def lqe_summary(frame: pd.DataFrame) -> dict[str, float]:
    """The LQE of a dump in a few numbers: the PCC of the joint score J and of the quality I
    with the IoU, the mean and std of I, J and the IoU over its samples (NaN where a column is
    NaN, e.g. I without a quality branch), and class_first (of val positives: how often the gt
    class ranks first)."""
    out = {"samples": len(frame), "pcc_joint": _pcc(frame["joint"], frame["iou"]),
           "pcc_quality": _pcc(frame["quality"], frame["iou"])}  # fmt: skip
    out["class_first"] = class_first(frame)
    for col in ("quality", "joint", "iou"):
        values = frame[col].to_numpy(dtype=np.float64)  # (S,)
        out[f"{col}_mean"] = float(values.mean()) if len(values) else float("nan")
        out[f"{col}_std"] = float(values.std()) if len(values) else float("nan")
    return out


def save_lqe(df: pd.DataFrame, run_dir: str | Path, name: str = RunFolder.LQE) -> Path:
    """``run_dir/<name>.npz``, one array per column (pyarrow is not a dependency)."""
    path = Path(run_dir) / f"{name}.npz"
    np.savez(path, **{col: df[col].to_numpy() for col in df.columns})
    return path


def load_lqe(run_dir: str | Path, name: str = RunFolder.LQE) -> pd.DataFrame:
    with np.load(Path(run_dir) / f"{name}.npz", allow_pickle=False) as z:
        return pd.DataFrame({col: z[col] for col in z.files})


def load_run_model(run_dir: str | Path) -> tuple[Config, Detector]:
    """The resolved config of a run folder and its model at the latest checkpoint."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    model = build_model(cfg.model)
    model.load_state_dict(load_checkpoint(ckpt)["state_dict"])
    return cfg, model


def run_lqe(
    run_dir: str | Path,
    protocol: str = "positives",
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
) -> Path:
    """Rebuild the model of a run folder, load its latest checkpoint, dump on the val set and
    save as ``lqe.npz`` (positives) or ``lqe_detections.npz`` in ``out_dir`` (default: the run
    folder). Relative data roots resolve against the working directory, as in training."""
    cfg, model = load_run_model(run_dir)
    df = lqe_dump(model, val_loader(cfg.data, DistInfo()), device, protocol)
    name = RunFolder.lqe_name(protocol)
    return save_lqe(df, run_dir if out_dir is None else out_dir, name)
