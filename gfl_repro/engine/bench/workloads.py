"""What the benchmarks time: our detectors and torchvision's FCOS R-50-FPN, random inputs, and
one training step or one inference of each as a callable of no argument.

Legend: B images, M gt boxes.
"""

from collections.abc import Callable

import torch
from torch import nn

from gfl_repro.config import ModelConfig, QualityConfig


def seeded_model(cfg: ModelConfig) -> nn.Module:
    """The detector of ``cfg`` with the initialisation of seed 0."""
    from gfl_repro.build import build_model

    torch.manual_seed(0)
    return build_model(cfg)


def gfl_model(quality: str = "dgqp") -> nn.Module:
    """GFLV2 (quality "dgqp") or GFLV1 ("none") R-50-FPN, random init, 80 classes."""
    return seeded_model(ModelConfig(quality=QualityConfig(kind=quality)))


def fcos_model() -> nn.Module:
    """torchvision's FCOS R-50-FPN made to train the same backbone layers as ours.

    Without backbone weights torchvision uses plain BatchNorm and trains every layer; ours has
    frozen BatchNorm and a frozen stem and stage 1 (mmdetection's frozen_stages=1, torchvision's
    trainable_backbone_layers=3, its default with weights). So the BatchNorms are swapped for
    FrozenBatchNorm2d and conv1 / layer1 are frozen.
    """
    from torchvision.models.detection import fcos_resnet50_fpn
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(0)
    model = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=80)
    body = model.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(module, key).detach())
            parent, _, leaf = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, leaf, frozen)
    for module in (body.conv1, body.layer1):
        module.requires_grad_(False)
    return model


def random_images(batch: int, size: int) -> torch.Tensor:
    """(B, 3, size, size) normal noise of seed 0."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def random_targets(batch: int, size: tuple[int, int], num_boxes: int, seed: int = 0) -> list[dict]:
    """``num_boxes`` random boxes (pixels, 8 px to half the side) and labels per image."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    targets = []
    for _ in range(batch):
        wh = 8 + torch.rand(num_boxes, 2, generator=g) * (torch.tensor([w, h]) / 2 - 8)  # (M, 2)
        xy = torch.rand(num_boxes, 2, generator=g) * (torch.tensor([w, h]) - wh)  # (M, 2)
        boxes = torch.cat([xy, xy + wh], dim=1)  # (M, 4)
        labels = torch.randint(0, 80, (num_boxes,), generator=g)  # (M,)
        targets.append({"boxes": boxes, "labels": labels, "pad_shape": (h, w)})
    return targets


def _sgd(model: nn.Module) -> torch.optim.SGD:
    # A small rate keeps the random-init models finite over the repetitions; speed is the same.
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=1e-5, momentum=0.9, weight_decay=1e-4)


def gfl_step(model: nn.Module, images: torch.Tensor, targets: list[dict]) -> Callable[[], object]:
    """One SGD step of our detector on (B, 3, H, W) ``images``, as the training loop takes it."""
    from gfl_repro.engine.train import train_step

    model.train()
    optimizer = _sgd(model)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return lambda: train_step(model, model, optimizer, scaler, images, targets, 0)


def fcos_step(model: nn.Module, images: torch.Tensor, targets: list[dict]) -> Callable[[], object]:
    """The same step for torchvision's FCOS; its transform is set to keep H x W unresized."""
    _keep_size(model, images)
    model.train()
    optimizer = _sgd(model)
    tv_images = list(images)
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]

    def step() -> None:
        losses = model(tv_images, tv_targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    return step


def gfl_infer(model: nn.Module, image: torch.Tensor) -> Callable[[], object]:
    """Forward and post-processing of a (1, 3, H, W) image under no_grad."""
    model.eval()
    metas = [{"img_shape": tuple(image.shape[-2:]), "scale_factor": [1.0] * 4}]
    return torch.no_grad()(lambda: model.predict(image, metas))


def _keep_size(model: nn.Module, images: torch.Tensor) -> None:
    """torchvision's detection transform resizes to (min_size, max_size): set both to the input's
    short and long side so that it keeps H x W."""
    h, w = images.shape[-2:]
    model.transform.min_size, model.transform.max_size = (min(h, w),), max(h, w)


def fcos_infer(model: nn.Module, image: torch.Tensor) -> Callable[[], object]:
    _keep_size(model, image)
    model.eval()
    return torch.no_grad()(lambda: model(list(image)))
