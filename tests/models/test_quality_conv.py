"""Convolutional LQE inputs (Table 3): what each variant samples, on hand-made feature maps.

The feature map holds channels (x, y, x * y, 1) at feature coordinates (x, y) = (column, row);
bilinear interpolation reproduces all four exactly, so a sample at any point inside the map must
equal the function's value there. One-hot logits (50 at one bin) fix each box exactly.
"""

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d, roi_align

from gfl_repro.models.heads.gfl import GFLHead
from gfl_repro.models.quality_conv import (
    CONV_INPUTS,
    BorderQuality,
    DeformableQuality,
    PointQuality,
    RegionQuality,
    StarQuality,
    build_conv_quality,
    predicted_boxes,
)

H, W, N = 6, 7, 4  # level size, reg_max


def coordinate_feat(b: int = 2, h: int = H, w: int = W) -> torch.Tensor:
    """(B, 4, H, W): x, y, x * y, 1 at every location."""
    ys, xs = torch.meshgrid(torch.arange(h * 1.0), torch.arange(w * 1.0), indexing="ij")
    feat = torch.stack([xs, ys, xs * ys, torch.ones_like(xs)])  # (4, H, W)
    return feat.expand(b, -1, -1, -1).clone()


def value(x: float, y: float) -> torch.Tensor:
    return torch.tensor([x, y, x * y, 1.0])


def random_bins(b: int = 2, h: int = H, w: int = W, high: int = 3, seed: int = 0):
    """(B, 4, H, W) integer l, t, r, b distances, different per image and location."""
    return torch.randint(0, high, (b, 4, h, w), generator=torch.Generator().manual_seed(seed))


def one_hot_reg(bins: torch.Tensor, reg_max: int = N) -> torch.Tensor:
    """(B, 4, H, W) bins -> (B, 4 * (n + 1), H, W) logits with all mass on those bins."""
    logits = 50.0 * F.one_hot(bins, reg_max + 1).float()  # (B, 4, H, W, n + 1)
    b, _, h, w, _ = logits.shape
    return logits.permute(0, 1, 4, 2, 3).reshape(b, 4 * (reg_max + 1), h, w)


def inside_boxes(bins: torch.Tensor):
    """Yield (image, i, j, (x1, y1, x2, y2)) for every box lying inside the map."""
    b, _, h, w = bins.shape
    for n in range(b):
        for i in range(h):
            for j in range(w):
                l, t, r, bot = bins[n, :, i, j].tolist()
                x1, y1, x2, y2 = j - l, i - t, j + r, i + bot
                if x1 >= 0 and y1 >= 0 and x2 <= w - 1 and y2 <= h - 1:
                    yield n, i, j, (x1, y1, x2, y2)


def check_groups(sampler, expected_groups, bins=None):
    """sampler.sample on the coordinate map equals expected_groups(box, i, j) at inside boxes."""
    bins = random_bins() if bins is None else bins
    samples = sampler.sample(one_hot_reg(bins), coordinate_feat(bins.shape[0]))
    checked = 0
    for n, i, j, box in inside_boxes(bins):
        got = samples[n, :, i, j].reshape(-1, 4)  # (G, 4 channels)
        expected = torch.stack(expected_groups(box, i, j))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        checked += 1
    assert checked >= 15  # the random boxes leave enough inside the map to mean something


def border_points(box, count):
    x1, y1, x2, y2 = box
    s = [k / (count - 1) for k in range(count)]
    along_y = [y1 + (y2 - y1) * f for f in s]
    along_x = [x1 + (x2 - x1) * f for f in s]
    return (
        [(x1, y) for y in along_y],
        [(x, y1) for x in along_x],
        [(x2, y) for y in along_y],
        [(x, y2) for x in along_x],
    )


def test_point_samples_the_location_itself():
    def expected(box, i, j):
        return [value(j, i)]

    check_groups(PointQuality(4, reg_max=N), expected)


def test_border_middle_samples_the_four_midpoints():
    def expected(box, i, j):
        x1, y1, x2, y2 = box
        xc, yc = (x1 + x2) / 2, (y1 + y2) / 2
        return [value(x1, yc), value(xc, y1), value(x2, yc), value(xc, y2)]

    check_groups(BorderQuality("border_middle", 4, reg_max=N), expected)


def test_border_dense_averages_five_points_per_border():
    def expected(box, i, j):
        return [torch.stack([value(*p) for p in pts]).mean(0) for pts in border_points(box, 5)]

    check_groups(BorderQuality("border_dense", 4, reg_max=N, border_points=5), expected)

    def linear_channels(box, i, j):  # x and y are linear: the mean is the border midpoint
        x1, y1, x2, y2 = box
        xc, yc = (x1 + x2) / 2, (y1 + y2) / 2
        return [value(x1, yc), value(xc, y1), value(x2, yc), value(xc, y2)]

    bins = random_bins(seed=1)
    dense = BorderQuality("border_dense", 4, reg_max=N).sample(one_hot_reg(bins), coordinate_feat())
    for n, i, j, box in inside_boxes(bins):
        got = dense[n, :, i, j].reshape(4, 4)[:, :2]
        torch.testing.assert_close(got, torch.stack(linear_channels(box, i, j))[:, :2])


