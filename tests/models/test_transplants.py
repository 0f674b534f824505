"""Table 5's baselines (RetinaNet, FoveaBox, FCOS, ATSS) and their +GFLV2 transplants: priors with
several anchors, the assigners on hand-made cases, the losses on hand-worked numbers, each head's
shapes, loss, backward and inference, and each detector end to end on a tiny model."""

import math
from functools import partial

import pytest
import torch

from gfl_repro.models.assigners import (
    IGNORE,
    atss_assign,
    fcos_assign,
    fovea_assign,
    max_iou_assign,
)
from gfl_repro.models.backbone import MiniBackbone
from gfl_repro.models.box_coding import bbox2delta, delta2bbox, make_priors, valid_mask
from gfl_repro.models.detector import Detector
from gfl_repro.models.fpn import FPN
from gfl_repro.models.heads.fcos import CenternessOutput, FCOSHead, atss_head
from gfl_repro.models.heads.fovea import FoveaHead, FoveaOutput
from gfl_repro.models.heads.gfl import GFLHead
from gfl_repro.models.heads.retina import RetinaHead, RetinaOutput
from gfl_repro.models.losses import centerness_target, sigmoid_focal_loss
from gfl_repro.models.postprocess import InferenceConfig
from gfl_repro.models.quality import DGQP
from gfl_repro.models.targets import Targets, batch_targets, image_targets

LN2 = math.log(2.0)

# ---------------------------------------------------------------- priors


def test_retinanet_priors_nine_anchors_per_location():
    pri = make_priors([(2, 3)], [8], anchor_scale=4, ratios=(0.5, 1.0, 2.0), scales_per_octave=3)
    assert pri.num_anchors == 9 and pri.num_per_level == [54]
    assert pri.anchors.shape == (54, 4) and pri.points.shape == (54, 2)
    # Scales 4 * 2^(i/3) = 4, 5.0397, 6.3496; ratio r = h / w: w = 8 s / sqrt(r), h = 8 s sqrt(r);
    # ratio-major, scale-minor; centred on (0, 0). Half-sizes (w / 2, h / 2):
    halves = [
        (22.6274, 11.3137), (28.5088, 14.2544), (35.9188, 17.9594),  # r = 0.5
        (16.0, 16.0), (20.1587, 20.1587), (25.3984, 25.3984),  # r = 1: scale 4 -> side 32
        (11.3137, 22.6274), (14.2544, 28.5088), (17.9594, 35.9188),  # r = 2
    ]  # fmt: skip
    expected = torch.tensor([[-w, -h, w, h] for w, h in halves])
    assert torch.allclose(pri.anchors[:9], expected, atol=1e-3)
    assert pri.anchors[3].tolist() == [-16.0, -16.0, 16.0, 16.0]
    # Location-major: anchors 9..17 belong to location (row 0, col 1), centre (8, 0);
    # 27..35 to (row 1, col 0), centre (0, 8).
    assert torch.allclose(pri.anchors[9:18], expected + torch.tensor([8.0, 0, 8, 0]), atol=1e-3)
    assert torch.allclose(pri.anchors[27:36], expected + torch.tensor([0, 8.0, 0, 8]), atol=1e-3)
    assert (pri.points[9:18] == torch.tensor([8.0, 0.0])).all()
    assert (pri.strides == 8).all()
    # A padded shape of 8 x 8 leaves only location (0, 0) valid: its 9 anchors.
    assert valid_mask(pri, (8, 8)).nonzero().squeeze(1).tolist() == list(range(9))
    # 16 x 9: ceil(16 / 8) = 2 rows and ceil(9 / 8) = 2 of the 3 columns, all 9 anchors of each.
    mask = valid_mask(pri, (16, 9)).reshape(2, 3, 9)  # (rows, cols, A)
    assert mask[:, :2].all() and not mask[:, 2].any()


