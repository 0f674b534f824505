"""Checkpoint conversion on synthetic state dicts written with mmdetection's exact names and shapes.

Each helper yields (mmdetection name, expected name in this project or None if dropped, shape),
spelled out by hand rather than derived from the converter's rules.
"""

import argparse
import sys
import types
import warnings
from functools import cache

import numpy as np
import pytest
import torch
from torchvision.models import resnet50

from gfl_repro.build import build_model
from gfl_repro.config import ModelConfig, QualityConfig
from gfl_repro.convert import (
    CheckpointError,
    add_arguments,
    convert_checkpoint,
    convert_state_dict,
    load_checkpoint,
    run,
    unwrap_state_dict,
)

QUALITY_KEYS = [
    "head.quality.fc1.weight",
    "head.quality.fc1.bias",
    "head.quality.fc2.weight",
    "head.quality.fc2.bias",
]


@cache
def torchvision_r50_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """torchvision's ResNet-50 keys (= mmdetection's backbone keys) and shapes, minus fc."""
    state = resnet50(weights=None).state_dict()
    return tuple((k, tuple(v.shape)) for k, v in state.items() if not k.startswith("fc."))


def backbone_names(dcn: bool = False):
    for name, shape in torchvision_r50_shapes():
        dropped = name.endswith("num_batches_tracked")
        yield f"backbone.{name}", None if dropped else f"backbone.{name}", shape
    if not dcn:
        return
    # mmcv's ModulatedDeformConv2dPack in c3-c5: 3 * 9 offset/mask channels, 3x3 kernel.
    for stage, blocks, width in ((2, 4, 128), (3, 6, 256), (4, 3, 512)):
        for b in range(blocks):
            prefix = f"backbone.layer{stage}.{b}.conv2.conv_offset"
            yield f"{prefix}.weight", f"{prefix}.weight", (27, width, 3, 3)
            yield f"{prefix}.bias", f"{prefix}.bias", (27,)


def neck_names():
    for i, c in enumerate((512, 1024, 2048)):
        yield (
            f"neck.lateral_convs.{i}.conv.weight",
            f"neck.lateral_convs.{i}.weight",
            (256, c, 1, 1),
        )
        yield f"neck.lateral_convs.{i}.conv.bias", f"neck.lateral_convs.{i}.bias", (256,)
    for i in range(5):
        yield f"neck.fpn_convs.{i}.conv.weight", f"neck.fpn_convs.{i}.weight", (256, 256, 3, 3)
        yield f"neck.fpn_convs.{i}.conv.bias", f"neck.fpn_convs.{i}.bias", (256,)


def head_names(quality: bool):
    for tower in ("cls_convs", "reg_convs"):
        for i in range(4):
            conv = (256, 256, 3, 3)
            yield f"bbox_head.{tower}.{i}.conv.weight", f"head.{tower}.{i}.conv.weight", conv
            yield f"bbox_head.{tower}.{i}.gn.weight", f"head.{tower}.{i}.gn.weight", (256,)
            yield f"bbox_head.{tower}.{i}.gn.bias", f"head.{tower}.{i}.gn.bias", (256,)
    yield "bbox_head.gfl_cls.weight", "head.gfl_cls.weight", (80, 256, 3, 3)
    yield "bbox_head.gfl_cls.bias", "head.gfl_cls.bias", (80,)
    yield "bbox_head.gfl_reg.weight", "head.gfl_reg.weight", (68, 256, 3, 3)
    yield "bbox_head.gfl_reg.bias", "head.gfl_reg.bias", (68,)
    for i in range(5):
        yield f"bbox_head.scales.{i}.scale", f"head.scales.{i}.scale", ()
    if quality:
        yield "bbox_head.reg_conf.0.weight", "head.quality.fc1.weight", (64, 20, 1, 1)
        yield "bbox_head.reg_conf.0.bias", "head.quality.fc1.bias", (64,)
        yield "bbox_head.reg_conf.2.weight", "head.quality.fc2.weight", (1, 64, 1, 1)
        yield "bbox_head.reg_conf.2.bias", "head.quality.fc2.bias", (1,)


def mmdet_names(quality: bool = True, dcn: bool = False) -> list[tuple[str, str | None, tuple]]:
    return [*backbone_names(dcn), *neck_names(), *head_names(quality)]


