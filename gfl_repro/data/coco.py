"""COCO-format detection dataset: parsing, validation and the recipe's training filter.

Legend: M non-crowd boxes of an image, K crowd boxes of an image.

Boxes are kept as float32 xyxy in pixels of the original image. An annotation is parsed as
mmdetection 2.x does (``bbox = [x, y, x + w, y + h]``, no -1), with the following rules, every one
of them counted in ``CocoDetection.report``:

- a box with w < 1 or h < 1 pixel, or with a non-positive ``area`` field, is dropped
  (``boxes_dropped_degenerate``; mmdetection 2.x uses the same thresholds);
- a box that does not overlap the image is dropped (``boxes_dropped_outside``);
- a box reaching outside the image is clipped to it (``boxes_clipped``). mmdetection clips after
  the resize instead; the result is the same because the resize scales x by new_w / w exactly;
- a crowd box (``iscrowd=1``) goes to ``crowd_boxes``, never to the training targets.

Errors in the file (malformed json, missing keys, unknown ids) raise ``DatasetError`` naming the
file and the record; a missing or unreadable image raises it when the image is loaded.
"""

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from gfl_repro.errors import ToolkitError

logger = logging.getLogger(__name__)

Target = dict
Transform = Callable[[tv_tensors.Image, Target], tuple[torch.Tensor, Target]]

_TOP_KEYS = ("images", "annotations", "categories")
_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANN_KEYS = ("id", "image_id", "category_id", "bbox")
_CAT_KEYS = ("id", "name")


class DatasetError(ToolkitError):
    """A COCO-format annotation file or image that cannot be used; the message names the record."""