def test_one_anchor_per_location_gives_the_old_priors():
    sizes, strides = [(3, 4), (2, 2)], [8, 16]
    for scale in (8.0, 5.0):
        pri = make_priors(sizes, strides, scale)
        pts, st = [], []
        for (h, w), s in zip(sizes, strides, strict=True):
            ys, xs = torch.meshgrid(torch.arange(h) * s, torch.arange(w) * s, indexing="ij")
            pts.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float())
            st.append(torch.full((h * w,), float(s)))
        pts, st = torch.cat(pts), torch.cat(st)
        half = 0.5 * scale * st[:, None]
        assert torch.equal(pri.points, pts) and torch.equal(pri.strides, st)
        assert torch.equal(pri.anchors, torch.cat([pts - half, pts + half], 1))
        assert pri.num_anchors == 1 and pri.num_per_level == [12, 4]
    # FCOS / FoveaBox points sit at cell centres: (x + 0.5) * stride.
    pri = make_priors(sizes, strides, center_offset=0.5)
    assert pri.points[0].tolist() == [4.0, 4.0] and pri.points[12].tolist() == [8.0, 8.0]
    assert pri.levels.tolist() == [0] * 12 + [1] * 4


# ---------------------------------------------------------------- assigners


def test_max_iou_thresholds_and_the_gt_max_rule():
    # 10 x 10 anchors; a box shifted by d along x has IoU (10 - d) / (10 + d) with the original.
    anchors = torch.tensor(
        [
            [0, 0, 10, 10],  # a0: IoU 1 with g0 -> positive
            [3, 0, 13, 10],  # a1: d = 3, IoU 7/13 = .538 >= .5 -> positive
            [4, 0, 14, 10],  # a2: d = 4, IoU 6/14 = .429 in [.4, .5) -> ignored
            [5, 0, 15, 10],  # a3: d = 5, IoU 5/15 = .333 < .4 -> negative
            [50, 0, 60, 10],  # a4: IoU 5/15 = .333 with g1, which is g1's best -> g1
            [60, 0, 70, 10],  # a5: the same IoU: a tie, every best anchor takes g1
            [0, 0, 10, 10],  # a6: IoU 1 with g0 but invalid -> -1
        ],
        dtype=torch.float32,
    )
    valid = torch.tensor([True] * 6 + [False])
    gts = torch.tensor([[0.0, 0, 10, 10], [55, 0, 65, 10]])
    assigned = max_iou_assign(anchors, [7], gts, valid)
    assert assigned.tolist() == [0, 0, IGNORE, -1, 1, 1, -1]
    # With min_pos_iou .4, g1's best IoU (.333) is too low for the gt-max rule.
    assigned = max_iou_assign(anchors, [7], gts, valid, min_pos_iou=0.4)
    assert assigned.tolist() == [0, 0, IGNORE, -1, -1, -1, -1]
    # The gt-max rule over-rides the thresholds: g1 [-2, 0, 6, 10] has its best IoU with a0,
    # 60 / (100 + 80 - 60) = .5 (a1: 30 / 150 = .2), so a0 goes to g1 although its IoU with g0
    # is 1: gts are visited in order and the later one wins its best anchors.
    gts = torch.tensor([[0.0, 0, 10, 10], [-2, 0, 6, 10]])
    assert max_iou_assign(anchors, [7], gts, valid).tolist() == [1, 0, IGNORE, -1, -1, -1, -1]
    assert max_iou_assign(anchors, [7], torch.zeros(0, 4), valid).tolist() == [-1] * 7


def test_ignored_priors_are_background_with_zero_weight():
    # Stride 5, anchor side 10: anchors [-5, 5], [0, 10], [5, 15], [10, 20] in x, [-5, 5] in y.
    pri = make_priors([(1, 4)], [5], anchor_scale=2.0)
    # gt [1, -5, 11, 5]: a0 inter 4 -> 40 / 160 = .25 negative; a1 9 / 11 = .818 positive;
    # a2 inter 6 -> 60 / 140 = .429 ignored; a3 inter 1 -> 10 / 190 = .05 negative.
    gts = torch.tensor([[1.0, -5.0, 11.0, 5.0]])
    labels, boxes, weights = image_targets(pri, gts, torch.tensor([2]), (10, 20), 3, max_iou_assign)
    assert labels.tolist() == [3, 2, 3, 3]  # the ignored prior is background ...
    assert weights.tolist() == [1.0, 1.0, 0.0, 1.0]  # ... with no classification loss
    assert boxes[1].tolist() == [1.0, -5.0, 11.0, 5.0] and (boxes[2] == 0).all()
    # ATSS never ignores: its label weights are the valid mask as before.
    _, _, weights = image_targets(pri, gts, torch.tensor([2]), (10, 20), 3, atss_assign)
    assert weights.tolist() == [1.0] * 4


