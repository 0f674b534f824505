"""Figs. 1c/d and 7 drawn from run folders: from the examples the probe wrote into tiny trained
runs, and from hand-made examples with a known answer.

Legend: D candidates, M gt boxes, n = reg_max (n + 1 bins).
"""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gfl_repro.analysis import examples
from gfl_repro.engine.examples import (
    CANDIDATE_COLS,
    DETECTION_COLS,
    GT_TABLE_COLS,
    write_examples,
)
from gfl_repro.engine.runs import RunFolder
from tests.engine.conftest import tiny_config

SCRIPT = Path(__file__).parents[2] / "analysis" / "figures.py"


@pytest.fixture(scope="module")
def probed(runs, tmp_path_factory) -> Path:
    """A copy of the tiny trained runs, each with its examples and without its checkpoints: the
    figures need nothing else."""
    root = tmp_path_factory.mktemp("probed") / "mini"
    shutil.copytree(runs, root)
    for name in ("gflv1", "gflv2"):
        write_examples(root / name / "seed0")
        for ckpt in (root / name / "seed0").glob("iter_*.pth"):
            ckpt.unlink()
    return root


def _check(paths: list[Path], name: str) -> None:
    assert [p.name for p in paths] == [f"{name}.{ext}" for ext in ("png", "pdf", "csv")]
    assert all(p.stat().st_size > 0 for p in paths)


def test_no_model_runs_in_analysis():
    source = Path(examples.__file__).read_text()
    assert "torch" not in source and "checkpoint" not in source


def test_box_iou_by_hand():
    a = np.array([[0.0, 0, 10, 10], [0, 0, 2, 2]])  # (2, 4)
    b = np.array([[5.0, 0, 15, 10], [20, 20, 30, 30]])  # (2, 4)
    # overlap 5 x 10 = 50, union 100 + 100 - 50 = 150; the small box does not reach x = 5
    np.testing.assert_allclose(examples.box_iou(a, b), [[1 / 3, 0], [0, 0]])


# --- Fig. 1c/d ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fig1cd(probed, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig1cd")
    paths = examples.fig1cd(probed / "gflv2" / "seed0", out)
    return paths, pd.read_csv(paths[2])


def test_fig1cd_writes_png_pdf_csv(fig1cd):
    paths, table = fig1cd
    _check(paths, "fig1cd_distributions")
    assert set(table["example"]) == {"sharp", "flat"}
    n_bins = tiny_config("x").model.head.reg_max + 1
    assert (table.groupby(["example", "side"]).size() == n_bins).all()


