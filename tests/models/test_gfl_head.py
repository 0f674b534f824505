"""The GFL head: init, shapes, the full loss against a direct re-computation, inference."""

import math

import numpy as np
import torch

from gfl_repro.build import build_model
from gfl_repro.config import ModelConfig, QualityConfig
from gfl_repro.models.box_coding import make_priors
from gfl_repro.models.heads.gfl import GFLHead, HeadOutput
from gfl_repro.models.postprocess import InferenceConfig
from gfl_repro.models.quality import DGQP
from gfl_repro.models.targets import Targets, batch_targets


def test_r50_coco_model_shapes_and_init():
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    seen = []
    model.head.gfl_cls.register_forward_hook(lambda m, i, o: seen.append(("cls", tuple(o.shape))))
    model.head.gfl_reg.register_forward_hook(lambda m, i, o: seen.append(("reg", tuple(o.shape))))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 800, 1216))
    sizes = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
    assert list(out.level_sizes) == sizes
    assert [s for k, s in seen if k == "cls"] == [(1, 80, h, w) for h, w in sizes]
    assert [s for k, s in seen if k == "reg"] == [(1, 68, h, w) for h, w in sizes]
    assert out.scores.shape == (1, 20267, 80) and out.reg.shape == (1, 20267, 68)
    assert out.reg.dtype == torch.float32
    assert math.isclose(model.head.gfl_cls.bias[0].item(), -4.59512, abs_tol=1e-5)
    # J = sigmoid(-4.595) * sigmoid(~0) = 0.01 * 0.5
    assert abs(out.scores.mean().item() - 0.005) < 5e-4
    assert sum(p.numel() for p in model.head.quality.parameters()) == 1409
    gflv1 = build_model(ModelConfig(quality=QualityConfig(kind="none")))
    assert gflv1.head.quality is None
    n_v1 = sum(p.numel() for p in gflv1.parameters())
    assert sum(p.numel() for p in model.parameters()) - n_v1 == 1409


def _tiny_head(quality: bool = True) -> GFLHead:
    torch.manual_seed(0)
    head = GFLHead(
        num_classes=3,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        reg_max=4,
        strides=(8, 16),
        gn_groups=4,
        quality=DGQP(reg_max=4, k=2, hidden=4) if quality else None,
    )
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return head


def _np_loss(out: HeadOutput, priors, tgt: Targets, n: int) -> dict[str, float]:
    scores = out.scores.detach().double().numpy()
    reg = out.reg.detach().double().numpy()
    pts, strides = priors.points.double().numpy(), priors.strides.double().numpy()
    labels, boxes = tgt.labels.numpy(), tgt.boxes.double().numpy()
    weights = tgt.label_weights.double().numpy()
    b, p, c = scores.shape
    log = lambda x: np.maximum(np.log(x), -100.0)  # noqa: E731
    qfl = bbox = dfl = avg = 0.0
    num_samples = sum(max(int((labels[i] < c).sum()), 1) for i in range(b))
    for i in range(b):
        for j in range(p):
            y = np.zeros(c)
            if labels[i, j] < c:
                s = strides[j]
                cx, cy = pts[j] / s
                logits = reg[i, j].reshape(4, n + 1)
                prob = np.exp(logits - logits.max(1, keepdims=True))
                prob /= prob.sum(1, keepdims=True)
                d = prob @ np.arange(n + 1)
                pred = np.array([cx - d[0], cy - d[1], cx + d[2], cy + d[3]])
                gt = boxes[i, j] / s
                iw = max(0, min(pred[2], gt[2]) - max(pred[0], gt[0]))
                ih = max(0, min(pred[3], gt[3]) - max(pred[1], gt[1]))
                inter = iw * ih
                area = lambda q: (q[2] - q[0]) * (q[3] - q[1])  # noqa: E731
                union = area(pred) + area(gt) - inter
                iou = inter / union
                ew = max(pred[2], gt[2]) - min(pred[0], gt[0])
                eh = max(pred[3], gt[3]) - min(pred[1], gt[1])
                giou = iou - (ew * eh - union) / (ew * eh)
                w = scores[i, j].max()
                y[labels[i, j]] = iou
                bbox += w * (1 - giou)
                t = np.clip([cx - gt[0], cy - gt[1], gt[2] - cx, gt[3] - cy], 0, n - 0.1)
                for side in range(4):
                    lse = np.log(np.exp(logits[side]).sum())
                    lo = int(np.floor(t[side]))
                    ce_lo, ce_hi = lse - logits[side, lo], lse - logits[side, lo + 1]
                    dfl += w * (ce_lo * (lo + 1 - t[side]) + ce_hi * (t[side] - lo)) / 4
                avg += w
            jj = scores[i, j]
            bce = -(y * log(jj) + (1 - y) * log(1 - jj))
            qfl += weights[i, j] * (bce * np.abs(y - jj) ** 2).sum()
    return {
        "loss_qfl": qfl / num_samples,
        "loss_bbox": 2.0 * bbox / avg,
        "loss_dfl": 0.25 * dfl / avg,
    }


def _tiny_batch(head: GFLHead):
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    out = head(feats)
    priors = make_priors(list(out.level_sizes), [8, 16], anchor_scale=4)
    targets = [
        {
            "boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 2.0, 60.0, 50.0]]),
            "labels": torch.tensor([0, 2]),
            "pad_shape": (64, 64),
        },
        {
            "boxes": torch.tensor([[2.0, 28.0, 30.0, 62.0]]),
            "labels": torch.tensor([1]),
            "pad_shape": (64, 32),
        },  # narrower image: the right half of its priors is padding
    ]
    tgt = batch_targets(priors, targets, num_classes=3)
    return out, priors, tgt


