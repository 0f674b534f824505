"""QFL, DFL and GIoU against direct formulas and hand-worked values."""

import math

import numpy as np
import torch

from gfl_repro.models.losses import distribution_focal_loss, giou_loss, quality_focal_loss


def test_qfl_at_probabilities_0_and_1_uses_the_minus_100_log_clamp():
    scores = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([2, 0, 1])  # background, positive of class 0, positive of class 1
    iou = torch.tensor([0.0, 1.0, 0.5])
    loss = quality_focal_loss(scores, labels, iou)
    # row 0: negatives: BCE(0, 0) * 0^2 = 0 ; BCE(1, 0) = -log(0) -> 100, * 1^2 = 100
    # row 1: class 0 positive p=1, y=1: -(1 log 1 + 0 * (-100)) = 0, * 0^2 = 0 ; class 1: 0
    # row 2: class 1 positive p=0, y=.5: -(.5 * (-100) + .5 * log 1) = 50, * .5^2 = 12.5
    assert torch.allclose(loss, torch.tensor([100.0, 0.0, 12.5]))


def test_qfl_mixed_against_direct_formula():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, size=(6, 4))
    labels = np.array([4, 1, 4, 3, 0, 4])
    iou = rng.uniform(0, 1, size=6)
    expected = np.zeros(6)
    for i in range(6):
        for c in range(4):
            y = iou[i] if labels[i] == c else 0.0
            bce = -(y * math.log(p[i, c]) + (1 - y) * math.log(1 - p[i, c]))
            expected[i] += bce * abs(y - p[i, c]) ** 2
    got = quality_focal_loss(torch.tensor(p), torch.tensor(labels), torch.tensor(iou))
    assert np.allclose(got.numpy(), expected, rtol=1e-5)


def _ce(logits: np.ndarray, i: int) -> float:
    return float(np.log(np.exp(logits).sum()) - logits[i])


def test_dfl_integer_fractional_and_15_9_targets():
    logits = np.arange(17) * 0.1
    x = torch.tensor(np.stack([logits] * 3), dtype=torch.float64)
    got = distribution_focal_loss(x, torch.tensor([3.0, 3.25, 15.9], dtype=torch.float64))
    expected = [
        _ce(logits, 3),  # integer: all weight on bin 3
        0.75 * _ce(logits, 3) + 0.25 * _ce(logits, 4),
        0.1 * _ce(logits, 15) + 0.9 * _ce(logits, 16),  # the clamp keeps bin 16 in range
    ]
    assert np.allclose(got.numpy(), expected)


def test_dfl_is_minimal_entropy_at_the_two_bin_distribution():
    p = torch.full((17,), 1e-30, dtype=torch.float64)
    p[3], p[4] = 0.75, 0.25
    got = distribution_focal_loss(p.log()[None], torch.tensor([3.25], dtype=torch.float64))
    assert math.isclose(got.item(), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rel_tol=1e-9)


def test_giou_loss_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    # identical: 1 - 1 = 0; disjoint: iou 0, enclose 300, union 200 -> 1 - (0 - 1/3)
    assert torch.allclose(giou_loss(a, b), torch.tensor([0.0, 1 + 1 / 3]))
