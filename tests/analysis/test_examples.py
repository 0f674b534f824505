"""Figs. 1c/d and 7 from tiny trained runs, and the prior indices that NMS now hands back.

Legend: Q boxes, C classes, D detections, n = reg_max (n + 1 bins).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gfl_repro.analysis import examples
from gfl_repro.engine.data import val_loader
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.models.postprocess import InferenceConfig, multiclass_nms
from tests.engine.conftest import tiny_config

SCRIPT = Path(__file__).parents[2] / "analysis" / "figures.py"


def _check(paths: list[Path], name: str) -> None:
    assert [p.name for p in paths] == [f"{name}.{ext}" for ext in ("png", "pdf", "csv")]
    assert all(p.stat().st_size > 0 for p in paths)


def _final_detections(run: Path) -> dict[int, list[tuple]]:
    """Per image id, the (x1, y1, x2, y2, score, label) of ``Detector.predict``'s detections."""
    cfg, model = examples.load_run_model(run)
    found = {}
    for images, targets in val_loader(cfg.data, DistInfo()):
        for t, det in zip(targets, model.predict(images, targets), strict=True):
            rows = torch.cat([det["boxes"], det["scores"][:, None], det["labels"][:, None]], 1)
            found[int(t["image_id"])] = rows.tolist()
    return found


def _is_final(found: dict[int, list[tuple]], image_id: int, row: tuple) -> bool:
    # the val images are 64 px and test_scale is 64, so the resized frame is the original one
    return any(np.allclose(row, d, atol=1e-4) for d in found[image_id])


# --- postprocess: the default output does not change -------------------------------------------


def _nms_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Rows: C (far away), A, B (A shifted 1 px: IoU with A 9 / 11 > 0.6); classes 0 and 1."""
    boxes = torch.tensor([[20.0, 20, 30, 30], [0, 0, 10, 10], [1, 0, 11, 10]])  # (Q, 4)
    scores = torch.tensor([[0.02, 0.5], [0.9, 0.1], [0.8, 0.7]])  # (Q, C)
    return boxes, scores


def test_multiclass_nms_default_output_is_unchanged():
    boxes, scores = _nms_case()
    out = multiclass_nms(boxes, scores, InferenceConfig())
    # class 0: A (0.9) suppresses B (0.8), C is under 0.05; class 1: B (0.7) suppresses A (0.1)
    assert len(out) == 3
    torch.testing.assert_close(out[0], boxes[[1, 2, 0]])
    torch.testing.assert_close(out[1], torch.tensor([0.9, 0.7, 0.5]))
    torch.testing.assert_close(out[2], torch.tensor([0, 1, 1]))


def test_multiclass_nms_index_names_the_source_rows():
    boxes, scores = _nms_case()
    plain = multiclass_nms(boxes, scores, InferenceConfig())
    *same, rows = multiclass_nms(boxes, scores, InferenceConfig(), return_index=True)
    for a, b in zip(plain, same, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(rows, torch.tensor([1, 2, 0]))
    torch.testing.assert_close(boxes[rows], plain[0])
    torch.testing.assert_close(scores[rows, plain[2]], plain[1])


# --- Fig. 1c/d ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fig1cd(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig1cd")
    paths = examples.fig1cd(runs / "gflv2" / "seed0", out)
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


def test_fig1cd_distributions_decode_to_the_drawn_final_detection(fig1cd, runs):
    """The distributions are those of the prior that produced the box: their expectations
    from the prior point give the box (clipped to the 64-px image), and the box is one of
    ``Detector.predict``'s detections."""
    table = fig1cd[1]
    found = _final_detections(runs / "gflv2" / "seed0")
    for _, rows in table.groupby("example"):
        det = rows.iloc[0]
        mean = rows.assign(e=rows["probability"] * rows["bin"]).groupby("side")["e"].sum()
        dist = mean * det["stride"]  # pixels
        box = np.clip([det["px"] - dist["l"], det["py"] - dist["t"],
                       det["px"] + dist["r"], det["py"] + dist["b"]], 0, 64)  # fmt: skip
        np.testing.assert_allclose(box, det[examples.BOX_COLS].astype(float), atol=1e-3)
        row = (*det[examples.BOX_COLS], det["score"], det["label"])
        assert _is_final(found, int(det["image_id"]), row)


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
def fig7(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig7")
    paths = examples.fig7(runs / "gflv1" / "seed0", runs / "gflv2" / "seed0", out)
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


def test_fig7_after_boxes_are_final_detections_and_before_share_their_class(fig7, runs):
    table = fig7[1]
    image_id = int(table["image_id"].iloc[0])
    for name, run in (("GFLV1", "gflv1"), ("GFLV2", "gflv2")):
        found = _final_detections(runs / run / "seed0")
        rows = table[table["model"] == name]
        after = rows[rows["stage"] == "after"]
        for det in after.itertuples():
            assert _is_final(
                found, image_id, (det.x1, det.y1, det.x2, det.y2, det.score, det.label)
            )
        assert rows["label"].nunique() == 1  # NMS is per class
        assert (rows["class"] == rows["gt_class"]).all()


def test_fig7_takes_the_image_asked_for(runs, tmp_path):
    cfg, _ = examples.load_run_model(runs / "gflv2" / "seed0")
    last = val_loader(cfg.data, DistInfo()).dataset.records[-1].image_id
    paths = examples.fig7(runs / "gflv1" / "seed0", runs / "gflv2" / "seed0", tmp_path, last)
    assert (pd.read_csv(paths[2])["image_id"] == last).all()
    with pytest.raises(ValueError, match="no gt box in image"):
        examples.fig7(runs / "gflv1" / "seed0", runs / "gflv2" / "seed0", tmp_path, 10**9)


# --- the script ---------------------------------------------------------------------------------


def _script():
    spec = importlib.util.spec_from_file_location("figures_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_draws_both_or_says_why_not(runs, tmp_path):
    script = _script()
    written, skipped = script.example_figures(runs, tmp_path / "a", max_images=2)
    assert len(written) == 6 and skipped == []
    written, skipped = script.example_figures(tmp_path / "empty", tmp_path / "b", max_images=2)
    assert written == [] and len(skipped) == 2
    assert "gflv2" in skipped[0] and "gflv1 and gflv2" in skipped[1]
