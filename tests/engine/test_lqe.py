"""LQE dumps of tiny trained models, checked against numpy recomputations from the raw outputs.

Legend: B images, P priors over all levels, C classes, n = reg_max, M gt boxes.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from gfl_repro.build import build_model
from gfl_repro.engine.checkpoint import latest_checkpoint, load_checkpoint
from gfl_repro.engine.data import val_loader
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.lqe import load_lqe, lqe_dump, lqe_summary, save_lqe
from gfl_repro.engine.train import train_run
from gfl_repro.models.postprocess import InferenceConfig
from gfl_repro.models.targets import batch_targets
from tests.engine.conftest import tiny_config, tiny_root  # noqa: F401 (fixture)

SIDES = ("l", "t", "r", "b")


def _with_quality(cfg, kind: str):
    quality = dataclasses.replace(cfg.model.quality, kind=kind)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, quality=quality))


@pytest.fixture(scope="module", params=["dgqp", "none"], ids=["gflv2", "gflv1"])
def dumped(request, tiny_root, tmp_path_factory):  # noqa: F811
    """A tiny run trained 3 iterations, its val batches, the raw head outputs and gfl_cls
    logits captured by hooks during the dump, and the dump."""
    cfg = _with_quality(tiny_config(tiny_root, max_iters=3), request.param)
    run = tmp_path_factory.mktemp(request.param)
    train_run(cfg, run, seed=0)
    model = build_model(cfg.model)
    model.load_state_dict(load_checkpoint(latest_checkpoint(run))["state_dict"])
    batches = list(val_loader(cfg.data, DistInfo()))
    outs, logits = [], []
    hooks = [
        model.head.register_forward_hook(lambda m, i, o: outs.append(o)),
        model.head.gfl_cls.register_forward_hook(lambda m, i, o: logits.append(o)),
    ]
    df = lqe_dump(model, batches)
    for h in hooks:
        h.remove()
    levels = len(model.strides)
    logits = [logits[i : i + levels] for i in range(0, len(logits), levels)]  # per batch
    return {"model": model, "batches": batches, "outs": outs, "logits": logits, "df": df,
            "run": run, "kind": request.param}  # fmt: skip


def _locate(d, image_id: int) -> tuple[int, int]:
    """(batch index, index in the batch) of an image."""
    for k, (_, targets) in enumerate(d["batches"]):
        for i, t in enumerate(targets):
            if int(t["image_id"]) == image_id:
                return k, i
    raise KeyError(image_id)


def _prior(out, level: int, location: int) -> int:
    sizes = [h * w for h, w in out.level_sizes]
    return sum(sizes[:level]) + location


def test_one_row_per_positive(dumped):
    model, total = dumped["model"], 0
    with torch.no_grad():
        for images, targets in dumped["batches"]:
            out = model(images)
            tgt = batch_targets(model.priors(out), targets, model.head.num_classes, model.assigner)
            total += int(tgt.num_pos.sum())
    df = dumped["df"]
    assert total > 0 and len(df) == total
    assert not df.duplicated(["image_id", "level", "location"]).any()


def _numpy_iou(a: np.ndarray, b: np.ndarray) -> float:
    wh = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None)
    inter = wh[0] * wh[1]
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / max(union, 1e-6))


def test_iou_is_the_decoded_box_against_its_gt(dumped):
    df, n = dumped["df"], dumped["model"].head.reg_max
    assert df["iou"].between(0, 1).all()
    for row in df.iloc[:: max(1, len(df) // 12)].itertuples():
        k, i = _locate(dumped, int(row.image_id))
        out, target = dumped["outs"][k], dumped["batches"][k][1][i]
        h, w = out.level_sizes[row.level]
        stride = dumped["model"].strides[row.level]
        reg = out.reg[i, _prior(out, row.level, row.location)].numpy().reshape(4, n + 1)
        prob = np.exp(reg - reg.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)  # (4, n+1)
        ltrb = prob @ np.arange(n + 1)  # (4,) stride units
        cx, cy = row.location % w, row.location // w  # prior centre in stride units
        box = np.array([cx - ltrb[0], cy - ltrb[1], cx + ltrb[2], cy + ltrb[3]])
        same = target["labels"].numpy() == row.label
        gts = target["boxes"].numpy()[same] / stride  # (M', 4) stride units
        ious = [_numpy_iou(box, g) for g in gts]
        assert min(abs(v - row.iou) for v in ious) < 1e-5  # its assigned gt is one of them


def test_joint_is_cls_times_quality_at_the_gt_class(dumped):
    df = dumped["df"]
    for row in df.iloc[:: max(1, len(df) // 12)].itertuples():
        k, i = _locate(dumped, int(row.image_id))
        logit = dumped["logits"][k][row.level][i, row.label].reshape(-1)[row.location]
        cls = torch.sigmoid(logit).item()
        if dumped["kind"] == "dgqp":
            assert 0 < row.quality < 1
            assert row.joint == pytest.approx(cls * row.quality, rel=1e-5)
        else:
            assert np.isnan(row.quality)
            assert row.joint == pytest.approx(cls, rel=1e-5)


def test_top_label_is_the_class_of_highest_classification_logit(dumped):
    """J = sigmoid(logit) x I with one I per prior, so the class J ranks first is the class of
    the highest gfl_cls logit at that prior, in GFLV1 and GFLV2 alike."""
    df = dumped["df"]
    for row in df.iloc[:: max(1, len(df) // 12)].itertuples():
        k, i = _locate(dumped, int(row.image_id))
        logits = dumped["logits"][k][row.level][i].flatten(1)[:, row.location]  # (C,)
        assert row.top_label == int(np.argmax(logits.numpy()))


def test_class_first_is_the_share_of_samples_whose_label_ranks_first():
    frame = pd.DataFrame({"label": [0, 1, 2, 3], "top_label": [0, 1, 0, 0], "joint": [0.5] * 4,
                          "quality": [0.5] * 4, "iou": [0.1, 0.2, 0.3, 0.4]})  # fmt: skip
    assert lqe_summary(frame)["class_first"] == 0.5
    assert np.isnan(lqe_summary(frame.drop(columns="top_label"))["class_first"])


def test_topk_columns_are_sorted_side_statistics(dumped):
    df = dumped["df"]
    for s in SIDES:
        tops = df[[f"top{j}_{s}" for j in range(1, 5)]].to_numpy()  # (rows, 4)
        assert (np.diff(tops, axis=1) <= 1e-7).all() and (tops > 0).all()
        assert np.allclose(df[f"topk_mean_{s}"], tops.mean(axis=1), atol=1e-6)
    top1 = df[[f"top1_{s}" for s in SIDES]].to_numpy().mean(axis=1)
    assert np.allclose(df["top1_mean"], top1, atol=1e-6)


def test_save_and_load_round_trip(dumped, tmp_path):
    df = dumped["df"]
    path = save_lqe(df, tmp_path)
    assert path.name == "lqe.npz"
    back = load_lqe(tmp_path)
    assert list(back.columns) == list(df.columns)
    assert back.equals(df)


def test_detections_protocol(dumped):
    model = dumped["model"]
    model.inference = InferenceConfig(score_thr=0.0, max_per_img=20)  # the tiny model is unsure
    df = lqe_dump(model, dumped["batches"], protocol="detections")
    images = sum(len(t) for _, t in dumped["batches"])
    assert 0 < len(df) <= 20 * images
    assert df["iou"].between(0, 1).all()
    assert (df.groupby("image_id").size() <= 20).all()


def test_dirac_box_gives_nan_distribution_columns(tiny_root):  # noqa: F811
    cfg = tiny_config(tiny_root)
    head = dataclasses.replace(cfg.model.head, box="dirac")
    quality = dataclasses.replace(cfg.model.quality, kind="none")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=head, quality=quality))
    batches = list(val_loader(cfg.data, DistInfo()))[:1]
    df = lqe_dump(build_model(cfg.model), batches)
    assert len(df) > 0 and df["iou"].between(0, 1).all()
    assert df["top1_mean"].isna().all() and df["top4_b"].isna().all()


def test_unknown_protocol_is_an_error(dumped):
    with pytest.raises(ValueError, match="protocol"):
        lqe_dump(dumped["model"], [], protocol="all")


def test_lqe_command_prints_the_pcc_and_how_often_the_gt_class_ranks_first(dumped, capsys):
    from gfl_repro.cli import main

    assert main(["lqe", str(dumped["run"])]) == 0
    frame = load_lqe(dumped["run"])  # written again by the command, from the last checkpoint
    share = 100 * (frame["top_label"] == frame["label"]).mean()
    assert f"gt class first at {share:.1f} % of them" in capsys.readouterr().out
