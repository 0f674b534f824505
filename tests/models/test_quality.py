"""DGQP statistics and structure."""

import math

import pytest
import torch

from gfl_repro.models.quality import DGQP, STATISTICS, distribution_statistics


def _side_logits():
    n1 = 17
    left = torch.full((n1,), 0.05 / 13)
    left[[3, 4, 5, 6]] = torch.tensor([0.4, 0.3, 0.2, 0.05])  # top-4: .4 .3 .2 .05, mean .2375
    top = torch.full((n1,), 1e-12)
    top[9] = 1.0  # one-hot: top-1 = 1, the rest 0
    right = torch.full((n1,), 1.0 / n1)  # uniform
    bottom = torch.full((n1,), 0.02)
    bottom[[0, 16]] = torch.tensor([0.5, 0.2])  # 15 * .02 + .7 = 1; top-4: .5 .2 .02 .02
    probs = torch.stack([left, top, right, bottom])  # (4, 17) sides l, t, r, b
    return probs.log().reshape(1, 4 * n1, 1, 1)


def test_topk_mean_layout_is_side_major():
    stats = distribution_statistics(_side_logits(), reg_max=16, k=4)[0, :, 0, 0]
    assert stats.shape == (20,)
    expected = [
        [0.4, 0.3, 0.2, 0.05, 0.2375],
        [1.0, 0.0, 0.0, 0.0, 0.25],
        [1 / 17] * 5,
        [0.5, 0.2, 0.02, 0.02, 0.185],
    ]
    assert torch.allclose(stats, torch.tensor(expected).reshape(-1), atol=1e-6)
    assert torch.allclose(stats[5 * 2 + 4], torch.tensor(1 / 17))  # channel side*(k+1)+j


def test_variance_of_one_hot_is_zero_and_of_uniform_is_zero():
    stats = distribution_statistics(_side_logits(), 16, 4, ("mean", "var"))[0, :, 0, 0]
    assert stats.shape == (8,)
    # top side: top-4 = [1, 0, 0, 0] -> mean .25, population variance .1875
    assert torch.allclose(stats[2:4], torch.tensor([0.25, 0.1875]), atol=1e-6)
    assert abs(stats[5].item()) < 1e-9  # uniform: all top-4 equal


def test_dgqp_parameter_count_and_init():
    q = DGQP(reg_max=16, k=4, hidden=64)
    assert sum(p.numel() for p in q.parameters()) == 4 * (4 + 1) * 64 + 64 + 64 + 1 == 1409
    out = q(torch.randn(2, 68, 3, 5))
    assert out.shape == (2, 1, 3, 5)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.01)  # weights ~N(0, 0.01), bias 0


def test_dgqp_rejects_bad_k_and_statistics():
    with pytest.raises(ValueError, match="k must be"):
        DGQP(reg_max=16, k=18)
    with pytest.raises(ValueError, match="statistics"):
        DGQP(statistics=("median",))


def test_gradient_reaches_the_distribution():
    logits = torch.randn(1, 68, 2, 2, requires_grad=True)
    DGQP()(logits).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert math.isfinite(logits.grad.sum().item())


def test_one_hot_top1_is_1_with_zero_variance_and_uniform_is_flat():
    n1 = 17
    one_hot = torch.full((4, n1), -50.0)
    one_hot[:, 7] = 50.0
    stats = distribution_statistics(one_hot.reshape(1, -1, 1, 1), 16, 1, STATISTICS)[0, :, 0, 0]
    assert torch.allclose(stats, torch.tensor([1.0, 1.0, 0.0] * 4), atol=1e-6)  # top-1, mean, var
    uniform = torch.zeros(1, 4 * n1, 1, 1)
    stats = distribution_statistics(uniform, 16, 4, STATISTICS)[0, :, 0, 0].reshape(4, 6)
    assert (
        torch.allclose(stats[:, :5], torch.full((4, 5), 1 / 17))
        and (stats[:, 5].abs() < 1e-9).all()
    )


def test_decomposed_joint_score_is_in_0_1():
    from gfl_repro.models.heads.gfl import GFLHead

    head = GFLHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1, reg_max=16,
                   strides=(8,), gn_groups=4, quality=DGQP(hidden=8))  # fmt: skip
    out = head([torch.randn(2, 8, 5, 6) * 10])
    assert out.scores.shape == (2, 30, 3) and out.quality.shape == (2, 30)
    assert (out.scores >= 0).all() and (out.scores <= out.quality[..., None] + 1e-7).all()
