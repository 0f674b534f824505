import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gfl_repro.data import mini


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> Path:
    """A generated set of 6 train and 4 val images of 96 x 96."""
    root = tmp_path_factory.mktemp("tiny")
    mini.generate(root, seed=0, n_train=6, n_val=4, size=96)
    return root


@pytest.fixture
def make_coco(tmp_path):
    """Write a COCO json (and, for every image record, a grey JPEG of its size) under tmp_path;
    returns (ann_file, img_dir)."""

    def make(images, annotations, categories=None, write_images=True, raw=None):
        img_dir = tmp_path / "images"
        img_dir.mkdir(exist_ok=True)
        ann_file = tmp_path / "ann.json"
        if raw is not None:
            ann_file.write_text(raw)
            return ann_file, img_dir
        categories = categories or [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]
        data = {"images": images, "annotations": annotations, "categories": categories}
        ann_file.write_text(json.dumps(data))
        if write_images:
            for img in images:
                pixels = np.full((img["height"], img["width"], 3), 128, np.uint8)
                Image.fromarray(pixels).save(img_dir / img["file_name"])
        return ann_file, img_dir

    return make
