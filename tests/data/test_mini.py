import json
import subprocess
import sys

import numpy as np
from PIL import Image

from gfl_repro.data import mini


def read_json(root, split):
    return (root / "annotations" / f"instances_{split}.json").read_bytes()


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    mini.generate(a, seed=5, n_train=3, n_val=2, size=64, workers=2)
    mini.generate(b, seed=5, n_train=3, n_val=2, size=64, workers=1)
    mini.generate(c, seed=6, n_train=3, n_val=2, size=64, workers=1)
    for split in mini.SPLITS:
        assert read_json(a, split) == read_json(b, split)
        assert read_json(a, split) != read_json(c, split)
    for path in sorted((a / "train").glob("*.jpg")):
        assert path.read_bytes() == (b / "train" / path.name).read_bytes()


def test_layout_and_statistics(tiny_set):
    stats = json.loads((tiny_set / "stats.json").read_text())
    for split, n in (("train", 6), ("val", 4)):
        coco = json.loads(read_json(tiny_set, split))
        assert [c["id"] for c in coco["categories"]] == list(range(1, len(mini.CATEGORIES) + 1))
        assert [c["name"] for c in coco["categories"]] == list(mini.CATEGORIES)
        assert len(coco["images"]) == n == stats[split]["images"]
        for img in coco["images"]:
            assert Image.open(tiny_set / split / img["file_name"]).size == (96, 96)
        anns = coco["annotations"]
        assert len(anns) == stats[split]["objects"]
        assert sum(stats[split]["size_histogram"].values()) == len(anns)
        assert sum(stats[split]["per_category"].values()) == len(anns)
        per_image = np.bincount([a["image_id"] for a in anns], minlength=n + 1)[1:]
        opi = stats[split]["objects_per_image"]
        assert (opi["min"], opi["max"]) == (per_image.min(), per_image.max())
        for a in anns:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and w >= 1 and h >= 1 and x + w <= 96 and y + h <= 96
            assert 0 < a["area"] <= w * h


def test_covers_every_category_and_a_tenfold_size_range(tmp_path):
    stats = mini.generate(tmp_path, seed=0, n_train=60, n_val=0, size=160)
    coco = json.loads(read_json(tmp_path, "train"))
    assert {a["category_id"] for a in coco["annotations"]} == set(range(1, 13))
    sides = np.array([max(a["bbox"][2:]) for a in coco["annotations"]])
    # objects are 0.04 to 0.75 of the side before rotation: 6.4 to 120 px at 160
    assert sides.max() / sides.min() >= 10
    assert sides.min() <= 0.08 * 160 and sides.max() >= 0.6 * 160
    train = stats["train"]
    assert 0.2 <= train["blurred_share"] + train["low_contrast_share"] <= 0.5
    assert train["occluded_share"] > 0.05 and train["dropped_occluded"] > 0
    assert train["objects_per_image"]["min"] >= 1 and train["objects_per_image"]["max"] <= 15


def test_contact_sheet(tiny_set, tmp_path):
    out = mini.contact_sheet(tiny_set, tmp_path / "sheet.png", n=4, split="val", columns=2)
    # 96-pixel tiles are drawn at 3x (320 // 96) in a 2 x 2 grid
    assert Image.open(out).size == (2 * 288, 2 * 288)


def test_generation_ends_where_sigterm_is_ignored(tmp_path):
    """A Slurm job under submitit ignores SIGTERM and forked workers inherit that; the pool must
    still shut down. Ten generations in a row hung within a minute before the workers reset it."""
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "from gfl_repro.data import mini\n"
        "for i in range(10):\n"
        "    mini.generate(f'{sys.argv[1]}/{i}', 0, 8, 4, 64, workers=2)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=120)
    assert done.returncode == 0
