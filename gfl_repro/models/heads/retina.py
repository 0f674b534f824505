"""The RetinaNet head (Lin et al., ICCV 2017) as mmdetection 2.x's retinanet_r50_fpn_1x, and the
pieces the other baselines share: a plain conv tower and dense post-processing.

Legend: B images, P priors over all levels (A anchors per location), P+ positives, C classes,
F feature channels, (H, W) a level's size, Q kept priors of one image.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gfl_repro.models.box_coding import Priors, bbox2delta, delta2bbox
from gfl_repro.models.heads.gfl import PRIOR_PROB, ConvGNReLU, flatten_level
from gfl_repro.models.losses import reduce_mean, sigmoid_focal_loss
from gfl_repro.models.postprocess import InferenceConfig, multiclass_nms, topk_per_level
from gfl_repro.models.targets import Targets


class ConvReLU(nn.Sequential):
    """3x3 conv with bias, no norm, ReLU: mmdetection's ConvModule with ``norm_cfg=None``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)


def plain_tower(
    in_channels: int, feat_channels: int, stacked_convs: int, gn_groups: int = 0
) -> nn.Sequential:
    """The RetinaNet/FoveaBox tower: conv + ReLU without norm (mmdetection's), or with
    ``gn_groups`` > 0 conv + GroupNorm + ReLU as the GFL, FCOS and ATSS towers."""
    chans = [in_channels] + [feat_channels] * stacked_convs
    pairs = zip(chans[:-1], chans[1:], strict=True)
    if gn_groups > 0:
        return nn.Sequential(*(ConvGNReLU(a, b, gn_groups) for a, b in pairs))
    return nn.Sequential(*(ConvReLU(a, b) for a, b in pairs))


def init_cls_conv(conv: nn.Conv2d) -> None:
    """Normal(0, 0.01) weights and the bias giving every class a prior probability of 0.01."""
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, -torch.log(torch.tensor((1 - PRIOR_PROB) / PRIOR_PROB)))


def flatten_anchors(x: Tensor, k: int) -> Tensor:
    """(B, A * K, H, W) -> (B, H * W * A, K), location-major as the priors."""
    return flatten_level(x).reshape(x.shape[0], -1, k)


def predict_dense(
    scores: Tensor,
    decode: Callable[[int, Tensor, tuple[int, int]], Tensor],
    priors: Priors,
    metas: list[dict],
    cfg: InferenceConfig,
) -> list[dict[str, Tensor]]:
    """The ``nms_pre`` best priors per level, decoded, rescaled, class-aware NMS.

    scores (B, P, C) the ranking score; ``decode(i, keep (Q,), img_shape) -> (Q, 4)`` boxes of
    image i in input pixels, clipped to (h, w). Boxes come back in original-image pixels.
    """
    results = []
    for i, meta in enumerate(metas):
        keep = topk_per_level(scores[i], priors.num_per_level, cfg.nms_pre)  # (Q,)
        boxes = decode(i, keep, tuple(meta["img_shape"]))  # (Q, 4)
        scale = torch.as_tensor(
            meta.get("scale_factor", [1.0] * 4), dtype=boxes.dtype, device=boxes.device
        )
        boxes, kept_scores, labels = multiclass_nms(boxes / scale, scores[i, keep], cfg)
        results.append({"boxes": boxes, "scores": kept_scores, "labels": labels})
    return results


class RetinaOutput(NamedTuple):
    scores: Tensor  # (B, P, C) sigmoid probabilities
    cls_logits: Tensor  # (B, P, C) float32
    deltas: Tensor  # (B, P, 4) (dx, dy, dw, dh), float32
    level_sizes: tuple[tuple[int, int], ...]


class RetinaHead(nn.Module):
    """Two towers of ``stacked_convs`` 3x3 conv + ReLU (bias, no norm; GroupNorm with
    ``gn_groups`` > 0), then A * C class logits and A * 4 DeltaXYWH deltas (means 0, stds 1) per
    location; no per-level scale.

    Loss: focal (alpha 0.25, gamma 2) over every valid, non-ignored anchor and L1 on the
    positives' deltas, both / the number of positives (each image counted at least once).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        num_anchors: int = 9,
        gn_groups: int = 0,
    ):
        super().__init__()
        self.num_classes, self.num_anchors, self.strides = num_classes, num_anchors, tuple(strides)
        self.cls_convs = plain_tower(in_channels, feat_channels, stacked_convs, gn_groups)
        self.reg_convs = plain_tower(in_channels, feat_channels, stacked_convs, gn_groups)
        self.retina_cls = nn.Conv2d(feat_channels, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, num_anchors * 4, 3, padding=1)
        init_cls_conv(self.retina_cls)
        nn.init.normal_(self.retina_reg.weight, std=0.01)
        nn.init.zeros_(self.retina_reg.bias)

    def forward(self, feats: list[Tensor]) -> RetinaOutput:
        logits, deltas = [], []
        for x, _ in zip(feats, self.strides, strict=True):
            cls = self.retina_cls(self.cls_convs(x)).float()  # (B, A*C, H, W)
            reg = self.retina_reg(self.reg_convs(x)).float()  # (B, A*4, H, W)
            logits.append(flatten_anchors(cls, self.num_classes))  # (B, HWA, C)
            deltas.append(flatten_anchors(reg, 4))  # (B, HWA, 4)
        logits = torch.cat(logits, dim=1)  # (B, P, C)
        sizes = tuple((f.shape[2], f.shape[3]) for f in feats)
        return RetinaOutput(logits.sigmoid(), logits, torch.cat(deltas, dim=1), sizes)

    def loss(self, out: RetinaOutput, priors: Priors, targets: Targets) -> dict[str, Tensor]:
        c = self.num_classes
        num_priors = out.scores.shape[1]
        labels = targets.labels.reshape(-1)  # (B*P,)
        pos = torch.nonzero(labels < c).squeeze(1)  # (P+,)
        num_pos = reduce_mean(targets.num_pos.clamp(min=1).sum().float()).clamp(min=1)

        focal = sigmoid_focal_loss(out.cls_logits.reshape(-1, c), labels)  # (B*P,)
        loss_cls = (focal * targets.label_weights.reshape(-1)).sum() / num_pos
        anchors = priors.anchors[pos % num_priors]  # (P+, 4)
        gt = targets.boxes.reshape(-1, 4)[pos]  # (P+, 4)
        pred = out.deltas.reshape(-1, 4)[pos]  # (P+, 4)
        loss_bbox = (pred - bbox2delta(anchors, gt)).abs().sum() / num_pos
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    @torch.no_grad()
    def predict(
        self, out: RetinaOutput, priors: Priors, metas: list[dict], cfg: InferenceConfig
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes (D, 4) in original-image pixels, scores (D,), labels (D,)."""

        def decode(i: int, keep: Tensor, shape: tuple[int, int]) -> Tensor:
            return delta2bbox(priors.anchors[keep], out.deltas[i, keep], max_shape=shape)

        return predict_dense(out.scores, decode, priors, metas, cfg)
