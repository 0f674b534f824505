"""Priors, the integral and box coding against hand-worked numbers."""

import math

import torch

from gfl_repro.models.box_coding import (
    aligned_iou,
    bbox2distance,
    box_iou,
    distance2bbox,
    integral,
    make_priors,
    valid_mask,
)


def test_integral_on_hand_made_logits():
    n = 16
    logits = torch.full((4, n + 1), -1e4)
    logits[0, 3] = 0.0  # all mass on bin 3 -> 3
    logits[1, [2, 5]] = 0.0  # half on 2, half on 5 -> 3.5
    logits[2] = 0.0  # uniform -> mean of 0..16 = 8
    logits[3, [0, 1]] = torch.tensor([0.0, math.log(3.0)])  # 1/4 on 0, 3/4 on 1 -> 0.75
    out = integral(logits.reshape(1, -1), n)
    assert torch.allclose(out, torch.tensor([[3.0, 3.5, 8.0, 0.75]]), atol=1e-6)


def test_priors_for_800x1216_r50_input():
    sizes = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
    pri = make_priors(sizes, [8, 16, 32, 64, 128])
    assert pri.num_per_level == [15200, 3800, 950, 247, 70]
    assert pri.anchors.shape == (20267, 4)
    assert pri.anchors[0].tolist() == [-32.0, -32.0, 32.0, 32.0]  # side 8 * 8, centre (0, 0)
    assert pri.anchors[1].tolist() == [-24.0, -32.0, 40.0, 32.0]  # next column, x = 8
    assert pri.points[152].tolist() == [0.0, 8.0]  # row-major: second row starts at 152
    assert pri.anchors[15200].tolist() == [-64.0, -64.0, 64.0, 64.0]  # first of P4
    last = 20267 - 1  # P7 (row 6, col 9) at stride 128
    assert pri.points[last].tolist() == [9 * 128.0, 6 * 128.0]
    assert pri.strides[last] == 128


def test_valid_mask_follows_each_images_pad_shape():
    pri = make_priors([(4, 6), (2, 3)], [8, 16])
    valid = valid_mask(pri, (32, 24))  # rows < ceil(32/8)=4, cols < ceil(24/8)=3 ; P4: 2 x 2
    lvl0 = valid[:24].reshape(4, 6)
    assert lvl0[:, :3].all() and not lvl0[:, 3:].any()
    lvl1 = valid[24:].reshape(2, 3)
    assert lvl1[:, :2].all() and not lvl1[:, 2:].any()


def test_distance2bbox_and_clip():
    pts = torch.tensor([[10.0, 20.0]])
    d = torch.tensor([[3.0, 4.0, 5.0, 6.0]])
    assert distance2bbox(pts, d).tolist() == [[7.0, 16.0, 15.0, 26.0]]
    d = torch.tensor([[30.0, 4.0, 50.0, 60.0]])
    assert distance2bbox(pts, d, max_shape=(40, 50)).tolist() == [[0.0, 16.0, 50.0, 40.0]]


def test_bbox2distance_clamps_to_0_and_reg_max_minus_0_1():
    pts = torch.tensor([[10.0, 10.0], [10.0, 10.0]])
    boxes = torch.tensor([[8.0, 7.0, 12.5, 40.0], [11.0, 0.0, 30.0, 10.0]])
    d = bbox2distance(pts, boxes, reg_max=16)
    assert torch.allclose(d[0], torch.tensor([2.0, 3.0, 2.5, 15.9]))  # 30 clamped to 15.9
    assert torch.allclose(d[1], torch.tensor([0.0, 10.0, 15.9, 0.0]))  # -1 clamped to 0


def test_iou_and_giou_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0]])  # inter 50, union 150
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 3]]))
    c = torch.tensor([[20.0, 0.0, 30.0, 10.0]])  # disjoint: iou 0, enclose 300, union 200
    assert torch.allclose(aligned_iou(a, c, giou=True), torch.tensor([0 - 100 / 300]))
    assert torch.allclose(aligned_iou(a, b, giou=True), torch.tensor([1 / 3]))  # enclose = union
