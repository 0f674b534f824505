"""CUDA paths: mixed precision, CPU/CUDA agreement of inference, nccl DDP, peak memory.

Skipped without a CUDA device (this project's CI has none); ``make gpu-check`` runs them on a
GPU machine. Tolerances:

- a bf16 training step's losses within 5 % of fp32's (bf16 keeps 8 bits of mantissa, ~0.4 %
  per rounding, over the tens of layers of a forward), fp16's within 1 %;
- inference on CUDA against CPU with the same weights: the same number of detections, each with a
  CPU detection of the same class whose score is within 1e-3 and box within 0.5 px.
"""

import dataclasses
import json
import os
import socket

import pytest
import torch

from experiments.presets import preset
from gfl_repro.build import build_model
from gfl_repro.config import ModelConfig
from gfl_repro.engine.bench.workloads import random_targets
from gfl_repro.engine.train import train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SIZE = (320, 320)  # the mini preset's images


def _mini_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(preset("mini").model)


def _batch(device, batch: int = 2, size=SIZE, classes: int = 12):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=g)
    targets = random_targets(batch, size, num_boxes=6)
    for t in targets:
        t["labels"] = t["labels"] % classes
    return images.to(device), [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()}
                               for t in targets]  # fmt: skip


def _losses(model, images, targets, dtype):
    """The losses of one forward under autocast ``dtype`` (None: fp32) and the head's outputs."""
    context = (
        torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cuda", enabled=False)
    )
    with context:
        out = model(images)
    with torch.autocast("cuda", enabled=False):
        return model.losses(out, targets), out


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
def test_amp_step_matches_fp32_and_keeps_j_and_qfl_in_float32(dtype, rtol):
    model = _mini_model().cuda().train()
    images, targets = _batch("cuda")
    ref, _ = _losses(model, images, targets, None)
    amp, out = _losses(model, images, targets, dtype)
    assert out.scores.dtype == torch.float32 and out.reg.dtype == torch.float32  # J, distribution
    for key, value in amp.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
        assert value.item() == pytest.approx(ref[key].item(), rel=rtol, abs=1e-4), key
    # fp16 with a GradScaler: the scaled step updates the weights and keeps them finite.
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast("cuda", dtype=dtype):
        train_step(model, model, optimizer, scaler, images, targets, 0)
    moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)]
    assert any(moved) and all(torch.isfinite(p).all() for p in model.parameters())


def test_inference_on_cuda_equals_cpu():
    model = _mini_model().eval()
    inference = dataclasses.replace(model.inference, score_thr=0.0, max_per_img=50)
    model.inference = inference
    with torch.no_grad():  # spread the class scores so that the top detections are well apart
        model.head.gfl_cls.weight.normal_(0, 0.05)
    images, _ = _batch("cpu", batch=2)
    metas = [{"img_shape": SIZE, "scale_factor": [1.0] * 4} for _ in range(2)]
    with torch.no_grad():
        cpu = model.predict(images, metas)
        gpu = model.cuda().predict(images.cuda(), metas)
    for c, g in zip(cpu, gpu, strict=True):
        assert len(c["scores"]) == len(g["scores"]) > 0
        for box, score, label in zip(g["boxes"].cpu(), g["scores"].cpu(), g["labels"].cpu(),
                                     strict=True):  # fmt: skip
            same = (c["labels"] == label) & ((c["scores"] - score).abs() < 1e-3)
            near = (c["boxes"][same] - box).abs().amax(dim=1) < 0.5
            assert near.any(), (score, label, box)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_nccl_ddp_step_equals_the_plain_step(monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    images, targets = _batch("cuda")
    plain = _mini_model().cuda().train()
    wrapped = _mini_model().cuda().train()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(wrapped, device_ids=[0])
        for model, net in ((plain, plain), (wrapped, ddp)):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            scaler = torch.amp.GradScaler("cuda", enabled=False)
            train_step(model, net, optimizer, scaler, images, targets, 0)
    finally:
        dist.destroy_process_group()
    for a, b in zip(plain.parameters(), wrapped.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_r50_peak_memory_at_1333x800_two_images():
    model = build_model(ModelConfig()).cuda().train()  # R-50-FPN GFLV2, 80 classes, no weights
    images, targets = _batch("cuda", batch=2, size=(800, 1344), classes=80)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    torch.cuda.reset_peak_memory_stats()
    train_step(model, model, optimizer, scaler, images, targets, 0)
    peak = torch.cuda.max_memory_allocated() / 2**20
    report = os.environ.get("GFL_GPU_REPORT")  # make gpu-check collects it
    if report:
        with open(report, "a", encoding="utf-8") as f:
            f.write(json.dumps({"measure": "R-50 GFLV2 step 2x3x800x1344 peak MiB",
                                "value": peak}) + "\n")  # fmt: skip
    print(f"R-50-FPN GFLV2 training step, 2 images 800 x 1344: peak {peak:.0f} MiB")
    assert 0 < peak < torch.cuda.get_device_properties(0).total_memory / 2**20
