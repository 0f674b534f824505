"""Convolutional inputs for localization quality estimation (GFLV2 Table 3, Fig. 2 (a)-(g)).

Legend: B images, F channels of ``reg_feat``, p hidden width, (H, W) a level's size,
G sampled feature vectors concatenated per location (groups), S points averaged or max-pooled
into one group, K channels being sampled (F for the raw features, p once projected),
n = reg_max.

Each variant is a decomposed quality branch with DGQP's structure and only the input changed:
``quality(reg, reg_feat) -> I (B, 1, H, W)`` in [0, 1], computed as sampled features
(B, G * F, H, W) -> linear to p -> ReLU -> linear to 1 -> sigmoid, weights N(0, 0.01), biases 0.

Coordinates are feature cells: location (row i, column j) is the point (x, y) = (j, i), the value
``reg_feat[..., i, j]`` sits exactly there, and since the box distances are in stride units the
predicted box of (i, j) is [j - l, i - t, j + r, i + b]; no stride is needed to sample. Sampling
is bilinear; a point reads zeros wherever its neighbours fall outside the map (RoIAlign, used by
``region``, clamps instead, see ``RegionQuality``).

The predicted box is detached before sampling: the quality loss trains the features that are
sampled and the linear layers, not the box, which only the box losses train.

Sampling and averaging are linear in the feature map, so sampling F channels and applying the
first linear layer equals projecting ``reg_feat`` with that layer's slice for each group (a 1x1
conv to G * p channels) and sampling the p-channel slices. ``point``, ``region``,
``border_dense`` and ``border_middle`` use this exact reordering. ``regular`` and ``deformable``
run ``deform_conv2d`` with the first layer as its 3x3 kernel: exact, as VFNet and DCN do, but it
reads all F channels at the nine taps (a projected 9p-channel map would be read at all nine taps,
81 p > 9 F reads), so they get no projection saving; on one CPU thread the projected
``grid_sample`` order is about 3x faster, and ``sample`` already uses ``grid_sample``.
``border_extreme`` cannot reorder, because a max does not commute with the projection, so it
samples all F channels.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d, roi_align

from gfl_repro.models.box_coding import integral

CONV_INPUTS = (
    "point",
    "region",
    "border_dense",
    "border_middle",
    "border_extreme",
    "regular",
    "deformable",
)
BORDER_KINDS = ("border_dense", "border_middle", "border_extreme")


def predicted_boxes(reg: Tensor, reg_max: int) -> Tensor:
    """Detached predicted boxes in feature cells.

    reg: (B, 4 * (n + 1), H, W) logits -> (B, 4, H, W) as x1, y1, x2, y2.
    """
    dist = integral(reg.detach().float().permute(0, 2, 3, 1), reg_max)  # (B, H, W, 4) l t r b
    l, t, r, b = dist.unbind(-1)  # (B, H, W) each
    ys, xs = locations(reg.shape[2], reg.shape[3], reg.device)  # (H, W)
    return torch.stack([xs - l, ys - t, xs + r, ys + b], dim=1)  # (B, 4, H, W)


def locations(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(H, W) row and column coordinates of every location, float32."""
    rows = torch.arange(h, device=device, dtype=torch.float32)
    cols = torch.arange(w, device=device, dtype=torch.float32)
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    return ys, xs


def sample_points(feat: Tensor, points: Tensor) -> Tensor:
    """Bilinear values of ``feat`` at points in feature cells; zeros outside the map.

    feat: (B, K, H, W); points: (B, S, H', W', 2) as (x, y) -> (B, K, S, H', W').
    With ``align_corners=False`` the cell of column j spans normalised [2j / W - 1, 2(j+1) / W - 1],
    so x maps to (2x + 1) / W - 1: exact, and no division by W - 1 on 1-wide (P7) levels.
    """
    b, k, h, w = feat.shape
    s, ho, wo = points.shape[1:4]
    size = torch.tensor([w, h], dtype=points.dtype, device=points.device)
    grid = (2 * points + 1) / size - 1  # (B, S, H', W', 2) normalised
    grid = grid.reshape(b, s * ho, wo, 2).to(feat.dtype)
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, k, s, ho, wo)  # (B, K, S, H', W')