def _grid(assigned, start, h, w):
    return assigned[start : start + h * w].reshape(h, w)


def test_fcos_ranges_centre_sampling_and_smallest_area():
    # 64 x 64 image, strides 8 (8 x 8, points 4, 12, ..., 60) and 16 (4 x 4, points 8 .. 56).
    pri = make_priors([(8, 8), (4, 4)], [8, 16], center_offset=0.5)
    valid = torch.ones(80, dtype=torch.bool)
    assign = partial(fcos_assign, strides=(8, 16), regress_ranges=((-1, 32), (32, 1e8)))
    gts = torch.tensor(
        [[0.0, 0, 64, 64], [0, 0, 16, 16], [8, 8, 56, 56]]  # areas 4096, 256, 2304
    )
    expected0 = torch.full((8, 8), -1)
    expected0[:2, :2] = 1  # g1: points 4, 12 inside, largest side distance 12 <= 32
    # g2 at stride 8: largest side <= 32 needs 24 <= x <= 40: points 28, 36 (with sampling its
    # centre box 32 +- 12 = [20, 44] holds the same ones). g0 always has l + r = 64 -> > 32.
    expected0[3:5, 3:5] = 2
    expected1 = torch.full((4, 4), -1)
    # Stride 16, radius 24: g0's and g2's centre boxes are [8, 56]; strictly inside: 24, 40.
    # Both reach >= 32 (g2 at (24, 24): l = 16, r = 32, the range's inclusive lower end):
    # the smaller g2 wins. g1's centre box [0, 16] holds 8, whose largest side 8 < 32.
    expected1[1:3, 1:3] = 2
    got = assign(pri.anchors, pri.num_per_level, gts, valid)
    assert torch.equal(_grid(got, 0, 8, 8), expected0)
    assert torch.equal(_grid(got, 64, 4, 4), expected1)
    # Without centre sampling g0 also takes every other stride-16 point (all inside it, l + r
    # = 64 so the largest side is >= 32); stride 8 is unchanged.
    got = assign(pri.anchors, pri.num_per_level, gts, valid, center_sampling=False)
    expected1[expected1 == -1] = 0
    assert torch.equal(_grid(got, 0, 8, 8), expected0)
    assert torch.equal(_grid(got, 64, 4, 4), expected1)
    # Equal areas: [0, 0, 16, 16] and [4, 4, 20, 20] (256 each) share only the point (12, 12)
    # (the second's centre box, 12 +- 12 clipped to it, is [4, 20]: only 12 strictly inside);
    # the lower index wins whichever order they come in.
    for pair in ([[0.0, 0, 16, 16], [4, 4, 20, 20]], [[4.0, 4, 20, 20], [0, 0, 16, 16]]):
        got = assign(pri.anchors, pri.num_per_level, torch.tensor(pair), valid)
        assert got[1 * 8 + 1].item() == 0
    with pytest.raises(ValueError, match="strides has 5 levels"):
        fcos_assign(pri.anchors, pri.num_per_level, gts, valid)


