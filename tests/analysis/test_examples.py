"""Figs. 1c/d and 7 drawn from run folders: from the examples the probe wrote into tiny trained
runs, and from hand-made examples with a known answer.

Legend: D candidates, M gt boxes, n = reg_max (n + 1 bins).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gfl_repro.analysis import examples
from gfl_repro.engine.examples import (
    CANDIDATE_COLS,
    DETECTION_COLS,
    GT_TABLE_COLS,
    image_path,
    write_examples,
)
from gfl_repro.engine.runs import RunFolder
from tests.analysis.conftest import figures_script
from tests.engine.conftest import tiny_config


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
    left = table[table["side"] == "l"]  # the gt's left side, prior point to gx1, in strides
    np.testing.assert_allclose(left["gt_bin"], (left["px"] - left["gx1"]) / left["stride"])


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


# A detection at stride 64 with its prior point at (400, 300) and one-hot side distributions at
# bins l, t, r, b = 5, 3, 4, 2: its box is 400 - 5 * 64 = 80 .. 400 + 4 * 64 = 656 across; its
# gt lies 5.5 strides left (48), 3 up (108), 4 right (656) and 2.25 down (444) of the point.
ONE_HOT = {"l": 5, "t": 3, "r": 4, "b": 2}
HAND_DET = {"image_id": 7, "label": 0, "score": 0.9, "iou": 0.95, "top1_mean": 1.0,
            "stride": 64.0, "px": 400.0, "py": 300.0, "x1": 80.0, "y1": 108.0, "x2": 656.0,
            "y2": 428.0, "gx1": 48.0, "gy1": 108.0, "gx2": 656.0, "gy2": 444.0}  # fmt: skip


def _hand_fig1cd():
    dets = pd.DataFrame([HAND_DET])
    probs = np.zeros((1, 4, 17))  # (S, 4, n + 1), n = 16; sides in SIDES order
    for j, side in enumerate(examples.SIDES):
        probs[0, j, ONE_HOT[side]] = 1.0
    table = examples.distribution_table(dets, probs, {"sharp": 0}, "rule", ["square"])
    return table, examples.draw_fig1cd(table, {7: np.zeros((480, 720, 3), np.uint8)})


def test_fig1cd_draws_the_bins_in_stride_units_with_the_gt_side():
    table, fig = _hand_fig1cd()
    gt_bins = table.groupby("side")["gt_bin"].first()
    np.testing.assert_allclose(gt_bins[["l", "t", "r", "b"]], [5.5, 3, 4, 2.25])
    fig.canvas.draw()
    crop, *sides = fig.axes[:5]
    for ax, side in zip(sides, examples.SIDES, strict=True):
        bars = ax.patches  # (n + 1,) one bar per bin
        assert len(bars) == 17
        centers = [b.get_x() + b.get_width() / 2 for b in bars]
        np.testing.assert_allclose(centers, np.arange(17))
        (full,) = [c for c, b in zip(centers, bars, strict=True) if b.get_height() == 1.0]
        assert full == ONE_HOT[side]  # the bar of bin 5 stands at x = 5 stride units
        xs = {line.get_linestyle(): line.get_xdata()[0] for line in ax.lines}
        assert xs == {"-": ONE_HOT[side], "--": gt_bins[side]}  # the mean, the gt side
        np.testing.assert_allclose(ax.get_xlim(), (-0.6, 16.6))
        (top,) = ax.child_axes  # the same axis in pixels: a bin is 64 px
        np.testing.assert_allclose(top.get_xlim(), (-0.6 * 64, 16.6 * 64))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"predicted box", "ground-truth box", "ground-truth side"} <= set(labels)
    gt, pred = crop.patches  # the gt first, under the prediction, and wider than it
    assert (gt.get_x(), gt.get_width()) == (48 - 0.5, 656 - 48)
    assert (pred.get_x(), pred.get_width()) == (80 - 0.5, 656 - 80)
    assert gt.get_linewidth() > pred.get_linewidth() and pred.get_linestyle() != "-"


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
    written = table.groupby(["model", "stage"])["written"]
    assert (written.sum().loc[:, "before"] <= examples.TOP_SCORES).all()
    assert written.all().loc[:, "after"].all()  # every kept box has its score and IoU


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


def _image(objects: list[tuple[list[float], int]], size: int = 40) -> np.ndarray:
    """(size, size, 3) uint8: a checkerboard of 118 and 138 (median 128, std 10), each object's
    box (pixels) filled with its grey value."""
    image = np.where(np.indices((size, size)).sum(axis=0) % 2 == 0, 118, 138).astype(np.uint8)
    for (x1, y1, x2, y2), value in objects:
        image[int(y1) : int(y2), int(x1) : int(x2)] = value
    return np.repeat(image[..., None], 3, axis=2)


def _hand_run(root: Path, name: str, images: dict[int, list[tuple]]) -> Path:
    """A run folder whose examples hold, per image, its gts given as (box, score, grey value):
    each with a kept candidate on it of that score and a suppressed one shifted 1 px (IoU with
    it 9 / 11 for a 10 px box) of half the score, and the image with the boxes painted."""
    run = RunFolder(root / name)
    (run / RunFolder.EXAMPLES_IMAGES).mkdir(parents=True)
    cands, gt = [], []
    for i, objects in images.items():
        for m, (box, score, _) in enumerate(objects):
            x1, y1, x2, y2 = box
            cands += [[i, 0, score, *box, True], [i, 0, score / 2, x1 + 1, y1, x2 + 1, y2, False]]
            gt.append([i, m, 0, *box])
        pixels = _image([(b, v) for b, _, v in objects])
        Image.fromarray(pixels).save(image_path(run.path, i), quality=95)
    pd.DataFrame(cands, columns=CANDIDATE_COLS).to_csv(run / run.EXAMPLES_CANDIDATES, index=False)
    pd.DataFrame(gt, columns=GT_TABLE_COLS).to_csv(run / run.EXAMPLES_GT, index=False)
    pd.DataFrame(columns=DETECTION_COLS).to_csv(run / run.EXAMPLES_DETECTIONS, index=False)
    info = {"images": [{"image_id": i, "height": 40, "width": 40} for i in images],
            "class_names": ["square"], "box": "dirac", "iou_thr": 0.6}  # fmt: skip
    (run / run.EXAMPLES_INFO).write_text(json.dumps(info))
    return run.path


def _load(**paths: Path) -> dict[str, examples.Examples]:
    return {name: examples.load_examples(path) for name, path in paths.items()}


def test_contrast_by_hand():
    image = np.full((40, 40, 3), 130, np.uint8)
    image[10:30, 10:30] = 100  # a box 30 grey levels darker on a flat surround (std 0)
    assert examples.contrast(image, [10, 10, 30, 30]) == pytest.approx(30 * np.sqrt(3))
    assert np.isnan(examples.contrast(image, [0, 0, 40, 40]))  # no surround left


# image 1: small and clear; 2: the largest, but of the checkerboard's mean grey (no step from its
# surround); 3: large and clear, but a second gt overlaps it; 4: clear, alone and larger than
# image 1's: the reader's object.
CLEAR, FAINT = 0, 128
SCENE = {
    1: [([2, 2, 8, 8], 0.9, CLEAR)],
    2: [([5, 5, 35, 35], 0.9, FAINT)],
    3: [([4, 4, 24, 24], 0.9, CLEAR), ([20, 20, 36, 36], 0.9, CLEAR)],
    4: [([10, 10, 22, 22], 0.5, CLEAR)],
}


def test_fig7_chooses_the_largest_clear_lone_object_every_run_detects(tmp_path):
    runs = _load(GFLV1=_hand_run(tmp_path, "v1", SCENE), GFLV2=_hand_run(tmp_path, "v2", SCENE))
    pool = examples.gt_pool(runs, examples.shared_images(runs)).set_index(["image_id", "gt"])
    assert pool["alone"].to_dict() == {(1, 0): True, (2, 0): True, (3, 0): False,
                                       (3, 1): False, (4, 0): True}  # fmt: skip
    assert (pool["suppressed"] == 1).all()  # the shifted candidate, IoU 9 / 11 > 0.6
    assert pool.loc[(2, 0), "contrast"] < 3 < pool.loc[(4, 0), "contrast"]
    np.testing.assert_allclose(pool.loc[(4, 0), "side"], 12)
    image, gt, rule = examples.choose_nms_example(runs)
    assert (image, gt) == (4, 0) and rule.startswith("largest")
    # without images 1 and 4, none is clear and alone: the largest detected, image 2
    faint = {i: SCENE[i] for i in (2, 3)}
    runs = _load(GFLV1=_hand_run(tmp_path, "f1", faint), GFLV2=_hand_run(tmp_path, "f2", faint))
    image, gt, rule = examples.choose_nms_example(runs)
    assert (image, gt) == (2, 0) and rule.startswith("fallback, none unoccluded")
    assert examples.choose_nms_example(runs, image_id=3)[:2] == (3, 0)  # the larger of two


def test_fig7_falls_back_to_the_best_detected_and_needs_a_shared_val_set(tmp_path):
    weak = {1: [([5, 5, 15, 15], 0.2, CLEAR)], 2: [([5, 5, 15, 15], 0.1, CLEAR)]}
    strong = {1: [([5, 5, 15, 15], 0.9, CLEAR)], 2: [([5, 5, 15, 15], 0.7, CLEAR)]}
    runs = _load(GFLV1=_hand_run(tmp_path, "weak", weak), GFLV2=_hand_run(tmp_path, "ok", strong))
    image, gt, rule = examples.choose_nms_example(runs)  # the weakest run: 0.2 beats 0.1
    assert (image, gt) == (1, 0) and rule.startswith("fallback, none detected")
    other = _load(X=_hand_run(tmp_path, "other", {5: strong[1]}))
    with pytest.raises(ValueError, match="do not share a val set"):
        examples.choose_nms_example({**other, **runs})


def test_fig7_writes_each_kept_box_iou_with_its_gt(tmp_path):
    # gt 10..30 (area 400); kept box 10..30 x 10..26 (320): IoU 320 / 400 = 0.80. A second
    # candidate 2 px right (12..32 x 10..26) overlaps the kept one by 288 / 352 > 0.6, so NMS
    # removed it; its IoU with the gt is 18 * 16 / (400 + 320 - 288) = 288 / 432 = 0.67.
    for name in ("v1", "v2"):
        run = RunFolder(_hand_run(tmp_path, name, {1: [([10, 10, 30, 30], 0.9, CLEAR)]}))
        cands = [[1, 0, 0.9, 10, 10, 30, 26, True], [1, 0, 0.45, 12, 10, 32, 26, False]]
        pd.DataFrame(cands, columns=CANDIDATE_COLS).to_csv(
            run / run.EXAMPLES_CANDIDATES, index=False
        )
    runs = _load(GFLV1=tmp_path / "v1", GFLV2=tmp_path / "v2")
    table = examples.nms_table(runs, *examples.choose_nms_example(runs))
    fig = examples.draw_fig7(table, runs["GFLV2"].image(1))
    before, after = fig.axes[0], fig.axes[2]  # GFLV1's column: before NMS, then after
    assert [t.get_text() for t in before.texts] == ["0.90 | IoU 0.80", "0.45 | IoU 0.67"]
    assert [t.get_text() for t in after.texts] == ["0.90 | IoU 0.80"]
    assert after.get_title().endswith("kept: IoU 0.80 with the gt")
    assert before.get_title().endswith("best IoU 0.80, rank 0")
    np.testing.assert_allclose(table["iou_gt"], [0.8, 288 / 432, 0.8] * 2, rtol=1e-6)


# --- the script ---------------------------------------------------------------------------------


def test_script_runs_the_probe_where_missing_then_draws_or_says_why_not(runs, tmp_path):
    script = figures_script()
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
    written, skipped = figures_script().example_figures(probed, tmp_path, max_images=2)
    assert len(written) == 6 and skipped == []  # the examples of 4 images stand as they are
