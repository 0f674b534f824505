"""Backbones returning the C3, C4, C5 feature maps (strides 8, 16, 32) for the FPN.

Legend: B images, H x W the input size in pixels, C channels, K = 3 x 3 = 9 kernel points,
G deform groups (1 in every ResNet here), Ho x Wo a convolution's output size.

`ResNetBackbone` builds torchvision's ResNet / ResNeXt with frozen BatchNorm and keeps its
attribute names, so its state-dict keys equal mmdetection's `backbone.*` keys (also with DCNv2).
`MiniBackbone` is a small plain CNN trained from scratch for the CPU `mini` scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import (
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    ResNeXt101_64X4D_Weights,
)
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops import FrozenBatchNorm2d, deform_conv2d


@dataclass(frozen=True)
class ResNetSpec:
    """One ResNet / ResNeXt architecture; `weights_file` is torchvision's ImageNet file name."""

    name: str
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64
    weights_file: str | None = None


def _file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


RESNET_SPECS: dict[str, ResNetSpec] = {
    spec.name: spec
    for spec in (
        ResNetSpec(
            "resnet18",
            BasicBlock,
            (2, 2, 2, 2),
            weights_file=_file_name(ResNet18_Weights.IMAGENET1K_V1.url),
        ),
        ResNetSpec(
            "resnet34",
            BasicBlock,
            (3, 4, 6, 3),
            weights_file=_file_name(ResNet34_Weights.IMAGENET1K_V1.url),
        ),
        ResNetSpec(
            "resnet50",
            Bottleneck,
            (3, 4, 6, 3),
            weights_file=_file_name(ResNet50_Weights.IMAGENET1K_V1.url),
        ),
        ResNetSpec(
            "resnet101",
            Bottleneck,
            (3, 4, 23, 3),
            weights_file=_file_name(ResNet101_Weights.IMAGENET1K_V1.url),
        ),
        # torchvision ships no ImageNet weights for 32x4d: a local file must be given.
        ResNetSpec("resnext101_32x4d", Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=4),
        ResNetSpec(
            "resnext101_64x4d",
            Bottleneck,
            (3, 4, 23, 3),
            groups=64,
            width_per_group=4,
            weights_file=_file_name(ResNeXt101_64X4D_Weights.IMAGENET1K_V1.url),
        ),
    )
}


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable convolution (DCNv2) with mmcv's parameter layout, on torchvision's op.

    `conv_offset` predicts 3 * K channels per deform group (zero-initialised): the output is
    split in three chunks o1, o2, m; offset = cat(o1, o2) (y, x interleaved per kernel point,
    the layout shared by mmcv and torchvision), mask = sigmoid(m). At init every offset is 0
    and every mask 0.5, so the layer is half the plain convolution with the same weight.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        deform_groups: int = 1,
    ) -> None:
        super().__init__()
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.dilation = (dilation, dilation)
        k = kernel_size
        # No bias, as the ResNet conv it replaces.
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, k, k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.conv_offset = nn.Conv2d(
            in_channels, deform_groups * 3 * k * k, k, stride, padding, dilation, bias=True
        )
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C_in, H, W) -> (B, C_out, Ho, Wo)."""
        o1, o2, m = torch.chunk(self.conv_offset(x), 3, dim=1)  # 3 x (B, G * K, Ho, Wo)
        offset = torch.cat((o1, o2), dim=1)  # (B, G * 2K, Ho, Wo)
        mask = m.sigmoid()  # (B, G * K, Ho, Wo)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )  # (B, C_out, Ho, Wo); weight groups are inferred from C_in / weight.shape[1]


def _deformable(conv: nn.Conv2d) -> ModulatedDeformConv2d:
    """A DCNv2 with the geometry and the (initial) weight of a 3x3 conv."""
    dcn = ModulatedDeformConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size[0],
        conv.stride[0],
        conv.padding[0],
        conv.dilation[0],
        conv.groups,
    )
    with torch.no_grad():
        dcn.weight.copy_(conv.weight)
    return dcn


class ResNetBackbone(nn.Module):
    """ResNet / ResNeXt ("pytorch" style) with frozen BatchNorm, returning C3, C4, C5.

    Args:
        spec: the architecture (see `RESNET_SPECS`).
        pretrained: False keeps torchvision's random init; True loads torchvision's ImageNet
            file from the torch hub cache (never downloads); a path loads that local file.
        frozen_stages: mmdetection's meaning: -1 nothing, 0 the stem, i >= 1 the stem and
            layer1..layer_i (no gradients, eval mode).
        dcn_stages: per stage (layer1..layer4) whether each block's 3x3 conv is a DCNv2;
            None = no DCN. Bottleneck architectures only.
    """

    def __init__(
        self,
        spec: ResNetSpec,
        pretrained: bool | str | Path = False,
        frozen_stages: int = 1,
        dcn_stages: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in -1..4, got {frozen_stages}")
        dcn_stages = tuple(dcn_stages) if dcn_stages is not None else (False,) * 4
        if len(dcn_stages) != 4:
            raise ValueError(f"dcn_stages needs one flag per stage (4), got {dcn_stages}")
        if any(dcn_stages) and spec.block is not Bottleneck:
            raise ValueError(f"DCN is only supported in Bottleneck blocks, not in {spec.name}")
        weights_path = _weights_path(spec, pretrained)  # checked before the costly build

        net = ResNet(
            spec.block,
            list(spec.layers),
            groups=spec.groups,
            width_per_group=spec.width_per_group,
            norm_layer=FrozenBatchNorm2d,
        )
        # Same attribute names as torchvision (and mmdetection); fc and avgpool are dropped.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        for layer, with_dcn in zip(self._stages(), dcn_stages, strict=True):
            for block in layer if with_dcn else ():
                block.conv2 = _deformable(block.conv2)

        self.frozen_stages = frozen_stages
        self.out_channels = [c * spec.block.expansion for c in (128, 256, 512)]
        self.strides = [8, 16, 32]
        if weights_path is not None:
            load_backbone_weights(self, weights_path)
        for module in self._frozen_modules():
            module.requires_grad_(False)

    def _stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv1, self.bn1, *self._stages()[: self.frozen_stages]]

    def train(self, mode: bool = True) -> ResNetBackbone:
        """Frozen parts stay in eval mode (matters only for a norm layer with a mode)."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, 3, H, W) -> [C3 (B, C, H/8, W/8), C4 (.., H/16, ..), C5 (.., H/32, ..)].

        Sizes are rounded up (ceil) for sizes not divisible by the stride. Every conv followed by
        a frozen BatchNorm runs as one conv with the norm folded into its weight and bias.
        """
        x = self.maxpool(self.relu(conv_frozen_bn(self.conv1, self.bn1, x)))  # (B, 64, H/4, W/4)
        outs = []
        for layer in self._stages():
            for block in layer:
                x = _block_forward(block, x)
            outs.append(x)
        # (B, 64 * e, H/4, W/4), e = block expansion; then H/8, H/16, H/32 with 128, 256, 512 * e
        return outs[1:]


def conv_frozen_bn(conv: nn.Module, bn: nn.Module, x: Tensor) -> Tensor:
    """``bn(conv(x))`` with a frozen BatchNorm after a plain conv computed as a single conv:
    weight * scale, bias' = bias_bn - mean * scale (+ conv bias * scale), scale = gamma /
    sqrt(var + eps). Saves a pass over the activations forward and backward; any other pair
    (a DCN conv) runs as given."""
    plain = isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros"
    if not (plain and isinstance(bn, FrozenBatchNorm2d)):
        return bn(conv(x))
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()  # (C,)
    bias = bn.bias - bn.running_mean * scale  # (C,)
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    weight = conv.weight * scale[:, None, None, None]  # (C, C_in / groups, kh, kw)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _block_forward(block: nn.Module, x: Tensor) -> Tensor:
    """torchvision's BasicBlock / Bottleneck forward with ``conv_frozen_bn``."""
    out = block.relu(conv_frozen_bn(block.conv1, block.bn1, x))
    if isinstance(block, Bottleneck):
        out = block.relu(conv_frozen_bn(block.conv2, block.bn2, out))
        out = conv_frozen_bn(block.conv3, block.bn3, out)
    else:
        out = conv_frozen_bn(block.conv2, block.bn2, out)
    identity = x
    if block.downsample is not None:
        conv, bn = block.downsample
        identity = conv_frozen_bn(conv, bn, x)
    return block.relu(out + identity)