def test_fovea_scale_ranges_and_shrunk_region():
    pri = make_priors([(8, 8), (4, 4)], [8, 16], center_offset=0.5)
    valid = torch.ones(80, dtype=torch.bool)
    assign = partial(fovea_assign, scale_ranges=((1, 32), (16, 64)), sigma=0.4)
    gts = torch.tensor(
        [
            [0.0, 0, 60, 60],  # sqrt(area) 60: stride 16 only
            [16, 16, 36, 36],  # 20: both levels
            [40, 0, 60, 24],  # sqrt(480) = 21.9: both levels
        ]
    )
    got = assign(pri.anchors, pri.num_per_level, gts, valid)
    expected0 = torch.full((8, 8), -1)
    # g1's fovea: centre (26, 26) +- 0.4 * 20 / 2 = 4 -> [22, 30]: the point 28 -> (28, 28).
    expected0[3, 3] = 1
    # g2's fovea: x 50 +- 4 = [46, 54] -> 52; y 12 +- 4.8 = [7.2, 16.8] -> 12: (52, 12).
    expected0[1, 6] = 2
    # g0's fovea [18, 42] holds 9 stride-8 points, but 60 is outside that level's range.
    expected1 = torch.full((4, 4), -1)
    # Stride 16: g0's fovea [18, 42] holds 24 and 40; g1's [22, 30] holds 24, so (24, 24) goes
    # to the smaller g1; g2's x range [46, 54] holds none of 8, 24, 40, 56.
    expected1[1:3, 1:3] = 0
    expected1[1, 1] = 1
    assert torch.equal(_grid(got, 0, 8, 8), expected0)
    assert torch.equal(_grid(got, 64, 4, 4), expected1)
    # The fovea's edges are included: [6, 6, 26, 26] has fovea 16 +- 4 = [12, 20].
    got = assign(pri.anchors, pri.num_per_level, torch.tensor([[6.0, 6, 26, 26]]), valid)
    assert _grid(got, 0, 8, 8)[1:3, 1:3].eq(0).all() and (got >= 0).sum() == 4
    assert (assign(pri.anchors, pri.num_per_level, gts, ~valid) == -1).all()


# ---------------------------------------------------------------- losses and box coding


def test_focal_loss_and_centerness_on_hand_numbers():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # p = (.5, .75), (.5, .5)
    labels = torch.tensor([1, 2])  # class 1; background (C = 2)
    got = sigmoid_focal_loss(logits, labels)
    # Row 0: class 0 negative: .75 * .5^2 * ln 2 = .129965; class 1 positive: .25 * .25^2 *
    # -ln .75 = .004495. Row 1: two negatives at p = .5: 2 * .129965.
    assert torch.allclose(got, torch.tensor([0.129965 + 0.004495, 2 * 0.129965]), atol=1e-6)
    # (4, 4) in [0, 0, 16, 8]: l 4, r 12, t 4, b 4 -> sqrt(4 / 12 * 1) = .57735
    ctr = centerness_target(
        torch.tensor([[4.0, 4.0], [8.0, 4.0]]), torch.tensor([[0.0, 0, 16, 8]] * 2)
    )
    assert torch.allclose(ctr, torch.tensor([0.57735, 1.0]), atol=1e-5)


def test_delta_coder_on_hand_numbers():
    anchor = torch.tensor([[0.0, 0, 10, 20]])  # centre (5, 10), 10 x 20
    box = torch.tensor([[5.0, 5, 25, 25]])  # centre (15, 15), 20 x 20
    # dx = 10 / 10, dy = 5 / 20, dw = ln 2, dh = 0; ATSS divides by (.1, .1, .2, .2).
    assert torch.allclose(bbox2delta(anchor, box), torch.tensor([[1.0, 0.25, LN2, 0.0]]))
    stds = (0.1, 0.1, 0.2, 0.2)
    deltas = bbox2delta(anchor, box, stds)
    assert torch.allclose(deltas, torch.tensor([[10.0, 2.5, LN2 / 0.2, 0.0]]))
    assert torch.allclose(delta2bbox(anchor, deltas, stds), box)
    assert delta2bbox(anchor, deltas, stds, max_shape=(20, 22)).tolist() == [[5, 5, 22, 20]]


# ---------------------------------------------------------------- heads on fixed outputs


def _one_positive(num_priors: int, box: list[float]) -> Targets:
    """One image, C = 2: prior 0 is a class-0 positive of ``box``, the others background."""
    labels = torch.full((1, num_priors), 2)
    labels[0, 0] = 0
    boxes = torch.zeros(1, num_priors, 4)
    boxes[0, 0] = torch.tensor(box)
    return Targets(labels, boxes, torch.ones(1, num_priors), torch.tensor([1]), 2)


