"""Backbones checked against numbers worked out by hand or published by torchvision."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.ops import FrozenBatchNorm2d

from gfl_repro.models.backbone import (
    RESNET_SPECS,
    MiniBackbone,
    ModulatedDeformConv2d,
    ResNetBackbone,
    build_resnet,
)

# torchvision's published parameter counts (weights meta 'num_params') minus the classifier:
# fc is 2048 * 1000 + 1000 = 2,049,000 for Bottleneck nets, 512 * 1000 + 1000 = 513,000 else.
PUBLISHED_WITHOUT_FC = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,  # = 23,508,032
    "resnet101": 44_549_160 - 2_049_000,
    "resnext101_64x4d": 83_455_272 - 2_049_000,
}


def resnet_weight_count(layers, bottleneck, groups=1, width_per_group=64):
    """Conv weights + BN affine (weight, bias) of a ResNet without fc, by hand."""
    total = 3 * 64 * 7 * 7 + 2 * 64  # stem conv1 + bn1
    c_in = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        c_out = planes * (4 if bottleneck else 1)
        for b in range(blocks):
            if bottleneck:
                w = planes * width_per_group // 64 * groups  # 3x3 conv width
                total += c_in * w + 9 * w * (w // groups) + w * c_out + 2 * (w + w + c_out)
            else:
                total += 9 * c_in * planes + 9 * planes * planes + 2 * (planes + planes)
            if b == 0 and (stage > 0 or c_in != c_out):  # downsample: 1x1 conv + BN
                total += c_in * c_out + 2 * c_out
            c_in = c_out
    return total


def weight_count(model):
    """Parameters (frozen ones included) + FrozenBatchNorm2d's affine buffers."""
    n = sum(p.numel() for p in model.parameters())
    frozen_bn = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    return n + sum(m.weight.numel() + m.bias.numel() for m in frozen_bn)


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    return build_resnet("resnet50")


@pytest.fixture(scope="module")
def dcn_r50():
    torch.manual_seed(0)
    return build_resnet("resnet50", dcn_stages=(False, True, True, True))


# ---- shapes and parameter counts -------------------------------------------------------------


def test_r50_shapes(r50):
    # 96x128: conv1 -> 48x64, maxpool -> 24x32, then /2 per stage: 12x16, 6x8, 3x4.
    c3, c4, c5 = r50(torch.randn(1, 3, 96, 128))
    assert c3.shape == (1, 512, 12, 16)
    assert c4.shape == (1, 1024, 6, 8)
    assert c5.shape == (1, 2048, 3, 4)
    assert r50.out_channels == [512, 1024, 2048]
    assert r50.strides == [8, 16, 32]
    assert not hasattr(r50, "fc") and not hasattr(r50, "avgpool")


def test_r18_shapes_odd_size():
    # 65x97 -> conv1 33x49 -> maxpool 17x25 -> 9x13, 5x7, 3x4 = ceil(65/8) x ceil(97/8), ...
    model = build_resnet("resnet18")
    c3, c4, c5 = model(torch.randn(1, 3, 65, 97))
    assert c3.shape == (1, 128, 9, 13)
    assert c4.shape == (1, 256, 5, 7)
    assert c5.shape == (1, 512, 3, 4)
    assert model.out_channels == [128, 256, 512]


def test_hand_formula_matches_published_counts():
    for arch, expected in PUBLISHED_WITHOUT_FC.items():
        spec = RESNET_SPECS[arch]
        bottleneck = spec.block.expansion == 4
        count = resnet_weight_count(spec.layers, bottleneck, spec.groups, spec.width_per_group)
        assert count == expected, arch


def test_r50_param_count(r50):
    assert weight_count(r50) == 23_508_032
    # R-50 has 26,560 BN channels: stem 64, layer1 3*384+256, layer2 4*768+512,
    # layer3 6*1536+1024, layer4 3*3072+2048; their affine pairs are FrozenBN buffers.
    assert sum(p.numel() for p in r50.parameters()) == 23_508_032 - 2 * 26_560


