"""Image and box transforms of the recipe, and the collate function.

Legend: B images in a batch, M boxes of an image, H x W image height and width in pixels.

Every transform is a callable ``(image, target) -> (image, target)`` over the target dict built by
``CocoDetection`` (keys listed in ``gfl_repro.data``). The pixel and box maths use
torchvision.transforms.v2.functional on tv_tensors, with the sizes and factors of mmcv/mmdetection
2.x (which the official GFLV2 code runs on):

- keep-ratio resize: factor = min(long_max / long_side, short_max / short_side), new size =
  ``int(w * factor + 0.5), int(h * factor + 0.5)`` (mmcv ``rescale_size``); boxes multiplied by
  ``[new_w / w, new_h / h] * 2`` and clipped to the new image; the uint8 image resized bilinearly
  without antialiasing (as cv2.INTER_LINEAR);
- horizontal flip: ``x1' = w - x2, x2' = w - x1`` (no -1, mmdetection 2.x);
- normalise RGB with ``MEAN`` and ``STD`` on 0-255 values, then zero-pad bottom/right to a multiple
  of 32.
"""

import math
from collections.abc import Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F

from gfl_repro.data.coco import Target

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32
BOX_KEYS = ("boxes", "crowd_boxes")


def rescale_size(width: int, height: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(new_w, new_h) fitting (width, height) into ``scale`` = (long_max, short_max) in either
    order, keeping the aspect ratio, rounded as mmcv does."""
    factor = min(max(scale) / max(width, height), min(scale) / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize(image: torch.Tensor, target: Target, new_w: int, new_h: int) -> tuple:
    """Resize the uint8 image (3, H, W) and the target boxes to (new_h, new_w)."""
    height, width = image.shape[-2:]
    image = F.resize(
        image, [new_h, new_w], interpolation=F.InterpolationMode.BILINEAR, antialias=False
    )
    target = dict(target)
    for key in BOX_KEYS:
        target[key] = F.clamp_bounding_boxes(F.resize(target[key], [new_h, new_w]))
    w_scale, h_scale = new_w / width, new_h / height
    target["scale_factor"] = torch.tensor([w_scale, h_scale, w_scale, h_scale], dtype=torch.float32)
    target["img_shape"] = (new_h, new_w)
    target["pad_shape"] = (new_h, new_w)
    return image, target


class Resize:
    """Keep-ratio resize to fit ``scale`` = (long_max, short_max), e.g. (1333, 800)."""

    def __init__(self, scale: tuple[int, int] = (1333, 800)):
        self.scale = scale

    def __call__(self, image: torch.Tensor, target: Target) -> tuple:
        new_w, new_h = rescale_size(image.shape[-1], image.shape[-2], self.scale)
        return resize(image, target, new_w, new_h)


class RandomResize:
    """Multi-scale keep-ratio resize: the short-side target drawn uniformly from the integers in
    ``short_range`` (both ends included), the long side capped at ``long_max``, as mmdetection's
    Resize with multiscale_mode='range' and keep_ratio=True. Draws from torch's generator."""

    def __init__(self, short_range: tuple[int, int] = (480, 960), long_max: int = 1333):
        self.short_range = short_range
        self.long_max = long_max

    def __call__(self, image: torch.Tensor, target: Target) -> tuple:
        low, high = self.short_range
        short = int(torch.randint(low, high + 1, ()))
        new_w, new_h = rescale_size(image.shape[-1], image.shape[-2], (self.long_max, short))
        return resize(image, target, new_w, new_h)


class RandomHorizontalFlip:
    """Flip image and boxes with probability ``p``; sets ``target['flip']``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: torch.Tensor, target: Target) -> tuple:
        if float(torch.rand(())) >= self.p:
            return image, target
        target = dict(target)
        for key in BOX_KEYS:
            target[key] = F.horizontal_flip(target[key])
        target["flip"] = True
        return F.horizontal_flip(image), target


class Normalize:
    """uint8 0-255 RGB -> float32 (x - mean) / std."""

    def __init__(self, mean: Sequence[float] = MEAN, std: Sequence[float] = STD):
        self.mean = list(mean)
        self.std = list(std)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple:
        image = F.to_dtype(image, torch.float32, scale=False)
        return F.normalize(image, self.mean, self.std), target


class Pad:
    """Zero-pad bottom/right to multiples of ``divisor``; sets ``target['pad_shape']``."""

    def __init__(self, divisor: int = SIZE_DIVISOR):
        self.divisor = divisor

    def __call__(self, image: torch.Tensor, target: Target) -> tuple:
        height, width = image.shape[-2:]
        pad_h = math.ceil(height / self.divisor) * self.divisor
        pad_w = math.ceil(width / self.divisor) * self.divisor
        image = F.pad(image, [0, 0, pad_w - width, pad_h - height], fill=0)
        return image, {**target, "pad_shape": (pad_h, pad_w)}


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


def train_transforms(
    scale: tuple[int, int] = (1333, 800), short_range: tuple[int, int] | None = None
) -> Compose:
    """Resize (fixed ``scale``, or multi-scale over ``short_range`` with the long side capped at
    max(scale)), flip 0.5, normalise, pad to 32."""
    if short_range is None:
        resizer = Resize(scale)
    else:
        resizer = RandomResize(short_range, long_max=max(scale))
    return Compose([resizer, RandomHorizontalFlip(0.5), Normalize(), Pad()])


def inference_transforms(scale: tuple[int, int] = (1333, 800)) -> Compose:
    """Fixed-scale resize, normalise, pad to 32; no flip."""
    return Compose([Resize(scale), Normalize(), Pad()])


def _plain(boxes: torch.Tensor) -> torch.Tensor:
    return boxes.as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4)


def collate(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Zero-pad the transformed images to the batch max (each a multiple of 32 already) and build
    the targets of the batch contract.

    Returns:
        images: (B, 3, H, W) float32.
        targets: B dicts (see ``gfl_repro.data``).
    """
    pad_h = max(t["pad_shape"][0] for _, t in batch)
    pad_w = max(t["pad_shape"][1] for _, t in batch)
    images = torch.zeros(len(batch), 3, pad_h, pad_w, dtype=torch.float32)  # (B, 3, H, W)
    targets = []
    for i, (image, t) in enumerate(batch):
        images[i, :, : image.shape[-2], : image.shape[-1]] = image
        targets.append(
            {
                "boxes": _plain(t["boxes"]),  # (M, 4)
                "labels": t["labels"].to(torch.int64),  # (M,)
                "crowd_boxes": _plain(t["crowd_boxes"]),  # (K, 4)
                "image_id": int(t["image_id"]),
                "img_shape": tuple(int(v) for v in t["img_shape"]),
                "pad_shape": tuple(int(v) for v in t["pad_shape"]),
                "ori_shape": tuple(int(v) for v in t["ori_shape"]),
                "scale_factor": t["scale_factor"].to(torch.float32),
                "flip": bool(t["flip"]),
            }
        )
    return images, targets