@dataclass
class ImageRecord:
    """One image and its parsed annotations, boxes in original-image pixels."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (M, 4) float32 xyxy
    labels: np.ndarray  # (M,) int64 in 0..C-1
    crowd_boxes: np.ndarray  # (K, 4) float32 xyxy


def _read_json(ann_file: Path) -> dict:
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as err:
        raise DatasetError(f"{ann_file}: cannot read annotation file: {err}") from err
    except json.JSONDecodeError as err:
        raise DatasetError(f"{ann_file}: malformed json: {err}") from err
    if not isinstance(data, dict):
        raise DatasetError(f"{ann_file}: top level is {type(data).__name__}, expected an object")
    for key in _TOP_KEYS:
        if key not in data:
            raise DatasetError(f"{ann_file}: missing top-level key '{key}'")
        if not isinstance(data[key], list):
            raise DatasetError(f"{ann_file}: '{key}' is {type(data[key]).__name__}, expected list")
    return data


def _check_keys(record: object, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected an object, got {type(record).__name__}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {missing}")


def _parse_categories(data: dict, ann_file: Path) -> tuple[list[int], list[str]]:
    """Category ids sorted ascending (label i is the i-th id) and their names."""
    names = {}
    for i, cat in enumerate(data["categories"]):
        where = f"{ann_file}: categories[{i}]"
        _check_keys(cat, _CAT_KEYS, where)
        if cat["id"] in names:
            raise DatasetError(f"{where}: duplicate category id {cat['id']}")
        names[cat["id"]] = str(cat["name"])
    if not names:
        raise DatasetError(f"{ann_file}: 'categories' is empty")
    cat_ids = sorted(names)
    return cat_ids, [names[c] for c in cat_ids]


def _parse_images(data: dict, ann_file: Path) -> dict[int, dict]:
    images = {}
    for i, img in enumerate(data["images"]):
        where = f"{ann_file}: images[{i}]"
        _check_keys(img, _IMAGE_KEYS, where)
        where = f"{where} (image id {img['id']})"
        if img["id"] in images:
            raise DatasetError(f"{where}: duplicate image id")
        if not (isinstance(img["width"], int) and isinstance(img["height"], int)):
            raise DatasetError(f"{where}: width and height must be integers")
        if img["width"] <= 0 or img["height"] <= 0:
            raise DatasetError(f"{where}: non-positive size {img['width']}x{img['height']}")
        images[img["id"]] = img
    return images


def _valid_bbox(bbox: object) -> bool:
    return (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
    )


def _parse_box(ann: dict, img: dict, report: dict) -> list[float] | None:
    """xyxy box clipped to the image, or None when dropped; updates the report counts."""
    x, y, w, h = ann["bbox"]
    width, height = img["width"], img["height"]
    if w < 1 or h < 1 or ann.get("area", 1) <= 0:
        report["boxes_dropped_degenerate"] += 1
        return None
    inter_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inter_h = max(0.0, min(y + h, height) - max(y, 0.0))
    if inter_w * inter_h == 0:
        report["boxes_dropped_outside"] += 1
        return None
    box = [max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)]
    if box != [x, y, x + w, y + h]:
        report["boxes_clipped"] += 1
    return box


def _parse_annotations(
    data: dict, ann_file: Path, images: dict[int, dict], cat_to_label: dict[int, int], report: dict
) -> dict[int, dict[str, list]]:
    """Per image id: 'boxes', 'labels', 'crowd' lists (kept annotations only)."""
    per_image = {img_id: {"boxes": [], "labels": [], "crowd": []} for img_id in images}
    for i, ann in enumerate(data["annotations"]):
        where = f"{ann_file}: annotations[{i}]"
        _check_keys(ann, _ANN_KEYS, where)
        where = f"{where} (annotation id {ann['id']}, image id {ann['image_id']})"
        if ann["image_id"] not in images:
            raise DatasetError(f"{where}: unknown image id")
        if ann["category_id"] not in cat_to_label:
            raise DatasetError(f"{where}: unknown category id {ann['category_id']}")
        if not _valid_bbox(ann["bbox"]):
            raise DatasetError(f"{where}: bbox must be 4 finite numbers, got {ann['bbox']!r}")
        if not isinstance(ann.get("area", 1), int | float):
            raise DatasetError(f"{where}: area must be a number, got {ann['area']!r}")
        box = _parse_box(ann, images[ann["image_id"]], report)
        if box is None:
            continue
        entry = per_image[ann["image_id"]]
        if ann.get("iscrowd", 0):
            report["crowd_boxes"] += 1
            entry["crowd"].append(box)
        else:
            report["boxes"] += 1
            entry["boxes"].append(box)
            entry["labels"].append(cat_to_label[ann["category_id"]])
    return per_image


def _as_boxes(boxes: list[list[float]]) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def load_image(path: Path, image_id: int, width: int, height: int) -> tv_tensors.Image:
    """Decode an image file to a uint8 RGB tensor (3, H, W), checking its size against the json."""
    try:
        with Image.open(path) as img:
            rgb = np.array(img.convert("RGB"))  # writable, as torch wants
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: missing image file (image id {image_id})") from err
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: unreadable image (image id {image_id}): {err}") from err
    if rgb.shape[:2] != (height, width):
        raise DatasetError(
            f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} but the annotation file says "
            f"{width}x{height} (image id {image_id})"
        )
    return tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())


class CocoDetection(Dataset):
    """A COCO-format detection set; item i is ``(image, target)`` after ``transforms``.

    Without transforms the image is uint8 (3, H, W) and the target already holds every key of the
    batch contract (see ``gfl_repro.data``) for an unresized image; the transforms update them.

    Args:
        ann_file: COCO instances json.
        img_dir: folder that ``file_name`` of each image is relative to.
        filter_empty: apply the recipe's training filter: drop images without a kept non-crowd
            box and images whose shorter side is below ``min_size`` pixels (both counted).
        min_size: shorter-side threshold of the training filter, in pixels.
        transforms: callable ``(image, target) -> (image, target)``.
    """

    def __init__(
        self,
        ann_file: str | Path,
        img_dir: str | Path,
        *,
        filter_empty: bool = False,
        min_size: int = 32,
        transforms: Transform | None = None,
    ):
        self.ann_file = Path(ann_file)
        self.img_dir = Path(img_dir)
        self.transforms = transforms
        data = _read_json(self.ann_file)
        self.cat_ids, self.class_names = _parse_categories(data, self.ann_file)
        cat_to_label = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        images = _parse_images(data, self.ann_file)
        self.report = {
            "images": len(images),
            "images_kept": 0,
            "images_filtered_empty": 0,
            "images_filtered_small": 0,
            "boxes": 0,
            "crowd_boxes": 0,
            "boxes_dropped_outside": 0,
            "boxes_dropped_degenerate": 0,
            "boxes_clipped": 0,
        }
        per_image = _parse_annotations(data, self.ann_file, images, cat_to_label, self.report)
        self.records = self._build_records(images, per_image, filter_empty, min_size)
        self.report["images_kept"] = len(self.records)
        counts = ", ".join(f"{k}={v}" for k, v in self.report.items())
        logger.info("%s: %s", self.ann_file, counts)

    def _build_records(
        self, images: dict[int, dict], per_image: dict, filter_empty: bool, min_size: int
    ) -> list[ImageRecord]:
        records = []
        for img_id, img in images.items():
            entry = per_image[img_id]
            if filter_empty and not entry["boxes"]:
                self.report["images_filtered_empty"] += 1
                continue
            if filter_empty and min(img["width"], img["height"]) < min_size:
                self.report["images_filtered_small"] += 1
                continue
            record = ImageRecord(
                image_id=img_id,
                path=self.img_dir / img["file_name"],
                width=img["width"],
                height=img["height"],
                boxes=_as_boxes(entry["boxes"]),
                labels=np.asarray(entry["labels"], dtype=np.int64),
                crowd_boxes=_as_boxes(entry["crowd"]),
            )
            records.append(record)
        return records

    def check_files(self) -> None:
        """Every image file of the records exists (decoding is left to loading): a missing one is
        a DatasetError naming it, its image id and how many are missing."""
        missing = [r for r in self.records if not r.path.is_file()]
        if missing:
            first = missing[0]
            raise DatasetError(
                f"{first.path}: missing image file (image id {first.image_id}); {len(missing)} of "
                f"{len(self.records)} images listed in {self.ann_file} are missing"
            )

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def __len__(self) -> int:
        return len(self.records)

    def aspect_flags(self) -> np.ndarray:
        """(N,) bool, True where width > height (mmdetection's group flag), from the json sizes."""
        return np.array([r.width > r.height for r in self.records], dtype=bool)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        r = self.records[index]
        image = load_image(r.path, r.image_id, r.width, r.height)
        canvas = (r.height, r.width)
        target = {
            # copies: a target must not share memory with the records
            "boxes": tv_tensors.BoundingBoxes(r.boxes.copy(), format="XYXY", canvas_size=canvas),
            "labels": torch.from_numpy(r.labels.copy()),
            "crowd_boxes": tv_tensors.BoundingBoxes(
                r.crowd_boxes.copy(), format="XYXY", canvas_size=canvas
            ),
            "image_id": r.image_id,
            "ori_shape": canvas,
            "img_shape": canvas,
            "pad_shape": canvas,
            "scale_factor": torch.ones(4, dtype=torch.float32),
            "flip": False,
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def coco2017(
    root: str | Path = "data/coco",
    split: str = "train",
    *,
    transforms: Transform | None = None,
    filter_empty: bool | None = None,
) -> CocoDetection:
    """COCO 2017 in its standard layout: ``root/annotations/instances_{split}2017.json`` and
    ``root/{split}2017/``. The training filter is on for 'train' unless ``filter_empty`` says."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    return CocoDetection(
        root / "annotations" / f"instances_{split}2017.json",
        root / f"{split}2017",
        filter_empty=split == "train" if filter_empty is None else filter_empty,
        transforms=transforms,
    )
