"""ATSS against hand-derived labels and a direct loop-based reference written from the recipe."""

import numpy as np
import torch

from gfl_repro.models.assigners import atss_assign
from gfl_repro.models.box_coding import make_priors


def reference_atss(anchors, num_per_level, gts, valid, topk=9):
    """Loop-by-loop ATSS from docs/recipe.md, in float64 numpy."""
    anchors, gts = np.asarray(anchors, np.float64), np.asarray(gts, np.float64)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    out = -np.ones(len(anchors), dtype=np.int64)
    best = np.full(len(anchors), -np.inf)

    def iou(a, g):
        w = max(0.0, min(a[2], g[2]) - max(a[0], g[0]))
        h = max(0.0, min(a[3], g[3]) - max(a[1], g[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
        return inter / max(union, 1e-6)

    for j, g in enumerate(gts):
        gc = (g[:2] + g[2:]) / 2
        cands, start = [], 0
        for n in num_per_level:
            idx = [i for i in range(start, start + n) if valid[i]]
            idx.sort(key=lambda i: np.hypot(*(centres[i] - gc)))
            cands += idx[:topk]
            start += n
        ious = np.array([iou(anchors[i], g) for i in cands])
        thr = ious.mean() + ious.std(ddof=1)
        for i, v in zip(cands, ious, strict=True):
            cx, cy = centres[i]
            inside = min(cx - g[0], cy - g[1], g[2] - cx, g[3] - cy) > 0.01
            if v >= thr and inside and v > best[i]:
                best[i], out[i] = v, j
    return out


def test_hand_case_one_dominant_anchor_and_an_edge_centre():
    # One level, four 10x10 anchors in a row with centres x = 5, 15, 25, 35 (y = 5); topk = 3.
    anchors = torch.tensor(
        [[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]], dtype=torch.float32
    )
    valid = torch.ones(4, dtype=torch.bool)
    # GT [10, 0, 21, 10], centre (15.5, 5): nearest a1 (0.5), a2 (9.5), a0 (10.5).
    # IoUs a1 = 100/110 = .909, a2 = 10/200 = .05, a0 = 0 -> mean .3197, std .5141, thr .8338:
    # only a1 passes, and its centre (15, 5) is inside.
    gt = torch.tensor([[10.0, 0.0, 21.0, 10.0]])
    assert atss_assign(anchors, [4], gt, valid, topk=3).tolist() == [-1, 0, -1, -1]
    # Same IoUs with the GT flipped to start at a1's centre: [15, 0, 26, 10], centre (20.5, 5).
    # a1: inter 50, union 110 -> .4545 ; a2: inter 60, union 110 -> .5455 ; a0: 0 (not nearest 3:
    # a1 5.5, a2 4.5, a3 14.5 -> a3 IoU 0). mean .3333, std .2973, thr .6306: nobody passes.
    gt = torch.tensor([[15.0, 0.0, 26.0, 10.0]])
    assert atss_assign(anchors, [4], gt, valid, topk=3).tolist() == [-1, -1, -1, -1]
    # Edge centre: GT [15, 0, 20.5, 10]: a1 IoU = 55/100 = .55, its centre x = 15 is on the GT's
    # left side (distance 0 <= .01); a2: 5/155 = .032; a0: 0. mean .194, std .309, thr .503:
    # a1 passes the IoU test but is rejected by the centre test.
    gt = torch.tensor([[15.0, 0.0, 20.5, 10.0]])
    assert atss_assign(anchors, [4], gt, valid, topk=3).tolist() == [-1, -1, -1, -1]
    gt = torch.tensor([[14.98, 0.0, 20.5, 10.0]])  # centre now .02 inside: positive
    assert atss_assign(anchors, [4], gt, valid, topk=3).tolist() == [-1, 0, -1, -1]


def test_overlapping_gts_take_the_highest_iou():
    anchors = torch.tensor(
        [[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]], dtype=torch.float32
    )
    valid = torch.ones(4, dtype=torch.bool)
    # Both GTs choose a1 alone (one dominant anchor each): IoU(a1, g0) = 100/110, IoU(a1, g1) =
    # 100/105; a1 goes to g1 whatever the order of the GTs.
    g0, g1 = [10.0, 0.0, 21.0, 10.0], [9.5, 0.0, 20.0, 10.0]
    assert atss_assign(anchors, [4], torch.tensor([g0, g1]), valid, topk=3).tolist() == [
        -1,
        1,
        -1,
        -1,
    ]
    assert atss_assign(anchors, [4], torch.tensor([g1, g0]), valid, topk=3).tolist() == [
        -1,
        0,
        -1,
        -1,
    ]


def test_no_gt_and_invalid_priors():
    pri = make_priors([(4, 4), (2, 2)], [8, 16])
    valid = torch.ones(20, dtype=torch.bool)
    assert (atss_assign(pri.anchors, pri.num_per_level, torch.zeros(0, 4), valid) == -1).all()
    gt = torch.tensor([[0.0, 0.0, 30.0, 30.0]])
    none_valid = torch.zeros(20, dtype=torch.bool)
    assert (atss_assign(pri.anchors, pri.num_per_level, gt, none_valid) == -1).all()


def test_matches_reference_on_a_realistic_pyramid_with_a_tiny_gt():
    torch.manual_seed(0)
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    pri = make_priors(sizes, [8, 16, 32, 64, 128])
    valid = torch.ones(pri.anchors.shape[0], dtype=torch.bool)
    valid[:20] = False  # a padded first row of P3 takes no part
    gts = torch.tensor(
        [[4.0, 6.0, 14.0, 13.0], [30, 20, 110, 90], [60, 40, 150, 120], [0, 0, 150, 120]]
    )  # a tiny GT, two overlapping GTs and one covering most of the image
    got = atss_assign(pri.anchors, pri.num_per_level, gts, valid)
    ref = reference_atss(pri.anchors.numpy(), pri.num_per_level, gts.numpy(), valid.numpy())
    assert got.tolist() == ref.tolist()
    assert set(got[got >= 0].tolist()) == {0, 1, 2, 3}  # every GT, the tiny one too, has positives
    tiny = torch.nonzero(got == 0).squeeze(1)
    assert (tiny < 320).all()  # the tiny GT's positives are on P3


def test_matches_reference_on_random_cases():
    gen = torch.Generator().manual_seed(1)
    sizes = [(12, 12), (6, 6), (3, 3), (2, 2), (1, 1)]
    pri = make_priors(sizes, [8, 16, 32, 64, 128])
    valid = torch.ones(pri.anchors.shape[0], dtype=torch.bool)
    for _ in range(5):
        xy = torch.rand(6, 2, generator=gen) * 80
        wh = torch.rand(6, 2, generator=gen) * 60 + 4
        gts = torch.cat([xy, xy + wh], dim=1)
        got = atss_assign(pri.anchors, pri.num_per_level, gts, valid)
        ref = reference_atss(pri.anchors.numpy(), pri.num_per_level, gts.numpy(), valid.numpy())
        assert got.tolist() == ref.tolist()
