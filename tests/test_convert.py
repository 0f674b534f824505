"""Checkpoint conversion, both ways, on synthetic state dicts with mmdetection's exact names and
shapes.

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
from gfl_repro.config import (
    BACKBONES,
    Config,
    DataConfig,
    HeadConfig,
    ModelConfig,
    QualityConfig,
    to_dict,
)
from gfl_repro.convert import (
    BACKGROUND_BIAS,
    MMDET_BACKBONES,
    CheckpointError,
    ExportError,
    add_arguments,
    convert_checkpoint,
    convert_state_dict,
    export_checkpoint,
    export_state_dict,
    load_checkpoint,
    run,
    unwrap_state_dict,
)
from gfl_repro.engine.checkpoint import save_checkpoint
from gfl_repro.engine.runs import RunFolder
from gfl_repro.errors import ToolkitError
from gfl_repro.io import atomic_write_json

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
    # GFocalV2's config sets QFL use_sigmoid=False: mmdetection's AnchorHead then builds
    # num_classes + 1 outputs. GFLV1's config (use_sigmoid=True) has num_classes.
    outputs = 81 if quality else 80
    yield "bbox_head.gfl_cls.weight", "head.gfl_cls.weight", (outputs, 256, 3, 3)
    yield "bbox_head.gfl_cls.bias", "head.gfl_cls.bias", (outputs,)
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


def mmdet_state(
    quality=True, dcn=False, project=True, seed=0, tracked=1234
) -> dict[str, torch.Tensor]:
    """Random tensors under mmdetection's names (GFLV2 with `quality`, else GFLV1)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, _, shape in mmdet_names(quality, dcn):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(tracked)  # int64 counter, as BatchNorm2d keeps it
        else:
            state[name] = torch.randn(shape, generator=g)
    if project:
        state["bbox_head.integral.project"] = torch.linspace(0, 16, 17)
    return state


def as_ours(name: str, value: torch.Tensor) -> torch.Tensor:
    """The value this project keeps of an mmdetection tensor: GFocalV2's classifier without its
    last (background) output."""
    return value[:80] if name.startswith("bbox_head.gfl_cls.") else value


@pytest.fixture(scope="module")
def gflv2():
    return build_model(ModelConfig())


@pytest.fixture(scope="module")
def gflv1():
    return build_model(ModelConfig(quality=QualityConfig(kind="none")))


@pytest.fixture(scope="module")
def gflv2_dcn():
    return build_model(ModelConfig(dcn=True))


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
    assert torch.equal(gflv2.head.gfl_cls.bias, state["bbox_head.gfl_cls.bias"][:80])
    assert state["bbox_head.gfl_cls.bias"].shape == (81,)  # GFocalV2's background output
    bn3 = gflv2.backbone.layer4[2].bn3
    assert torch.equal(bn3.running_var, state["backbone.layer4.2.bn3.running_var"])
    # Every one.
    for src, ours, _ in mmdet_names(quality=True):
        if ours is not None:
            assert torch.equal(loaded[ours], as_ours(src, state[src])), (src, ours)
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


def test_gflv2_takes_a_classifier_with_or_without_the_background_output(gflv2):
    state = mmdet_state()  # GFocalV2's 81 outputs: the last is dropped (see the test above)
    state["bbox_head.gfl_cls.weight"] = state["bbox_head.gfl_cls.weight"][:80].clone()
    state["bbox_head.gfl_cls.bias"] = state["bbox_head.gfl_cls.bias"][:80].clone()
    converted = convert_state_dict(state, gflv2)  # 80: a sigmoid classifier, taken as it is
    assert torch.equal(converted["head.gfl_cls.weight"], state["bbox_head.gfl_cls.weight"])


def test_81_class_classifier_into_gflv1_is_a_mismatch_naming_num_classes(gflv1):
    state = mmdet_state(quality=False)
    state["bbox_head.gfl_cls.weight"] = torch.zeros(81, 256, 3, 3)
    state["bbox_head.gfl_cls.bias"] = torch.zeros(81)
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(state, gflv1)
    err = info.value
    assert [k for k, _, _ in err.mismatched] == ["head.gfl_cls.weight", "head.gfl_cls.bias"]
    assert "(81, 256, 3, 3)" in str(err) and "(80, 256, 3, 3)" in str(err)
    assert "num_classes" in str(err) and "background" in str(err)


@pytest.mark.parametrize("quality, outputs", [(True, 21), (False, 20)], ids=["gflv2", "gflv1"])
def test_other_class_count_suggests_num_classes(request, quality, outputs):
    """20 classes: 21 outputs in a GFocalV2 checkpoint, 20 in a GFLV1 one."""
    model = request.getfixturevalue("gflv2" if quality else "gflv1")
    state = mmdet_state(quality=quality)
    state["bbox_head.gfl_cls.weight"] = torch.zeros(outputs, 256, 3, 3)
    state["bbox_head.gfl_cls.bias"] = torch.zeros(outputs)
    with pytest.raises(CheckpointError, match="--num-classes 20"):
        convert_state_dict(state, model)


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


