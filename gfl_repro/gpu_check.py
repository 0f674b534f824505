"""`gfl-repro gpu-check`: what the paper's numbers cost on one GPU, measured in one process.

Interleaved repetitions (A, B, C, A, B, C, ...; ``engine.bench.timing.median_times``),
synchronised on CUDA:

- a training step of GFLV2, GFLV1 and torchvision's FCOS R-50-FPN (frozen BatchNorm, stem and
  stage 1 frozen, as the recipe trains) at 1333 x 800, 2 and 8 images, fp32 and bf16 autocast;
- inference at batch 1 (forward + post-processing), frames per second;
- the peak memory of a GFLV2 step at 2 images;
- the projected wall time of a coco-1x run on 8 such GPUs: 12 epochs of COCO train2017 (117,266
  images with annotations) at 16 images per iteration is 87,960 iterations; each GPU takes 2
  images per step, so the run takes 87,960 x the 2-image step (DDP's all-reduce not counted).

One CSV row per measure (``measure, value, unit, note``), the ratios GFLV2 / FCOS and GFLV2 /
GFLV1 among them. ``--tiny`` shrinks images and repetitions so that the logic runs on a CPU in
seconds (tested); its numbers mean nothing.

Legend: B images, H x W image size (pixels).
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gfl_repro.engine.bench import workloads
from gfl_repro.engine.bench.table import format_table, write_csv
from gfl_repro.engine.bench.timing import median_times, sync

COCO_1X_ITERS = 12 * -(-117_266 // 16)  # 87,960
GPUS = 8
CSV_COLUMNS = ("measure", "value", "unit", "note", "device")


@dataclass(frozen=True)
class CheckOptions:
    device: str = "cuda"
    tiny: bool = False  # small images, one repetition: the logic on a CPU
    reps: int = 10
    warmup: int = 3
    out: Path = Path("results/gpu/gpu_check.csv")

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the inputs: 1333 x 800 padded to multiples of 32, or a tiny stand-in."""
        return (64, 96) if self.tiny else (800, 1344)

    @property
    def batches(self) -> tuple[int, ...]:
        return (2,) if self.tiny else (2, 8)

    @property
    def dtypes(self) -> tuple[str, ...]:
        """bf16 autocast on CUDA only (a CPU without bf16 units emulates it, slowly)."""
        return ("fp32", "bf16") if self.device.startswith("cuda") else ("fp32",)


def _amp(fn: Callable[[], object], device: torch.device, dtype: str) -> Callable[[], object]:
    if dtype == "fp32":
        return fn

    def run() -> object:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fn()

    return run


def _inputs(batch: int, size: tuple[int, int], device: torch.device):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=g).to(device)  # (B, 3, H, W)
    targets = workloads.random_targets(batch, size, num_boxes=10)
    return images, [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()}
                    for t in targets]  # fmt: skip


def train_rows(opts: CheckOptions, device: torch.device, models: dict) -> list[dict]:
    rows = []
    for batch in opts.batches:
        images, targets = _inputs(batch, opts.size, device)
        for dtype in opts.dtypes:
            fns = {
                "gflv2": workloads.gfl_step(models["gflv2"], images, targets),
                "gflv1": workloads.gfl_step(models["gflv1"], images, targets),
                "fcos": workloads.fcos_step(models["fcos"], images, targets),
            }
            fns = {k: _amp(fn, device, dtype) for k, fn in fns.items()}
            times = median_times(list(fns.values()), opts.reps, opts.warmup, device)
            t = dict(zip(fns, times, strict=True))
            shape = f"{batch}x3x{opts.size[0]}x{opts.size[1]} {dtype}"
            rows += [{"measure": f"train step {k} {shape}", "value": v, "unit": "s"}
                     for k, v in t.items()]  # fmt: skip
            rows += [
                {"measure": f"train step ratio gflv2/fcos {shape}", "value": t["gflv2"] / t["fcos"],
                 "unit": "ratio"},
                {"measure": f"train step ratio gflv2/gflv1 {shape}",
                 "value": t["gflv2"] / t["gflv1"], "unit": "ratio"},
            ]  # fmt: skip
            if batch == 2:
                hours = COCO_1X_ITERS * t["gflv2"] / 3600
                rows.append({"measure": f"projected coco-1x GFLV2 on {GPUS} GPUs {dtype}",
                             "value": hours, "unit": "h",
                             "note": f"{COCO_1X_ITERS} iterations x the 2-image step; "
                                     "all-reduce and data loading not counted"})  # fmt: skip
    return rows


def inference_rows(opts: CheckOptions, device: torch.device, models: dict) -> list[dict]:
    image, _ = _inputs(1, opts.size, device)
    fns = {"gflv2": workloads.gfl_infer(models["gflv2"], image),
           "gflv1": workloads.gfl_infer(models["gflv1"], image),
           "fcos": workloads.fcos_infer(models["fcos"], image)}  # fmt: skip
    times = median_times(list(fns.values()), 2 * opts.reps, opts.warmup, device)
    t = dict(zip(fns, times, strict=True))
    shape = f"1x3x{opts.size[0]}x{opts.size[1]} fp32"
    rows = [{"measure": f"inference FPS {k} {shape}", "value": 1 / v, "unit": "FPS"}
            for k, v in t.items()]  # fmt: skip
    rows += [{"measure": f"inference time ratio gflv2/fcos {shape}",
              "value": t["gflv2"] / t["fcos"], "unit": "ratio"},
             {"measure": f"inference time ratio gflv2/gflv1 {shape}",
              "value": t["gflv2"] / t["gflv1"], "unit": "ratio"}]  # fmt: skip
    return rows


def memory_row(opts: CheckOptions, device: torch.device, model) -> list[dict]:
    """Peak memory of a GFLV2 step at 2 images (CUDA only)."""
    if device.type != "cuda":
        return [{"measure": "peak memory gflv2 step 2 images", "value": float("nan"),
                 "unit": "MiB", "note": "CUDA only"}]  # fmt: skip
    images, targets = _inputs(2, opts.size, device)
    step = workloads.gfl_step(model, images, targets)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    return [{"measure": f"peak memory gflv2 step 2x3x{opts.size[0]}x{opts.size[1]} fp32",
             "value": peak, "unit": "MiB"}]  # fmt: skip


def run_check(opts: CheckOptions) -> list[dict]:
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("gpu-check --device cuda: no CUDA device is visible (use --device cpu)")
    models = {"gflv2": workloads.gfl_model("dgqp"), "gflv1": workloads.gfl_model("none"),
              "fcos": workloads.fcos_model()}  # fmt: skip
    models = {k: m.to(device) for k, m in models.items()}
    context = torch.backends.cudnn.flags(benchmark=True) if device.type == "cuda" else None
    with context or contextlib.nullcontext():
        rows = train_rows(opts, device, models)
        rows += inference_rows(opts, device, models)
        rows += memory_row(opts, device, models["gflv2"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for row in rows:
        row.setdefault("note", "")
        row["device"] = name
    return rows


def run(opts: CheckOptions) -> int:
    """Measure, write opts.out and print the rows."""
    rows = run_check(opts)
    write_csv(opts.out, CSV_COLUMNS, rows)
    print(format_table(("measure", "value", "unit"),
                       ((r["measure"], f"{r['value']:.4g}", r["unit"]) for r in rows)))  # fmt: skip
    print(f"written: {opts.out}")
    return 0
