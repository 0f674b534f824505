"""Typed configuration: one frozen dataclass per part, one place for each default.

The defaults are the official GFLV2 R-50 recipe (see RECIPE.md); presets and experiments are
small diffs of them.
"""

import dataclasses
import json
from dataclasses import dataclass, field

from gfl_repro.models.postprocess import InferenceConfig

QUALITY_KINDS = ("dgqp", "none")
BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnext101_32x4d",
    "resnext101_64x4d",
    "mini",
)


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class QualityConfig:
    kind: str = "dgqp"  # "dgqp" (GFLV2) or "none" (GFLV1, J = C)
    k: int = 4
    hidden: int = 64  # p
    statistics: tuple[str, ...] = ("topk", "mean")


@dataclass(frozen=True)
class HeadConfig:
    feat_channels: int = 256
    stacked_convs: int = 4
    reg_max: int = 16
    gn_groups: int = 32
    anchor_scale: float = 8.0  # anchor side = anchor_scale * stride (octave_base_scale)
    atss_topk: int = 9
    loss_qfl: float = 1.0
    loss_bbox: float = 2.0
    loss_dfl: float = 0.25


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int = 80
    backbone: str = "resnet50"
    # "" = random init, "imagenet" = torchvision's weights from the torch hub cache, else a path.
    pretrained: str = ""
    frozen_stages: int = 1
    dcn: bool = False  # modulated deformable convs in stages c3-c5
    mini_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    mini_norm: str = "bn"
    fpn_channels: int = 256
    head: HeadConfig = field(default_factory=HeadConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        check_model(self)


def check_model(cfg: ModelConfig) -> None:
    if cfg.backbone not in BACKBONES:
        raise ConfigError(
            f"model.backbone: unknown {cfg.backbone!r}; known: {', '.join(BACKBONES)}"
        )
    q = cfg.quality
    if q.kind not in QUALITY_KINDS:
        raise ConfigError(
            f"model.quality.kind: unknown {q.kind!r}; known: {', '.join(QUALITY_KINDS)}"
        )
    if q.kind == "dgqp" and not 1 <= q.k <= cfg.head.reg_max + 1:
        raise ConfigError(
            f"model.quality.k = {q.k} must be in [1, reg_max + 1 = {cfg.head.reg_max + 1}]"
        )
    unknown = set(q.statistics) - {"topk", "mean", "var"}
    if unknown or not q.statistics:
        raise ConfigError(
            f"model.quality.statistics: {q.statistics} must be a non-empty subset of "
            "topk, mean, var"
        )
    if q.hidden < 1:
        raise ConfigError(f"model.quality.hidden = {q.hidden} must be >= 1")


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
