"""The probe behind Figs. 1c/d and 7 on tiny trained runs: what it writes into the run folder is
what the model predicts, and it runs again only when its outputs are missing or stale; and the
prior indices that NMS hands back for it.

Legend: Q boxes, C classes, S detections, n = reg_max (n + 1 bins).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gfl_repro.engine import examples
from gfl_repro.engine.checkpoint import latest_checkpoint
from gfl_repro.engine.data import val_loader
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.runs import RunFolder
from gfl_repro.models.postprocess import InferenceConfig, multiclass_nms
from tests.analysis.conftest import runs  # noqa: F401 (fixture)
from tests.engine.conftest import tiny_config


@pytest.fixture(scope="module")
def probed(runs, tmp_path_factory) -> Path:  # noqa: F811
    """A copy of the tiny trained runs, gflv1/seed0 and gflv2/seed0 each with its examples."""
    root = tmp_path_factory.mktemp("probed") / "mini"
    shutil.copytree(runs, root)
    for name in ("gflv1", "gflv2"):
        examples.write_examples(root / name / "seed0")
    return root


def _final_detections(run: Path) -> dict[int, list[tuple]]:
    """Per image id, the (x1, y1, x2, y2, score, label) of ``Detector.predict``'s detections."""
    cfg, model = examples.load_run_model(run)
    found = {}
    for images, targets in val_loader(cfg.data, DistInfo()):
        for t, det in zip(targets, model.predict(images, targets), strict=True):
            rows = torch.cat([det["boxes"], det["scores"][:, None], det["labels"][:, None]], 1)
            found[int(t["image_id"])] = rows.tolist()
    return found


def _rows(table: pd.DataFrame) -> list[tuple]:
    return [tuple(r) for r in table[[*examples.BOX_COLS, "score", "label"]].to_numpy(float)]


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


# --- the probe ----------------------------------------------------------------------------------


def test_probe_writes_every_file_of_the_run_folder(probed):
    run = RunFolder(probed / "gflv2" / "seed0")
    info = run.read(run.EXAMPLES_INFO)
    cfg, _ = examples.load_run_model(run.path)
    ids = [r.image_id for r in val_loader(cfg.data, DistInfo()).dataset.records]
    assert [im["image_id"] for im in info["images"]] == ids  # all 4, in loader order
    assert info["max_images"] == examples.EXAMPLE_IMAGES and info["box"] == "distribution"
    assert info["checkpoint"] == latest_checkpoint(run.path).name
    for im in info["images"]:
        with Image.open(examples.image_path(run.path, im["image_id"])) as image:
            assert image.size == (im["width"], im["height"])  # resized: 64 x 64 here
    dets = pd.read_csv(run / run.EXAMPLES_DETECTIONS)
    with np.load(run / run.EXAMPLES_DISTRIBUTIONS) as z:
        prob = z["probability"]
    n_bins = tiny_config("x").model.head.reg_max + 1
    assert len(dets) > 0 and prob.shape == (len(dets), 4, n_bins)
    np.testing.assert_allclose(prob.sum(axis=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(prob.max(axis=2).mean(axis=1), dets["top1_mean"], atol=1e-6)
    gt = pd.read_csv(run / run.EXAMPLES_GT)
    assert list(gt.columns) == examples.GT_TABLE_COLS and set(gt["image_id"]) <= set(ids)


def test_detections_are_the_models_final_detections_and_the_kept_candidates(probed):
    """Row for row, detections.csv holds ``Detector.predict``'s detections (the val images are
    64 px and test_scale is 64, so the resized frame is the original one), and candidates.csv
    keeps exactly those."""
    for name in ("gflv1", "gflv2"):
        run = RunFolder(probed / name / "seed0")
        found = _final_detections(run.path)
        dets = pd.read_csv(run / run.EXAMPLES_DETECTIONS)
        cands = pd.read_csv(run / run.EXAMPLES_CANDIDATES)
        for image_id, expected in found.items():
            got = _rows(dets[dets["image_id"] == image_id])
            np.testing.assert_allclose(sorted(got), sorted(map(tuple, expected)), atol=1e-4)
            kept = cands[(cands["image_id"] == image_id) & cands["kept"]]
            np.testing.assert_allclose(sorted(_rows(kept)), sorted(got), atol=1e-6)


def test_distributions_decode_to_their_detection(probed):
    """Each detection's distributions are those of the prior that produced its box: their
    expectations from the prior point give the box (clipped to the 64-px image)."""
    run = RunFolder(probed / "gflv2" / "seed0")
    dets = pd.read_csv(run / run.EXAMPLES_DETECTIONS)
    with np.load(run / run.EXAMPLES_DISTRIBUTIONS) as z:
        mean = (z["probability"] * np.arange(z["probability"].shape[2])).sum(axis=2)  # (S, 4)
    dist = mean * dets[["stride"]].to_numpy()  # (S, 4) pixels: l, t, r, b
    px, py = dets["px"].to_numpy(), dets["py"].to_numpy()
    boxes = np.stack([px - dist[:, 0], py - dist[:, 1], px + dist[:, 2], py + dist[:, 3]], 1)
    np.testing.assert_allclose(np.clip(boxes, 0, 64), dets[examples.BOX_COLS], atol=1e-3)


def test_probe_runs_again_only_when_missing_or_stale(probed, tmp_path):
    run = RunFolder(tmp_path / "run")
    shutil.copytree(probed / "gflv2" / "seed0", run.path)
    info = run / run.EXAMPLES_INFO
    stamp, first = info.stat().st_mtime_ns, run.read(run.EXAMPLES_INFO)["images"][0]
    assert examples.ensure_examples(run.path) == info and info.stat().st_mtime_ns == stamp
    examples.ensure_examples(run.path, max_images=1)  # another number of images: runs again
    assert json.loads(info.read_text())["images"] == [first]
    for ckpt in run.path.glob("iter_*.pth"):  # copied back without checkpoints: kept as is
        ckpt.unlink()
    stamp = info.stat().st_mtime_ns
    assert examples.ensure_examples(run.path) == info and info.stat().st_mtime_ns == stamp
