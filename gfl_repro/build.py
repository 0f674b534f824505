"""Assemble a detector from a ModelConfig with explicit constructors.

The detector family (``model.detector``) fixes the assigner; ``model.head.kind`` chooses between
the GFL head (with its box representation and injected quality branch) and the family's own head.
"""

from functools import partial

from torch import nn

from gfl_repro.config import CONV_QUALITY, ModelConfig
from gfl_repro.models.assigners import (
    FCOS_REGRESS_RANGES,
    FOVEA_SCALE_RANGES,
    atss_assign,
    fcos_assign,
    fovea_assign,
    max_iou_assign,
)
from gfl_repro.models.backbone import MiniBackbone, build_resnet
from gfl_repro.models.detector import Detector
from gfl_repro.models.fpn import FPN
from gfl_repro.models.heads.fcos import FCOSHead, atss_head
from gfl_repro.models.heads.fovea import FoveaHead
from gfl_repro.models.heads.gfl import GFLHead, LossWeights
from gfl_repro.models.heads.retina import RetinaHead
from gfl_repro.models.quality import DGQP, ComposedStatistics
from gfl_repro.models.quality_conv import build_conv_quality
from gfl_repro.models.targets import Assigner

STRIDES = (8, 16, 32, 64, 128)
FOVEA_BASE_EDGES = (16, 32, 64, 128, 256)


def scaled(
    ranges: tuple[tuple[float, float], ...], scale: float
) -> tuple[tuple[float, float], ...]:
    """Per-level object-size ranges times ``model.object_scale``."""
    return tuple((low * scale, high * scale) for low, high in ranges)


def build_backbone(cfg: ModelConfig) -> nn.Module:
    if cfg.backbone == "mini":
        return MiniBackbone(widths=cfg.mini_widths, norm=cfg.mini_norm)
    pretrained = {"": False, "imagenet": True}.get(cfg.pretrained, cfg.pretrained)
    dcn = (False, True, True, True) if cfg.dcn else None
    return build_resnet(
        cfg.backbone, pretrained=pretrained, frozen_stages=cfg.frozen_stages, dcn_stages=dcn
    )


def build_quality(cfg: ModelConfig) -> nn.Module | None:
    q, n = cfg.quality, cfg.head.reg_max
    if q.kind == "none":
        return None
    if q.kind == "dgqp":
        return DGQP(n, q.k, q.hidden, q.statistics)
    if q.kind == "composed":
        return ComposedStatistics(n, q.k, q.composed_dim, q.statistics)
    assert q.kind in CONV_QUALITY
    return build_conv_quality(q.kind, cfg.head.feat_channels, q.hidden, n)


def build_assigner(cfg: ModelConfig) -> Assigner:
    if cfg.detector == "atss":
        return partial(atss_assign, topk=cfg.head.atss_topk)
    if cfg.detector == "retinanet":
        return max_iou_assign
    if cfg.detector == "fcos":
        ranges = scaled(FCOS_REGRESS_RANGES, cfg.object_scale)
        return partial(fcos_assign, strides=STRIDES, regress_ranges=ranges)
    return partial(fovea_assign, scale_ranges=scaled(FOVEA_SCALE_RANGES, cfg.object_scale))


def build_head(cfg: ModelConfig) -> nn.Module:
    h, c = cfg.head, cfg.num_classes
    common = dict(in_channels=cfg.fpn_channels, feat_channels=h.feat_channels,
                  stacked_convs=h.stacked_convs, strides=STRIDES)  # fmt: skip
    if h.kind == "gfl":
        weights = LossWeights(h.loss_qfl, h.loss_bbox, h.loss_dfl)
        branch = build_quality(cfg)  # a composed one takes the head's other slot
        slot = "composed" if cfg.quality.kind == "composed" else "quality"
        return GFLHead(c, **common, reg_max=h.reg_max, gn_groups=h.gn_groups,
                       loss_weights=weights, box=h.box, **{slot: branch})  # fmt: skip
    plain_gn = h.gn_groups if h.plain_tower_norm == "gn" else 0  # RetinaNet's, FoveaBox's towers
    if cfg.detector == "retinanet":
        anchors = len(h.anchor_ratios) * h.scales_per_octave
        return RetinaHead(c, **common, num_anchors=anchors, gn_groups=plain_gn)
    if cfg.detector == "fcos":
        return FCOSHead(c, **common, gn_groups=h.gn_groups, box="ltrb")
    if cfg.detector == "foveabox":
        edges = tuple(e * cfg.object_scale for e in FOVEA_BASE_EDGES)
        return FoveaHead(c, **common, base_edges=edges, gn_groups=plain_gn)
    return atss_head(c, **common, gn_groups=h.gn_groups)


def build_model(cfg: ModelConfig) -> Detector:
    backbone = build_backbone(cfg)
    neck = FPN(
        backbone.out_channels,
        cfg.fpn_channels,
        num_extra=2,
        extra_source=cfg.fpn_extra_source,
        relu_before_extra=cfg.fpn_relu_before_extra,
    )
    h = cfg.head
    return Detector(
        backbone,
        neck,
        build_head(cfg),
        strides=STRIDES,
        anchor_scale=h.anchor_scale * cfg.object_scale,
        assigner=build_assigner(cfg),
        inference=cfg.inference,
        ratios=tuple(h.anchor_ratios),
        scales_per_octave=h.scales_per_octave,
        center_offset=h.center_offset,
    )
