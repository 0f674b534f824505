import logging

import numpy as np
import pytest
import torch
from PIL import Image

from gfl_repro.data import CocoDetection, DatasetError, inference_transforms
from gfl_repro.data.mini import CATEGORIES, mini_dataset

from .helpers import box, image


def test_generated_set_loads_every_image(tiny_set):
    for split in ("train", "val"):
        dataset = mini_dataset(tiny_set, split, transforms=inference_transforms((128, 96)))
        assert dataset.class_names == list(CATEGORIES)
        assert dataset.cat_ids == list(range(1, len(CATEGORIES) + 1))
        for i in range(len(dataset)):
            img, target = dataset[i]
            h, w = target["img_shape"]
            assert target["ori_shape"] == (96, 96) and (h, w) == (96, 96)
            assert img.shape == (3, 96, 96) and img.dtype == torch.float32
            boxes = target["boxes"]
            assert len(boxes) == len(target["labels"]) > 0
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            labels = target["labels"]
            assert labels.dtype == torch.int64
            assert ((labels >= 0) & (labels < dataset.num_classes)).all()


def test_labels_are_contiguous_over_sorted_category_ids(make_coco):
    # category ids 3 and 7 -> labels 0 and 1; the boxes keep the xyxy of [x, y, x + w, y + h]
    ann_file, img_dir = make_coco(
        [image(1)], [box(1, 1, [1, 2, 10, 20], category_id=7), box(2, 1, [5, 5, 4, 4])]
    )
    dataset = CocoDetection(ann_file, img_dir)
    record = dataset.records[0]
    assert record.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(record.boxes, [[1, 2, 11, 22], [5, 5, 9, 9]])
    img, target = dataset[0]
    assert img.shape == (3, 48, 64) and img.dtype == torch.uint8
    assert target["image_id"] == 1 and target["ori_shape"] == (48, 64)


def test_malformed_json_names_the_file(make_coco):
    ann_file, img_dir = make_coco([], [], raw='{"images": [')
    with pytest.raises(DatasetError, match="malformed json") as err:
        CocoDetection(ann_file, img_dir)
    assert str(ann_file) in str(err.value)


def test_missing_images_key(make_coco):
    ann_file, img_dir = make_coco([], [], raw='{"annotations": [], "categories": []}')
    with pytest.raises(DatasetError, match="missing top-level key 'images'") as err:
        CocoDetection(ann_file, img_dir)
    assert str(ann_file) in str(err.value)


def test_annotation_without_bbox_names_the_record(make_coco):
    ann = {"id": 42, "image_id": 1, "category_id": 3}
    ann_file, img_dir = make_coco([image(1)], [box(1, 1, [0, 0, 5, 5]), ann])
    with pytest.raises(DatasetError) as err:
        CocoDetection(ann_file, img_dir)
    message = str(err.value)
    assert str(ann_file) in message and "annotations[1]" in message and "'bbox'" in message


def test_unknown_category_names_the_record(make_coco):
    ann_file, img_dir = make_coco([image(5)], [box(9, 5, [0, 0, 5, 5], category_id=4)])
    with pytest.raises(DatasetError, match="unknown category id 4") as err:
        CocoDetection(ann_file, img_dir)
    message = str(err.value)
    assert "annotations[0]" in message and "annotation id 9" in message and "image id 5" in message


def test_missing_image_file_fails_when_loaded(make_coco):
    ann_file, img_dir = make_coco([image(1)], [box(1, 1, [0, 0, 5, 5])], write_images=False)
    dataset = CocoDetection(ann_file, img_dir)  # the json alone is fine
    with pytest.raises(DatasetError, match="missing image file") as err:
        dataset[0]
    assert str(img_dir / "1.jpg") in str(err.value) and "image id 1" in str(err.value)