def test_border_extreme_takes_the_max_along_each_border():
    def expected(box, i, j):
        return [torch.stack([value(*p) for p in pts]).amax(0) for pts in border_points(box, 5)]

    check_groups(BorderQuality("border_extreme", 4, reg_max=N), expected)

    bins = random_bins(seed=2)
    extreme = BorderQuality("border_extreme", 4, reg_max=N).sample(
        one_hot_reg(bins), coordinate_feat()
    )
    for n, i, j, (x1, _, x2, _) in inside_boxes(bins):
        got_x = extreme[n, :, i, j].reshape(4, 4)[:, 0]  # channel x of left, top, right, bottom
        assert got_x.tolist() == pytest.approx([x1, x2, x2, x2], abs=1e-4)


def test_regular_samples_the_vfnet_star():
    def expected(box, i, j):
        x1, y1, x2, y2 = box
        return [value(x, y) for y in (y1, i, y2) for x in (x1, j, x2)]

    check_groups(StarQuality(4, reg_max=N), expected)


def test_region_bins_are_the_bin_centres_and_match_roi_align():
    def expected(box, i, j):  # x, y, xy average over a symmetric product grid = bin centre
        x1, y1, x2, y2 = box
        w, h = (x2 - x1) / 3, (y2 - y1) / 3
        return [value(x1 + (v + 0.5) * w, y1 + (u + 0.5) * h) for u in range(3) for v in range(3)]

    region = RegionQuality(4, reg_max=N)
    check_groups(region, expected)

    # Arbitrary values and boxes: the per-bin form equals one 3x3 RoIAlign. (Integer boxes can
    # put a sample exactly on RoIAlign's y = H cut-off, where rounding decides 0 or border value.)
    torch.manual_seed(3)
    feat, reg = torch.randn(2, 4, H, W), 3 * torch.randn(2, 4 * (N + 1), H, W)
    samples = region.sample(reg, feat)  # (B, 9 * 4, H, W)
    boxes = predicted_boxes(reg, N).permute(0, 2, 3, 1).reshape(-1, 4) + 0.5  # (B*H*W, 4)
    image = torch.arange(2.0).repeat_interleave(H * W)[:, None]  # (B*H*W, 1)
    direct = roi_align(feat, torch.cat([image, boxes], 1), 3, 1.0, 2, aligned=True)
    direct = direct.flatten(2).transpose(1, 2).reshape(2, H, W, 36).permute(0, 3, 1, 2)
    torch.testing.assert_close(samples, direct, atol=1e-5, rtol=0)


def test_points_outside_the_map_read_zeros_on_a_one_by_one_level():
    feat = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    bins = torch.tensor([1, 0, 0, 0]).reshape(1, 4, 1, 1)  # box [-1, 0, 0, 0]
    middle = BorderQuality("border_middle", 4, reg_max=N).sample(one_hot_reg(bins), feat)
    # midpoints: left (-1, 0) outside; top and bottom (-0.5, 0) half inside; right (0, 0)
    expected = torch.tensor([0.0, 0.5, 1.0, 0.5])[:, None] * feat.reshape(1, 4)
    torch.testing.assert_close(middle.reshape(4, 4), expected)

    zero = one_hot_reg(torch.zeros(1, 4, 1, 1, dtype=torch.long))  # box = the point itself
    for sampler in (StarQuality(4, reg_max=N), RegionQuality(4, reg_max=N)):
        got = sampler.sample(zero, feat).reshape(9, 4)
        torch.testing.assert_close(got, feat.reshape(1, 4).expand(9, 4))


def test_deform_conv2d_offset_layout_is_dy_dx_per_row_major_tap():
    ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")
    feat = (xs + 10 * ys).reshape(1, 1, 5, 5)
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 0, 2] = 1.0  # only tap k = 3 * 0 + 2: regular position (i - 1, j + 1)
    offset = torch.zeros(1, 18, 5, 5)
    offset[:, 2 * 2] = 1.0  # dy of tap 2
    offset[:, 2 * 2 + 1] = 0.5  # dx of tap 2
    out = deform_conv2d(feat, offset, weight, padding=1)
    i, j = 2, 1  # reads (x, y) = (j + 1 + 0.5, i - 1 + 1) = (2.5, 2)
    assert out[0, 0, i, j].item() == pytest.approx(2.5 + 10 * 2)