def mmdet_state(quality=True, dcn=False, project=True, seed=0) -> dict[str, torch.Tensor]:
    """Random tensors under mmdetection's names (GFLV2 with `quality`, else GFLV1)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, _, shape in mmdet_names(quality, dcn):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1234)  # int64 counter, as BatchNorm2d keeps it
        else:
            state[name] = torch.randn(shape, generator=g)
    if project:
        state["bbox_head.integral.project"] = torch.linspace(0, 16, 17)
    return state


@pytest.fixture(scope="module")
def gflv2():
    return build_model(ModelConfig())


@pytest.fixture(scope="module")
def gflv1():
    return build_model(ModelConfig(quality=QualityConfig(kind="none")))


def test_names_cover_the_model_exactly(gflv2, gflv1):
    """The hand-written names are the models' keys: the tests below check every tensor."""
    for model, quality in ((gflv2, True), (gflv1, False)):
        ours = [o for _, o, _ in mmdet_names(quality) if o is not None]
        assert sorted(ours) == sorted(model.state_dict())
        assert len(ours) == len(set(ours))


def test_gflv2_every_tensor_lands_under_its_mapped_name(gflv2):
    state = mmdet_state()
    converted = convert_state_dict(state, gflv2)
    gflv2.load_state_dict(converted, strict=True)
    loaded = gflv2.state_dict()
    # Spot checks, written out.
    assert torch.equal(gflv2.head.quality.fc1.weight, state["bbox_head.reg_conf.0.weight"])
    assert torch.equal(gflv2.head.quality.fc2.bias, state["bbox_head.reg_conf.2.bias"])
    assert torch.equal(
        gflv2.neck.lateral_convs[2].weight, state["neck.lateral_convs.2.conv.weight"]
    )
    assert torch.equal(gflv2.neck.fpn_convs[4].bias, state["neck.fpn_convs.4.conv.bias"])
    assert torch.equal(gflv2.head.reg_convs[3].gn.weight, state["bbox_head.reg_convs.3.gn.weight"])
    assert torch.equal(gflv2.head.scales[2].scale, state["bbox_head.scales.2.scale"])
    assert torch.equal(gflv2.head.gfl_cls.bias, state["bbox_head.gfl_cls.bias"])
    bn3 = gflv2.backbone.layer4[2].bn3
    assert torch.equal(bn3.running_var, state["backbone.layer4.2.bn3.running_var"])
    # Every one.
    for src, ours, _ in mmdet_names(quality=True):
        if ours is not None:
            assert torch.equal(loaded[ours], state[src]), (src, ours)
    assert list(converted) == list(loaded)
    assert not any("num_batches_tracked" in k or "integral" in k for k in converted)


def test_conversion_is_idempotent(gflv2):
    once = convert_state_dict(mmdet_state(), gflv2)
    twice = convert_state_dict(once, gflv2)
    assert list(twice) == list(once)
    assert all(torch.equal(twice[k], once[k]) for k in once)


def test_gflv1_mmdet3_into_gflv1_model(gflv1):
    state = mmdet_state(quality=False, project=False)  # mmdet 3.x style, no projection buffer
    converted = convert_state_dict(state, gflv1)
    for src, ours, _ in mmdet_names(quality=False):
        if ours is not None:
            assert torch.equal(converted[ours], state[src])
    assert not any(k.startswith("head.quality") for k in converted)


def test_dataparallel_prefix_is_stripped(gflv1):
    state = {f"module.{k}": v for k, v in mmdet_state(quality=False).items()}
    converted = convert_state_dict(state, gflv1)
    assert torch.equal(converted["head.gfl_reg.bias"], state["module.bbox_head.gfl_reg.bias"])


def test_gflv1_into_gflv2_names_the_quality_keys(gflv2):
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(mmdet_state(quality=False), gflv2)
    err = info.value
    assert err.missing == QUALITY_KEYS
    assert err.unexpected == [] and err.mismatched == []
    assert "head.quality.fc1.weight" in str(err)
    assert "quality.kind=none" in str(err)


def test_gflv2_into_gflv1_names_reg_conf(gflv1):
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(mmdet_state(quality=True), gflv1)
    err = info.value
    assert err.unexpected == [
        "bbox_head.reg_conf.0.weight",
        "bbox_head.reg_conf.0.bias",
        "bbox_head.reg_conf.2.weight",
        "bbox_head.reg_conf.2.bias",
    ]
    assert "head.quality.fc1.weight" in str(err)  # the name it would take
    assert "quality.kind=dgqp" in str(err)


