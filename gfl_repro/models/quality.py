"""Quality branches of the GFL head: what turns the box distribution into the IoU scalar I.

Legend: B images, H, W a level's size, n = reg_max (n + 1 bins), k top-k, D statistics per side.

A quality branch takes the level's box logits (B, 4 * (n + 1), H, W) and returns I of shape
(B, 1, H, W) in [0, 1]; the head multiplies the class probabilities by it (J = C x I).
GFLV1 has no quality branch: the head is built with ``quality=None`` and J = C.
"""

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STATISTICS = ("topk", "mean", "var")


def distribution_statistics(
    reg_logits: Tensor, reg_max: int, k: int, statistics: tuple[str, ...] = ("topk", "mean")
) -> Tensor:
    """Per-side statistics of the softmaxed distributions, side-major (l, t, r, b).

    For each side: the k largest probabilities in descending order (``topk``), their mean
    (``mean``) and their population variance (``var``), in that order, so channel
    ``side * D + j`` holds statistic j of that side (D = k * [topk] + [mean] + [var]).
    Mean and variance are of the top-k values: the mean of all bins is always 1 / (n + 1).

    reg_logits: (B, 4 * (n + 1), H, W) -> (B, 4 * D, H, W)
    """
    b, _, h, w = reg_logits.shape
    prob = F.softmax(reg_logits.reshape(b, 4, reg_max + 1, h, w), dim=2)  # (B, 4, n+1, H, W)
    top, _ = prob.topk(k, dim=2)  # (B, 4, k, H, W), descending
    parts = []
    if "topk" in statistics:
        parts.append(top)
    if "mean" in statistics:
        parts.append(top.mean(dim=2, keepdim=True))  # (B, 4, 1, H, W)
    if "var" in statistics:
        parts.append(top.var(dim=2, unbiased=False, keepdim=True))  # (B, 4, 1, H, W)
    return torch.cat(parts, dim=2).reshape(b, -1, h, w)  # (B, 4 * D, H, W)


def statistics_dim(k: int, statistics: tuple[str, ...]) -> int:
    per_side = (k if "topk" in statistics else 0) + ("mean" in statistics) + ("var" in statistics)
    return 4 * per_side


class DGQP(nn.Module):
    """Distribution-Guided Quality Predictor: statistics -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid.

    With k = 4, p = 64 and top-k + mean it has 20 * 64 + 64 + 64 + 1 = 1409 parameters.
    The distribution is not detached: the quality loss reaches ``gfl_reg`` through it.
    """

    def __init__(
        self,
        reg_max: int = 16,
        k: int = 4,
        hidden: int = 64,
        statistics: tuple[str, ...] = ("topk", "mean"),
    ) -> None:
        super().__init__()
        unknown = set(statistics) - set(STATISTICS)
        if unknown or not statistics:
            raise ValueError(
                f"statistics must be a non-empty subset of {STATISTICS}, got {statistics}"
            )
        if not 1 <= k <= reg_max + 1:
            raise ValueError(f"DGQP k must be in [1, reg_max + 1 = {reg_max + 1}], got {k}")
        self.reg_max, self.k, self.statistics = reg_max, k, tuple(statistics)
        self.fc1 = nn.Conv2d(statistics_dim(k, statistics), hidden, 1)
        self.fc2 = nn.Conv2d(hidden, 1, 1)
        for conv in (self.fc1, self.fc2):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, reg_logits: Tensor, reg_feat: Tensor | None = None) -> Tensor:
        stats = distribution_statistics(reg_logits, self.reg_max, self.k, self.statistics)
        return self.fc2(F.relu(self.fc1(stats))).sigmoid()  # (B, 1, H, W)


class QualityBranch(Protocol):
    """A decomposed quality branch (J = C x I): DGQP or a convolutional LQE of Table 3.
    reg (B, 4(n+1), H, W) distribution logits and reg_feat (B, F, H, W), the regression tower's
    features, -> I (B, 1, H, W) in [0, 1]."""

    def __call__(self, reg: Tensor, reg_feat: Tensor) -> Tensor: ...


class ComposedBranch(Protocol):
    """A composed quality branch (Table 4): the same inputs -> (B, extra_channels, H, W)
    features appended to the classification tower's, which then predict J directly."""

    extra_channels: int

    def __call__(self, reg: Tensor, reg_feat: Tensor) -> Tensor: ...


class ComposedStatistics(nn.Module):
    """The composed form (Table 4): the statistics through one 1x1 conv of width d and a ReLU,
    appended to the classification tower's features, which then predict J directly."""

    def __init__(
        self,
        reg_max: int = 16,
        k: int = 4,
        dim: int = 64,
        statistics: tuple[str, ...] = ("topk", "mean"),
    ) -> None:
        super().__init__()
        self.reg_max, self.k, self.statistics = reg_max, k, tuple(statistics)
        self.extra_channels = dim
        self.fc = nn.Conv2d(statistics_dim(k, statistics), dim, 1)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, reg_logits: Tensor, reg_feat: Tensor | None = None) -> Tensor:
        stats = distribution_statistics(reg_logits, self.reg_max, self.k, self.statistics)
        return F.relu(self.fc(stats))  # (B, d, H, W)
