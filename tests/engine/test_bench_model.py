"""`gfl-repro bench-model` on a tiny trained run: what it records and where, never how fast."""

import csv
import dataclasses
import json
import math
import re
import shutil

import numpy as np
import pytest

from experiments.presets import tiny
from gfl_repro.analysis.collect import collect_runs, compare_with_paper
from gfl_repro.cli import main
from gfl_repro.engine.bench.model import ModelBenchOptions, bench_runs, run_iterations
from gfl_repro.engine.train import train_run

FAST = ["--train-iters", "2", "--train-warmup", "1", "--images", "2", "--warmup", "1",
        "--threads", "1"]  # fmt: skip


def _tiny(root):
    cfg = tiny()  # 12 train images of 64 px, 4 a batch, 1 epoch: 3 iterations
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory):
    """runs/tiny/gflv2/seed0, trained to the end: iter_3.pth and metrics.json."""
    runs = tmp_path_factory.mktemp("bench_runs")
    run = runs / "tiny" / "gflv2" / "seed0"
    train_run(_tiny(tiny_root), run, seed=0, meta={"experiment": "gflv2", "preset": "tiny"})
    return run


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_record(record: dict, iterations: int) -> None:
    for key in ("train_s_per_iter", "train_s_per_iter_mean", "training_hours", "ms", "ms_mean",
                "fps"):  # fmt: skip
        assert math.isfinite(record[key]) and record[key] > 0, key
    assert record["fps"] == pytest.approx(1000 / record["ms"], rel=1e-12)
    assert record["iterations"] == iterations and record["processes"] == 1
    hours = record["train_s_per_iter"] * iterations / 3600
    assert record["training_hours"] == pytest.approx(hours, rel=1e-12)
    assert (record["train_iters"], record["images"], record["threads"]) == (2, 2, 1)


def test_bench_model_writes_json_and_csv_and_upserts_by_run(trained, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["bench-model", str(trained), *FAST, "--results", str(results)]) == 0
    assert "gflv2" in capsys.readouterr().out
    record = json.loads((trained / "bench_model.json").read_text())
    _check_record(record, iterations=3)
    assert record["weights"] == "iter_3.pth" and record["device"] == "cpu"
    assert {"torch", "host", "time"} <= record.keys()
    table = results / "tiny" / "bench_model.csv"
    (row,) = _rows(table)
    assert row["run"] == record["run"] and float(row["fps"]) == pytest.approx(record["fps"])

    fresh = trained.parent / "seed1"  # the same config, seed 1, no checkpoint, no metrics
    fresh.mkdir()
    shutil.copy(trained / "config.json", fresh / "config.json")
    env = json.loads((trained / "env.json").read_text())
    (fresh / "env.json").write_text(json.dumps({**env, "seed": 1}))
    opts = ModelBenchOptions(threads=1, train_iters=2, train_warmup=1, images=2, warmup=1)
    again, new = bench_runs([trained, fresh], opts, results)
    assert new["weights"] == "fresh init (no checkpoint)"
    rows = {r["run"]: r for r in _rows(table)}
    assert len(rows) == 2 and len(_rows(table)) == 2  # the first run's row replaced, not doubled
    assert float(rows[again["run"]]["ms"]) == pytest.approx(again["ms"])
    _check_record(json.loads((trained / "bench_model.json").read_text()), iterations=3)

    runs = collect_runs(trained.parents[1]).set_index("seed")
    assert runs.loc[0, "Inference FPS"] == pytest.approx(again["fps"])
    assert runs.loc[0, "Training Hours"] == pytest.approx(again["training_hours"])
    columns = ("AP", "Training Hours", "Inference FPS")
    shutil.rmtree(fresh)  # an incomplete seed would blank the row
    paper = compare_with_paper(collect_runs(trained.parents[1]), {}, ["gflv2"], columns)
    assert paper.loc[0, "Inference FPS"] == round(again["fps"], 1)


def test_collect_runs_leaves_speed_missing_without_bench_model_json(tiny_root, tmp_path):
    run = tmp_path / "tiny" / "gflv1" / "seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "env.json").write_text(json.dumps({"preset": "tiny", "experiment": "gflv1", "seed": 0}))
    runs = collect_runs(tmp_path)
    assert runs[["Training Hours", "Inference FPS", "FPS"]].isna().all(axis=None)
    columns = list(runs.columns)  # the speed columns follow the PCC, the diagnostics them
    start = columns.index("PCC")
    assert columns[start : start + 4] == ["PCC", "Training Hours", "Inference FPS", "FPS"]
    assert columns[start + 4] == "AP_agnostic"


def test_a_folder_that_is_not_a_run_is_named_and_nothing_is_timed(trained, tmp_path):
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{empty}: no config.json")):
        main(["--debug", "bench-model", str(trained), str(empty), *FAST, "--results",
              str(tmp_path)])  # fmt: skip
    assert not (tmp_path / "tiny").exists()  # every folder is checked before any timing

    no_env = tmp_path / "no_env"
    no_env.mkdir()
    shutil.copy(trained / "config.json", no_env / "config.json")
    with pytest.raises(ValueError, match=re.escape(f"{no_env}: env.json is missing")):
        bench_runs([no_env], ModelBenchOptions(), tmp_path)


def test_run_iterations_counts_the_runs_processes(tiny_root):
    cfg = _tiny(tiny_root)  # 4 images a batch, 1 epoch
    flags = np.zeros(12, dtype=bool)  # 12 square images: one aspect group
    assert run_iterations(cfg, flags, processes=1) == 3  # 12 / 4
    assert run_iterations(cfg, flags, processes=2) == 2  # padded to 16, 8 per process
    flags[:5] = True  # 5 + 7 images: each group padded to 8 apart
    assert run_iterations(cfg, flags, processes=1) == 4
    capped = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, max_iters=2))
    assert run_iterations(capped, flags, processes=1) == 2
