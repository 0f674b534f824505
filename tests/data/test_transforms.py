import pytest
import torch
from torchvision import tv_tensors

from gfl_repro.data import (
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
)


def make_input(width, height, boxes):
    """A uint8 image and a target as CocoDetection returns them."""
    canvas = (height, width)
    img = tv_tensors.Image(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            format="XYXY",
            canvas_size=canvas,
        ),
        "labels": torch.zeros(len(boxes), dtype=torch.int64),
        "crowd_boxes": tv_tensors.BoundingBoxes(
            torch.zeros(0, 4), format="XYXY", canvas_size=canvas
        ),
        "image_id": 7,
        "ori_shape": canvas,
        "img_shape": canvas,
        "pad_shape": canvas,
        "scale_factor": torch.ones(4),
        "flip": False,
    }
    return img, target


def test_rescale_size_by_hand():
    # 640 x 480 into (1333, 800): min(1333 / 640 = 2.083, 800 / 480 = 1.6667) = 1.6667;
    # int(640 * 1.6667 + 0.5) = int(1067.17) = 1067, int(480 * 1.6667 + 0.5) = int(800.5) = 800
    assert rescale_size(640, 480, (1333, 800)) == (1067, 800)
    assert rescale_size(480, 640, (1333, 800)) == (800, 1067)
    assert rescale_size(640, 480, (800, 1333)) == (1067, 800)  # order of the scale pair is free
    # 1000 x 200: min(1333 / 1000 = 1.333, 800 / 200 = 4) = 1.333;
    # int(1000 * 1.333 + 0.5) = 1333, int(200 * 1.333 + 0.5) = int(267.1) = 267
    assert rescale_size(1000, 200, (1333, 800)) == (1333, 267)
    # 500 x 333 (a common COCO size): min(2.666, 2.4024) = 2.4024; 500 * 2.4024 = 1201.2 -> 1201
    assert rescale_size(500, 333, (1333, 800)) == (1201, 800)


def test_resize_flip_pad_by_hand():
    img, target = make_input(640, 480, [[10, 20, 110, 220]])
    pipeline = Compose([Resize((1333, 800)), RandomHorizontalFlip(p=1.0), Pad()])
    out, t = pipeline(img, target)
    assert t["img_shape"] == (800, 1067)
    assert t["pad_shape"] == (800, 1088)  # 1067 -> 34 * 32 = 1088; 800 = 25 * 32
    assert out.shape == (3, 800, 1088)
    assert (out[:, :, 1067:] == 0).all()
    w_scale, h_scale = 1067 / 640, 800 / 480  # 1.6671875, 1.6667
    torch.testing.assert_close(
        t["scale_factor"], torch.tensor([w_scale, h_scale, w_scale, h_scale])
    )
    # resized: x 10 * 1.6671875 = 16.671875, 110 * 1.6671875 = 183.390625; y 33.333, 366.667
    # flipped in the 1067-wide image: x1' = 1067 - 183.390625, x2' = 1067 - 16.671875
    expected = torch.tensor([[883.609375, 20 * h_scale, 1050.328125, 220 * h_scale]])
    torch.testing.assert_close(t["boxes"].as_subclass(torch.Tensor), expected)
    assert t["flip"] is True


def test_flip_moves_pixels_and_boxes_as_mmdetection():
    img, target = make_input(5, 2, [[0, 0, 2, 1]])
    out, t = RandomHorizontalFlip(p=1.0)(img, target)
    torch.testing.assert_close(out, img.flip(-1))
    # x1' = w - x2 = 5 - 2 = 3, x2' = w - x1 = 5 - 0 = 5 (no -1)
    assert t["boxes"].tolist() == [[3, 0, 5, 1]]
    _, t = RandomHorizontalFlip(p=0.0)(img, target)
    assert t["flip"] is False and t["boxes"].tolist() == [[0, 0, 2, 1]]


def test_resize_clips_boxes_to_the_new_image():
    img, target = make_input(10, 10, [[-2, 5, 12, 8]])
    _, t = Resize((20, 20))(img, target)
    assert t["boxes"].tolist() == [[0, 10, 20, 16]]


