"""Records for hand-made COCO files."""


def image(image_id, width=64, height=48):
    return {"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height}


def box(ann_id, image_id, bbox, category_id=3, **extra):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}
