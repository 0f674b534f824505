"""The GFL head (GFLV1, and GFLV2 when a quality branch is injected).

Legend: B images, P priors over all levels, P+ positives, C classes, n = reg_max,
F feature channels, (H, W) a level's size.
"""

from typing import NamedTuple

import torch
from torch import Tensor, nn

from gfl_repro.models.box_coding import (
    Priors,
    aligned_iou,
    bbox2distance,
    distance2bbox,
    integral,
)
from gfl_repro.models.losses import (
    distribution_focal_loss,
    giou_loss,
    quality_focal_loss,
    reduce_mean,
)
from gfl_repro.models.postprocess import InferenceConfig, multiclass_nms, topk_per_level
from gfl_repro.models.quality import ComposedBranch, QualityBranch
from gfl_repro.models.targets import Targets

PRIOR_PROB = 0.01


class ConvGNReLU(nn.Sequential):
    """3x3 conv without bias, GroupNorm, ReLU; submodule names match mmdetection's ConvModule."""

    def __init__(self, in_ch: int, out_ch: int, groups: int = 32):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(groups, out_ch)
        self.act = nn.ReLU(inplace=True)
        nn.init.normal_(self.conv.weight, std=0.01)


class Scale(nn.Module):
    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class HeadOutput(NamedTuple):
    scores: Tensor  # (B, P, C) J = C x I, probabilities
    reg: Tensor  # (B, P, 4 * (n + 1)) distribution logits, float32
    quality: Tensor | None  # (B, P) I, or None without a quality branch
    level_sizes: tuple[tuple[int, int], ...]


class LossWeights(NamedTuple):
    qfl: float = 1.0
    bbox: float = 2.0
    dfl: float = 0.25


