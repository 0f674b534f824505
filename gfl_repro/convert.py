"""Checkpoints between mmdetection's GFL names and this project's, both ways.

Sources: the official GFLV2 checkpoints (implus/GFocalV2, on mmdetection 2.6), mmdetection 2.x
and 3.x GFL (GFLV1) checkpoints, and state dicts already in this project's names (a no-op).
The backbone keeps mmdetection's (= torchvision's) names; the other renames, one table (RENAMES)
read left to right by `convert-checkpoint` and right to left by `export-checkpoint`:

    neck.{lateral,fpn}_convs.i.conv.*   <-> neck.{lateral,fpn}_convs.i.*   (ConvModule unwrapped)
    bbox_head.reg_conf.0.*              <-> head.quality.fc1.*             (DGQP, GFLV2 only)
    bbox_head.reg_conf.2.*              <-> head.quality.fc2.*
    bbox_head.*                         <-> head.*

What this project's model does not keep is dropped on the way in and written back on the way out:

    bbox_head.integral.project          checked to be linspace(0, n, n + 1); written as that
    *.num_batches_tracked               dropped unless the model keeps it (FrozenBatchNorm2d does
                                        not); written as 0 (mmcv ignores it when missing, and the
                                        official backbone's BatchNorms run in eval mode, where
                                        it does not count), so a strict torch load finds it
    bbox_head.gfl_cls, output C         GFLV2 only: GFocalV2's config gives QFL use_sigmoid=False,
                                        so mmdetection's AnchorHead builds C + 1 classifier
                                        outputs; the last is trained towards 0 and never scores.
                                        Dropped; written with weight 0 and bias BACKGROUND_BIAS

Any key the model lacks, any model key left without a source and any shape difference is an
error that lists every such key, with a hint at the config field to change. Export refuses a
model the official code cannot build (the mini backbone, a native head, another quality branch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import pprint
import re
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from gfl_repro.build import STRIDES, build_model
from gfl_repro.config import (
    BACKBONES,
    QUALITY_KINDS,
    ModelConfig,
    QualityConfig,
    from_dict,
    to_dict,
)
from gfl_repro.engine.checkpoint import latest_checkpoint
from gfl_repro.engine.runs import RunFolder, load_run_config
from gfl_repro.errors import ToolkitError
from gfl_repro.io import atomic_torch_save
from gfl_repro.models.quality import DGQP

PROJECT_KEY = "bbox_head.integral.project"
CLASSIFIER_KEYS = ("bbox_head.gfl_cls.weight", "bbox_head.gfl_cls.bias")
BACKGROUND_BIAS = -20.0  # sigmoid(-20) = 2e-9: the exported background channel never scores
# (mmdetection name, this project's name) prefixes; {i} stands for a number. Read either way,
# the first rule whose side matches applies.
RENAMES: tuple[tuple[str, str], ...] = (
    ("neck.lateral_convs.{i}.conv.", "neck.lateral_convs.{i}."),  # ConvModule unwrapped
    ("neck.fpn_convs.{i}.conv.", "neck.fpn_convs.{i}."),
    ("bbox_head.reg_conf.0.", "head.quality.fc1."),  # DGQP's Sequential(conv, ReLU, conv, ...)
    ("bbox_head.reg_conf.2.", "head.quality.fc2."),
    ("bbox_head.", "head."),
)
Rules = tuple[tuple[re.Pattern[str], str], ...]
BOTTLENECK = (256, 512, 1024, 2048)
# Every backbone here but `mini` (this project's own): mmdetection's `backbone` config for it,
# with the same weight names, and the channels of C2-C5 (its FPN's in_channels).
MMDET_BACKBONES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "resnet18": ({"type": "ResNet", "depth": 18}, (64, 128, 256, 512)),
    "resnet34": ({"type": "ResNet", "depth": 34}, (64, 128, 256, 512)),
    "resnet50": ({"type": "ResNet", "depth": 50}, BOTTLENECK),
    "resnet101": ({"type": "ResNet", "depth": 101}, BOTTLENECK),
    "resnext101_32x4d": ({"type": "ResNeXt", "depth": 101, "groups": 32, "base_width": 4},
                         BOTTLENECK),
    "resnext101_64x4d": ({"type": "ResNeXt", "depth": 101, "groups": 64, "base_width": 4},
                         BOTTLENECK),
}  # fmt: skip
MMDET_VERSION = "2.6.0"  # the mmdetection that implus/GFocalV2 is built on


def _rules(to_mmdet: bool) -> Rules:
    """RENAMES as (pattern, replacement) pairs, mmdetection -> ours or ours -> mmdetection."""
    rules = []
    for mmdet, ours in RENAMES:
        src, dst = (ours, mmdet) if to_mmdet else (mmdet, ours)
        pattern = "^" + re.escape(src).replace(re.escape("{i}"), r"(?P<i>\d+)")
        rules.append((re.compile(pattern), dst.replace("{i}", r"\g<i>")))
    return tuple(rules)


FROM_MMDET, TO_MMDET = _rules(to_mmdet=False), _rules(to_mmdet=True)
Mismatch = tuple[str, tuple[int, ...], tuple[int, ...]]  # (model key, source, expected shape)
MAX_LISTED = 20  # keys shown per kind of problem; the error object keeps them all


class CheckpointError(ToolkitError, ValueError):
    """A checkpoint that does not fit the model; lists every problem at once."""

    def __init__(
        self,
        message: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[Mismatch] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = missing or []  # model keys with no source
        self.unexpected = unexpected or []  # source keys that map nowhere
        self.mismatched = mismatched or []  # (model key, source shape, expected shape)


def _rename(name: str, rules: Rules) -> str:
    for pattern, replacement in rules:
        new, count = pattern.subn(replacement, name)
        if count:
            return new
    return name


def map_key(name: str) -> str:
    """This project's name for an mmdetection key (names already ours map to themselves).

    A (Distributed)DataParallel wrapper's `module.` is stripped, as mmcv strips it.
    """
    return _rename(name.removeprefix("module."), FROM_MMDET)


def official_key(name: str) -> str:
    """The mmdetection 2.x (GFocalV2) name of one of this project's keys: map_key's inverse."""
    return _rename(name, TO_MMDET)


def _check_project(value: Tensor, reg_max: int) -> list[str]:
    """Problems with `bbox_head.integral.project`: it must be linspace(0, reg_max, reg_max + 1)."""
    expected = torch.linspace(0, reg_max, reg_max + 1)
    if value.shape == expected.shape and torch.equal(value.float(), expected):
        return []
    return [
        f"{PROJECT_KEY} = {value.tolist()} is not linspace(0, {reg_max}, {reg_max + 1}): "
        f"the checkpoint was trained with another reg_max (the model has head.reg_max = {reg_max})"
    ]


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _has_background(model: nn.Module) -> bool:
    """Whether `model`'s official checkpoints have GFocalV2's C + 1 classifier outputs."""
    return isinstance(getattr(model.head, "quality", None), DGQP)


def _drop_background(name: str, value: Tensor, model: nn.Module) -> Tensor:
    """A GFocalV2 classifier tensor without its last (background) output; others unchanged."""
    if name.removeprefix("module.") not in CLASSIFIER_KEYS or not _has_background(model):
        return value
    c = model.head.num_classes
    return value[:c].clone() if value.shape[0] == c + 1 else value  # a copy: not a view


def convert_state_dict(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """`model`'s state dict (its keys, order and dtypes) filled from an mmdetection state dict.

    `model` is a `Detector` (its `head.reg_max` checks the integral projection); it is read,
    not changed. A GFLV2 model takes a classifier of C (sigmoid) or C + 1 (GFocalV2's, the last
    output dropped) outputs. Raises `CheckpointError` listing missing and unexpected keys, shape
    mismatches, non-tensor values, duplicate targets and a wrong integral projection.
    """
    expected = model.state_dict()
    converted: dict[str, Tensor] = {}
    sources: dict[str, str] = {}  # model key -> source key
    unexpected: list[str] = []
    other: list[str] = []
    for name, value in state.items():
        if not isinstance(value, Tensor):
            other.append(f"{name} is a {type(value).__name__}, not a tensor")
        elif name.removeprefix("module.") == PROJECT_KEY:
            other.extend(_check_project(value, model.head.reg_max))
        elif (target := map_key(name)) not in expected:
            if not target.endswith(".num_batches_tracked"):
                unexpected.append(name)
        elif target in converted:
            other.append(f"{sources[target]} and {name} both map to {target}")
        else:
            converted[target], sources[target] = _drop_background(name, value, model), name
    missing = [k for k in expected if k not in converted]
    mismatched = [
        (k, _shape(v), _shape(expected[k]))
        for k, v in converted.items()
        if v.shape != expected[k].shape
    ]
    if missing or unexpected or mismatched or other:
        message = _describe(missing, unexpected, mismatched, other, sources, model)
        raise CheckpointError(message, missing, unexpected, mismatched)
    return {k: converted[k].to(expected[k].dtype) for k in expected}


def _listing(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    more = [f"    ... and {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else []
    return [f"  {title} [{len(items)}]:", *(f"    {s}" for s in items[:MAX_LISTED]), *more]


def _describe(
    missing: list[str],
    unexpected: list[str],
    mismatched: list[Mismatch],
    other: list[str],
    sources: dict[str, str],
    model: nn.Module,
) -> str:
    shapes = [
        f"{k} (from {sources[k]}): checkpoint {src}, model {dst}" for k, src, dst in mismatched
    ]
    renamed = [k if map_key(k) == k else f"{k} (as {map_key(k)})" for k in unexpected]
    hints = _hints(missing, unexpected, mismatched, model)
    lines = [
        "checkpoint does not fit the model:",
        *_listing("missing keys (model keys with no source)", missing),
        *_listing("unexpected keys (source keys that map nowhere)", renamed),
        *_listing("shape mismatches", shapes),
        *_listing("other problems", other),
        *_listing("hints", hints),
    ]
    return "\n".join(lines)


def _hints(
    missing: list[str], unexpected: list[str], mismatched: list[Mismatch], model: nn.Module
) -> list[str]:
    """What to change in the model config, guessed from the kinds of keys at fault."""
    hints = []
    quality_keys = [k for k in unexpected if ".reg_conf." in k or k.startswith("head.quality.")]
    if any(k.startswith("head.quality.") for k in missing) and not quality_keys:
        hints.append(
            "the checkpoint has no quality branch (bbox_head.reg_conf): it is GFLV1; build the "
            "model with model.quality.kind=none (--quality none)"
        )
    if quality_keys and model.head.quality is None:
        hints.append(
            "the checkpoint has a DGQP quality branch (bbox_head.reg_conf): it is GFLV2; build "
            "the model with model.quality.kind=dgqp (--quality dgqp)"
        )
    if any(".conv_offset." in k for k in missing):
        hints.append("the model has DCN layers the checkpoint lacks: build without --dcn")
    if any(".conv_offset." in k for k in unexpected):
        hints.append(
            "the checkpoint has DCN layers (conv_offset): build with model.dcn=true (--dcn)"
        )
    if any(k.startswith("backbone.") and ".conv_offset." not in k for k in missing + unexpected):
        hints.append(f"the backbone differs: check model.backbone (one of {', '.join(BACKBONES)})")
    hints.extend(_shape_hint(k, src, model) for k, src, _ in mismatched)
    return [h for h in hints if h]


def _shape_hint(key: str, src: tuple[int, ...], model: nn.Module) -> str:
    if key == "head.gfl_cls.weight":
        c, m = src[0], model.head.num_classes
        if _has_background(model):
            return (
                f"the checkpoint's classifier has {c} outputs, GFocalV2's num_classes + 1: set "
                f"model.num_classes={c - 1} (--num-classes {c - 1}), or {c} if it has no "
                "background output"
            )
        if c == m + 1:
            return (
                f"the checkpoint's classifier has {c} = {m} + 1 outputs, a background class "
                "(a GFLV2 checkpoint of GFocalV2, which also has bbox_head.reg_conf, or "
                f"mmdetection 1.x), not GFLV1's sigmoid classifier with num_classes = {m}"
            )
        return f"the checkpoint has {c} classes: set model.num_classes={c} (--num-classes {c})"
    if key == "head.gfl_reg.weight":
        return f"the checkpoint has reg_max = {src[0] // 4 - 1}: set model.head.reg_max"
    if key.startswith("head.quality."):
        return "the DGQP sizes differ: check model.quality.k, .statistics and .hidden"
    return ""


def _placeholder(name: str) -> type:
    """A do-nothing class standing for the unimportable class `name` while unpickling."""

    def new(cls, *args, **kwargs):
        return object.__new__(cls)

    def ignore(self, *args, **kwargs):
        pass

    return type(name, (), {"__new__": new, "__init__": ignore, "__setstate__": ignore})


def load_checkpoint(path: str | Path) -> object:
    """`torch.load` a checkpoint on the CPU, unpickling no code when the format allows it.

    mmdetection's checkpoints hold non-tensor meta (mmengine's HistoryBuffer, numpy arrays)
    that `weights_only=True` refuses: for zip-format files those classes are replaced by empty
    placeholders (meta is discarded anyway); for legacy-format files the load falls back to
    `weights_only=False`, with a warning, since it runs code from the file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except ValueError:  # legacy (non-zip) format: the globals cannot be listed up front
        names = []
    if names:
        warnings.warn(
            f"{path}: replacing {len(names)} non-tensor classes by placeholders while "
            f"loading (meta only, not weights): {', '.join(names)}",
            stacklevel=2,
        )
        with torch.serialization.safe_globals([(_placeholder(n), n) for n in names]):
            return torch.load(path, map_location="cpu", weights_only=True)
    warnings.warn(
        f"{path}: legacy-format checkpoint with non-tensor objects; loading it with "
        "weights_only=False, which runs code from the file: only do this for trusted files",
        stacklevel=2,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as err:
        raise CheckpointError(f"{path}: cannot unpickle the checkpoint's meta: {err}") from err


def unwrap_state_dict(checkpoint: object, path: str | Path = "checkpoint") -> dict[str, Tensor]:
    """The state dict of a checkpoint: `checkpoint['state_dict']`, or the checkpoint itself."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        return checkpoint["state_dict"]
    if isinstance(checkpoint, dict) and all(isinstance(v, Tensor) for v in checkpoint.values()):
        return checkpoint
    keys = list(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise CheckpointError(
        f"{path}: neither a dict with 'state_dict' nor a bare state dict (found {keys})"
    )


def convert_checkpoint(src: Path, dst: Path, model_cfg: ModelConfig | None = None) -> dict:
    """Convert `src` for a model built from `model_cfg` (default GFLV2 R-50) and save to `dst`.

    The result is loaded into a fresh model with strict=True before it is written, atomically
    (a temporary file in dst's folder, then os.replace). Returns the saved dict
    {'state_dict': ..., 'model_config': ..., 'meta': {'source': ..., 'converted_by': 'gfl-repro'}}.
    """
    src, dst = Path(src), Path(dst)
    # Every weight is overwritten: skip loading ImageNet weights into the backbone.
    cfg = dataclasses.replace(model_cfg or ModelConfig(), pretrained="")
    model = build_model(cfg)
    state = convert_state_dict(unwrap_state_dict(load_checkpoint(src), src), model)
    model.load_state_dict(state, strict=True)
    checkpoint = {
        "state_dict": state,
        "model_config": to_dict(cfg),
        "meta": {"source": str(src), "converted_by": "gfl-repro"},
    }
    atomic_torch_save(checkpoint, dst)
    return checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `gfl-repro convert-checkpoint SRC DST`."""
    parser.add_argument("src", type=Path, help="mmdetection / GFocalV2 checkpoint (.pth)")
    parser.add_argument("dst", type=Path, help="where to write the converted checkpoint")
    parser.add_argument("--backbone", default="resnet50", choices=list(MMDET_BACKBONES))
    parser.add_argument("--dcn", action="store_true", help="DCNv2 in stages c3-c5")
    parser.add_argument(
        "--quality", default="dgqp", choices=QUALITY_KINDS, help="dgqp = GFLV2, none = GFLV1"
    )
    parser.add_argument("--num-classes", type=int, default=80)


def run(args: argparse.Namespace) -> int:
    """Convert; returns the exit code (1 with the listed problems on stderr if it does not fit)."""
    cfg = ModelConfig(
        num_classes=args.num_classes,
        backbone=args.backbone,
        dcn=args.dcn,
        quality=QualityConfig(kind=args.quality),
    )
    try:
        checkpoint = convert_checkpoint(args.src, args.dst, cfg)
    except CheckpointError as err:
        print(f"{args.src}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst}: {len(checkpoint['state_dict'])} tensors from {args.src}")
    return 0


class ExportError(ToolkitError, ValueError):
    """A source that cannot be exported to the official names (no checkpoint, another model)."""


def check_exportable(cfg: ModelConfig) -> None:
    """Raise `ExportError` naming every part of `cfg` the official GFocalV2 code cannot build."""
    h, q = cfg.head, cfg.quality
    reasons = []
    if cfg.backbone not in MMDET_BACKBONES:
        reasons.append(
            f"model.backbone={cfg.backbone} is this project's own small network, which the "
            f"official code does not have (export takes {', '.join(MMDET_BACKBONES)})"
        )
    elif cfg.dcn and MMDET_BACKBONES[cfg.backbone][0]["depth"] < 50:
        reasons.append(f"model.dcn with {cfg.backbone}: mmdetection's BasicBlock has no DCN")
    if h.kind != "gfl":
        reasons.append(
            f"model.head.kind={h.kind} is {cfg.detector}'s own head, not a GFL head: the "
            "official code's GFLHead / GFocalHead cannot hold it"
        )
    if h.box != "distribution":
        reasons.append(f"model.head.box={h.box}: the official head regresses distributions")
    if q.kind not in ("dgqp", "none"):
        reasons.append(f"model.quality.kind={q.kind}: the official code has dgqp and none only")
    elif q.kind == "dgqp" and set(q.statistics) not in ({"topk"}, {"topk", "mean"}):
        reasons.append(
            f"model.quality.statistics={q.statistics}: GFocalHead takes the top-k, with or "
            "without their mean (add_mean)"
        )
    if len(h.anchor_ratios) * h.scales_per_octave != 1:
        reasons.append("the official head has one prior per location (num_anchors == 1)")
    if reasons:
        raise ExportError("cannot export to the official GFocalV2 names: " + "; ".join(reasons))


def export_state_dict(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """`state` (this project's names, fitting `model`) under mmdetection 2.x / GFocalV2 names.

    What `convert_state_dict` drops comes back (see the module docstring): each BatchNorm's
    `num_batches_tracked` after its running_var, GFLV2's background classifier output, and
    `bbox_head.integral.project` last, where the official head registers it. Raises
    `CheckpointError` listing every key or shape that does not fit `model`.
    """
    fitted = convert_state_dict(state, model)  # checks keys and shapes; the model's order
    exported: dict[str, Tensor] = {}
    for name, value in fitted.items():
        exported[official_key(name)] = _add_background(name, value, model)
        counter = name.removesuffix("running_var") + "num_batches_tracked"
        if name.endswith(".running_var") and counter not in fitted:
            exported[official_key(counter)] = torch.tensor(0)  # int64, as BatchNorm2d keeps it
    n = model.head.reg_max
    exported[PROJECT_KEY] = torch.linspace(0, n, n + 1)
    return exported


def _add_background(name: str, value: Tensor, model: nn.Module) -> Tensor:
    """GFLV2's classifier with GFocalV2's extra last output, one that never scores."""
    if official_key(name) not in CLASSIFIER_KEYS or not _has_background(model):
        return value
    extra = torch.zeros_like(value[:1])  # weight (1, F, 3, 3): zeros
    if value.dim() == 1:
        extra.fill_(BACKGROUND_BIAS)  # bias (1,)
    return torch.cat([value, extra])  # (C + 1, ...)


def mmdet_model(cfg: ModelConfig) -> dict:
    """The mmdetection 2.x `model` config (GFocalV2's layout) that builds `cfg`'s network."""
    check_exportable(cfg)
    backbone, c2_to_c5 = MMDET_BACKBONES[cfg.backbone]
    backbone = dict(
        backbone,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=cfg.frozen_stages,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=True,
        style="pytorch",
    )
    if cfg.dcn:  # mmcv's modulated deformable conv (conv_offset: 3 * 9 channels) in c3-c5
        backbone["dcn"] = dict(type="DCNv2", deform_groups=1, fallback_on_stride=False)
        backbone["stage_with_dcn"] = (False, True, True, True)
    neck = dict(
        type="FPN",
        in_channels=list(c2_to_c5),
        out_channels=cfg.fpn_channels,
        start_level=1,
        add_extra_convs=f"on_{cfg.fpn_extra_source}",
        relu_before_extra_convs=cfg.fpn_relu_before_extra,
        num_outs=len(STRIDES),
    )
    return dict(type="GFL", backbone=backbone, neck=neck, bbox_head=_mmdet_head(cfg))


def _mmdet_head(cfg: ModelConfig) -> dict:
    h, q = cfg.head, cfg.quality
    v2 = q.kind == "dgqp"
    head = dict(
        type="GFocalHead" if v2 else "GFLHead",
        num_classes=cfg.num_classes,
        in_channels=cfg.fpn_channels,
        stacked_convs=h.stacked_convs,
        feat_channels=h.feat_channels,
        norm_cfg=dict(type="GN", num_groups=h.gn_groups, requires_grad=True),
        anchor_generator=dict(
            type="AnchorGenerator",
            ratios=list(h.anchor_ratios),
            octave_base_scale=h.anchor_scale * cfg.object_scale,
            scales_per_octave=h.scales_per_octave,
            strides=list(STRIDES),
            center_offset=h.center_offset,
        ),
        # GFocalHead outputs probabilities: use_sigmoid=False, whence its C + 1 outputs.
        loss_cls=dict(
            type="QualityFocalLoss", use_sigmoid=not v2, beta=2.0, loss_weight=h.loss_qfl
        ),
        loss_dfl=dict(type="DistributionFocalLoss", loss_weight=h.loss_dfl),
        loss_bbox=dict(type="GIoULoss", loss_weight=h.loss_bbox),
        reg_max=h.reg_max,
    )
    if v2:
        head.update(reg_topk=q.k, reg_channels=q.hidden, add_mean="mean" in q.statistics)
    return head


def _config_text(cfg: ModelConfig) -> str:
    """The mmdetection config lines that rebuild the exported network and its inference."""
    i = cfg.inference
    test_cfg = dict(
        nms_pre=i.nms_pre,
        min_bbox_size=0,
        score_thr=i.score_thr,
        nms=dict(type="nms", iou_threshold=i.iou_thr),
        max_per_img=i.max_per_img,
    )
    return (
        "# Exported by gfl-repro: the model and test_cfg of an mmdetection 2.x config\n"
        "# (GFocalV2); take the data, schedule and runtime from the official config.\n"
        f"model = {pprint.pformat(mmdet_model(cfg), sort_dicts=False)}\n"
        f"test_cfg = {pprint.pformat(test_cfg, sort_dicts=False)}\n"
    )


def _source(src: Path) -> tuple[Path, Path | None]:
    """The checkpoint file to export and the run folder it is in (None for a loose file)."""
    if src.is_dir():
        found = latest_checkpoint(src)
        if found is None:
            raise ExportError(f"{src}: no checkpoint (iter_N.pth) in this run folder")
        return found, src
    if not src.is_file():
        raise ExportError(f"{src}: no such checkpoint file or run folder")
    return src, src.parent if RunFolder(src.parent).is_run else None


def _model_config(checkpoint: object, path: Path, run_dir: Path | None) -> ModelConfig:
    """The model config saved with the checkpoint, else its run folder's."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model_config"), dict):
        return from_dict(ModelConfig, checkpoint["model_config"], "model_config.")
    if run_dir is not None:
        return load_run_config(run_dir).model
    raise ExportError(
        f"{path}: holds no model_config and is not in a run folder; export a run folder, one "
        "of its iter_N.pth, or a file written by gfl-repro convert-checkpoint"
    )


def _class_names(run_dir: Path | None, num_classes: int) -> list[str] | None:
    """The run's class names in label order (ascending category id), when its val annotations
    are at hand; mmdetection falls back to COCO's names without them."""
    if run_dir is None:
        return None
    data = load_run_config(run_dir).data
    try:
        categories = json.loads((Path(data.root) / data.val_ann).read_text())["categories"]
        names = [str(c["name"]) for c in sorted(categories, key=lambda c: c["id"])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return names if len(names) == num_classes else None


def _meta(cfg: ModelConfig, checkpoint: dict, path: Path, run_dir: Path | None) -> dict:
    """mmdetection's checkpoint meta (mmdet_version, config, CLASSES, iter) and where from."""
    meta: dict = {"mmdet_version": MMDET_VERSION, "config": _config_text(cfg)}
    if names := _class_names(run_dir, cfg.num_classes):
        meta["CLASSES"] = tuple(names)
    if "iteration" in checkpoint:
        meta["iter"] = int(checkpoint["iteration"])
    ids = checkpoint.get("category_ids")
    meta["gfl_repro"] = {
        "exported_by": "gfl-repro",
        "source": str(path),
        "model_config": to_dict(cfg),
        "category_ids": [int(c) for c in ids] if ids is not None else None,
    }
    return meta


def export_checkpoint(src: Path, dst: Path) -> Path:
    """Write `src` under the official GFocalV2 (mmdetection 2.x) names to `dst`; returns `dst`.

    `src` is a run folder (its latest iter_N.pth) or a checkpoint of this project (a training
    checkpoint, or one written by `convert_checkpoint`). The model must be one the official
    code builds (`check_exportable`: not the mini backbone, a native head or another quality
    branch). `dst` is written atomically: {'state_dict': official names, 'meta': `_meta`}, as
    mmdetection's `load_checkpoint` and `init_detector` read it. Raises `ExportError` (or its
    sibling `CheckpointError` for a state that does not fit its model), both `ToolkitError`s.
    """
    path, run_dir = _source(Path(src))
    with warnings.catch_warnings():  # our RNG state's numpy arrays: placeholders, no code run
        warnings.filterwarnings("ignore", ".*placeholders while loading", UserWarning)
        checkpoint = load_checkpoint(path)
    cfg = _model_config(checkpoint, path, run_dir)
    check_exportable(cfg)
    model = build_model(dataclasses.replace(cfg, pretrained=""))  # every weight is replaced
    state = export_state_dict(unwrap_state_dict(checkpoint, path), model)
    atomic_torch_save({"state_dict": state, "meta": _meta(cfg, checkpoint, path, run_dir)}, dst)
    return Path(dst)