def test_resnext101_32x4d_structure():
    # Expected count from the hand formula above (validated on torchvision's published
    # R-18/34/50/101 and X-101-64x4d counts): 42,128,704 = 44,177,704 (the usual "44.18M"
    # with fc) minus fc's 2,049,000.
    expected = resnet_weight_count((3, 4, 23, 3), True, groups=32, width_per_group=4)
    assert expected == 42_128_704
    model = build_resnet("resnext101_32x4d", frozen_stages=-1)
    assert weight_count(model) == expected
    conv2 = model.layer1[0].conv2  # width 64 * 4/64 * 32 = 128, 32 groups of 4 channels
    assert conv2.groups == 32 and conv2.weight.shape == (128, 4, 3, 3)
    assert model.layer4[0].conv2.weight.shape == (1024, 32, 3, 3)
    assert [len(layer) for layer in model._stages()] == [3, 4, 23, 3]
    assert model.out_channels == [512, 1024, 2048]


def test_state_dict_keys_match_torchvision(r50):
    reference = {k for k in torch.nn.Module.state_dict(resnet18()) if not k.startswith("fc.")}
    reference = {k for k in reference if not k.endswith("num_batches_tracked")}
    assert set(build_resnet("resnet18").state_dict()) == reference
    assert "layer1.0.downsample.1.running_var" in r50.state_dict()
    assert "layer4.2.bn3.weight" in r50.state_dict()


def test_unknown_arch_lists_known():
    with pytest.raises(ValueError, match="resnext101_32x4d"):
        build_resnet("resnet52")


# ---- frozen parts ------------------------------------------------------------------------


def test_frozen_stem_layer1_and_bn():
    model = build_resnet("resnet18").train()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns == []  # every norm is a FrozenBatchNorm2d
    assert all(
        len(list(m.parameters())) == 0 for m in model.modules() if isinstance(m, FrozenBatchNorm2d)
    )
    frozen = [model.conv1, model.bn1, model.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert not model.layer1.training and not model.conv1.training and model.layer2.training
    conv_weights = [
        m.weight
        for layer in (model.layer2, model.layer3, model.layer4)
        for m in layer.modules()
        if isinstance(m, nn.Conv2d)
    ]
    assert conv_weights and all(w.requires_grad for w in conv_weights)

    buffers = {k: v.clone() for k, v in model.named_buffers()}
    sum(f.sum() for f in model(torch.randn(2, 3, 64, 64))).backward()
    assert model.conv1.weight.grad is None
    assert all(p.grad is None for p in model.layer1.parameters())
    assert model.layer2[0].conv1.weight.grad is not None
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())


@pytest.mark.parametrize("frozen_stages, n_frozen_layers", [(-1, 0), (0, 0), (2, 2), (4, 4)])
def test_frozen_stages_meaning(frozen_stages, n_frozen_layers):
    model = build_resnet("resnet18", frozen_stages=frozen_stages).train()
    assert model.conv1.weight.requires_grad == (frozen_stages < 0)
    for i, layer in enumerate(model._stages()):
        frozen = i < n_frozen_layers
        assert all(p.requires_grad != frozen for p in layer.parameters())
        assert layer.training != frozen


def test_frozen_stages_out_of_range():
    with pytest.raises(ValueError, match="frozen_stages"):
        build_resnet("resnet18", frozen_stages=5)


# ---- frozen BatchNorm folded into the convs ---------------------------------------------------