def test_unknown_key_is_named(gflv2):
    state = mmdet_state()
    state["bbox_head.extra_conv.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(state, gflv2)
    assert info.value.unexpected == ["bbox_head.extra_conv.weight"]
    assert info.value.missing == []
    assert "bbox_head.extra_conv.weight" in str(info.value)


def test_wrong_shape_names_key_and_both_shapes(gflv2):
    state = mmdet_state()
    state["neck.lateral_convs.1.conv.weight"] = torch.zeros(256, 1000, 1, 1)
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(state, gflv2)
    err = info.value
    assert err.mismatched == [("neck.lateral_convs.1.weight", (256, 1000, 1, 1), (256, 1024, 1, 1))]
    message = str(err)
    assert "neck.lateral_convs.1.weight" in message
    assert "neck.lateral_convs.1.conv.weight" in message
    assert "(256, 1000, 1, 1)" in message and "(256, 1024, 1, 1)" in message


def test_81_class_softmax_classifier_is_a_mismatch_naming_num_classes(gflv2):
    state = mmdet_state()
    state["bbox_head.gfl_cls.weight"] = torch.zeros(81, 256, 3, 3)
    state["bbox_head.gfl_cls.bias"] = torch.zeros(81)
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(state, gflv2)
    err = info.value
    assert [k for k, _, _ in err.mismatched] == ["head.gfl_cls.weight", "head.gfl_cls.bias"]
    assert "(81, 256, 3, 3)" in str(err) and "(80, 256, 3, 3)" in str(err)
    assert "num_classes" in str(err) and "background" in str(err)


def test_other_class_count_suggests_num_classes(gflv2):
    state = mmdet_state()
    state["bbox_head.gfl_cls.weight"] = torch.zeros(20, 256, 3, 3)
    state["bbox_head.gfl_cls.bias"] = torch.zeros(20)
    with pytest.raises(CheckpointError, match="--num-classes 20"):
        convert_state_dict(state, gflv2)


@pytest.mark.parametrize(
    "project",
    [torch.linspace(0, 7, 8), torch.linspace(0, 32, 17), torch.arange(17.0).flip(0)],
    ids=["reg_max_7", "wrong_values", "reversed"],
)
def test_wrong_integral_projection_is_refused(gflv2, project):
    state = mmdet_state()
    state["bbox_head.integral.project"] = project
    with pytest.raises(CheckpointError, match="integral.project") as info:
        convert_state_dict(state, gflv2)
    assert "reg_max" in str(info.value)


def test_non_tensor_value_is_refused(gflv1):
    state = mmdet_state(quality=False)
    state["bbox_head.gfl_cls.bias"] = [0.0] * 80
    with pytest.raises(CheckpointError, match="bbox_head.gfl_cls.bias is a list"):
        convert_state_dict(state, gflv1)


def test_two_sources_for_one_key_are_refused(gflv1):
    state = mmdet_state(quality=False)
    state["neck.fpn_convs.0.bias"] = torch.zeros(256)  # already ours, next to the mmdet name
    with pytest.raises(CheckpointError, match="both map to neck.fpn_convs.0.bias"):
        convert_state_dict(state, gflv1)


def test_dcn_keys_map_for_a_dcn_model(gflv2):
    model = build_model(ModelConfig(dcn=True))
    state = mmdet_state(dcn=True)
    assert state["backbone.layer2.0.conv2.conv_offset.weight"].shape == (27, 128, 3, 3)
    converted = convert_state_dict(state, model)
    model.load_state_dict(converted, strict=True)
    offset = model.backbone.layer3[5].conv2.conv_offset
    assert torch.equal(offset.weight, state["backbone.layer3.5.conv2.conv_offset.weight"])
    assert torch.equal(offset.bias, state["backbone.layer3.5.conv2.conv_offset.bias"])
    assert torch.equal(
        model.backbone.layer4[0].conv2.weight, state["backbone.layer4.0.conv2.weight"]
    )
    for src, ours, _ in mmdet_names(quality=True, dcn=True):
        if ours is not None:
            assert torch.equal(converted[ours], state[src])
    # The same checkpoint into the plain model: the offsets map nowhere.
    with pytest.raises(CheckpointError, match="--dcn") as info:
        convert_state_dict(state, gflv2)
    assert len(info.value.unexpected) == 2 * (4 + 6 + 3)


def test_unwrap_accepts_wrapped_and_bare_state_dicts():
    state = {"a": torch.zeros(1)}
    assert unwrap_state_dict({"state_dict": state, "meta": {}, "optimizer": {}}) is state
    assert unwrap_state_dict(state) is state
    with pytest.raises(CheckpointError, match="'model'"):
        unwrap_state_dict({"model": state, "epoch": 3})


def test_convert_checkpoint_file_round_trip(tmp_path):
    state = mmdet_state()
    src, dst = tmp_path / "gflv2_r50.pth", tmp_path / "out" / "converted.pth"
    meta = {"epoch": 24, "CLASSES": ("person", "bicycle"), "mmdet_version": "2.6.0"}
    torch.save({"state_dict": state, "meta": meta, "optimizer": {"state": {}}}, src)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain meta: loads with weights_only=True, no warning
        returned = convert_checkpoint(src, dst)
    saved = torch.load(dst, map_location="cpu", weights_only=True)
    assert saved["meta"] == {"source": str(src), "converted_by": "gfl-repro"}
    assert list(saved["state_dict"]) == list(returned["state_dict"])
    for name, ours, _ in mmdet_names(quality=True):
        if ours is not None:
            assert torch.equal(saved["state_dict"][ours], state[name])
    assert sorted(p.name for p in dst.parent.iterdir()) == ["converted.pth"]  # no temp file left
    model = build_model(ModelConfig())
    model.load_state_dict(saved["state_dict"], strict=True)


def test_convert_checkpoint_refuses_and_writes_nothing(tmp_path):
    src, dst = tmp_path / "gflv1.pth", tmp_path / "converted.pth"
    torch.save({"state_dict": mmdet_state(quality=False)}, src)
    with pytest.raises(CheckpointError, match="head.quality.fc1.weight"):
        convert_checkpoint(src, dst)  # default model: GFLV2
    assert not dst.exists()


def test_mmengine_meta_is_loaded_with_placeholders(tmp_path, monkeypatch):
    """mmdet 3.x meta holds mmengine objects and numpy arrays; mmengine need not be installed."""

    class HistoryBuffer:
        def __init__(self):
            self._log_history = np.arange(3.0)

    HistoryBuffer.__qualname__ = "HistoryBuffer"  # importable by name from the fake module
    HistoryBuffer.__module__ = "fake_mmengine_history_buffer"
    module = types.ModuleType(HistoryBuffer.__module__)
    module.HistoryBuffer = HistoryBuffer
    src = tmp_path / "gfl_mmdet3.pth"
    meta = {"message_hub": {"log_scalars": {"loss": HistoryBuffer()}}, "seed": np.int64(0)}
    with monkeypatch.context() as m:
        m.setitem(sys.modules, HistoryBuffer.__module__, module)
        torch.save({"state_dict": mmdet_state(quality=False), "meta": meta}, src)
    with pytest.warns(UserWarning, match="fake_mmengine_history_buffer.HistoryBuffer") as record:
        state = unwrap_state_dict(load_checkpoint(src))
    assert not any("weights_only=False" in str(w.message) for w in record)  # no code was run
    assert torch.equal(
        state["bbox_head.gfl_cls.weight"], mmdet_state(quality=False)["bbox_head.gfl_cls.weight"]
    )


def test_legacy_format_with_numpy_meta_falls_back_with_a_warning(tmp_path):
    src = tmp_path / "legacy.pth"
    checkpoint = {"state_dict": {"a": torch.ones(2)}, "meta": {"best": np.float64(0.5)}}
    torch.save(checkpoint, src, _use_new_zipfile_serialization=False)
    with pytest.warns(UserWarning, match="weights_only=False"):
        loaded = load_checkpoint(src)
    assert torch.equal(loaded["state_dict"]["a"], torch.ones(2))


def test_cli_converts_gflv1(tmp_path, capsys):
    src, dst = tmp_path / "gfl_r50.pth", tmp_path / "gfl_r50_converted.pth"
    torch.save({"state_dict": mmdet_state(quality=False), "meta": {}}, src)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(src), str(dst), "--quality", "none"])
    assert (args.backbone, args.dcn, args.num_classes) == ("resnet50", False, 80)
    assert run(args) == 0
    assert f"wrote {dst}" in capsys.readouterr().out
    saved = torch.load(dst, map_location="cpu", weights_only=True)
    assert not any(k.startswith("head.quality") for k in saved["state_dict"])
    # Into the default GFLV2 model it fails: exit code 1 and the listed keys on stderr.
    assert run(parser.parse_args([str(src), str(dst)])) == 1
    assert "head.quality.fc1.weight" in capsys.readouterr().err