def test_retina_loss_on_hand_numbers():
    head = RetinaHead(2, 4, 4, 1, strides=(8,), num_anchors=1)
    pri = make_priors([(1, 2)], [8], anchor_scale=2)  # anchors [-8, -8, 8, 8], [0, -8, 16, 8]
    logits = torch.zeros(1, 2, 2)  # p = .5 everywhere
    out = RetinaOutput(logits.sigmoid(), logits, torch.zeros(1, 2, 4), ((1, 2),))
    # gt [-8, -8, 24, 8]: dx = 8 / 16 = .5, dy = 0, dw = ln 2, dh = 0 -> L1 .5 + ln 2
    losses = head.loss(out, pri, _one_positive(2, [-8.0, -8, 24, 8]))
    # focal at p = .5: the positive .25 * .25 * ln 2 plus 3 negatives .75 * .25 * ln 2; / 1
    assert math.isclose(losses["loss_cls"].item(), (0.25 + 3 * 0.75) * 0.25 * LN2, rel_tol=1e-5)
    assert math.isclose(losses["loss_bbox"].item(), 0.5 + LN2, rel_tol=1e-5)


def test_fcos_loss_on_hand_numbers():
    head = FCOSHead(2, 4, 4, 1, strides=(8,), gn_groups=2)
    pri = make_priors([(1, 2)], [8], center_offset=0.5)  # points (4, 4), (12, 4)
    logits = torch.zeros(1, 2, 2)
    reg = torch.full((1, 2, 4), 0.5)  # (4, 4) +- 4 -> [0, 0, 8, 8]
    out = CenternessOutput(logits.sigmoid() * 0.5, logits, reg, torch.zeros(1, 2), ((1, 2),))
    losses = head.loss(out, pri, _one_positive(2, [0.0, 0, 16, 8]))
    assert math.isclose(losses["loss_cls"].item(), (0.25 + 3 * 0.75) * 0.25 * LN2, rel_tol=1e-5)
    # [0, 0, 8, 8] vs [0, 0, 16, 8]: IoU .5, the enclosing box is the union: GIoU .5, loss .5;
    # weighted by its centerness .57735 over the sum of centerness .57735.
    assert math.isclose(losses["loss_bbox"].item(), 0.5, rel_tol=1e-5)
    # BCE(sigmoid(0) = .5, .57735) = ln 2 whatever the target, / 1 positive
    assert math.isclose(losses["loss_centerness"].item(), LN2, rel_tol=1e-5)
    assert atss_head(2, 4, 4, 1, strides=(8,), gn_groups=2).loss_weights.bbox == 2.0


def test_fovea_loss_on_hand_numbers():
    head = FoveaHead(2, 4, 4, 1, strides=(8,), base_edges=(16,))
    pri = make_priors([(1, 2)], [8], center_offset=0.5)
    logits = torch.zeros(1, 2, 2)
    out = FoveaOutput(logits.sigmoid(), logits, torch.zeros(1, 2, 4), ((1, 2),))
    losses = head.loss(out, pri, _one_positive(2, [0.0, 0, 16, 8]))
    # focal alpha .4, gamma 1.5 at p = .5: (.4 + 3 * .6) * .5^1.5 * ln 2, / (1 positive + 1 image)
    expected_cls = (0.4 + 3 * 0.6) * 0.5**1.5 * LN2 / 2
    assert math.isclose(losses["loss_cls"].item(), expected_cls, rel_tol=1e-5)
    # target log((4, 4, 12, 4) / 16) = (-1.386, -1.386, -.288, -1.386), all beyond beta = .11:
    # smooth L1 = |d| - .055 each, against predictions 0.
    target = [math.log(v) for v in (0.25, 0.25, 0.75, 0.25)]
    expected_bbox = sum(abs(t) - 0.055 for t in target)
    assert math.isclose(losses["loss_bbox"].item(), expected_bbox, rel_tol=1e-5)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


META = {"img_shape": (14, 14), "scale_factor": [2.0] * 4}