def _unfolded(net, x):
    """The stock torchvision path: each conv, then its FrozenBatchNorm2d module."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    outs = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
        outs.append(x)
    return outs[1:]


@pytest.mark.parametrize("arch, dcn", [("resnet50", None), ("resnet18", None),
                                       ("resnet50", (False, False, True, True))])  # fmt: skip
def test_folded_frozen_bn_equals_conv_then_bn(arch, dcn):
    torch.manual_seed(0)
    net = build_resnet(arch, frozen_stages=1, dcn_stages=dcn)
    with torch.no_grad():  # statistics far from the identity, so a wrong fold shows
        for name, buf in net.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buf.normal_(0.0, 0.5)
        for name, p in net.named_parameters():
            if ".bn" in name or name.startswith("bn") or "downsample.1" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0.0, 0.1)
    # float64: the two paths differ by rounding only, and in float32 that rounding (which depends
    # on the CPU's conv kernels) flips the odd ReLU near 0 and with it a gradient element.
    net, x = net.double(), torch.randn(2, 3, 64, 96, dtype=torch.float64)
    folded, stock = net(x), _unfolded(net, x)
    for a, b in zip(folded, stock, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * b.abs().max().item())
    conv = net.layer3[0].conv1.weight
    grad_folded = torch.autograd.grad(sum(o.square().mean() for o in net(x)), conv)[0]
    grad_stock = torch.autograd.grad(sum(o.square().mean() for o in stock), conv)[0]
    torch.testing.assert_close(
        grad_folded, grad_stock, rtol=1e-9, atol=1e-9 * grad_stock.abs().max().item()
    )


# ---- DCNv2 ------------------------------------------------------------------------------


def test_dcn_zero_offsets_is_half_conv():
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(8, 6, 3, stride=2, padding=1, groups=2)
    x = torch.randn(2, 8, 11, 13)
    expected = 0.5 * F.conv2d(x, dcn.weight, stride=2, padding=1, groups=2)
    out = dcn(x)
    assert out.shape == (2, 6, 6, 7)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_dcn_one_pixel_shift():
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(4, 5, 3, padding=1)
    with torch.no_grad():
        bias = torch.zeros(27)
        bias[1:18:2] = 1.0  # offsets are (y, x) pairs per kernel point: every x-offset = 1
        bias[18:] = 30.0  # mask logits: sigmoid(30) = 1 in float32
        dcn.conv_offset.bias.copy_(bias)
    x = torch.randn(1, 4, 9, 10)
    shifted = torch.zeros_like(x)
    shifted[..., :-1] = x[..., 1:]  # shifted[..., j] = x[..., j + 1]
    expected = F.conv2d(shifted, dcn.weight, padding=1)
    # Interior: in column 0 the deformable conv reads x[..., 0] where `shifted` reads padding.
    out = dcn(x)
    torch.testing.assert_close(out[..., 1:-1], expected[..., 1:-1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, 0.5 * F.conv2d(x, dcn.weight, padding=1))


def test_dcn_gradients_reach_offsets():
    dcn = ModulatedDeformConv2d(4, 4, 3, padding=1)
    dcn(torch.randn(1, 4, 8, 8)).square().sum().backward()
    assert dcn.conv_offset.weight.grad.abs().sum() > 0
    assert dcn.weight.grad is not None


def test_dcn_r50_keys_and_count(r50, dcn_r50):
    state = dcn_r50.state_dict()
    assert state["layer2.0.conv2.conv_offset.weight"].shape == (27, 128, 3, 3)
    assert state["layer2.0.conv2.conv_offset.bias"].shape == (27,)
    assert state["layer4.2.conv2.weight"].shape == (512, 512, 3, 3)
    assert not any("conv_offset" in k for k in state if k.startswith("layer1."))
    assert isinstance(dcn_r50.layer3[5].conv2, ModulatedDeformConv2d)
    assert dcn_r50.layer2[0].conv2.stride == (2, 2)
    # Extra parameters: one conv_offset (27 * 9 * w + 27) per block; w = 128, 256, 512
    # in 4, 6, 3 blocks = 871,263.
    extra = sum(p.numel() for p in dcn_r50.parameters()) - sum(p.numel() for p in r50.parameters())
    assert extra == 871_263
    c3, c4, c5 = dcn_r50(torch.randn(1, 3, 64, 64))
    assert (c3.shape, c4.shape, c5.shape) == ((1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2))


def test_dcn_resnext_groups():
    spec = RESNET_SPECS["resnext101_32x4d"]
    small = type(spec)("tiny_resnext", spec.block, (1, 1, 1, 1), groups=32, width_per_group=4)
    model = ResNetBackbone(small, dcn_stages=(False, False, True, True))
    assert model.layer3[0].conv2.weight.shape == (512, 16, 3, 3)
    assert model(torch.randn(1, 3, 64, 64))[2].shape == (1, 2048, 2, 2)


def test_dcn_rejects_basic_block():
    with pytest.raises(ValueError, match="Bottleneck"):
        build_resnet("resnet18", dcn_stages=(False, True, True, True))


# ---- pretrained weights -------------------------------------------------------------------


def random_resnet18_state():
    """A torchvision resnet18 (with fc) whose BN statistics are not the trivial init."""
    torch.manual_seed(1)
    net = resnet18()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    return net.eval(), net.state_dict()


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=str(path)):
        build_resnet("resnet18", pretrained=path)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_load_local_file(tmp_path, wrapper):
    net, state = random_resnet18_state()
    path = tmp_path / "r18.pth"
    torch.save(state if wrapper is None else {wrapper: state}, path)
    model = build_resnet("resnet18", pretrained=str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    # Same features as torchvision's eval-mode network (FrozenBN eps = BN eps = 1e-5), up to
    # float32 rounding: here each BN is folded into its conv's weights, so products are summed
    # in another order (relative differences of order 1e-5 after 17 convs).
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net.layer4(
            net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
        )
        torch.testing.assert_close(model(x)[2], ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_unexpected_and_missing_keys(tmp_path):
    _, state = random_resnet18_state()
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    del state["layer1.0.conv1.weight"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(KeyError, match="layer5.0.conv1.weight") as info:
        build_resnet("resnet18", pretrained=path)
    assert "layer1.0.conv1.weight" in str(info.value)


def test_pretrained_true_reads_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError, match=str(expected)) as info:
        build_resnet("resnet18", pretrained=True)
    assert "nothing is downloaded" in str(info.value)

    _, state = random_resnet18_state()
    expected.parent.mkdir(parents=True)
    torch.save(state, expected)
    model = build_resnet("resnet18", pretrained=True)
    assert torch.equal(model.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"])


def test_pretrained_true_file_names():
    assert RESNET_SPECS["resnet50"].weights_file == "resnet50-0676ba61.pth"
    assert RESNET_SPECS["resnet101"].weights_file == "resnet101-63fe2227.pth"
    assert RESNET_SPECS["resnext101_64x4d"].weights_file == "resnext101_64x4d-173b62eb.pth"
    with pytest.raises(ValueError, match="resnext101_32x4d.*path"):
        build_resnet("resnext101_32x4d", pretrained=True)


def test_dcn_loads_plain_checkpoint(tmp_path, r50, dcn_r50):
    path = tmp_path / "r50.pth"
    torch.save(r50.state_dict(), path)
    model = build_resnet("resnet50", pretrained=path, dcn_stages=(False, True, True, True))
    assert torch.equal(model.layer3[2].conv2.weight, r50.layer3[2].conv2.weight)
    assert model.layer3[2].conv2.conv_offset.weight.abs().sum() == 0
    torch.save(dcn_r50.state_dict(), path)  # and a DCN checkpoint does not fit a plain R-50
    with pytest.raises(KeyError, match="layer2.0.conv2.conv_offset.weight"):
        build_resnet("resnet50", pretrained=path)


# ---- MiniBackbone -----------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_mini_backbone(norm):
    model = MiniBackbone(norm=norm)
    c3, c4, c5 = model(torch.randn(2, 3, 64, 64))
    assert (c3.shape, c4.shape, c5.shape) == ((2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2))
    assert model.out_channels == [64, 128, 256] and model.strides == [8, 16, 32]
    norm_type = nn.BatchNorm2d if norm == "bn" else nn.GroupNorm
    assert sum(isinstance(m, norm_type) for m in model.modules()) == 10
    # Per stage c_in -> c: two 3x3 convs without bias + two norms with weight and bias.
    widths = (16, 32, 64, 128, 256)
    pairs = zip((3, *widths[:-1]), widths, strict=True)
    by_hand = sum(9 * a * c + 9 * c * c + 4 * c for a, c in pairs)
    assert by_hand == 1_179_760
    assert sum(p.numel() for p in model.parameters()) == by_hand
    assert all(p.requires_grad for p in model.parameters())


def test_mini_backbone_rejects_bad_arguments():
    with pytest.raises(ValueError, match="norm"):
        MiniBackbone(norm="ln")
    with pytest.raises(ValueError, match="divide"):
        MiniBackbone(widths=(12, 32, 64, 128, 256), norm="gn")
