"""Convert mmdetection GFL checkpoints to this project's state-dict names.

Sources: the official GFLV2 checkpoints (implus/GFocalV2, on mmdetection 2.x), mmdetection 2.x
and 3.x GFL (GFLV1) checkpoints, and state dicts already in this project's names (a no-op).
The backbone keeps mmdetection's (= torchvision's) names; the other renames are:

    neck.{lateral,fpn}_convs.i.conv.*   -> neck.{lateral,fpn}_convs.i.*   (ConvModule unwrapped)
    bbox_head.reg_conf.0.*              -> head.quality.fc1.*             (DGQP, GFLV2 only)
    bbox_head.reg_conf.2.*              -> head.quality.fc2.*
    bbox_head.*                         -> head.*
    bbox_head.integral.project          -> dropped once checked to be linspace(0, n, n + 1)
    *.num_batches_tracked               -> dropped unless the model keeps it (FrozenBatchNorm2d
                                           does not)

Any key the model lacks, any model key left without a source and any shape difference is an
error that lists every such key, with a hint at the config field to change.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import re
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from gfl_repro.build import build_model
from gfl_repro.config import BACKBONES, QUALITY_KINDS, ModelConfig, QualityConfig, to_dict
from gfl_repro.io import atomic_torch_save

PROJECT_KEY = "bbox_head.integral.project"
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (  # the first matching rule applies
    (re.compile(r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\."), r"neck.\1.\2."),
    (re.compile(r"^bbox_head\.reg_conf\.0\."), "head.quality.fc1."),
    (re.compile(r"^bbox_head\.reg_conf\.2\."), "head.quality.fc2."),
    (re.compile(r"^bbox_head\."), "head."),
)
Mismatch = tuple[str, tuple[int, ...], tuple[int, ...]]  # (model key, source, expected shape)
MAX_LISTED = 20  # keys shown per kind of problem; the error object keeps them all


class CheckpointError(ValueError):
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


def map_key(name: str) -> str:
    """This project's name for an mmdetection key (names already ours map to themselves)."""
    name = name.removeprefix("module.")  # (Distributed)DataParallel wrapper, as mmcv strips it
    for pattern, replacement in RENAMES:
        new, count = pattern.subn(replacement, name)
        if count:
            return new
    return name


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


def convert_state_dict(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """`model`'s state dict (its keys, order and dtypes) filled from an mmdetection state dict.

    `model` is a `Detector` (its `head.reg_max` checks the integral projection); it is read,
    not changed. Raises `CheckpointError` listing missing and unexpected keys, shape
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
            converted[target], sources[target] = value, name
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
        if c == m + 1:
            return (
                f"the checkpoint's classifier has {c} = {m} + 1 outputs, a softmax background "
                f"class (mmdetection 1.x), not GFL's sigmoid classifier with num_classes = {m}"
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
    resnets = [b for b in BACKBONES if b != "mini"]  # mmdetection checkpoints: ResNet / ResNeXt
    parser.add_argument("--backbone", default="resnet50", choices=resnets)
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
