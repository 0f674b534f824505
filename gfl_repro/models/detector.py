"""The dense detector: backbone -> FPN -> head, with its priors, targets and post-processing.

Legend: B images, P priors over all levels.
"""

import torch
from torch import Tensor, nn

from gfl_repro.models.assigners import atss_assign
from gfl_repro.models.box_coding import Priors, make_priors
from gfl_repro.models.heads.gfl import HeadOutput
from gfl_repro.models.postprocess import InferenceConfig
from gfl_repro.models.targets import Assigner, batch_targets


class Detector(nn.Module):
    """``head`` is any dense head (GFLHead, RetinaHead, FCOSHead, FoveaHead): its forward output
    has ``.scores`` (B, P, C) and ``.level_sizes``, and it has ``loss`` and ``predict``.

    The priors are ``make_priors(level sizes, strides, anchor_scale, ratios, scales_per_octave,
    center_offset)``: the defaults are GFL/ATSS's one anchor per location; RetinaNet uses
    anchor_scale 4, ratios (0.5, 1, 2), 3 scales per octave; FCOS and FoveaBox center_offset 0.5.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        anchor_scale: float = 8.0,
        assigner: Assigner = atss_assign,
        inference: InferenceConfig = InferenceConfig(),
        ratios: tuple[float, ...] = (1.0,),
        scales_per_octave: int = 1,
        center_offset: float = 0.0,
    ):
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.strides, self.anchor_scale = tuple(strides), anchor_scale
        self.ratios, self.scales_per_octave = tuple(ratios), scales_per_octave
        self.center_offset = center_offset
        self.assigner, self.inference = assigner, inference
        self._priors: dict[tuple, Priors] = {}

    def forward(self, images: Tensor) -> HeadOutput:
        return self.head(self.neck(self.backbone(images)))

    def priors(self, out: HeadOutput) -> Priors:
        return self.priors_at(tuple(out.level_sizes), out.scores.device)

    def priors_at(self, level_sizes: tuple, device: torch.device) -> Priors:
        """The priors of feature maps of ``level_sizes`` ((H, W) per level), cached."""
        key = (level_sizes, str(device))
        if key not in self._priors:
            self._priors[key] = make_priors(
                list(level_sizes),
                list(self.strides),
                self.anchor_scale,
                device,
                self.ratios,
                self.scales_per_octave,
                self.center_offset,
            )
        return self._priors[key]

    def loss(self, images: Tensor, targets: list[dict]) -> dict[str, Tensor]:
        return self.losses(self(images), targets)

    def losses(self, out: HeadOutput, targets: list[dict]) -> dict[str, Tensor]:
        """Losses of a forward output (so a DDP wrapper can run the forward)."""
        priors = self.priors(out)
        tgt = batch_targets(priors, targets, self.head.num_classes, self.assigner)
        return self.head.loss(out, priors, tgt)

    def predict(self, images: Tensor, metas: list[dict]) -> list[dict[str, Tensor]]:
        out = self(images)
        return self.head.predict(out, self.priors(out), metas, self.inference)
