"""The GPU check's logic on a CPU (``--device cpu --tiny``): rows, ratios, projection, CSV."""

import csv

import pytest

from gfl_repro.cli import main
from gfl_repro.gpu_check import COCO_1X_ITERS


def test_gpu_check_cpu_tiny_writes_ratios_and_projection(tmp_path):
    out = tmp_path / "gpu_check.csv"
    assert main(["gpu-check", "--device", "cpu", "--tiny", "--out", str(out)]) == 0
    rows = {r["measure"]: r for r in csv.DictReader(out.open())}
    shape = "2x3x64x96 fp32"
    step = {k: float(rows[f"train step {k} {shape}"]["value"]) for k in ("gflv2", "gflv1", "fcos")}
    assert all(v > 0 for v in step.values())
    ratio = float(rows[f"train step ratio gflv2/fcos {shape}"]["value"])
    assert ratio == pytest.approx(step["gflv2"] / step["fcos"], rel=1e-6)
    ratio = float(rows[f"train step ratio gflv2/gflv1 {shape}"]["value"])
    assert ratio == pytest.approx(step["gflv2"] / step["gflv1"], rel=1e-6)
    hours = float(rows["projected coco-1x GFLV2 on 8 GPUs fp32"]["value"])
    assert COCO_1X_ITERS == 87_960
    assert hours == pytest.approx(COCO_1X_ITERS * step["gflv2"] / 3600, rel=1e-6)
    fps = float(rows["inference FPS gflv2 1x3x64x96 fp32"]["value"])
    infer_ratio = float(rows["inference time ratio gflv2/fcos 1x3x64x96 fp32"]["value"])
    fcos_fps = float(rows["inference FPS fcos 1x3x64x96 fp32"]["value"])
    assert infer_ratio == pytest.approx(fcos_fps / fps, rel=1e-6)
    assert not any("bf16" in m for m in rows)  # bf16 is measured on CUDA only
    assert {r["device"] for r in rows.values()} == {"cpu"}
    assert rows["peak memory gflv2 step 2 images"]["note"] == "CUDA only"
