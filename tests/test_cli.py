"""The gfl-repro command: demo and predict end to end on tiny inputs; the parser's checks, the
one-line errors, export-checkpoint's wiring and experiment-cost."""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gfl_repro.build import build_model
from gfl_repro.cli import build_parser, main
from gfl_repro.config import HeadConfig, ModelConfig, to_dict
from gfl_repro.errors import ToolkitError


def test_demo_runs_on_a_small_image(capsys):
    assert main(["demo", "--height", "96", "--width", "128"]) == 0
    out = capsys.readouterr().out
    assert "DGQP 1,409" in out
    assert "P3: stride   8, 12x16" in out and "P7: stride 128, 1x1" in out


def test_predict_writes_coco_detections_in_original_pixels(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(
        num_classes=3,
        backbone="mini",
        fpn_channels=16,
        head=HeadConfig(feat_channels=16, stacked_convs=1, gn_groups=4),
    )
    model = build_model(cfg)
    with torch.no_grad():
        model.head.gfl_cls.bias.fill_(0.0)  # J ~ 0.5 * 0.5: every location is a candidate
    ckpt = tmp_path / "model.pth"
    torch.save(
        {"state_dict": model.state_dict(), "model_config": to_dict(cfg), "category_ids": [5, 7, 9]},
        ckpt,
    )
    image = tmp_path / "img.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 150, 3), np.uint8)).save(image)
    out, drawn = tmp_path / "dets.json", tmp_path / "boxes.png"
    args = ["predict", "--checkpoint", str(ckpt), "--image", str(image), "--out", str(out)]
    assert main([*args, "--draw", str(drawn), "--scale", "200", "120"]) == 0
    dets = json.loads(out.read_text())
    assert 0 < len(dets) <= 100
    assert {d["category_id"] for d in dets} <= {5, 7, 9}
    for d in dets:
        x, y, w, h = d["bbox"]
        assert x >= 0 and y >= 0 and w >= 0 and h >= 0
        assert x + w <= 150 + 0.01 and y + h <= 90 + 0.01  # mapped back to the 150x90 original
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    assert drawn.stat().st_size > 0


def test_data_mini_writes_a_coco_set_and_its_contact_sheet(tmp_path, capsys):
    out = tmp_path / "mini"
    sheet = tmp_path / "sheet.png"
    args = ["data", "mini", "--out", str(out), "--train", "4", "--val", "2", "--size", "64"]
    assert main([*args, "--contact-sheet", str(sheet)]) == 0
    coco = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert len(coco["images"]) == 2 and len(coco["categories"]) >= 10
    assert sheet.stat().st_size > 0
    assert "train: 4 images" in capsys.readouterr().out


def test_data_mini_writes_the_variant_a_config_describes(tmp_path, capsys):
    """--set data.mini_* chooses the generator's knobs; the set records them, so a config asking
    for the same set accepts it and one asking for another is refused."""
    from gfl_repro.data import mini

    out = tmp_path / "variant"
    knobs = [
        "--set",
        "data.mini_classes=ring,star,arrow",
        "--set",
        "model.num_classes=3",
        "--set",
        "data.mini_class_colour=0.5",
    ]  # the same items train on it
    assert main(["data", "mini", "--out", str(out), "--train", "3", "--val", "1", "--size", "64",
                 *knobs]) == 0  # fmt: skip
    coco = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["ring", "star", "arrow"]
    spec = {"seed": 0, "n_train": 3, "n_val": 1, "size": 64, "classes": ("ring", "star", "arrow"),
            "class_colour": 0.5, "min_side": 0.04}  # fmt: skip
    mini.check_spec(out, spec)
    with pytest.raises(mini.DatasetError, match="data.mini_class_colour: set has 0.5"):
        mini.check_spec(out, {**spec, "class_colour": 0.0})


def test_experiments_lists_gflv1_and_gflv2(capsys):
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    assert "gflv1" in out and "model.quality.kind=none" in out and "gflv2" in out


def test_preset_and_experiment_names_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "gflv2", "--preset", "coco"])
    assert info.value.code == 2
    assert "invalid choice: 'coco'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["levels", "nope"])
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "9"])
    assert "invalid choice: '9'" in capsys.readouterr().err


def test_toolkit_errors_are_one_line_and_debug_after_the_command_raises(tmp_path, capsys):
    absent, out = str(tmp_path / "absent"), str(tmp_path / "out.pth")
    assert main(["export-checkpoint", absent, out]) == 2
    err = capsys.readouterr().err
    assert err == f"gfl-repro: error: {absent}: no such checkpoint file or run folder\n"
    for argv in (["--debug", "export-checkpoint", absent, out],
                 ["export-checkpoint", "--debug", absent, out]):  # fmt: skip
        with pytest.raises(ToolkitError, match="no such checkpoint file"):
            main(argv)


def test_export_checkpoint_calls_convert_and_prints_the_path(monkeypatch, tmp_path, capsys):
    from gfl_repro import convert

    calls = []

    def export(src: Path, dst: Path) -> Path:
        calls.append((src, dst))
        return dst

    monkeypatch.setattr(convert, "export_checkpoint", export)
    assert main(["export-checkpoint", str(tmp_path / "run"), str(tmp_path / "w.pth")]) == 0
    assert calls == [(tmp_path / "run", tmp_path / "w.pth")]
    assert capsys.readouterr().out == f"written: {tmp_path / 'w.pth'}\n"


def test_experiment_cost_times_named_experiments_beside_gflv2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the tiny preset's set is generated under data/
    argv = ["experiment-cost", "gflv1", "t3_region", "--preset", "tiny", "--warmup", "0",
            "--reps", "1", "--results", "res"]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "res" / "tiny" / "experiment_cost.csv")))
    assert [(r["experiment"], r["table"]) for r in rows] == [("gflv1", "main"), ("t3_region", "3")]
    half = 5e-5  # the CSV's rounding to 4 decimals
    for row in rows:
        step, ref = float(row["step_s"]), float(row["gflv2_step_s"])
        low, high = (step - half) / (ref + half) - half, (step + half) / (ref - half) + half
        assert low <= float(row["relative_to_gflv2"]) <= high
    assert "relative_to_gflv2" in capsys.readouterr().out


def test_every_command_builds_its_help(capsys):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    new = {"experiment-cost", "export-checkpoint"}
    assert new | {"bench", "bench-model", "sweep", "train", "gpu-check"} <= set(sub.choices)
    for name in sub.choices:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0, name
    assert "{mini,coco-1x,coco-2x-ms,tiny}" in capsys.readouterr().out