def test_full_loss_equals_direct_recomputation():
    for quality in (True, False):
        head = _tiny_head(quality)
        out, priors, tgt = _tiny_batch(head)
        assert tgt.num_pos.min() > 0
        assert (tgt.label_weights[1].reshape(-1)[:64].reshape(8, 8)[:, 4:] == 0).all()
        got = head.loss(out, priors, tgt)
        ref = _np_loss(out, priors, tgt, n=4)
        for k in ref:
            assert math.isclose(got[k].item(), ref[k], rel_tol=1e-4), (k, got[k].item(), ref[k])


def test_no_positive_batch_gives_zero_box_losses_and_finite_grads():
    head = _tiny_head()
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    out = head(feats)
    priors = make_priors(list(out.level_sizes), [8, 16])
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.long),
        "pad_shape": (64, 64),
    }
    tgt = batch_targets(priors, [empty, empty], num_classes=3)
    losses = head.loss(out, priors, tgt)
    assert losses["loss_bbox"].item() == 0 and losses["loss_dfl"].item() == 0
    assert math.isfinite(losses["loss_qfl"].item()) and losses["loss_qfl"].item() > 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
    # num_total_samples is max(num_pos, 1) per image: 2 here
    scores = out.scores.detach()
    direct = (-(1 - scores).log().clamp(min=-100) * scores**2).sum() / 2
    assert math.isclose(losses["loss_qfl"].item(), direct.item(), rel_tol=1e-5)


def test_model_loss_with_an_empty_image_beside_a_full_one():
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=4, backbone="mini", fpn_channels=16)
    cfg = ModelConfig(
        num_classes=4,
        backbone="mini",
        fpn_channels=16,
        head=type(cfg.head)(feat_channels=16, stacked_convs=1, gn_groups=4),
    )
    model = build_model(cfg)
    targets = [
        {
            "boxes": torch.tensor([[8.0, 8.0, 40.0, 50.0]]),
            "labels": torch.tensor([2]),
            "pad_shape": (64, 64),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.long),
            "pad_shape": (64, 64),
        },
    ]
    losses = model.loss(torch.randn(2, 3, 64, 64), targets)
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_bbox"].item() > 0
    sum(losses.values()).backward()


def _onehot(bins: list[int], n: int = 4) -> torch.Tensor:
    logits = torch.zeros(4, n + 1)
    for side, b in enumerate(bins):
        logits[side, b] = 50.0
    return logits.reshape(-1)


def test_inference_on_fixed_head_outputs():
    head = GFLHead(
        num_classes=2,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        reg_max=4,
        strides=(8,),
        gn_groups=4,
    )
    priors = make_priors([(2, 2)], [8])  # centres (0,0) (8,0) (0,8) (8,8)
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.3, 0.7], [0.04, 0.04]])[None]
    reg = torch.stack(
        [
            _onehot([0, 0, 2, 2]),  # (0,0) -> [0, 0, 16, 16]
            _onehot([1, 0, 1, 2]),  # (8,0) -> [0, 0, 16, 16]: same box, lower score, suppressed
            _onehot([0, 0, 1, 2]),  # (0,8) -> [0, 8, 8, 24] clipped to [0, 8, 8, 20]
            _onehot([1, 1, 1, 1]),  # below the score threshold
        ]
    )[None]
    out = HeadOutput(scores, reg, None, ((2, 2),))
    meta = {"img_shape": (20, 20), "scale_factor": [2.0, 2.0, 2.0, 2.0]}
    res = head.predict(out, priors, [meta], InferenceConfig())[0]
    # The (0,8) box is detected under both classes: class 1 at .7 and class 0 at .3, whose IoU
    # with the .9 box is 64 / 288 = .22 < .6 so it survives class-aware NMS.
    assert torch.allclose(res["scores"], torch.tensor([0.9, 0.7, 0.3]))
    assert res["labels"].tolist() == [0, 1, 0]
    expected = torch.tensor([[0, 0, 16, 16], [0, 8, 8, 20], [0, 8, 8, 20]], dtype=torch.float32) / 2
    assert torch.allclose(res["boxes"], expected, atol=1e-4)
    # nms_pre keeps the best location per level before any threshold; max_per_img caps the rest
    res = head.predict(out, priors, [meta], InferenceConfig(nms_pre=1))[0]
    assert res["scores"].tolist() == [0.8999999761581421]
    res = head.predict(out, priors, [meta], InferenceConfig(max_per_img=2))[0]
    assert res["labels"].tolist() == [0, 1]


def test_composed_and_dirac_heads():
    from gfl_repro.models.quality import ComposedStatistics

    torch.manual_seed(0)
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    composed = GFLHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1, reg_max=4,
                       strides=(8, 16), gn_groups=4,
                       composed=ComposedStatistics(reg_max=4, k=2, dim=6))  # fmt: skip
    assert composed.gfl_cls.in_channels == 8 + 6
    out = composed(feats)
    assert out.quality is None and out.scores.shape == (2, 80, 3)
    assert (out.scores >= 0).all() and (out.scores <= 1).all()
    dirac = GFLHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1, reg_max=4,
                    strides=(8, 16), gn_groups=4, box="dirac")  # fmt: skip
    out = dirac(feats)
    assert out.reg.shape == (2, 80, 4) and (out.reg >= 0).all()
    priors = make_priors(list(out.level_sizes), [8, 16], anchor_scale=4)
    image = {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1]),
             "pad_shape": (64, 64)}  # fmt: skip
    tgt = batch_targets(priors, [image, image], 3)
    losses = dirac.loss(out, priors, tgt)
    assert set(losses) == {"loss_qfl", "loss_bbox"}  # no distribution, no DFL
    sum(losses.values()).backward()