def sample_groups(feat: Tensor, points: Tensor, reduce: str = "mean") -> Tensor:
    """Each group's points sampled and reduced (mean or max over its S points) to one vector.

    feat: (B, K, H, W) shared by every group, or (B, G, K, H, W) one slice per group;
    points: (B, G, S, H, W, 2) -> (B, G, K, H, W). The loop runs over the G <= 9 groups only,
    to hold one group's (B, K, S, H, W) samples at a time.
    """
    out = []
    for g in range(points.shape[1]):
        values = sample_points(feat if feat.dim() == 4 else feat[:, g], points[:, g])
        out.append(values.amax(dim=2) if reduce == "max" else values.mean(dim=2))  # (B, K, H, W)
    return torch.stack(out, dim=1)  # (B, G, K, H, W)


class ConvQuality(nn.Module):
    """Base of the convolutional LQE inputs: G sampled F-vectors -> p -> ReLU -> 1 -> sigmoid.

    ``fc1`` is the linear layer on the concatenated samples (channel g * F + c is channel c of
    group g), stored as a 1x1 conv as in DGQP, so it has G * F * p + p parameters and ``fc2``
    p + 1. Subclasses define ``sample`` and may override ``hidden`` with a cheaper exact order.
    """

    kind: str

    def __init__(self, in_channels: int, groups: int, hidden: int = 64, reg_max: int = 16):
        super().__init__()
        self.in_channels, self.groups, self.hidden_dim = in_channels, groups, hidden
        self.reg_max = reg_max
        self.fc1 = nn.Conv2d(groups * in_channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, 1, 1)
        for conv in (self.fc1, self.fc2):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def sample(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        """The sampled input: (B, 4(n+1), H, W), (B, F, H, W) -> (B, G * F, H, W)."""
        raise NotImplementedError

    def hidden(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        """``fc1(sample(reg, reg_feat))`` before the ReLU: (B, p, H, W)."""
        return self.fc1(self.sample(reg, reg_feat))

    def forward(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        # float32 sampling coordinates need float32 features (a no-op outside AMP).
        return self.fc2(F.relu(self.hidden(reg, reg_feat.float()))).sigmoid()  # (B, 1, H, W)

    def project_groups(self, reg_feat: Tensor) -> Tensor:
        """``reg_feat`` through each group's slice of fc1, no bias.

        (B, F, H, W) -> (B, G, p, H, W); group g's slice is fc1.weight[:, g * F : (g + 1) * F].
        """
        g, p, f = self.groups, self.hidden_dim, self.in_channels
        weight = self.fc1.weight.reshape(p, g, f).transpose(0, 1).reshape(g * p, f, 1, 1)
        return F.conv2d(reg_feat, weight).unflatten(1, (g, p))  # (B, G, p, H, W)

    def sum_groups(self, projected_samples: Tensor) -> Tensor:
        """(B, G, p, H, W) samples of the projected slices -> (B, p, H, W) = fc1(samples)."""
        return projected_samples.sum(dim=1) + self.fc1.bias[:, None, None]


class PointQuality(ConvQuality):
    """(a) ``point``: the F-vector of ``reg_feat`` at the location itself, (j, i); G = 1.

    ``reg`` is not used: the point does not depend on the box.
    """

    kind = "point"

    def __init__(self, in_channels: int, hidden: int = 64, reg_max: int = 16):
        super().__init__(in_channels, 1, hidden, reg_max)

    def sample(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        return reg_feat  # (B, F, H, W)


class RegionQuality(ConvQuality):
    """(b) ``region``: RoIAlign of the predicted box on ``reg_feat``, R x R bins flattened.

    Bin (u, v) (row-major, group u * R + v) is the mean of ``sampling_ratio``^2 bilinear samples
    on a regular grid inside the bin, as ``torchvision.ops.roi_align`` with ``aligned=True`` and
    ``spatial_scale=1`` computes it. That op puts value j at coordinate j + 0.5, so the box is
    shifted by +0.5 to sample in this module's coordinates (value j at j). Outside the map
    RoIAlign does not read zeros: a point within one cell of the map reads the clamped border
    value, one further out reads 0.

    Default R = 3, ratio 2 (36 points, G = 9): IoU-Net's 7 x 7 bins would make fc1 49 * F * p
    (802k parameters at F = 256, p = 64) and 5x the samples; 3 x 3 keeps the input the size of
    ``regular``'s nine points. Each bin is taken as a 1 x 1 RoIAlign of the bin's own sub-box,
    which is the same computation as one R x R RoIAlign, so that each bin reads only its own
    p-channel projected slice (see ``project_groups``).
    """

    kind = "region"

    def __init__(
        self,
        in_channels: int,
        hidden: int = 64,
        reg_max: int = 16,
        roi_size: int = 3,
        sampling_ratio: int = 2,
    ):
        if roi_size < 1 or sampling_ratio < 1:
            raise ValueError(
                f"roi_size and sampling_ratio must be >= 1, got {roi_size}, {sampling_ratio}"
            )
        super().__init__(in_channels, roi_size * roi_size, hidden, reg_max)
        self.roi_size, self.sampling_ratio = roi_size, sampling_ratio

    def bin_boxes(self, reg: Tensor) -> Tensor:
        """(B, 4(n+1), H, W) -> (B, G, H, W, 4) each bin's sub-box, x1 y1 x2 y2 in feature cells."""
        x1, y1, x2, y2 = predicted_boxes(reg, self.reg_max)[..., None].unbind(1)  # (B, H, W, 1)
        frac = torch.linspace(0, 1, self.roi_size + 1, device=reg.device)  # (R + 1,)
        xs, ys = x1 + (x2 - x1) * frac, y1 + (y2 - y1) * frac  # (B, H, W, R + 1) bin edges
        shape = (*xs.shape[:3], self.roi_size, self.roi_size)  # (B, H, W, R, R) rows u, cols v
        corners = [
            xs[..., None, :-1].expand(shape),
            ys[..., :-1, None].expand(shape),
            xs[..., None, 1:].expand(shape),
            ys[..., 1:, None].expand(shape),
        ]
        bins = torch.stack(corners, dim=-1).flatten(3, 4)  # (B, H, W, G, 4)
        return bins.permute(0, 3, 1, 2, 4)  # (B, G, H, W, 4)

    def sample_bins(self, reg: Tensor, feat: Tensor) -> Tensor:
        """feat (B, K, H, W) shared by the bins or (B, G, K, H, W) one slice per bin
        -> (B, G, K, H, W)."""
        bins = self.bin_boxes(reg)  # (B, G, H, W, 4)
        b, g, h, w = bins.shape[:4]
        image = torch.arange(b * g, device=reg.device)  # one image per (b, bin) when grouped
        if feat.dim() == 4:
            image = image // g  # every bin reads image b
        index = image.reshape(b, g, 1, 1, 1).expand(b, g, h, w, 1).to(bins.dtype)
        rois = torch.cat([index, bins + 0.5], dim=-1).reshape(-1, 5)  # (B * G * H * W, 5)
        flat = feat if feat.dim() == 4 else feat.flatten(0, 1)  # (B or B * G, K, H, W)
        out = roi_align(flat, rois.to(flat.dtype), 1, 1.0, self.sampling_ratio, aligned=True)
        return out.reshape(b, g, h, w, -1).permute(0, 1, 4, 2, 3)  # (B, G, K, H, W)

    def sample(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        return self.sample_bins(reg, reg_feat).flatten(1, 2)  # (B, G * F, H, W)

    def hidden(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        return self.sum_groups(self.sample_bins(reg, self.project_groups(reg_feat)))


class BorderQuality(ConvQuality):
    """(c)-(e) border features; G = 4 borders in the order left, top, right, bottom.

    Each border is sampled at ``border_points`` = N evenly spaced points, corners included: the
    left border at (x1, y1 + (y2 - y1) * s / (N - 1)), s = 0 .. N - 1, the top at
    (x1 + (x2 - x1) * s / (N - 1), y1), the right at x2 and the bottom at y2 likewise.

    - ``border_dense`` (c): per border, the mean of its N samples; 4 F-vectors concatenated.
    - ``border_middle`` (d): per border, the one sample at its midpoint (s / (N - 1) = 1/2):
      (x1, yc), (xc, y1), (x2, yc), (xc, y2) with (xc, yc) the box centre; N is not used.
    - ``border_extreme`` (e): per border and per channel, the max over its N samples, as
      BorderDet's border-align max pooling (here on all F channels of ``reg_feat``, without
      BorderDet's own 1x1 reduction conv); 4 F-vectors concatenated. The max does not commute
      with fc1, so this variant samples F channels at 4 N points, not p.
    """

    def __init__(
        self,
        kind: str,
        in_channels: int,
        hidden: int = 64,
        reg_max: int = 16,
        border_points: int = 5,
    ):
        if kind not in BORDER_KINDS:
            raise ValueError(f"border kind must be one of {BORDER_KINDS}, got {kind!r}")
        if border_points < 2:
            raise ValueError(f"border_points must be >= 2 (both corners), got {border_points}")
        super().__init__(in_channels, 4, hidden, reg_max)
        self.kind, self.border_points = kind, border_points
        self.reduce = "max" if kind == "border_extreme" else "mean"

    def points(self, reg: Tensor) -> Tensor:
        """(B, 4(n+1), H, W) -> (B, 4, S, H, W, 2) sampling points (x, y); S = 1 or N."""
        x1, y1, x2, y2 = predicted_boxes(reg, self.reg_max)[:, :, None].unbind(1)  # (B, 1, H, W)
        if self.kind == "border_middle":
            frac = torch.tensor([0.5], device=reg.device)
        else:
            frac = torch.linspace(0, 1, self.border_points, device=reg.device)
        frac = frac[:, None, None]  # (S, 1, 1)
        along_x, along_y = x1 + (x2 - x1) * frac, y1 + (y2 - y1) * frac  # (B, S, H, W)
        left = torch.stack([x1.expand_as(along_y), along_y], dim=-1)  # (B, S, H, W, 2)
        top = torch.stack([along_x, y1.expand_as(along_x)], dim=-1)
        right = torch.stack([x2.expand_as(along_y), along_y], dim=-1)
        bottom = torch.stack([along_x, y2.expand_as(along_x)], dim=-1)
        return torch.stack([left, top, right, bottom], dim=1)  # (B, 4, S, H, W, 2)

    def sample(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        groups = sample_groups(reg_feat, self.points(reg), self.reduce)  # (B, 4, F, H, W)
        return groups.flatten(1, 2)  # (B, 4F, H, W)

    def hidden(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        if self.reduce == "max":
            return super().hidden(reg, reg_feat)
        projected = self.project_groups(reg_feat)  # (B, 4, p, H, W)
        return self.sum_groups(sample_groups(projected, self.points(reg)))


def tap_positions(h: int, w: int, device: torch.device) -> Tensor:
    """(9, H, W, 2) regular (x, y) positions of a 3x3 kernel's taps, padding 1, row-major taps:
    tap k = 3 * ky + kx of location (i, j) sits at (j + kx - 1, i + ky - 1)."""
    ys, xs = locations(h, w, device)  # (H, W)
    d = torch.arange(-1.0, 2.0, device=device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")  # (3, 3) each
    tx = xs + dx.reshape(9, 1, 1)  # (9, H, W)
    ty = ys + dy.reshape(9, 1, 1)
    return torch.stack([tx, ty], dim=-1)  # (9, H, W, 2)


class TapQuality(ConvQuality):
    """Nine points taken by a 3x3 ``deform_conv2d`` whose kernel is fc1 (G = 9, tap-major).

    ``deform_conv2d`` offsets are (B, 18, H, W): channel 2k is dy and 2k + 1 is dx of tap
    k = 3 * ky + kx, relative to the tap's regular position (i + ky - 1, j + kx - 1); it reads
    zeros outside the map as ``sample_points`` does. ``sample`` takes the same nine points with
    ``grid_sample``, so ``hidden`` (deform conv) equals ``fc1(sample)``.
    """

    def __init__(self, in_channels: int, hidden: int = 64, reg_max: int = 16):
        super().__init__(in_channels, 9, hidden, reg_max)

    def offsets(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        """(B, 18, H, W) deform_conv2d offsets, (dy, dx) per tap, row-major taps."""
        raise NotImplementedError

    def points(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        """(B, 9, 1, H, W, 2) the nine tap points (x, y), row-major taps."""
        b, _, h, w = reg_feat.shape
        dy, dx = self.offsets(reg, reg_feat).reshape(b, 9, 2, h, w).unbind(2)  # (B, 9, H, W)
        points = tap_positions(h, w, reg_feat.device) + torch.stack([dx, dy], dim=-1)
        return points[:, :, None]  # (B, 9, 1, H, W, 2)

    def sample(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        groups = sample_groups(reg_feat, self.points(reg, reg_feat))  # (B, 9, F, H, W)
        return groups.flatten(1, 2)  # (B, 9F, H, W)

    def hidden(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        p, f = self.hidden_dim, self.in_channels
        kernel = self.fc1.weight.reshape(p, 9, f).transpose(1, 2).reshape(p, f, 3, 3)
        offsets = self.offsets(reg, reg_feat).to(reg_feat.dtype)  # (B, 18, H, W)
        return deform_conv2d(reg_feat, offsets, kernel, self.fc1.bias, padding=1)  # (B, p, H, W)


class StarQuality(TapQuality):
    """(f) ``regular``: VFNet's star of nine points from the predicted box, (x, y) the location:
    (x1, y1), (x, y1), (x2, y1), (x1, y), (x, y), (x2, y), (x1, y2), (x, y2), (x2, y2)
    as taps 0..8 of a 3x3 deformable conv (the centre tap stays at the location)."""

    kind = "regular"

    def offsets(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        x1, y1, x2, y2 = predicted_boxes(reg, self.reg_max).unbind(1)  # (B, H, W)
        ys, xs = locations(reg.shape[2], reg.shape[3], reg.device)  # (H, W)
        xs, ys = xs.expand_as(x1), ys.expand_as(y1)  # (B, H, W)
        star_x = torch.stack([x1, xs, x2] * 3, dim=1)  # (B, 9, H, W) columns of the star
        star_y = torch.stack([y1] * 3 + [ys] * 3 + [y2] * 3, dim=1)  # (B, 9, H, W) rows
        regular = tap_positions(reg.shape[2], reg.shape[3], reg.device)  # (9, H, W, 2)
        dy, dx = star_y - regular[..., 1], star_x - regular[..., 0]  # (B, 9, H, W)
        return torch.stack([dy, dx], dim=2).flatten(1, 2)  # (B, 18, H, W)


class DeformableQuality(TapQuality):
    """(g) ``deformable``: nine learned points, a 3x3 deformable conv on ``reg_feat`` whose
    offsets come from a 3x3 conv on ``reg_feat`` (18 channels, zero-initialised as in DCN, so
    at init the points are the regular 3x3 neighbourhood and this is a plain 3x3 conv). The box
    is not used; the offsets are trained by the quality loss through the bilinear sampling.
    Adds 9 * F * 18 + 18 parameters.
    """

    kind = "deformable"

    def __init__(self, in_channels: int, hidden: int = 64, reg_max: int = 16):
        super().__init__(in_channels, hidden, reg_max)
        self.offset_conv = nn.Conv2d(in_channels, 18, 3, padding=1)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def offsets(self, reg: Tensor, reg_feat: Tensor) -> Tensor:
        return self.offset_conv(reg_feat)  # (B, 18, H, W)


def build_conv_quality(
    kind: str, in_channels: int, hidden: int = 64, reg_max: int = 16
) -> ConvQuality:
    """The Table 3 convolutional input ``kind`` (one of ``CONV_INPUTS``) with defaults."""
    if kind not in CONV_INPUTS:
        raise ValueError(f"conv quality kind must be one of {CONV_INPUTS}, got {kind!r}")
    if kind in BORDER_KINDS:
        return BorderQuality(kind, in_channels, hidden, reg_max)
    classes = {
        "point": PointQuality,
        "region": RegionQuality,
        "regular": StarQuality,
        "deformable": DeformableQuality,
    }
    return classes[kind](in_channels, hidden, reg_max)