def flatten_level(x: Tensor) -> Tensor:
    """(B, K, H, W) -> (B, H * W, K), row-major over locations."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


BOX_KINDS = ("distribution", "dirac")


class GFLHead(nn.Module):
    """GFL head. The quality branch is injected into one of two slots: ``quality``, a decomposed
    branch (J = C x I: DGQP or a convolutional LQE, ``QualityBranch``), or ``composed``, whose
    features are appended to the classification tower's so that J is predicted directly
    (``ComposedBranch``); neither is GFLV1 (J = C). Either is held as ``self.quality`` (one
    submodule name, so checkpoints keep their keys) and called as ``quality(reg, reg_feat)``.

    ``box="distribution"`` is the general distribution with DFL; ``box="dirac"`` regresses the
    four distances directly (ReLU, stride units) with GIoU only, as the ATSS* / FCOS* baselines.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        reg_max: int = 16,
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        gn_groups: int = 32,
        quality: QualityBranch | None = None,
        loss_weights: LossWeights = LossWeights(),
        box: str = "distribution",
        composed: ComposedBranch | None = None,
    ):
        super().__init__()
        if box not in BOX_KINDS:
            raise ValueError(f"box must be one of {BOX_KINDS}, got {box!r}")
        if quality is not None and composed is not None:
            raise ValueError("a GFL head takes a decomposed quality branch or a composed one")
        self.num_classes, self.reg_max, self.loss_weights = num_classes, reg_max, loss_weights
        self.box, self.strides = box, tuple(strides)
        self.composed = composed is not None
        quality = composed if self.composed else quality

        def tower() -> nn.ModuleList:
            chans = [in_channels] + [feat_channels] * stacked_convs
            pairs = zip(chans[:-1], chans[1:], strict=True)
            return nn.ModuleList(ConvGNReLU(a, b, gn_groups) for a, b in pairs)

        self.cls_convs, self.reg_convs = tower(), tower()
        cls_in = feat_channels + (composed.extra_channels if self.composed else 0)
        self.gfl_cls = nn.Conv2d(cls_in, num_classes, 3, padding=1)
        reg_out = 4 * (reg_max + 1) if box == "distribution" else 4
        self.gfl_reg = nn.Conv2d(feat_channels, reg_out, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides)
        self.quality = quality
        nn.init.normal_(self.gfl_cls.weight, std=0.01)
        nn.init.constant_(
            self.gfl_cls.bias, -torch.log(torch.tensor((1 - PRIOR_PROB) / PRIOR_PROB))
        )
        nn.init.normal_(self.gfl_reg.weight, std=0.01)
        nn.init.zeros_(self.gfl_reg.bias)

    def forward_level(self, x: Tensor, scale: Scale) -> tuple[Tensor, Tensor, Tensor | None]:
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        reg = scale(self.gfl_reg(reg_feat)).float()  # (B, 4(n+1), H, W) or (B, 4, H, W)
        if self.box == "dirac":
            reg = reg.relu()  # distances in stride units
        if self.composed:
            extra = self.quality(reg, reg_feat)  # (B, d, H, W)
            cls_feat = torch.cat([cls_feat, extra.to(cls_feat.dtype)], dim=1)
        scores = self.gfl_cls(cls_feat).float().sigmoid()  # (B, C, H, W), float32 under AMP
        if self.quality is None or self.composed:
            return scores, reg, None
        quality = self.quality(reg, reg_feat)  # (B, 1, H, W)
        return scores * quality, reg, quality

    def distances(self, reg: Tensor) -> Tensor:
        """(..., 4(n+1)) logits or (..., 4) direct distances -> (..., 4) in stride units."""
        return integral(reg, self.reg_max) if self.box == "distribution" else reg

    def forward(self, feats: list[Tensor]) -> HeadOutput:
        outs = [self.forward_level(x, scale) for x, scale in zip(feats, self.scales, strict=True)]
        scores = torch.cat([flatten_level(s) for s, _, _ in outs], dim=1)  # (B, P, C)
        reg = torch.cat([flatten_level(r) for _, r, _ in outs], dim=1)  # (B, P, R)
        quality = None
        if outs[0][2] is not None:
            quality = torch.cat([flatten_level(q) for _, _, q in outs], dim=1)[..., 0]  # (B, P)
        sizes = tuple((f.shape[2], f.shape[3]) for f in feats)
        return HeadOutput(scores, reg, quality, sizes)

    def loss(self, out: HeadOutput, priors: Priors, targets: Targets) -> dict[str, Tensor]:
        """QFL / num_total_samples; GIoU and DFL / sum of positives' weights (no clamp to 1)."""
        c, n = self.num_classes, self.reg_max
        scores = out.scores.reshape(-1, c)  # (B*P, C)
        reg = out.reg.reshape(-1, out.reg.shape[-1])  # (B*P, R)
        labels = targets.labels.reshape(-1)  # (B*P,)
        pos = torch.nonzero(labels < c).squeeze(1)  # (P+,)
        prior = pos % priors.strides.shape[0]  # (P+,) index of each positive's prior
        stride = priors.strides[prior, None]  # (P+, 1)
        centres = priors.points[prior] / stride  # (P+, 2)

        pos_reg = reg[pos]  # (P+, R)
        pred_boxes = distance2bbox(centres, self.distances(pos_reg))  # (P+, 4) stride units
        gt_boxes = targets.boxes.reshape(-1, 4)[pos] / stride  # (P+, 4) stride units
        iou = torch.zeros_like(labels, dtype=scores.dtype)
        iou[pos] = aligned_iou(pred_boxes.detach(), gt_boxes)
        weight = scores.detach()[pos].max(dim=1).values  # (P+,)

        num_samples = reduce_mean(targets.num_pos.clamp(min=1).sum().float()).clamp(min=1)
        qfl = quality_focal_loss(scores, labels, iou) * targets.label_weights.reshape(-1)
        bbox = (giou_loss(pred_boxes, gt_boxes) * weight).sum()
        avg_factor = reduce_mean(weight.sum())
        # The official code divides by avg_factor unguarded; with no positive anywhere that is
        # 0 / 0, so the box losses are set to an exact zero (still connected to the graph).
        avg_factor = torch.where(avg_factor > 0, avg_factor, torch.ones_like(avg_factor))
        w = self.loss_weights
        losses = {
            "loss_qfl": w.qfl * qfl.sum() / num_samples,
            "loss_bbox": w.bbox * bbox / avg_factor,
        }
        if self.box == "distribution":
            dist_target = bbox2distance(centres, gt_boxes, n).reshape(-1)  # (P+ * 4,)
            dfl = distribution_focal_loss(pos_reg.reshape(-1, n + 1), dist_target)
            dfl = (dfl * weight.repeat_interleave(4)).sum() / 4
            losses["loss_dfl"] = w.dfl * dfl / avg_factor
        return losses

    @torch.no_grad()
    def predict(
        self, out: HeadOutput, priors: Priors, metas: list[dict], cfg: InferenceConfig
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes (D, 4) in original-image pixels, scores (D,), labels (D,)."""
        results = []
        for i, meta in enumerate(metas):
            keep = topk_per_level(out.scores[i], priors.num_per_level, cfg.nms_pre)  # (Q,)
            dist = self.distances(out.reg[i, keep]) * priors.strides[keep, None]  # (Q, 4)
            boxes = distance2bbox(priors.points[keep], dist, tuple(meta["img_shape"]))
            scale = torch.as_tensor(meta.get("scale_factor", [1.0] * 4)).to(boxes)
            boxes, scores, labels = multiclass_nms(boxes / scale, out.scores[i, keep], cfg)
            results.append({"boxes": boxes, "scores": scores, "labels": labels})
        return results
