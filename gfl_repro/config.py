"""Typed configuration: one frozen dataclass per part, one place for each default.

The defaults are the official GFLV2 R-50 recipe (docs/recipe.md); presets and experiments are
small diffs of them.
"""

import dataclasses
import json
from dataclasses import asdict, dataclass, field

from gfl_repro.data.mini import CATEGORIES as MINI_CATEGORIES
from gfl_repro.data.mini import Variant
from gfl_repro.errors import ToolkitError
from gfl_repro.models.fpn import EXTRA_SOURCES
from gfl_repro.models.heads.gfl import BOX_KINDS
from gfl_repro.models.postprocess import InferenceConfig
from gfl_repro.models.quality import STATISTICS
from gfl_repro.models.quality_conv import CONV_INPUTS as CONV_QUALITY

QUALITY_KINDS = ("dgqp", "composed", "none", *CONV_QUALITY)
DETECTORS = ("atss", "retinanet", "fcos", "foveabox")
HEAD_KINDS = ("gfl", "native")
LQE_PROTOCOLS = ("positives", "detections")  # the LQE dump's samples (engine/lqe.py)
BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnext101_32x4d",
    "resnext101_64x4d",
    "mini",
)


class ConfigError(ToolkitError, ValueError):
    """A configuration value that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class QualityConfig:
    # "dgqp" (GFLV2, J = C x I from distribution statistics), "composed" (Table 4: statistics
    # appended to the cls features), a convolutional input of Table 3 (CONV_QUALITY, J = C x I
    # from sampled regression features), or "none" (GFLV1: J = C).
    kind: str = "dgqp"
    k: int = 4
    hidden: int = 64  # p
    statistics: tuple[str, ...] = ("topk", "mean")
    composed_dim: int = 64  # d of the composed form


@dataclass(frozen=True)
class HeadConfig:
    # "gfl": the GFL head (QFL on J, GIoU, DFL with a distribution); "native": the detector's
    # own head, losses and scoring (Table 5 baselines: RetinaNet, FCOS, ATSS, FoveaBox).
    kind: str = "gfl"
    box: str = "distribution"  # "distribution" (n + 1 bins, DFL) or "dirac" (ltrb, GIoU only)
    feat_channels: int = 256
    stacked_convs: int = 4
    reg_max: int = 16
    gn_groups: int = 32
    # The towers of the native RetinaNet and FoveaBox heads: "none" as mmdetection's, or "gn"
    # (gn_groups groups, as the GFL, FCOS and ATSS towers always have). The other heads ignore it.
    plain_tower_norm: str = "none"
    anchor_scale: float = 8.0  # anchor side = anchor_scale * stride (octave_base_scale)
    anchor_ratios: tuple[float, ...] = (1.0,)
    scales_per_octave: int = 1
    center_offset: float = 0.0  # prior centre at (x + offset) * stride
    atss_topk: int = 9
    loss_qfl: float = 1.0
    loss_bbox: float = 2.0
    loss_dfl: float = 0.25


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int = 80
    detector: str = "atss"  # whose priors and assigner: atss (GFL's), retinanet, fcos, foveabox
    backbone: str = "resnet50"
    # "" = random init, "imagenet" = torchvision's weights from the torch hub cache, else a path.
    pretrained: str = ""
    frozen_stages: int = 1
    dcn: bool = False  # modulated deformable convs in stages c3-c5
    mini_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    mini_norm: str = "bn"
    fpn_channels: int = 256
    # Multiplies every object size of the level geometry: the anchor side (anchor_scale x stride),
    # FCOS's regress ranges, FoveaBox's scale ranges and base edges. 1 is COCO's; the mini preset's
    # 0.4 = 320 / 800 scales them with its images, so that every level P3-P7 gets objects.
    object_scale: float = 1.0
    fpn_extra_source: str = "output"  # P6 from P5's output (GFL, FCOS) or from C5 ("input")
    fpn_relu_before_extra: bool = False  # FCOS: ReLU between P6 and the P7 conv
    head: HeadConfig = field(default_factory=HeadConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        check_model(self)


def _one_of(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown {value!r}; known: {', '.join(map(str, allowed))}")


def check_model(cfg: ModelConfig) -> None:
    _check_ranges(cfg, "model.")
    _one_of("model.backbone", cfg.backbone, BACKBONES)
    _one_of("model.detector", cfg.detector, DETECTORS)
    _one_of("model.head.kind", cfg.head.kind, HEAD_KINDS)
    _one_of("model.head.box", cfg.head.box, BOX_KINDS)
    _one_of("model.head.plain_tower_norm", cfg.head.plain_tower_norm, ("none", "gn"))
    _one_of("model.fpn_extra_source", cfg.fpn_extra_source, EXTRA_SOURCES)
    q = cfg.quality
    _one_of("model.quality.kind", q.kind, QUALITY_KINDS)
    if cfg.head.kind == "native" and q.kind != "none":
        raise ConfigError(
            "model.head.kind=native scores with the detector's own branches; "
            "set model.quality.kind=none (a quality branch needs model.head.kind=gfl)"
        )
    if cfg.head.box == "dirac" and q.kind != "none":
        raise ConfigError(
            f"model.quality.kind={q.kind} reads the box distribution; with model.head.box=dirac "
            "only model.quality.kind=none is possible"
        )
    if q.kind in ("dgqp", "composed") and not 1 <= q.k <= cfg.head.reg_max + 1:
        raise ConfigError(
            f"model.quality.k = {q.k} must be in [1, reg_max + 1 = {cfg.head.reg_max + 1}]"
        )
    unknown = set(q.statistics) - set(STATISTICS)
    if unknown or not q.statistics:
        raise ConfigError(
            f"model.quality.statistics: {q.statistics} must be a non-empty subset of "
            f"{', '.join(STATISTICS)}"
        )


DATASETS = ("mini", "coco", "custom")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "coco"  # "mini" (built-in, generated on demand), "coco" (2017), "custom"
    root: str = "data/coco"
    train_ann: str = "annotations/instances_train2017.json"  # relative to root
    train_images: str = "train2017"
    val_ann: str = "annotations/instances_val2017.json"
    val_images: str = "val2017"
    train_scale: tuple[int, ...] = (1333, 800)  # (long max, short max), keep ratio
    short_range: tuple[int, ...] = ()  # multi-scale training: (min, max) short side; () = off
    test_scale: tuple[int, ...] = (1333, 800)
    images_per_process: int = 2
    val_images_per_process: int = 1  # the official test is batch 1; batching pads differently
    workers: int = 2
    # The built-in dataset: generated into root when absent (see gfl_repro.data.mini.Variant for
    # the last three: the categories drawn, the share coloured by category, the smallest side).
    mini_train: int = 3000
    mini_val: int = 500
    mini_size: int = 320
    mini_seed: int = 0
    mini_classes: tuple[str, ...] = MINI_CATEGORIES
    mini_class_colour: float = 0.0
    mini_min_side: float = 0.04

    def mini_variant(self) -> Variant:
        return Variant(self.mini_classes, self.mini_class_colour, self.mini_min_side)

    def mini_spec(self) -> dict:
        """What the built-in set at root must have been generated with (its stats.json spec)."""
        return {"seed": self.mini_seed, "n_train": self.mini_train, "n_val": self.mini_val,
                "size": self.mini_size, **asdict(self.mini_variant())}  # fmt: skip


@dataclass(frozen=True)
class ScheduleConfig:
    epochs: int = 12
    lr: float = 0.01  # for base_batch images per iteration; scaled linearly for other batches
    base_batch: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    steps: tuple[int, ...] = (8, 11)  # epochs after which lr is multiplied by gamma
    gamma: float = 0.1
    # Clip the L2 norm of all gradients to this before each update (0 = no clipping, the GFL
    # recipe); mmdetection's optimizer_config=dict(grad_clip=dict(max_norm=..., norm_type=2)).
    grad_clip: float = 0.0
    max_iters: int = 0  # stop after this many iterations (0 = the full schedule); for tests


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"  # "auto" (cuda when present), "cpu", "cuda"
    amp: str = "none"  # "bf16" / "fp16" on GPU; QFL always runs in float32
    threads: int = 0  # torch CPU threads per process (0 = torch's default)
    log_every: int = 20  # iterations between metrics.jsonl lines
    checkpoint_every: int = 0  # iterations between checkpoints (0 = once per epoch)
    keep_checkpoints: int = 2
    eval_every_epoch: bool = False
    # At every epoch's checkpoint, the LQE summary of the val positives (PCC of J and of I with
    # the IoU, mean and std of I and J) as a "lqe" line of metrics.jsonl; GFL heads only.
    lqe_every_epoch: bool = False
    tensorboard: bool = True
    # The LQE dump written at the end of training (lqe.npz, for Table 6 and Figs. 1b/9):
    # "positives" (every val positive of the model's own assigner, as the authors measured),
    # "detections" (post-NMS detections matched to the best same-class gt), or "none".
    lqe: str = "positives"


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        check(self)


INF = float("inf")
AT_LEAST_1 = (1, INF, True, True)
NON_NEGATIVE = (0, INF, True, True)
POSITIVE = (0, INF, False, True)
# Every numeric field's range, checked when a config is built (before any run folder exists):
# path -> (low, high, low included, high included). A tuple field checks each of its items.
RANGES = {
    "model.num_classes": AT_LEAST_1,
    "model.frozen_stages": (-1, 4, True, True),
    "model.mini_widths": AT_LEAST_1,
    "model.fpn_channels": AT_LEAST_1,
    "model.object_scale": POSITIVE,
    "model.quality.hidden": AT_LEAST_1,
    "model.quality.composed_dim": AT_LEAST_1,
    "model.head.feat_channels": AT_LEAST_1,
    "model.head.stacked_convs": NON_NEGATIVE,
    "model.head.reg_max": AT_LEAST_1,
    "model.head.gn_groups": AT_LEAST_1,
    "model.head.anchor_scale": POSITIVE,
    "model.head.anchor_ratios": POSITIVE,
    "model.head.scales_per_octave": AT_LEAST_1,
    "model.head.center_offset": (0, 1, True, False),
    "model.head.atss_topk": AT_LEAST_1,
    "model.head.loss_qfl": NON_NEGATIVE,
    "model.head.loss_bbox": NON_NEGATIVE,
    "model.head.loss_dfl": NON_NEGATIVE,
    "model.inference.nms_pre": NON_NEGATIVE,  # 0 keeps every prior
    "model.inference.score_thr": (0, 1, True, True),
    "model.inference.iou_thr": (0, 1, False, True),
    "model.inference.max_per_img": AT_LEAST_1,
    "data.train_scale": AT_LEAST_1,
    "data.test_scale": AT_LEAST_1,
    "data.short_range": AT_LEAST_1,
    "data.images_per_process": AT_LEAST_1,
    "data.val_images_per_process": AT_LEAST_1,
    "data.workers": NON_NEGATIVE,
    "data.mini_train": AT_LEAST_1,
    "data.mini_val": AT_LEAST_1,
    "data.mini_size": (32, INF, True, True),
    "data.mini_class_colour": (0, 1, True, True),
    "data.mini_min_side": (0, 0.75, False, False),
    "schedule.epochs": AT_LEAST_1,
    "schedule.lr": POSITIVE,
    "schedule.base_batch": AT_LEAST_1,
    "schedule.momentum": (0, 1, True, False),
    "schedule.weight_decay": NON_NEGATIVE,
    "schedule.warmup_iters": NON_NEGATIVE,
    "schedule.warmup_ratio": (0, 1, False, True),
    "schedule.steps": AT_LEAST_1,
    "schedule.gamma": (0, 1, False, True),
    "schedule.grad_clip": NON_NEGATIVE,
    "schedule.max_iters": NON_NEGATIVE,
    "runtime.threads": NON_NEGATIVE,
    "runtime.log_every": AT_LEAST_1,
    "runtime.checkpoint_every": NON_NEGATIVE,
    "runtime.keep_checkpoints": AT_LEAST_1,
}


def _check_ranges(root, prefix: str) -> None:
    """The RANGES under ``prefix`` ("model." for a ModelConfig, "" for the rest of a Config)."""
    for path, (low, high, low_in, high_in) in RANGES.items():
        if not path.startswith(prefix) or (not prefix and path.startswith("model.")):
            continue
        value = root
        for part in path.removeprefix(prefix).split("."):
            value = getattr(value, part)
        for item in value if isinstance(value, tuple) else (value,):
            above = item >= low if low_in else item > low
            below = item <= high if high_in else item < high
            if not (above and below):
                span = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
                raise ConfigError(f"{path} = {value}: must be in {span}")


def _check_combinations(cfg: Config) -> None:
    """Fields that are valid alone but not together: each would fail later, or be ignored."""
    m, h = cfg.model, cfg.model.head
    several_priors = len(h.anchor_ratios) != 1 or h.scales_per_octave != 1
    if h.kind == "gfl" and several_priors:
        raise ConfigError(
            f"model.head.anchor_ratios={','.join(map(str, h.anchor_ratios))} and "
            f"model.head.scales_per_octave={h.scales_per_octave}: the GFL head has one prior per "
            "location (ratio 1, one scale); several anchors need model.head.kind=native"
        )
    if m.detector in ("fcos", "foveabox") and several_priors:
        raise ConfigError(
            f"model.head.anchor_ratios and model.head.scales_per_octave: model.detector="
            f"{m.detector} is anchor-free and would ignore them"
        )
    if m.backbone == "mini" and (m.dcn or m.pretrained):
        raise ConfigError(
            f"model.dcn={m.dcn}, model.pretrained={m.pretrained!r}: the mini backbone has no "
            "deformable convs and no pretrained weights (use a ResNet backbone)"
        )
    if h.feat_channels % h.gn_groups:
        raise ConfigError(
            f"model.head.gn_groups={h.gn_groups} must divide model.head.feat_channels="
            f"{h.feat_channels}"
        )
    d = cfg.data
    if d.dataset == "mini":
        try:
            d.mini_variant()
        except ValueError as err:
            raise ConfigError(f"data.mini_classes: {err}") from None
        if m.num_classes != len(d.mini_classes):
            raise ConfigError(
                f"model.num_classes={m.num_classes} but data.mini_classes has "
                f"{len(d.mini_classes)} categories: set model.num_classes={len(d.mini_classes)}"
            )
    s = cfg.schedule
    if s.steps and s.steps[-1] > s.epochs:
        raise ConfigError(f"schedule.steps={s.steps}: a step after schedule.epochs={s.epochs}")


def check(cfg: Config) -> None:
    _check_ranges(cfg, "")  # the model's were checked when its ModelConfig was built
    _check_combinations(cfg)
    d, s, r = cfg.data, cfg.schedule, cfg.runtime
    if d.dataset not in DATASETS:
        raise ConfigError(f"data.dataset: unknown {d.dataset!r}; known: {', '.join(DATASETS)}")
    if len(d.train_scale) != 2 or len(d.test_scale) != 2:
        raise ConfigError("data.train_scale and data.test_scale take two sizes: LONG,SHORT")
    if d.short_range and (len(d.short_range) != 2 or d.short_range[0] > d.short_range[1]):
        raise ConfigError(f"data.short_range must be MIN,MAX or empty, got {d.short_range}")
    _one_of("runtime.lqe", r.lqe, (*LQE_PROTOCOLS, "none"))
    if r.amp not in AMP_MODES:
        raise ConfigError(f"runtime.amp: unknown {r.amp!r}; known: {', '.join(AMP_MODES)}")
    if r.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"runtime.device: unknown {r.device!r}; known: auto, cpu, cuda")
    if list(s.steps) != sorted(s.steps):
        raise ConfigError(f"schedule.steps must be increasing, got {s.steps}")


def _parse_value(text: str, current, key: str):
    """Parse an override string to the type of the field's current value."""
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            items = [t.strip() for t in text.strip("()[] ").split(",") if t.strip()]
            sample = current[0] if current else None
            if sample is None:  # empty default: numbers when they parse, else strings
                return tuple(_number_or_text(t) for t in items)
            return tuple(_parse_value(t, sample, key) for t in items)
        return text
    except ValueError:
        kind = type(current).__name__
        raise ConfigError(f"--set {key}={text}: expected a value of type {kind}") from None