def test_deformable_at_init_is_a_plain_3x3_conv():
    torch.manual_seed(0)
    q = DeformableQuality(5, hidden=6, reg_max=N)
    torch.nn.init.normal_(q.fc1.weight)
    torch.nn.init.normal_(q.fc1.bias)
    feat, reg = torch.randn(2, 5, H, W), torch.randn(2, 4 * (N + 1), H, W)
    kernel = q.fc1.weight.reshape(6, 9, 5).transpose(1, 2).reshape(6, 5, 3, 3)
    plain = F.conv2d(feat, kernel, q.fc1.bias, padding=1)
    torch.testing.assert_close(q.fc1(q.sample(reg, feat)), plain, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(q.hidden(reg, feat), plain, atol=1e-4, rtol=1e-4)


def test_deformable_offsets_move_its_points():
    q = DeformableQuality(4, reg_max=N)
    with torch.no_grad():
        q.offset_conv.bias[1::2] = 1.0  # dx = +1 for every tap
    samples = q.sample(one_hot_reg(random_bins()), coordinate_feat()).reshape(2, 9, 4, H, W)
    i, j = 2, 3
    for k in range(9):
        ky, kx = divmod(k, 3)
        expected = value(j + kx - 1 + 1, i + ky - 1)
        torch.testing.assert_close(samples[0, k, :, i, j], expected)


def randomised(kind: str, in_channels: int = 5, hidden: int = 6) -> torch.nn.Module:
    q = build_conv_quality(kind, in_channels, hidden, N)
    for param in q.parameters():
        torch.nn.init.normal_(param, std=0.3)
    return q


@pytest.mark.parametrize("kind", CONV_INPUTS)
def test_hidden_in_its_cheaper_order_equals_fc1_of_the_samples(kind):
    torch.manual_seed(1)
    q = randomised(kind)
    feat, reg = torch.randn(2, 5, H, W), 3 * torch.randn(2, 4 * (N + 1), H, W)
    torch.testing.assert_close(
        q.hidden(reg, feat), q.fc1(q.sample(reg, feat)), atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize("kind", CONV_INPUTS)
def test_output_shape_range_and_init(kind):
    torch.manual_seed(2)
    q = build_conv_quality(kind, 8, 16, N)
    out = q(one_hot_reg(random_bins()), torch.randn(2, 8, H, W))
    assert out.shape == (2, 1, H, W)
    assert ((out > 0) & (out < 1)).all()
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=0.01, rtol=0)


@pytest.mark.parametrize("kind", CONV_INPUTS)
def test_gradient_reaches_reg_feat_and_not_the_box(kind):
    torch.manual_seed(3)
    q = randomised(kind)
    feat = torch.randn(2, 5, H, W, requires_grad=True)
    reg = torch.randn(2, 4 * (N + 1), H, W, requires_grad=True)
    q(reg, feat).sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
    assert reg.grad is None or not reg.grad.any()  # the box is detached


@pytest.mark.parametrize("kind", CONV_INPUTS)
def test_one_by_one_level(kind):
    q = randomised(kind)
    out = q(one_hot_reg(random_bins(h=1, w=1)), torch.randn(2, 5, 1, 1))
    assert out.shape == (2, 1, 1, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", CONV_INPUTS)
def test_batch_of_two_with_different_boxes_equals_each_image_alone(kind):
    torch.manual_seed(4)
    q = randomised(kind)
    feat, reg = torch.randn(2, 5, H, W), one_hot_reg(random_bins(seed=5))
    batched = q(reg, feat)
    alone = torch.cat([q(reg[n : n + 1], feat[n : n + 1]) for n in range(2)])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_parameter_counts_at_256_channels_and_p_64():
    fc2 = 64 + 1
    expected = {
        "point": 256 * 64 + 64 + fc2,  # 16513
        "region": 9 * 256 * 64 + 64 + fc2,  # 147585
        "border_dense": 4 * 256 * 64 + 64 + fc2,  # 65665
        "border_middle": 4 * 256 * 64 + 64 + fc2,
        "border_extreme": 4 * 256 * 64 + 64 + fc2,
        "regular": 9 * 256 * 64 + 64 + fc2,
        "deformable": 9 * 256 * 64 + 64 + fc2 + 9 * 256 * 18 + 18,  # 189075
    }
    for kind, count in expected.items():
        q = build_conv_quality(kind, 256, 64, 16)
        assert q.kind == kind
        assert sum(p.numel() for p in q.parameters()) == count, kind


def test_unknown_kind_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="conv quality kind"):
        build_conv_quality("corner", 256)
    with pytest.raises(ValueError, match="border_points"):
        BorderQuality("border_dense", 256, border_points=1)
    with pytest.raises(ValueError, match="border kind"):
        BorderQuality("point", 256)


@pytest.mark.parametrize("kind", CONV_INPUTS)
def test_every_variant_plugs_into_the_gfl_head(kind):
    quality = build_conv_quality(kind, 16, 8, N)
    head = GFLHead(3, 16, 16, 1, reg_max=N, strides=(8, 16), gn_groups=4, quality=quality)
    out = head([torch.randn(2, 16, 4, 5), torch.randn(2, 16, 1, 1)])  # a 1x1 top level
    assert out.scores.shape == (2, 21, 3) and out.quality.shape == (2, 21)
    assert ((out.quality > 0) & (out.quality < 1)).all()
