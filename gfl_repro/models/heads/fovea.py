"""The FoveaBox head (Kong et al., TIP 2020) as mmdetection 2.x's fovea_r50_fpn_4x4_1x.

Legend: B images, P priors over all levels, P+ positives, C classes, F feature channels,
(H, W) a level's size, Q kept priors of one image.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gfl_repro.models.box_coding import Priors, distance2bbox
from gfl_repro.models.heads.gfl import flatten_level
from gfl_repro.models.heads.retina import init_cls_conv, plain_tower, predict_dense
from gfl_repro.models.losses import reduce_mean, sigmoid_focal_loss
from gfl_repro.models.postprocess import InferenceConfig
from gfl_repro.models.targets import Targets


class FoveaOutput(NamedTuple):
    scores: Tensor  # (B, P, C) sigmoid probabilities
    cls_logits: Tensor  # (B, P, C) float32
    reg: Tensor  # (B, P, 4) log(ltrb / base edge), float32
    level_sizes: tuple[tuple[int, int], ...]


def fovea_box_target(points: Tensor, boxes: Tensor, base_edges: Tensor) -> Tensor:
    """(N, 2) points, (N, 4) boxes, (N,) base edges in pixels -> (N, 4)
    log(clamp(ltrb / base edge, 1/16, 16)), FoveaBox's regression target."""
    ltrb = torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], dim=1)  # (N, 4)
    return torch.log((ltrb / base_edges[:, None]).clamp(min=1 / 16, max=16.0))


class FoveaHead(nn.Module):
    """Two towers of ``stacked_convs`` 3x3 conv + ReLU (bias, no norm; GroupNorm with
    ``gn_groups`` > 0), C class logits and 4 log-space distances per location; no per-level
    scale. A location's box is its point -+ base_edge * exp(reg).

    Loss: focal (alpha 0.4, gamma 1.5) over valid priors / (positives + images), smooth L1
    (beta 0.11) on the positives' log targets / positives.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        base_edges: tuple[float, ...] = (16, 32, 64, 128, 256),
        focal_alpha: float = 0.4,
        focal_gamma: float = 1.5,
        smooth_l1_beta: float = 0.11,
        gn_groups: int = 0,
    ):
        super().__init__()
        if len(base_edges) != len(strides):
            raise ValueError(f"one base edge per level: {base_edges} for strides {strides}")
        self.num_classes, self.strides = num_classes, tuple(strides)
        self.base_edges = tuple(float(b) for b in base_edges)
        self.focal_alpha, self.focal_gamma, self.beta = focal_alpha, focal_gamma, smooth_l1_beta
        self.cls_convs = plain_tower(in_channels, feat_channels, stacked_convs, gn_groups)
        self.reg_convs = plain_tower(in_channels, feat_channels, stacked_convs, gn_groups)
        self.fovea_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.fovea_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        init_cls_conv(self.fovea_cls)
        nn.init.normal_(self.fovea_reg.weight, std=0.01)
        nn.init.zeros_(self.fovea_reg.bias)

    def forward(self, feats: list[Tensor]) -> FoveaOutput:
        logits, reg = [], []
        for x, _ in zip(feats, self.strides, strict=True):
            logits.append(flatten_level(self.fovea_cls(self.cls_convs(x)).float()))  # (B, HW, C)
            reg.append(flatten_level(self.fovea_reg(self.reg_convs(x)).float()))  # (B, HW, 4)
        logits = torch.cat(logits, dim=1)  # (B, P, C)
        sizes = tuple((f.shape[2], f.shape[3]) for f in feats)
        return FoveaOutput(logits.sigmoid(), logits, torch.cat(reg, dim=1), sizes)

    def prior_base_edges(self, priors: Priors) -> Tensor:
        """(P,) the base edge of each prior's level, pixels."""
        return priors.points.new_tensor(self.base_edges)[priors.levels]

    def loss(self, out: FoveaOutput, priors: Priors, targets: Targets) -> dict[str, Tensor]:
        c = self.num_classes
        num_images, num_priors = out.scores.shape[:2]
        labels = targets.labels.reshape(-1)  # (B*P,)
        pos = torch.nonzero(labels < c).squeeze(1)  # (P+,)
        idx = pos % num_priors  # (P+,)
        num_pos = reduce_mean(targets.num_pos.sum().float())

        focal = sigmoid_focal_loss(
            out.cls_logits.reshape(-1, c), labels, self.focal_alpha, self.focal_gamma
        )  # (B*P,)
        loss_cls = (focal * targets.label_weights.reshape(-1)).sum() / (num_pos + num_images)
        gt = targets.boxes.reshape(-1, 4)[pos]  # (P+, 4)
        target = fovea_box_target(priors.points[idx], gt, self.prior_base_edges(priors)[idx])
        pred = out.reg.reshape(-1, 4)[pos]  # (P+, 4)
        smooth_l1 = F.smooth_l1_loss(pred, target, reduction="sum", beta=self.beta)
        return {"loss_cls": loss_cls, "loss_bbox": smooth_l1 / num_pos.clamp(min=1)}

    @torch.no_grad()
    def predict(
        self, out: FoveaOutput, priors: Priors, metas: list[dict], cfg: InferenceConfig
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes (D, 4) in original-image pixels, scores (D,), labels (D,)."""
        base = self.prior_base_edges(priors)  # (P,)

        def decode(i: int, keep: Tensor, shape: tuple[int, int]) -> Tensor:
            dist = out.reg[i, keep].exp() * base[keep, None]  # (Q, 4) pixels
            return distance2bbox(priors.points[keep], dist, shape)

        return predict_dense(out.scores, decode, priors, metas, cfg)