def _number_or_text(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def apply_overrides(cfg, overrides: list[str]):
    """Apply ``a.b=c`` overrides to a (nested) frozen config; unknown keys and bad values raise.

    All overrides are applied first and the result is checked once, so a change that needs two
    fields (e.g. model.head.kind=native with model.quality.kind=none) can be given in any order.
    """
    data = dataclasses.asdict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. schedule.lr=0.02")
        key, text = (part.strip() for part in item.split("=", 1))
        _set_path(cfg, data, key.split("."), text, key)
    return from_dict(type(cfg), data)


def _set_path(obj, data: dict, parts: list[str], text: str, key: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    if parts[0] not in names:
        known = ", ".join(sorted(names))
        raise ConfigError(f"--set {key}: unknown key {parts[0]!r} (known here: {known})")
    current = getattr(obj, parts[0])
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"--set {key}: {parts[0]!r} has no sub-keys")
        _set_path(current, data[parts[0]], parts[1:], text, key)
    elif dataclasses.is_dataclass(current):
        raise ConfigError(f"--set {key}: {parts[0]!r} is a group; name one of its keys")
    else:
        data[parts[0]] = _parse_value(text, current, key)


def to_dict(cfg) -> dict:
    """A config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls, data: dict, where: str = ""):
    """Rebuild a (nested) config dataclass from plain data; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if not dataclasses.is_dataclass(value) else value
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = from_dict(type(default), value, f"{where}{name}.")
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
