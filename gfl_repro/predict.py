"""``gfl-repro predict``: COCO-style detections for one image from a checkpoint."""

import argparse
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision import tv_tensors

from gfl_repro.build import build_model
from gfl_repro.config import ModelConfig, QualityConfig, from_dict
from gfl_repro.data.coco import load_image
from gfl_repro.data.transforms import collate, inference_transforms
from gfl_repro.engine.evaluation import to_coco_results

# COCO 2017's 80 category ids in the order of the contiguous labels.
COCO_CATEGORY_IDS = [
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
    *range(72, 83), *range(84, 91),
]  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--out", type=Path, default=None, help="detections json (default: stdout)")
    p.add_argument("--draw", type=Path, default=None, help="also write a PNG with the boxes")
    p.add_argument("--scale", type=int, nargs=2, default=(1333, 800), metavar=("LONG", "SHORT"))
    p.add_argument("--score-thr", type=float, default=0.3, help="minimum score to draw")
    p.add_argument("--backbone", default="resnet50", help="when the checkpoint holds no config")
    p.add_argument("--quality", default="dgqp", choices=["dgqp", "none"])
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument("--dcn", action="store_true")


def load_detector(path: Path, args: argparse.Namespace) -> tuple[torch.nn.Module, list[int]]:
    if not path.is_file():
        raise SystemExit(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt.get("model", ckpt))
    if "model_config" in ckpt:
        cfg = from_dict(ModelConfig, ckpt["model_config"])
    else:
        cfg = ModelConfig(
            num_classes=args.num_classes,
            backbone=args.backbone,
            dcn=args.dcn,
            quality=QualityConfig(kind=args.quality),
        )
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    cat_ids = ckpt.get("category_ids")
    if cat_ids is None:
        cat_ids = (
            COCO_CATEGORY_IDS if cfg.num_classes == 80 else list(range(1, cfg.num_classes + 1))
        )
    return model.eval(), list(cat_ids)


def predict_image(model, image_path: Path, scale: tuple[int, int]) -> dict[str, torch.Tensor]:
    with Image.open(image_path) as im:
        w, h = im.size
    image = load_image(image_path, 0, w, h)
    empty = tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(h, w))
    target = {
        "boxes": empty, "labels": torch.zeros(0, dtype=torch.long), "crowd_boxes": empty.clone(),
        "image_id": 0, "ori_shape": (h, w), "img_shape": (h, w), "pad_shape": (h, w),
        "scale_factor": torch.ones(4), "flip": False,
    }  # fmt: skip
    images, metas = collate([inference_transforms(tuple(scale))(image, target)])
    with torch.no_grad():
        return model.predict(images, metas)[0]


def draw(image_path: Path, dets: dict, out: Path, score_thr: float) -> None:
    with Image.open(image_path) as im:
        canvas = im.convert("RGB")
    pen = ImageDraw.Draw(canvas)
    for box, score, label in zip(dets["boxes"], dets["scores"], dets["labels"], strict=True):
        if score >= score_thr:
            pen.rectangle(box.tolist(), outline=(255, 64, 0), width=2)
            pen.text(
                (box[0].item() + 2, box[1].item() + 1), f"{int(label)}:{score:.2f}", fill="yellow"
            )
    canvas.save(out)


def run(args: argparse.Namespace) -> int:
    model, cat_ids = load_detector(args.checkpoint, args)
    dets = predict_image(model, args.image, args.scale)
    results = to_coco_results(0, dets["boxes"], dets["scores"], dets["labels"], cat_ids)
    for r in results:
        r.update(file_name=str(args.image), bbox=[round(v, 2) for v in r["bbox"]],
                 score=round(r["score"], 4))  # fmt: skip
    text = json.dumps(results, indent=1)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
        print(f"{len(results)} detections -> {args.out}")
    if args.draw is not None:
        draw(args.image, dets, args.draw, args.score_thr)
        print(f"boxes drawn -> {args.draw}")
    return 0