def test_resize_is_bilinear_on_uint8():
    # doubling a 1 x 2 ramp [0, 100] bilinearly (half-pixel centres, edge-clamped) gives
    # [0, 25, 75, 100]: output x = 0.5 samples input position 0.25 - 0.5 = -0.25 -> 0, etc.
    img = tv_tensors.Image(torch.tensor([[[0, 100]]], dtype=torch.uint8).expand(3, 1, 2))
    _, target = make_input(2, 1, [])
    out, _ = Resize((4, 2))(img, target)
    assert out.dtype == torch.uint8
    assert out[0, 0].tolist() == [0, 25, 75, 100]


def test_normalize_uses_the_recipe_statistics():
    img = tv_tensors.Image(torch.tensor([124, 116, 104], dtype=torch.uint8).view(3, 1, 1))
    out, _ = Normalize()(img, {})
    expected = [(v - m) / s for v, m, s in zip([124, 116, 104], MEAN, STD, strict=True)]
    torch.testing.assert_close(out.flatten(), torch.tensor(expected))


def test_random_resize_stays_in_the_range():
    torch.manual_seed(0)
    shorts = set()
    for _ in range(50):
        img, target = make_input(64, 48, [])
        _, t = RandomResize((480, 960), long_max=1333)(img, target)
        h, w = t["img_shape"]
        assert 480 <= h <= 960 and w <= 1333
        shorts.add(h)
    assert len(shorts) > 20  # drawn over the range, not a fixed scale
    # a 4:1 image hits the long-side cap: 1333 / 200 = 6.665 < 480 / 50 = 9.6
    img, target = make_input(200, 50, [])
    _, t = RandomResize((480, 960), long_max=1333)(img, target)
    assert t["img_shape"] == (int(50 * 1333 / 200 + 0.5), 1333)


def test_collate_pads_to_the_batch_max():
    # A: 100 x 60 into (128, 96): min(1.28, 1.6) = 1.28 -> 128 x int(76.8 + 0.5) = 77, pad 128 x 96
    # B: 50 x 130: min(128 / 130 = 0.9846, 96 / 50 = 1.92) -> int(49.23 + 0.5) = 49 x 128,
    #    pad 64 x 128
    pipeline = inference_transforms((128, 96))
    a = pipeline(*make_input(100, 60, [[0, 0, 100, 60]]))
    b = pipeline(*make_input(50, 130, [[10, 10, 20, 20], [0, 0, 50, 130]]))
    images, targets = collate([a, b])
    assert images.shape == (2, 3, 128, 128) and images.dtype == torch.float32
    assert targets[0]["img_shape"] == (77, 128) and targets[0]["pad_shape"] == (96, 128)
    assert targets[1]["img_shape"] == (128, 49) and targets[1]["pad_shape"] == (128, 64)
    assert (images[0, :, 77:] == 0).all() and (images[1, :, :, 49:] == 0).all()
    torch.testing.assert_close(images[0, :, :77, :128], a[0].as_subclass(torch.Tensor)[:, :77])
    for t, n in zip(targets, (1, 2), strict=True):
        assert type(t["boxes"]) is torch.Tensor and t["boxes"].shape == (n, 4)
        assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
        assert t["crowd_boxes"].shape == (0, 4)
        assert t["image_id"] == 7 and t["flip"] is False
    assert targets[0]["ori_shape"] == (60, 100)
    torch.testing.assert_close(targets[0]["scale_factor"], torch.tensor([1.28, 77 / 60] * 2))
    torch.testing.assert_close(targets[1]["boxes"][1], torch.tensor([0, 0, 49, 128.0]))


@pytest.mark.parametrize("width,height", [(33, 65), (64, 32)])
def test_pad_rounds_up_to_32(width, height):
    img = torch.ones(3, height, width)
    out, t = Pad()(img, {})
    assert t["pad_shape"] == (-(-height // 32) * 32, -(-width // 32) * 32) == out.shape[1:]
