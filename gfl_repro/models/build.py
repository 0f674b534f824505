"""Assemble a detector from a ModelConfig with explicit constructors."""

from functools import partial

from gfl_repro.config import ModelConfig
from gfl_repro.models.assigners import atss_assign
from gfl_repro.models.backbone import MiniBackbone, build_resnet
from gfl_repro.models.detector import Detector
from gfl_repro.models.fpn import FPN
from gfl_repro.models.heads.gfl import GFLHead, LossWeights
from gfl_repro.models.quality import DGQP


def build_backbone(cfg: ModelConfig):
    if cfg.backbone == "mini":
        return MiniBackbone(widths=cfg.mini_widths, norm=cfg.mini_norm)
    pretrained = {"": False, "imagenet": True}.get(cfg.pretrained, cfg.pretrained)
    dcn = (False, True, True, True) if cfg.dcn else None
    return build_resnet(
        cfg.backbone, pretrained=pretrained, frozen_stages=cfg.frozen_stages, dcn_stages=dcn
    )


def build_quality(cfg: ModelConfig):
    q = cfg.quality
    if q.kind == "none":
        return None
    return DGQP(cfg.head.reg_max, q.k, q.hidden, q.statistics)


def build_model(cfg: ModelConfig) -> Detector:
    backbone = build_backbone(cfg)
    neck = FPN(backbone.out_channels, cfg.fpn_channels, num_extra=2)
    h = cfg.head
    head = GFLHead(
        cfg.num_classes,
        in_channels=cfg.fpn_channels,
        feat_channels=h.feat_channels,
        stacked_convs=h.stacked_convs,
        reg_max=h.reg_max,
        strides=(8, 16, 32, 64, 128),
        gn_groups=h.gn_groups,
        quality=build_quality(cfg),
        loss_weights=LossWeights(h.loss_qfl, h.loss_bbox, h.loss_dfl),
    )
    return Detector(
        backbone,
        neck,
        head,
        strides=(8, 16, 32, 64, 128),
        anchor_scale=h.anchor_scale,
        assigner=partial(atss_assign, topk=h.atss_topk),
        inference=cfg.inference,
    )