def test_predict_on_fixed_outputs():
    cfg = InferenceConfig(iou_thr=0.5)
    logits = torch.full((1, 4, 2), -10.0)
    logits[0, 3, 1] = _logit(0.8)
    # RetinaNet: anchors of side 16 at (0, 0), (8, 0), (0, 8), (8, 8); zero deltas give the
    # anchor: [0, 0, 16, 16] clipped to 14 x 14, / 2.
    pri = make_priors([(2, 2)], [8], anchor_scale=2)
    out = RetinaOutput(logits.sigmoid(), logits, torch.zeros(1, 4, 4), ((2, 2),))
    res = RetinaHead(2, 4, 4, 1, (8,), num_anchors=1).predict(out, pri, [META], cfg)[0]
    assert res["labels"].tolist() == [1] and math.isclose(res["scores"].item(), 0.8, rel_tol=1e-5)
    assert torch.allclose(res["boxes"], torch.tensor([[0.0, 0, 7, 7]]))
    # ATSS: the same anchors through the delta coder.
    ctr = torch.zeros(1, 4)  # sigmoid .5: scores .8 * .5
    out = CenternessOutput(logits.sigmoid() * 0.5, logits, torch.zeros(1, 4, 4), ctr, ((2, 2),))
    res = atss_head(2, 4, 4, 1, (8,), 2).predict(out, pri, [META], cfg)[0]
    assert math.isclose(res["scores"].item(), 0.4, rel_tol=1e-5)
    assert torch.allclose(res["boxes"], torch.tensor([[0.0, 0, 7, 7]]))
    # FCOS: point (12, 12) with ltrb (1, 1, .5, .5) strides -> [4, 4, 16, 16] -> [2, 2, 7, 7].
    pri = make_priors([(2, 2)], [8], center_offset=0.5)
    reg = torch.zeros(1, 4, 4)
    reg[0, 3] = torch.tensor([1.0, 1.0, 0.5, 0.5])
    out = CenternessOutput(logits.sigmoid() * 0.5, logits, reg, ctr, ((2, 2),))
    res = FCOSHead(2, 4, 4, 1, (8,), 2).predict(out, pri, [META], cfg)[0]
    assert torch.allclose(res["boxes"], torch.tensor([[2.0, 2, 7, 7]]))
    # FoveaBox: point (12, 12), base edge 16, reg log(.25) -> 4 px each side -> [8, 8, 16, 16]
    # clipped to 14 -> [4, 4, 7, 7].
    reg = torch.full((1, 4, 4), math.log(0.25))
    out = FoveaOutput(logits.sigmoid(), logits, reg, ((2, 2),))
    res = FoveaHead(2, 4, 4, 1, (8,), (16,)).predict(out, pri, [META], cfg)[0]
    assert torch.allclose(res["boxes"], torch.tensor([[4.0, 4, 7, 7]]))


# ---------------------------------------------------------------- tiny detectors end to end

C = 3
STRIDES = (8, 16, 32, 64, 128)


def _dgqp() -> DGQP:
    return DGQP(reg_max=4, k=2, hidden=4)


def _gflv2() -> GFLHead:
    return GFLHead(C, 16, 16, 1, reg_max=4, strides=STRIDES, gn_groups=4, quality=_dgqp())


RETINA_PRIORS = {"anchor_scale": 4.0, "ratios": (0.5, 1.0, 2.0), "scales_per_octave": 3}
# name -> (head factory, detector prior/assigner arguments, the head's class conv attribute)
DETECTORS = {
    "retinanet": (
        lambda: RetinaHead(C, 16, 16, 1, STRIDES, num_anchors=9),
        {**RETINA_PRIORS, "assigner": max_iou_assign},
        "retina_cls",
    ),
    "retinanet_gflv2": (_gflv2, {"anchor_scale": 8.0, "assigner": max_iou_assign}, "gfl_cls"),
    "fcos": (
        lambda: FCOSHead(C, 16, 16, 1, STRIDES, gn_groups=4),
        {"center_offset": 0.5, "assigner": fcos_assign},
        "conv_cls",
    ),
    "fcos_gflv2": (_gflv2, {"center_offset": 0.5, "assigner": fcos_assign}, "gfl_cls"),
    "atss": (
        lambda: atss_head(C, 16, 16, 1, STRIDES, gn_groups=4),
        {"assigner": atss_assign},
        "conv_cls",
    ),
    "atss_gflv2": (_gflv2, {"assigner": atss_assign}, "gfl_cls"),
    "foveabox": (
        lambda: FoveaHead(C, 16, 16, 1, STRIDES),
        {"center_offset": 0.5, "assigner": fovea_assign},
        "fovea_cls",
    ),
    "foveabox_gflv2": (_gflv2, {"center_offset": 0.5, "assigner": fovea_assign}, "gfl_cls"),
}