def _weights_path(spec: ResNetSpec, pretrained: bool | str | Path) -> Path | None:
    """The local file to load for `pretrained`, or None; the file must exist."""
    if pretrained is False:
        return None
    if pretrained is True:
        if spec.weights_file is None:
            raise ValueError(
                f"torchvision has no ImageNet weights for {spec.name}: pass pretrained=<path "
                "to a local state dict> instead of True"
            )
        path = Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file
        hint = f"put torchvision's {spec.weights_file} there (or set TORCH_HOME)"
    else:
        path = Path(pretrained)
        hint = "check the path"
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {spec.name} not found at {path}: {hint}; "
            "nothing is downloaded at run time"
        )
    return path


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local ResNet state dict (plain, or under 'state_dict' / 'model') into `model`.

    Ignored: 'fc.*' (the classifier) and BatchNorm's 'num_batches_tracked' counters (not kept
    by FrozenBatchNorm2d). Allowed to be missing: DCN 'conv_offset.*' (zero init, as when
    mmdetection starts a DCN ResNet from plain ImageNet weights). Any other difference is an
    error listing the keys.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    state = {
        k: v
        for k, v in checkpoint.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    expected = set(model.state_dict())
    missing = sorted(k for k in expected - set(state) if ".conv_offset." not in k)
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(
            f"state dict in {path} does not match the backbone: "
            f"missing keys {missing}, unexpected keys {unexpected}"
        )
    model.load_state_dict(state, strict=False)  # shape mismatches still raise


def build_resnet(
    arch: str,
    pretrained: bool | str | Path = False,
    frozen_stages: int = 1,
    dcn_stages: Sequence[bool] | None = None,
) -> ResNetBackbone:
    """`ResNetBackbone` of a named architecture: one of `RESNET_SPECS`."""
    if arch not in RESNET_SPECS:
        raise ValueError(f"unknown ResNet arch {arch!r}; known: {sorted(RESNET_SPECS)}")
    return ResNetBackbone(RESNET_SPECS[arch], pretrained, frozen_stages, dcn_stages)


GN_GROUPS = 8  # GroupNorm groups in MiniBackbone; divides every default width


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(GN_GROUPS, channels)


def _mini_stage(in_channels: int, channels: int, norm: str) -> nn.Sequential:
    """Two 3x3 convs (the first of stride 2), each followed by a norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, stride=2, padding=1, bias=False),
        _norm(norm, channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        _norm(norm, channels),
        nn.ReLU(inplace=True),
    )


class MiniBackbone(nn.Module):
    """Small plain CNN for the CPU `mini` scale: five stages of strides 2, 4, 8, 16, 32.

    Returns the last three stages, C3, C4, C5, with `widths[2:]` channels. Trained from
    scratch: trainable norms ('bn' = BatchNorm2d, 'gn' = GroupNorm with 8 groups).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 256), norm: str = "bn") -> None:
        super().__init__()
        if norm not in ("bn", "gn"):
            raise ValueError(f"norm must be 'bn' or 'gn', got {norm!r}")
        if len(widths) != 5:
            raise ValueError(f"MiniBackbone needs 5 stage widths, got {tuple(widths)}")
        if norm == "gn" and any(w % GN_GROUPS for w in widths):
            raise ValueError(f"with norm='gn' every width must divide by {GN_GROUPS}: {widths}")
        in_channels = [3, *widths[:-1]]
        self.stages = nn.ModuleList(
            _mini_stage(c_in, c, norm) for c_in, c in zip(in_channels, widths, strict=True)
        )
        self.out_channels = list(widths[2:])
        self.strides = [8, 16, 32]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, 3, H, W) -> [C3 (B, w2, H/8, W/8), C4 (B, w3, H/16, ..), C5 (B, w4, H/32, ..)]."""
        features = []
        for stage in self.stages:
            x = stage(x)  # (B, w_i, H / 2^(i+1), W / 2^(i+1))
            features.append(x)
        return features[2:]
