"""The benchmark at tiny sizes: it runs and writes its CSV. Speed goals are never asserted."""

import csv
import dataclasses

import pytest

from experiments.presets import mini, tiny
from gfl_repro.cli import main
from gfl_repro.engine.bench import levers, suite
from gfl_repro.engine.bench.suite import BenchOptions, Row
from gfl_repro.engine.bench.table import format_table
from gfl_repro.engine.bench.timing import median_times, time_calls
from gfl_repro.engine.data import ensure_dataset
from gfl_repro.engine.distributed import DistInfo


def _tiny(root=None):
    """The tiny preset, its data at ``root``."""
    cfg = tiny()
    if root is None:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """The tiny preset's built-in set (12 + 4 images of 64 px), generated as its config asks."""
    root = tmp_path_factory.mktemp("bench_tiny")
    ensure_dataset(_tiny(root).data, DistInfo())
    return root


def tiny_argv(root, out, *extra: str) -> list[str]:
    return [
        "bench",
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


def tiny_options(root, out, skip: tuple[int, ...]) -> BenchOptions:
    return BenchOptions(size=64, reps=1, warmup=0, threads=1, skip=skip, atss_step="estimate",
                        load_batches=1, matmul_size=64, data_root=root,
                        ann_file=root / "annotations" / "instances_val.json",
                        detections=root / "absent.json", out=out)  # fmt: skip


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_the_command_writes_the_csv(tiny_root, tmp_path, capsys):
    # Item 5 times the mini preset's loader: it needs the mini set, so it is left to the next test.
    out = tmp_path / "sub" / "bench.csv"
    assert main(tiny_argv(tiny_root, out, "--skip", "1", "2", "3", "5", "8", "9")) == 0
    columns, rows = read_rows(out)
    assert tuple(columns) == suite.COLUMNS
    assert sorted({int(r["item"]) for r in rows}) == [4, 6, 7]
    for row in rows:
        assert float(row["ours"]) >= 0
    # The same detections give the same metrics under both backends.
    (diff,) = [r for r in rows if r["measure"].startswith("largest metric difference")]
    assert float(diff["ours"]) < 1e-6
    assert "measure" in capsys.readouterr().out


def test_detector_and_loading_items_at_64_px(tiny_root, tmp_path):
    out = tmp_path / "bench.csv"
    returned = suite.run(tiny_options(tiny_root, out, skip=(4, 6, 7, 8, 9)), loading=_tiny())
    _, rows = read_rows(out)
    assert rows == [row.values() for row in returned]
    assert [int(r["item"]) for r in rows] == [1, 3, 2, 3, 3, 5]
    (params,) = [r for r in rows if r["unit"] == "params"]
    assert float(params["ours"]) == 1409  # DGQP, k = 4, p = 64: 20 * 64 + 64 + 64 + 1
    (loading,) = [r for r in rows if r["item"] == "5"]
    assert float(loading["ours"]) > 0 and float(loading["reference"]) > 0
    for row in rows:
        assert row["met"] in ("yes", "NO", "")


def test_level_sizes_match_the_model_at_1344_by_800():
    # 800 / 8, / 16, / 32 exactly; then ceil halvings: 25 -> 13 -> 7 and 42 -> 21 -> 11.
    expected = [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]
    assert suite.level_sizes(800, 1344) == expected


def test_ratio_and_goal():
    assert Row(1, "x", 2.0, 4.0, goal=1.0).met == "yes"
    assert Row(1, "x", 4.0, 2.0, goal=1.0).met == "NO"
    assert Row(5, "x", 10.0, 2.0, goal=2.0, sense=">=").met == "yes"
    assert Row(4, "x", 1.0).met == ""


def test_options_are_checked():
    with pytest.raises(ValueError, match="reps"):
        BenchOptions(reps=0)
    with pytest.raises(ValueError, match="skip"):
        BenchOptions(skip=(10,))
    with pytest.raises(ValueError, match="short_runs"):
        BenchOptions(short_runs=(5, 5))
    with pytest.raises(ValueError, match="no lever 'width 0.3'; the levers: channels_last"):
        BenchOptions(whole_run_lever="width 0.3")


def test_time_calls_interleaves_warms_up_and_draws_inputs_untimed():
    calls = []
    fns = [lambda x: calls.append(("a", x)), lambda x: calls.append(("b", x))]
    times = time_calls(fns, reps=2, warmup=1, inputs=iter([10, 11, 12, 13]))
    assert calls == [("a", 10), ("b", 10), ("a", 11), ("b", 11), ("a", 12), ("b", 12)]
    assert [len(t) for t in times] == [2, 2] and min(min(t) for t in times) >= 0
    assert len(median_times([lambda: None], reps=3, warmup=0)) == 1


def test_format_table_aligns_left_two_spaces_apart():
    table = format_table(("a", "long"), [("xyz", "1"), ("", "22")])
    assert table.splitlines() == ["a    long", "xyz  1", "     22"]


def test_width_levers_scale_every_channel_count_to_its_groups():
    # the search's base: widths 16-256 (backbone GN of 8 groups), FPN and head 64 (16 groups)
    cfg = mini().model
    cfg = dataclasses.replace(
        cfg, mini_widths=(16, 32, 64, 128, 256), fpn_channels=64,
        head=dataclasses.replace(cfg.head, feat_channels=64),
    )  # fmt: skip
    half = levers.scaled_model(cfg, 0.5)
    assert half.mini_widths == (8, 16, 32, 64, 128)
    assert half.fpn_channels == 32 and half.head.feat_channels == 32
    three_quarters = levers.scaled_model(cfg, 0.75)
    assert three_quarters.mini_widths == (16, 24, 48, 96, 192)  # 12 -> 16: the nearest multiple
    assert three_quarters.fpn_channels == 48 and three_quarters.head.feat_channels == 48
    assert levers.scaled_model(cfg, 1.0) is cfg


def test_levers_are_timed_against_the_preset_step_per_image():
    cfg = _tiny()  # 64-px images, 4 per step
    chosen = (levers.Lever("channels_last", "memory format", True, channels_last=True),
              levers.Lever("batch 2", "2 images", False, batch=2))  # fmt: skip
    records = levers.bench_levers(cfg, reps=1, warmup=0, boxes=3, levers=chosen)
    assert [r["lever"].name for r in records] == ["channels_last", "batch 2"]
    for r in records:
        assert r["ours"] > 0 and r["base"] > 0 and r["first_call_s"] > 0
    step, batch = levers.lever_step(cfg, chosen[1], boxes=3)
    assert batch == 2 and levers.lever_step(cfg, None, boxes=3)[1] == 4


def test_a_whole_run_is_the_line_through_two_short_runs():
    # Loops of 10 steps in 20 s and 40 steps in 50 s: 1 s per step, 10 s for the loop's start;
    # the 40-step run's 80 s wall time leaves 30 s outside its loop: 40 s fixed; 100 steps: 140 s.
    # The 10-step run's wall time (here 70 s: a slower evaluation) does not enter.
    assert levers.whole_run_estimate({40: (80.0, 50.0), 10: (70.0, 20.0)}, 100) == (40, 1, 140)
    with pytest.raises(ValueError, match="different lengths"):
        levers.whole_run_estimate({10: (30.0, 20.0)}, 100)


def test_a_lever_as_a_run_config():
    cfg = _tiny()
    half = levers.changed_config(cfg, levers.Lever("w", "width", False, width=0.5, size=32))
    assert half.model == levers.scaled_model(cfg.model, 0.5)
    assert half.data.train_scale == half.data.test_scale == (32, 32)
    assert half.schedule == cfg.schedule
    with pytest.raises(ValueError, match="keeps the numbers"):
        levers.changed_config(cfg, levers.LEVERS[0])


def test_whole_run_item_times_the_preset_and_the_lever(tiny_root, tmp_path):
    # The tiny preset: 12 training images, 4 per step, 1 epoch = 3 steps in a whole run.
    opts = dataclasses.replace(tiny_options(tiny_root, tmp_path / "b.csv", skip=()),
                               short_runs=(1, 2))  # fmt: skip
    rows = suite.bench_whole_run(opts, _tiny())
    assert [row.item for row in rows] == [9, 9, 9]
    assert rows[0].measure == "a whole run of 3 steps, width 0.5 / preset"
    other = dataclasses.replace(opts, whole_run_lever="size 256 width 0.75", short_runs=(1, 2))
    assert suite.bench_whole_run(other, _tiny())[0].measure.endswith("size 256 width 0.75 / preset")
    for row in rows[1:]:
        assert row.ours != 0 and row.reference != 0  # fitted: the step may be negative if noisy
    whole, step, fixed = rows
    assert whole.goal == 0.5 and step.goal is None and fixed.goal is None
    assert whole.ours == pytest.approx(fixed.ours + 3 * step.ours)
    assert whole.reference == pytest.approx(fixed.reference + 3 * step.reference)