TARGETS = [
    {
        "boxes": torch.tensor([[8.0, 8.0, 40.0, 50.0]]),
        "labels": torch.tensor([2]),
        "pad_shape": (64, 64),
    },
    {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "pad_shape": (64, 64)},
]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_tiny_detector_loss_backward_and_predict(name):
    make_head, kwargs, cls_attr = DETECTORS[name]
    torch.manual_seed(0)
    backbone = MiniBackbone(widths=(8, 8, 16, 16, 16), norm="gn")
    model = Detector(backbone, FPN(backbone.out_channels, 16), make_head(), STRIDES, **kwargs)
    images = torch.randn(2, 3, 64, 64)
    out = model(images)
    priors = model.priors(out)
    assert out.level_sizes == ((8, 8), (4, 4), (2, 2), (1, 1), (1, 1))
    assert out.scores.shape == (2, priors.anchors.shape[0], C)
    assert priors.anchors.shape[0] == 86 * (9 if name == "retinanet" else 1)

    tgt = batch_targets(priors, TARGETS, C, model.assigner)
    assert tgt.num_pos.tolist()[1] == 0 and tgt.num_pos[0] > 0
    losses = model.losses(out, TARGETS)
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_bbox"].item() > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    # Only the empty image: box losses are exact zeros, classification is not.
    empty = model.losses(model(images[1:]), TARGETS[1:])
    for key, value in empty.items():
        assert (value.item() > 0) == (key in ("loss_cls", "loss_qfl")), key

    # Class bias 0 so detections pass the 0.05 threshold; boxes lie inside the original image.
    with torch.no_grad():
        getattr(model.head, cls_attr).bias.zero_()
    model.eval()
    metas = [{"img_shape": (64, 60), "scale_factor": [2.0] * 4}] * 2
    for res in model.predict(images, metas):
        boxes = res["boxes"]
        assert len(boxes) > 0 and (res["scores"] > 0.05).all()
        assert (
            (boxes >= 0).all() and (boxes[:, [0, 2]] <= 30).all() and (boxes[:, [1, 3]] <= 32).all()
        )


@pytest.mark.parametrize("head_cls", [RetinaHead, FoveaHead])
def test_plain_towers_with_gn_normalise_away_the_input_scale(head_cls):
    x = torch.randn(1, 16, 6, 6, generator=torch.Generator().manual_seed(0))
    extra = {"base_edges": (16,)} if head_cls is FoveaHead else {}
    torch.manual_seed(0)
    plain = head_cls(C, 16, 16, 2, strides=(8,), **extra)
    torch.manual_seed(0)
    gn = head_cls(C, 16, 16, 2, strides=(8,), gn_groups=4, **extra)
    # conv + GN (no conv bias) + ReLU is invariant to a positive input scale up to GN's eps
    # (1e-5 against per-group variances of about 0.006-0.012 here: under 1e-3 relative);
    # conv + ReLU is positively homogeneous, its biases start at 0: 3 x the input, 3 x the output
    rel = lambda a, b: float((a - b).detach().norm() / b.detach().norm())  # noqa: E731
    assert rel(gn.cls_convs(3 * x), gn.cls_convs(x)) < 1e-3
    assert rel(gn.reg_convs(3 * x), gn.reg_convs(x)) < 1e-3
    assert rel(plain.cls_convs(3 * x), 3 * plain.cls_convs(x)) < 1e-6
    assert rel(plain.cls_convs(3 * x), plain.cls_convs(x)) == pytest.approx(2.0)
    # per tower conv: no-norm has a bias (16), GN has none but a GN weight and bias (32): +16
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(gn) - count(plain) == 2 * 2 * 16