def test_dcn_keys_map_for_a_dcn_model(gflv2, gflv2_dcn):
    model = gflv2_dcn
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
            assert torch.equal(converted[ours], as_ours(src, state[src]))
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
            assert torch.equal(saved["state_dict"][ours], as_ours(name, state[name]))
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


# Export: this project's names -> the official GFocalV2 (mmdetection 2.x) names.


def official_gflv2_state(**kwargs) -> dict[str, torch.Tensor]:
    """An official checkpoint's state whose values all survive a trip through this project:
    counters at 0 (frozen BatchNorms only run in eval mode) and the background output set to
    what export writes, since this project's model has no place for it (tested apart)."""
    state = mmdet_state(tracked=0, **kwargs)
    state["bbox_head.gfl_cls.weight"][80] = 0.0
    state["bbox_head.gfl_cls.bias"][80] = BACKGROUND_BIAS
    return state


@pytest.mark.parametrize("quality", [True, False], ids=["gflv2", "gflv1"])
def test_official_to_ours_to_official_is_identical(request, quality):
    model = request.getfixturevalue("gflv2" if quality else "gflv1")
    official = official_gflv2_state() if quality else mmdet_state(quality=False, tracked=0)
    back = export_state_dict(convert_state_dict(official, model), model)
    assert list(back) == list(official)  # names and order
    for name, value in official.items():
        assert back[name].dtype == value.dtype and torch.equal(back[name], value), name


def test_official_to_ours_to_official_with_dcn(gflv2_dcn):
    official = official_gflv2_state(dcn=True)
    back = export_state_dict(convert_state_dict(official, gflv2_dcn), gflv2_dcn)
    assert sorted(back) == sorted(official)  # the hand-written names list the offsets last
    assert all(torch.equal(back[k], v) for k, v in official.items())


def test_the_background_output_comes_back_as_one_that_never_scores(gflv2):
    official = mmdet_state()  # a trained background output: random values
    back = export_state_dict(convert_state_dict(official, gflv2), gflv2)
    weight, bias = back["bbox_head.gfl_cls.weight"], back["bbox_head.gfl_cls.bias"]
    assert weight.shape == (81, 256, 3, 3) and bias.shape == (81,)
    assert torch.equal(weight[:80], official["bbox_head.gfl_cls.weight"][:80])
    assert torch.equal(bias[:80], official["bbox_head.gfl_cls.bias"][:80])
    assert torch.equal(weight[80], torch.zeros(256, 3, 3))
    assert torch.sigmoid(bias[80]) < 1e-8  # below any score threshold, times any quality


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(backbone="resnet18", num_classes=3),
        ModelConfig(backbone="resnext101_32x4d", quality=QualityConfig(kind="none")),
        ModelConfig(backbone="resnet18", quality=QualityConfig(k=3, statistics=("topk",))),
    ],
    ids=["r18_gflv2", "x101_gflv1", "r18_gflv2_topk_only"],
)
def test_ours_to_official_to_ours_is_identical(cfg):
    model = build_model(cfg)
    ours = model.state_dict()
    official = export_state_dict(ours, model)
    assert not any(k.startswith("head.") for k in official)
    assert official["bbox_head.integral.project"].tolist() == list(range(17))
    assert official["backbone.layer4.1.bn2.num_batches_tracked"] == 0
    lateral = official["neck.lateral_convs.0.conv.weight"]
    assert lateral.shape[1] == MMDET_BACKBONES[cfg.backbone][1][1]  # C3 of the mmdet table
    classes = cfg.num_classes + (cfg.quality.kind == "dgqp")
    assert official["bbox_head.gfl_cls.bias"].shape == (classes,)
    back = convert_state_dict(official, model)
    assert list(back) == list(ours)
    assert all(torch.equal(back[k], v) for k, v in ours.items())


def test_every_backbone_but_mini_has_its_mmdetection_config():
    assert set(BACKBONES) - set(MMDET_BACKBONES) == {"mini"}


def write_run(root, cfg: ModelConfig, class_names: list[str]) -> RunFolder:
    """A run folder with config.json and val annotations listing the classes (ids shuffled)."""
    ids = [7, 3, 5][: len(class_names)]
    categories = [{"id": i, "name": n} for i, n in zip(ids, class_names, strict=True)]
    atomic_write_json(root / "data" / "val.json", {"categories": categories})
    data = DataConfig(dataset="custom", root=str(root / "data"), val_ann="val.json")
    run = RunFolder(root / "run")
    atomic_write_json(run / run.CONFIG, to_dict(Config(model=cfg, data=data)))
    return run


