"""The data path: COCO-format datasets, the recipe's transforms, grouped sampling, the built-in
synthetic set.

The batch contract (what ``collate`` returns and the model consumes), B images a batch:

``images``: float32 (B, 3, H, W). RGB normalised as (x - mean) / std on 0-255 values with mean
[123.675, 116.28, 103.53] and std [58.395, 57.12, 57.375]; zero-padded at the bottom and right to
the batch max; H and W are multiples of 32.

``targets``: a list of B dicts:

- ``boxes``: float32 (M, 4) xyxy, pixels of the resized (and possibly flipped) image;
- ``labels``: int64 (M,), contiguous 0..C-1 (label i is the i-th category id in ascending order);
- ``crowd_boxes``: float32 (K, 4) xyxy, resized like ``boxes``; for reference, never a training
  target;
- ``image_id``: int, the COCO image id;
- ``img_shape``: (h, w) after resize, before padding: the valid area;
- ``pad_shape``: (h, w), ``img_shape`` rounded up to multiples of 32 (per image, as mmdetection
  does; the batch tensor may be larger);
- ``ori_shape``: (h, w) of the original image;
- ``scale_factor``: float32 (4,) = [w_scale, h_scale, w_scale, h_scale] with w_scale = new_w /
  ori_w and h_scale = new_h / ori_h;
- ``flip``: bool, whether the image was flipped horizontally (x' = img_w - x).

Predicted boxes in resized-image pixels map back to the original image by dividing by
``scale_factor`` (after undoing a flip, if any, with ``img_shape``).
"""

from gfl_repro.data.coco import CocoDetection, DatasetError, ImageRecord, coco2017, load_image
from gfl_repro.data.sampler import GroupSampler, ShardSampler, build_dataloader, seed_worker
from gfl_repro.data.transforms import (
    MEAN,
    STD,
    Compose,
    Normalize,
    Pad,
    RandomHorizontalFlip,
    RandomResize,
    Resize,
    collate,
    inference_transforms,
    rescale_size,
    train_transforms,
)

__all__ = [
    "MEAN",
    "STD",
    "CocoDetection",
    "Compose",
    "DatasetError",
    "GroupSampler",
    "ImageRecord",
    "Normalize",
    "Pad",
    "RandomHorizontalFlip",
    "RandomResize",
    "Resize",
    "ShardSampler",
    "build_dataloader",
    "coco2017",
    "collate",
    "inference_transforms",
    "load_image",
    "rescale_size",
    "seed_worker",
    "train_transforms",
]