def test_corrupt_image_file_fails_when_loaded(make_coco):
    ann_file, img_dir = make_coco([image(2)], [box(1, 2, [0, 0, 5, 5])])
    data = (img_dir / "2.jpg").read_bytes()
    (img_dir / "2.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    dataset = CocoDetection(ann_file, img_dir)
    with pytest.raises(DatasetError, match="unreadable image") as err:
        dataset[0]
    assert str(img_dir / "2.jpg") in str(err.value) and "image id 2" in str(err.value)


def test_image_size_must_match_the_json(make_coco):
    ann_file, img_dir = make_coco([image(1)], [box(1, 1, [0, 0, 5, 5])])
    Image.new("RGB", (32, 48)).save(img_dir / "1.jpg")  # the json says 64 x 48
    dataset = CocoDetection(ann_file, img_dir)
    with pytest.raises(DatasetError, match="32x48 but the annotation file says 64x48"):
        dataset[0]


def test_degenerate_outside_clipped_and_crowd_boxes_are_counted(make_coco, caplog):
    # the image is 64 x 48
    anns = [
        box(1, 1, [10, 10, 0, 5]),  # w = 0: dropped
        box(2, 1, [10, 10, 5, -3]),  # h < 0: dropped
        box(3, 1, [10, 10, 0.5, 8]),  # w < 1 pixel: dropped, as mmdetection does
        box(4, 1, [70, 10, 5, 5]),  # right of the image: dropped
        box(5, 1, [60, -4, 10, 10]),  # clipped to [60, 0, 64, 6]
        box(6, 1, [2, 3, 4, 5]),  # kept as is: [2, 3, 6, 8]
        box(7, 1, [0, 40, 64, 20], iscrowd=1),  # crowd, clipped to [0, 40, 64, 48]
    ]
    ann_file, img_dir = make_coco([image(1)], anns)
    with caplog.at_level(logging.INFO, logger="gfl_repro.data.coco"):
        dataset = CocoDetection(ann_file, img_dir)
    report = dataset.report
    assert report["boxes_dropped_degenerate"] == 3
    assert report["boxes_dropped_outside"] == 1
    assert report["boxes_clipped"] == 2
    assert report["boxes"] == 2 and report["crowd_boxes"] == 1
    record = dataset.records[0]
    np.testing.assert_array_equal(record.boxes, [[60, 0, 64, 6], [2, 3, 6, 8]])
    np.testing.assert_array_equal(record.crowd_boxes, [[0, 40, 64, 48]])
    _, target = dataset[0]
    assert len(target["boxes"]) == 2 and len(target["crowd_boxes"]) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "gfl_repro.data.coco"]
    assert len(lines) == 1 and "boxes_clipped=2" in lines[0] and str(ann_file) in lines[0]


def test_training_filter_drops_empty_and_small_images(make_coco):
    images = [
        image(1),  # kept
        image(2),  # no annotation
        image(3),  # only a crowd box
        image(4),  # only a degenerate box
        image(5, width=31, height=100),  # shorter side 31 < 32
        image(6, width=32, height=32),  # 32 is enough
    ]
    anns = [
        box(1, 1, [0, 0, 5, 5]),
        box(2, 3, [0, 0, 5, 5], iscrowd=1),
        box(3, 4, [0, 0, 0, 5]),
        box(4, 5, [0, 0, 5, 5]),
        box(5, 6, [0, 0, 5, 5]),
    ]
    ann_file, img_dir = make_coco(images, anns, write_images=False)
    train = CocoDetection(ann_file, img_dir, filter_empty=True)
    assert [r.image_id for r in train.records] == [1, 6]
    assert train.report["images_filtered_empty"] == 3
    assert train.report["images_filtered_small"] == 1
    assert train.report["images_kept"] == 2
    val = CocoDetection(ann_file, img_dir)
    assert len(val) == 6 and val.report["images_filtered_empty"] == 0


def test_aspect_flags(make_coco):
    images = [image(1, 64, 48), image(2, 48, 64), image(3, 40, 40)]
    ann_file, img_dir = make_coco(images, [], write_images=False)
    flags = CocoDetection(ann_file, img_dir).aspect_flags()
    assert flags.tolist() == [True, False, False]  # square goes with portrait, as mmdetection