def test_export_run_folder_takes_its_latest_checkpoint(tmp_path):
    cfg = ModelConfig(backbone="resnet18", num_classes=3, quality=QualityConfig(kind="none"))
    run = write_run(tmp_path, cfg, ["cat", "bird", "ant"])  # ids 7, 3, 5
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    extra = {"model_config": to_dict(cfg), "category_ids": [3, 5, 7]}
    for iteration in (20, 100, 30):
        with torch.no_grad():
            model.head.gfl_cls.bias.fill_(iteration)
        save_checkpoint(run / f"iter_{iteration}.pth", model=model, optimizer=optimizer,
                        iteration=iteration, extra=extra)  # fmt: skip
    dst = tmp_path / "out" / "gfl_r18.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy RNG state in our own checkpoints: no warning
        assert export_checkpoint(run.path, dst) == dst
    saved = torch.load(dst, map_location="cpu", weights_only=True)
    assert saved["state_dict"]["bbox_head.gfl_cls.bias"].tolist() == [100.0] * 3
    meta = saved["meta"]
    assert meta["iter"] == 100 and meta["mmdet_version"] == "2.6.0"
    assert meta["CLASSES"] == ("bird", "ant", "cat")  # labels follow ascending ids
    assert meta["gfl_repro"]["source"] == str(run / "iter_100.pth")
    assert meta["gfl_repro"]["category_ids"] == [3, 5, 7]
    assert meta["gfl_repro"]["model_config"] == to_dict(cfg)
    config: dict = {}
    exec(meta["config"], config)  # the mmdetection config lines it writes are Python
    head = config["model"]["bbox_head"]
    assert (head["type"], head["num_classes"], head["loss_cls"]["use_sigmoid"]) == (
        "GFLHead",
        3,
        True,
    )
    assert config["model"]["backbone"]["depth"] == 18 and config["test_cfg"]["score_thr"] == 0.05
    assert sorted(p.name for p in dst.parent.iterdir()) == ["gfl_r18.pth"]


def test_export_file_round_trip_official_to_ours_to_official(tmp_path):
    """convert-checkpoint then export-checkpoint gives back the official file's tensors."""
    official = official_gflv2_state()
    src, ours, back = tmp_path / "gflv2.pth", tmp_path / "ours.pth", tmp_path / "back.pth"
    torch.save({"state_dict": official, "meta": {"epoch": 24}}, src)
    convert_checkpoint(src, ours)
    export_checkpoint(ours, back)
    saved = torch.load(back, map_location="cpu", weights_only=True)
    assert list(saved["state_dict"]) == list(official)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in official.items())
    assert "CLASSES" not in saved["meta"] and "iter" not in saved["meta"]  # a loose file
    config: dict = {}
    exec(saved["meta"]["config"], config)
    head = config["model"]["bbox_head"]
    assert head["type"] == "GFocalHead" and head["loss_cls"]["use_sigmoid"] is False
    assert (head["reg_topk"], head["reg_channels"], head["add_mean"]) == (4, 64, True)


@pytest.mark.parametrize(
    "cfg, reason",
    [
        (
            ModelConfig(backbone="mini"),
            "model.backbone=mini is this project's own small network, which the official code",
        ),
        (
            ModelConfig(head=HeadConfig(kind="native"), quality=QualityConfig(kind="none")),
            "model.head.kind=native",
        ),
        (ModelConfig(quality=QualityConfig(kind="composed")), "model.quality.kind=composed"),
        (
            ModelConfig(quality=QualityConfig(statistics=("topk", "var"))),
            "model.quality.statistics",
        ),
        (ModelConfig(head=HeadConfig(box="dirac"), quality=QualityConfig(kind="none")), "dirac"),
        (ModelConfig(backbone="resnet18", dcn=True), "BasicBlock has no DCN"),
    ],
    ids=["mini", "native_head", "composed", "var", "dirac", "r18_dcn"],
)
def test_a_model_the_official_code_lacks_is_refused(tmp_path, cfg, reason):
    src, dst = tmp_path / "iter_10.pth", tmp_path / "out.pth"
    torch.save({"state_dict": {}, "model_config": to_dict(cfg)}, src)
    with pytest.raises(ExportError, match="cannot export to the official GFocalV2") as info:
        export_checkpoint(src, dst)
    assert reason in str(info.value)
    assert isinstance(info.value, ToolkitError)  # the CLI prints it as one line
    assert not dst.exists()


def test_sources_that_cannot_be_exported_are_named(tmp_path, gflv1):
    with pytest.raises(ExportError, match="no such checkpoint file or run folder"):
        export_checkpoint(tmp_path / "absent", tmp_path / "out.pth")
    run = write_run(tmp_path, ModelConfig(backbone="resnet18"), ["a"])
    with pytest.raises(ExportError, match=r"no checkpoint \(iter_N.pth\) in this run folder"):
        export_checkpoint(run.path, tmp_path / "out.pth")
    bare = tmp_path / "bare.pth"
    torch.save(gflv1.state_dict(), bare)
    with pytest.raises(ExportError, match="holds no model_config"):
        export_checkpoint(bare, tmp_path / "out.pth")
    gflv2_cfg = {"state_dict": gflv1.state_dict(), "model_config": to_dict(ModelConfig())}
    torch.save(gflv2_cfg, bare)
    with pytest.raises(CheckpointError, match="head.quality.fc1.weight") as info:
        export_checkpoint(bare, tmp_path / "out.pth")
    assert isinstance(info.value, ToolkitError)
    assert not (tmp_path / "out.pth").exists()
