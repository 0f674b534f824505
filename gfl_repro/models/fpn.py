"""Feature pyramid: C3-C5 in, P3-P7 out.

Legend: B images, F out channels, (H_l, W_l) size of level l.
"""

import torch.nn.functional as F
from torch import Tensor, nn

EXTRA_SOURCES = ("output", "input")


class FPN(nn.Module):
    """Lin et al.'s FPN with two extra levels. GFL's (mmdetection 2.x ``add_extra_convs=
    'on_output'``): P6 = 3x3/2 conv of P5's output, P7 = 3x3/2 conv of P6 with no ReLU in between.
    RetinaNet and FoveaBox take P6 from C5 instead (``extra_source="input"``, 'on_input'); FCOS
    puts a ReLU before the P7 conv (``relu_before_extra``). Lateral convs have biases (no norm);
    every conv is xavier-uniform, bias 0.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = 256,
        num_extra: int = 2,
        extra_source: str = "output",
        relu_before_extra: bool = False,
    ):
        super().__init__()
        if extra_source not in EXTRA_SOURCES:
            raise ValueError(f"extra_source must be one of {EXTRA_SOURCES}, got {extra_source!r}")
        self.extra_source, self.relu_before_extra = extra_source, relu_before_extra
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        first_in = in_channels[-1] if extra_source == "input" else out_channels
        for i in range(num_extra):
            c_in = first_in if i == 0 else out_channels
            self.fpn_convs.append(nn.Conv2d(c_in, out_channels, 3, stride=2, padding=1))
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down, nearest upsampling to the exact size
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="nearest"
            )
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals, strict=False)]
        source = feats[-1] if self.extra_source == "input" else outs[-1]
        for i, conv in enumerate(self.fpn_convs[len(laterals) :]):
            if i > 0:
                source = outs[-1].relu() if self.relu_before_extra else outs[-1]
            outs.append(conv(source))  # (B, F, H_l, W_l)
        return outs
