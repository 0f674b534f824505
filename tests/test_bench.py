"""The benchmark at tiny sizes: it runs and writes its CSV. Speed goals are never asserted."""

import argparse
import csv

import pytest

from gfl_repro import bench
from gfl_repro.data import mini as mini_data


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_mini")
    mini_data.generate(root, seed=2, n_train=8, n_val=3, size=64, workers=1)
    return root


def tiny_args(root, out, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(
        [
            "--size=64",
            "--reps=1",
            "--warmup=0",
            "--threads=1",
            "--atss-step=estimate",
            "--load-batches=1",
            "--matmul-size=64",
            f"--data-root={root}",
            f"--ann-file={root / 'annotations' / 'instances_val.json'}",
            f"--detections={root / 'absent.json'}",  # made from the ground truth with noise
            f"--out={out}",
            *extra,
        ]
    )


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_small_items_write_the_csv(tiny_root, tmp_path, capsys):
    out = tmp_path / "sub" / "bench.csv"
    assert bench.run(tiny_args(tiny_root, out, "--skip", "1", "2", "3")) == 0
    columns, rows = read_rows(out)
    assert tuple(columns) == bench.COLUMNS
    assert sorted({int(r["item"]) for r in rows}) == [4, 5, 6, 7]
    for row in rows:
        assert float(row["ours"]) >= 0
    # The same detections give the same metrics under both backends.
    (diff,) = [r for r in rows if r["measure"].startswith("largest metric difference")]
    assert float(diff["ours"]) < 1e-6
    assert "measure" in capsys.readouterr().out


def test_detector_items_at_64_px(tiny_root, tmp_path):
    out = tmp_path / "bench.csv"
    assert bench.run(tiny_args(tiny_root, out, "--skip", "4", "5", "6", "7")) == 0
    _, rows = read_rows(out)
    assert [int(r["item"]) for r in rows] == [1, 3, 2, 3, 3]
    (params,) = [r for r in rows if r["unit"] == "params"]
    assert float(params["ours"]) == 1409  # DGQP, k = 4, p = 64: 20 * 64 + 64 + 64 + 1
    for row in rows:
        assert row["met"] in ("yes", "NO", "")


def test_level_sizes_match_the_model_at_1344_by_800():
    # 800 / 8, / 16, / 32 exactly; then ceil halvings: 25 -> 13 -> 7 and 42 -> 21 -> 11.
    expected = [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]
    assert bench.level_sizes(800, 1344) == expected


def test_ratio_and_goal():
    assert bench.Row(1, "x", 2.0, 4.0, goal=1.0).met == "yes"
    assert bench.Row(1, "x", 4.0, 2.0, goal=1.0).met == "NO"
    assert bench.Row(5, "x", 10.0, 2.0, goal=2.0, sense=">=").met == "yes"
    assert bench.Row(4, "x", 1.0).met == ""