def test_fig1cd_distributions_sum_to_one_and_sharp_beats_flat(fig1cd):
    table = fig1cd[1]
    sums = table.groupby(["example", "side"])["probability"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    top1 = table.groupby(["example", "side"])["probability"].max().groupby("example").mean()
    np.testing.assert_allclose(top1, table.groupby("example")["top1_mean"].first(), atol=1e-5)
    assert top1["sharp"] >= top1["flat"]
    np.testing.assert_allclose(table["distance_px"], table["bin"] * table["stride"])


def test_fig1cd_draws_detections_of_the_run_folder(fig1cd, probed):
    """Each example is a row of the run's detections.csv, with that row's distributions."""
    table = fig1cd[1]
    ex = examples.load_examples(probed / "gflv2" / "seed0")
    for _, rows in table.groupby("example"):
        det = rows.iloc[0]
        cols = ["image_id", *examples.BOX_COLS, "score", "label"]
        same = np.isclose(ex.detections[cols].to_numpy(float), det[cols].to_numpy(float))
        (row,) = np.flatnonzero(same.all(axis=1))
        prob = rows["probability"].to_numpy()  # (4 * (n + 1),) side by side, l, t, r, b
        np.testing.assert_allclose(prob, ex.probability[row].reshape(-1), atol=1e-6)


def _dets(iou, score, top1) -> pd.DataFrame:
    return pd.DataFrame({"iou": iou, "score": score, "top1_mean": top1})


def test_pick_sharp_flat_prefers_matched_confident_then_falls_back():
    # rows 0 and 3 are the matched confident ones; row 1 is sharper but unmatched
    dets = _dets([0.8, 0.2, 0.6, 0.9], [0.5, 0.9, 0.1, 0.4], [0.7, 0.95, 0.1, 0.4])
    assert examples.pick_sharp_flat(dets)[:2] == (0, 3)
    dets = _dets([0.8, 0.2, 0.6], [0.1, 0.9, 0.2], [0.7, 0.95, 0.1])  # none confident
    sharp, flat, rule = examples.pick_sharp_flat(dets)
    assert (sharp, flat) == (0, 2) and rule.startswith("fallback")
    dets = _dets([0.1, 0.2], [0.9, 0.8], [0.3, 0.6])  # none matched
    assert examples.pick_sharp_flat(dets)[:2] == (1, 0)
    with pytest.raises(ValueError, match="no detection"):
        examples.pick_sharp_flat(_dets([], [], []))


# --- Fig. 7 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fig7(probed, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig7")
    paths = examples.fig7(probed / "gflv1" / "seed0", probed / "gflv2" / "seed0", out)
    return paths, pd.read_csv(paths[2])


def test_fig7_writes_png_pdf_csv(fig7):
    paths, table = fig7
    _check(paths, "fig7_nms")
    assert set(table["model"]) == {"GFLV1", "GFLV2"}
    assert set(table["stage"]) == {"before", "after"}
    assert table["image_id"].nunique() == 1
    assert (table.groupby(["model", "stage"])["top4"].sum() <= examples.TOP_SCORES).all()


def test_fig7_after_boxes_are_a_subset_of_before_boxes(fig7):
    table = fig7[1]
    cols = ["model", *examples.BOX_COLS, "score", "label"]
    before = set(table.loc[table["stage"] == "before", cols].itertuples(index=False))
    after = set(table.loc[table["stage"] == "after", cols].itertuples(index=False))
    assert after and after <= before
    assert (table.groupby(["model", "stage"]).size().loc[:, "after"] >= 1).all()


def test_fig7_after_boxes_are_the_runs_detections_and_before_share_their_class(fig7, probed):
    table = fig7[1]
    image_id = int(table["image_id"].iloc[0])
    cols = [*examples.BOX_COLS, "score", "label"]
    for name, run in (("GFLV1", "gflv1"), ("GFLV2", "gflv2")):
        dets = examples.load_examples(probed / run / "seed0").detections
        found = dets.loc[dets["image_id"] == image_id, cols].to_numpy(float)  # (S, 6)
        rows = table[table["model"] == name]
        for det in rows.loc[rows["stage"] == "after", cols].to_numpy(float):
            assert np.isclose(found, det, atol=1e-6).all(axis=1).any()
        assert rows["label"].nunique() == 1  # NMS is per class
        assert (rows["class"] == rows["gt_class"]).all()


def test_fig7_takes_the_image_asked_for(probed, tmp_path):
    v1, v2 = probed / "gflv1" / "seed0", probed / "gflv2" / "seed0"
    last = examples.load_examples(v2).image_ids[-1]
    paths = examples.fig7(v1, v2, tmp_path, last)
    assert (pd.read_csv(paths[2])["image_id"] == last).all()
    with pytest.raises(ValueError, match="not among the 4 val images"):
        examples.fig7(v1, v2, tmp_path, 10**9)


# --- Fig. 7's choice on hand-made examples ------------------------------------------------------

SQUARE = [0.0, 0.0, 10.0, 10.0]  # each image's one gt, class 0


def _hand_run(root: Path, name: str, scores: dict[int, float]) -> Path:
    """A run folder whose examples hold, per image, its gt and one kept candidate on it of score
    ``scores[image]`` plus a suppressed one shifted 1 px (IoU 9 / 11 with it)."""
    run = RunFolder(root / name)
    (run / RunFolder.EXAMPLES_IMAGES).mkdir(parents=True)
    cands = [[i, 0, s, *SQUARE, True] for i, s in scores.items()]
    cands += [[i, 0, s / 2, 1.0, 0.0, 11.0, 10.0, False] for i, s in scores.items()]
    gt = [[i, 0, 0, *SQUARE] for i in scores]
    pd.DataFrame(cands, columns=CANDIDATE_COLS).to_csv(run / run.EXAMPLES_CANDIDATES, index=False)
    pd.DataFrame(gt, columns=GT_TABLE_COLS).to_csv(run / run.EXAMPLES_GT, index=False)
    pd.DataFrame(columns=DETECTION_COLS).to_csv(run / run.EXAMPLES_DETECTIONS, index=False)
    info = {"images": [{"image_id": i, "height": 20, "width": 20} for i in scores],
            "class_names": ["square"], "box": "dirac", "iou_thr": 0.6}  # fmt: skip
    (run / run.EXAMPLES_INFO).write_text(json.dumps(info))
    return run.path


def test_fig7_chooses_the_first_image_every_run_detects_confidently(tmp_path):
    # image 1: GFLV1 is not confident (0.2); image 2: both are (min 0.5); image 3 is better
    # still (min 0.8) but comes later
    v1 = _hand_run(tmp_path, "v1", {1: 0.2, 2: 0.5, 3: 0.8})
    v2 = _hand_run(tmp_path, "v2", {1: 0.9, 2: 0.7, 3: 0.9})
    runs = {"GFLV1": examples.load_examples(v1), "GFLV2": examples.load_examples(v2)}
    assert examples.choose_nms_example(runs) == (2, 0, "first with score >= 0.3")
    table = examples.nms_table(runs, 2, 0, "rule")
    # both candidates are in the NMS region (IoU 9 / 11 > 0.6); NMS kept the first only
    assert table.groupby(["model", "stage"]).size().to_dict() == {
        ("GFLV1", "after"): 1, ("GFLV1", "before"): 2, ("GFLV2", "after"): 1,
        ("GFLV2", "before"): 2}  # fmt: skip
    np.testing.assert_allclose(table.loc[table["stage"] == "before", "iou_gt"], [1, 9 / 11] * 2)
    weak = {"GFLV1": examples.load_examples(_hand_run(tmp_path, "weak", {1: 0.2, 2: 0.1}))}
    image, gt, rule = examples.choose_nms_example({**weak, "GFLV2": runs["GFLV2"]})
    assert (image, gt) == (1, 0) and rule.startswith("fallback")  # best of the two shared
    other = {"X": examples.load_examples(_hand_run(tmp_path, "other", {5: 0.9}))}
    with pytest.raises(ValueError, match="do not share a val set"):
        examples.choose_nms_example({**other, **runs})


# --- the script ---------------------------------------------------------------------------------


def _script():
    spec = importlib.util.spec_from_file_location("figures_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_runs_the_probe_where_missing_then_draws_or_says_why_not(runs, tmp_path):
    script = _script()
    root = tmp_path / "runs"
    shutil.copytree(runs, root)  # the shared runs are read only
    written, skipped = script.example_figures(root, tmp_path / "a", max_images=2)
    assert len(written) == 6 and skipped == []
    for name in ("gflv1", "gflv2"):
        info = RunFolder(root / name / "seed0").read(RunFolder.EXAMPLES_INFO)
        assert info["max_images"] == 2 and len(info["images"]) == 2
    written, skipped = script.example_figures(tmp_path / "empty", tmp_path / "b", max_images=2)
    assert written == [] and len(skipped) == 2
    assert "gflv2" in skipped[0] and "gflv1 and gflv2" in skipped[1]


def test_script_draws_from_run_folders_without_checkpoints(probed, tmp_path):
    written, skipped = _script().example_figures(probed, tmp_path, max_images=2)
    assert len(written) == 6 and skipped == []  # the examples of 4 images stand as they are
