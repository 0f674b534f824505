"""Heads with a centerness branch: FCOS (Tian et al., ICCV 2019) as mmdetection 2.x's improved
fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x, and ATSS (Zhang et al., CVPR
2020) as its atss_r50_fpn_1x. Both rank by sigmoid(cls) * sigmoid(centerness).

Legend: B images, P priors over all levels, P+ positives, C classes, F feature channels,
(H, W) a level's size, Q kept priors of one image.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gfl_repro.models.box_coding import Priors, delta2bbox, distance2bbox
from gfl_repro.models.heads.gfl import ConvGNReLU, Scale, flatten_level
from gfl_repro.models.heads.retina import init_cls_conv, predict_dense
from gfl_repro.models.losses import centerness_target, giou_loss, reduce_mean, sigmoid_focal_loss
from gfl_repro.models.postprocess import InferenceConfig
from gfl_repro.models.targets import Targets

BOX_KINDS = ("ltrb", "delta")
ATSS_DELTA_STDS = (0.1, 0.1, 0.2, 0.2)


class CenternessOutput(NamedTuple):
    scores: Tensor  # (B, P, C) sigmoid(cls) * sigmoid(centerness), the ranking score
    cls_logits: Tensor  # (B, P, C) float32
    reg: Tensor  # (B, P, 4) ltrb in stride units, or DeltaXYWH deltas; float32
    centerness: Tensor  # (B, P) logits, float32
    level_sizes: tuple[tuple[int, int], ...]


class CenternessLossWeights(NamedTuple):
    cls: float = 1.0
    bbox: float = 1.0
    centerness: float = 1.0


FCOS_LOSS_WEIGHTS = CenternessLossWeights(cls=1.0, bbox=1.0, centerness=1.0)
ATSS_LOSS_WEIGHTS = CenternessLossWeights(cls=1.0, bbox=2.0, centerness=1.0)


class FCOSHead(nn.Module):
    """GN towers; class logits on the classification tower, box and centerness on the
    regression tower (centerness_on_reg), a learnt Scale per level on the box output.

    ``box="ltrb"`` (FCOS): ReLU distances from the point in stride units (norm_on_bbox).
    ``box="delta"`` (ATSS): DeltaXYWH deltas of the prior's anchor, stds (0.1, 0.1, 0.2, 0.2).
    Loss: focal over valid priors / positives; GIoU of the decoded boxes weighted by the
    centerness targets / their sum; centerness BCE / positives.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        gn_groups: int = 32,
        box: str = "ltrb",
        loss_weights: CenternessLossWeights = FCOS_LOSS_WEIGHTS,
    ):
        super().__init__()
        if box not in BOX_KINDS:
            raise ValueError(f"box must be one of {BOX_KINDS}, got {box!r}")
        self.num_classes, self.strides, self.box = num_classes, tuple(strides), box
        self.loss_weights = loss_weights
        chans = [in_channels] + [feat_channels] * stacked_convs
        pairs = list(zip(chans[:-1], chans[1:], strict=True))
        self.cls_convs = nn.Sequential(*(ConvGNReLU(a, b, gn_groups) for a, b in pairs))
        self.reg_convs = nn.Sequential(*(ConvGNReLU(a, b, gn_groups) for a, b in pairs))
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.strides)
        init_cls_conv(self.conv_cls)
        for conv in (self.conv_reg, self.conv_centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward_level(self, x: Tensor, scale: Scale) -> tuple[Tensor, Tensor, Tensor]:
        cls = self.conv_cls(self.cls_convs(x)).float()  # (B, C, H, W)
        reg_feat = self.reg_convs(x)
        reg = scale(self.conv_reg(reg_feat)).float()  # (B, 4, H, W)
        if self.box == "ltrb":
            reg = reg.relu()
        return cls, reg, self.conv_centerness(reg_feat).float()  # ..., (B, 1, H, W)

    def forward(self, feats: list[Tensor]) -> CenternessOutput:
        outs = [self.forward_level(x, s) for x, s in zip(feats, self.scales, strict=True)]
        cls = torch.cat([flatten_level(c) for c, _, _ in outs], dim=1)  # (B, P, C)
        reg = torch.cat([flatten_level(r) for _, r, _ in outs], dim=1)  # (B, P, 4)
        ctr = torch.cat([flatten_level(t) for _, _, t in outs], dim=1)[..., 0]  # (B, P)
        scores = cls.sigmoid() * ctr.sigmoid()[..., None]  # (B, P, C)
        sizes = tuple((f.shape[2], f.shape[3]) for f in feats)
        return CenternessOutput(scores, cls, reg, ctr, sizes)

    def decode(
        self, reg: Tensor, priors: Priors, idx: Tensor, max_shape: tuple[int, int] | None = None
    ) -> Tensor:
        """(N, 4) outputs of priors ``idx`` (N,) -> (N, 4) boxes in pixels."""
        if self.box == "ltrb":
            dist = reg * priors.strides[idx, None]  # (N, 4) pixels
            return distance2bbox(priors.points[idx], dist, max_shape)
        return delta2bbox(priors.anchors[idx], reg, ATSS_DELTA_STDS, max_shape)

    def loss(self, out: CenternessOutput, priors: Priors, targets: Targets) -> dict[str, Tensor]:
        c, w = self.num_classes, self.loss_weights
        num_priors = out.scores.shape[1]
        labels = targets.labels.reshape(-1)  # (B*P,)
        pos = torch.nonzero(labels < c).squeeze(1)  # (P+,)
        idx = pos % num_priors  # (P+,) prior of each positive
        num_pos = reduce_mean(targets.num_pos.sum().float()).clamp(min=1)

        focal = sigmoid_focal_loss(out.cls_logits.reshape(-1, c), labels)  # (B*P,)
        loss_cls = (focal * targets.label_weights.reshape(-1)).sum() / num_pos
        gt = targets.boxes.reshape(-1, 4)[pos]  # (P+, 4) pixels
        pred = self.decode(out.reg.reshape(-1, 4)[pos], priors, idx)  # (P+, 4) pixels
        ctr_target = centerness_target(priors.points[idx], gt)  # (P+,)
        # With no positive the sum is 0 and the box loss an exact 0 (mmdetection's 1e-6 floor).
        ctr_sum = reduce_mean(ctr_target.sum()).clamp(min=1e-6)
        loss_bbox = (giou_loss(pred, gt) * ctr_target).sum() / ctr_sum
        ctr_logits = out.centerness.reshape(-1)[pos]  # (P+,)
        bce = F.binary_cross_entropy_with_logits(ctr_logits, ctr_target, reduction="sum")
        return {
            "loss_cls": w.cls * loss_cls,
            "loss_bbox": w.bbox * loss_bbox,
            "loss_centerness": w.centerness * bce / num_pos,
        }

    @torch.no_grad()
    def predict(
        self, out: CenternessOutput, priors: Priors, metas: list[dict], cfg: InferenceConfig
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes (D, 4) in original-image pixels, scores (D,), labels (D,)."""

        def decode(i: int, keep: Tensor, shape: tuple[int, int]) -> Tensor:
            return self.decode(out.reg[i, keep], priors, keep, shape)

        return predict_dense(out.scores, decode, priors, metas, cfg)


def atss_head(
    num_classes: int,
    in_channels: int = 256,
    feat_channels: int = 256,
    stacked_convs: int = 4,
    strides: tuple[int, ...] = (8, 16, 32, 64, 128),
    gn_groups: int = 32,
) -> FCOSHead:
    """mmdetection's ATSSHead: anchor deltas decoded for a GIoU loss of weight 2."""
    return FCOSHead(
        num_classes,
        in_channels,
        feat_channels,
        stacked_convs,
        strides,
        gn_groups,
        box="delta",
        loss_weights=ATSS_LOSS_WEIGHTS,
    )
