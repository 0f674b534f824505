import json
import subprocess
import sys

import numpy as np
import pytest
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


def test_the_default_variant_draws_the_set_of_no_variant(tmp_path):
    """Variant() is the generator without knobs: the same bytes as one with every knob at its
    default given explicitly, and a set with a knob on differs."""
    default = mini.Variant(mini.CATEGORIES, class_colour=0.0, min_side=0.04)
    mini.generate(tmp_path / "a", seed=4, n_train=3, n_val=1, size=64, workers=1)
    mini.generate(tmp_path / "b", seed=4, n_train=3, n_val=1, size=64, workers=1, variant=default)
    colour = mini.Variant(class_colour=1.0)
    mini.generate(tmp_path / "c", seed=4, n_train=3, n_val=1, size=64, workers=1, variant=colour)
    for split in mini.SPLITS:
        assert read_json(tmp_path / "a", split) == read_json(tmp_path / "b", split)
    images = sorted((tmp_path / "a" / "train").glob("*.jpg"))
    assert all(p.read_bytes() == (tmp_path / "b" / "train" / p.name).read_bytes() for p in images)
    assert any(p.read_bytes() != (tmp_path / "c" / "train" / p.name).read_bytes() for p in images)


def test_a_class_subset_renumbers_the_categories_and_draws_only_them(tmp_path):
    variant = mini.Variant(classes=("ring", "star", "arrow"))
    stats = mini.generate(
        tmp_path, seed=0, n_train=20, n_val=1, size=96, workers=1, variant=variant
    )
    coco = json.loads(read_json(tmp_path, "train"))
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "ring"), (2, "star"),
                                                                   (3, "arrow")]  # fmt: skip
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3}
    assert list(stats["train"]["per_category"]) == ["ring", "star", "arrow"]
    assert json.loads((tmp_path / "stats.json").read_text())["spec"]["classes"] == [
        "ring",
        "star",
        "arrow",
    ]


def test_class_colour_gives_each_category_its_own_hue(tmp_path):
    """With class_colour 1 every sharp solid object has its category's hue (i / n): the median hue
    of each category's visible pixels is near i / n (circular distance under 0.05)."""
    import colorsys

    variant = mini.Variant(classes=("circle", "square", "star", "cross"), class_colour=1.0)
    mini.generate(tmp_path, seed=1, n_train=30, n_val=1, size=128, workers=1, variant=variant)
    coco = json.loads(read_json(tmp_path, "train"))
    hues = {c: [] for c in range(1, 5)}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        if w < 20 or h < 20:
            continue
        image = Image.open(tmp_path / "train" / f"{ann['image_id'] - 1:06d}.jpg").convert("RGB")
        r, g, b = (v / 255 for v in image.getpixel((x + w // 2, y + h // 2)))
        hues[ann["category_id"]].append(colorsys.rgb_to_hsv(r, g, b)[0])
    for category, values in hues.items():
        target = (category - 1) / 4
        distance = np.abs((np.array(values) - target + 0.5) % 1 - 0.5)
        assert len(values) >= 5 and np.median(distance) < 0.05, (category, np.median(distance))


def test_min_side_raises_the_smallest_object(tmp_path):
    stats = mini.generate(tmp_path, seed=0, n_train=40, n_val=1, size=160, workers=1,
                          variant=mini.Variant(min_side=0.2))  # fmt: skip
    coco = json.loads(read_json(tmp_path, "train"))
    unoccluded = [a for a in coco["annotations"] if a["area"] > 0.3 * a["bbox"][2] * a["bbox"][3]]
    # side 0.2 x 160 = 32 px before rotation; a visible box is cut only by occlusion or the border
    assert min(max(a["bbox"][2:]) for a in unoccluded) >= 0.5 * 32
    assert stats["spec"]["min_side"] == 0.2


def test_a_set_generated_with_other_settings_is_refused(tiny_set):
    spec = json.loads((tiny_set / "stats.json").read_text())["spec"]
    mini.check_spec(tiny_set, {**spec, "classes": tuple(spec["classes"])})  # the same: no error
    other = {**spec, "classes": tuple(spec["classes"]), "seed": 9, "class_colour": 0.5}
    with pytest.raises(mini.DatasetError) as err:
        mini.check_spec(tiny_set, other)
    message = str(err.value)
    assert "stats.json" in message and "data.mini_seed: set has 0, config asks 9" in message
    assert "data.mini_class_colour: set has 0.0, config asks 0.5" in message


def test_a_set_from_before_the_spec_reads_as_the_default_variant(tiny_set, tmp_path):
    stats = json.loads((tiny_set / "stats.json").read_text())
    old = {k: v for k, v in stats.items() if k != "spec"}
    (tmp_path / "stats.json").write_text(json.dumps(old))
    assert mini.recorded_spec(tmp_path) == {**stats["spec"], "classes": mini.CATEGORIES}


@pytest.mark.parametrize(
    "knobs", [{"classes": ("circle",)}, {"classes": ("circle", "blob")},
              {"classes": ("ring", "ring")}, {"class_colour": 1.5}, {"min_side": 0.0}],
)  # fmt: skip
def test_bad_variants_are_refused(knobs):
    with pytest.raises(ValueError):
        mini.Variant(**knobs)
