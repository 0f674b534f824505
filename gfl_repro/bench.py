"""`gfl-repro bench`: the speed of our code against references, one table and one CSV.

Each line compares two measurements taken in the same run on the same inputs: a warm-up, then
``reps`` repetitions whose median is kept. Where a line has two contenders their repetitions are
interleaved (A, B, A, B, ...) so that a load on the machine lands on both alike.

Items (``--skip`` takes their numbers):
  1 training step, GFLV2 R-50-FPN against torchvision's FCOS R-50-FPN (B x 3 x S x S)
  2 inference (forward + post-processing, batch 1), the same pair
  3 DGQP's cost: GFLV2 against GFLV1, step and inference time, share of parameters
  4 ATSS assignment of one 1333 x 800 image with 100 gt boxes, and its share of a step
  5 data loading of the mini preset against the images per second its training step consumes
  6 COCO evaluation, pycocotools against faster-coco-eval, time and largest metric difference
  7 achieved GFLOP/s of the R-50-FPN forward against a large float32 matrix product

Legend: B images, S image side in pixels, M gt boxes, P priors over all levels.
"""

import argparse
import copy
import csv
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gfl_repro.build import STRIDES

COLUMNS = ("item", "measure", "ours", "reference", "unit", "ratio", "goal", "met", "note")
ITEMS = (1, 2, 3, 4, 5, 6, 7)
ATSS_SHAPE = (800, 1333)  # (h, w) of the image; padded to a multiple of 32: 800 x 1344
ATSS_NUM_GT = 100


@dataclass
class Row:
    item: int
    measure: str
    ours: float
    reference: float | None = None
    unit: str = "s"
    goal: float | None = None  # the ratio ours / reference must be <= goal ("<=") or >= goal
    sense: str = "<="
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.ours / self.reference

    @property
    def met(self) -> str:
        if self.goal is None or self.ratio is None:
            return ""
        ok = self.ratio <= self.goal if self.sense == "<=" else self.ratio >= self.goal
        return "yes" if ok else "NO"

    def values(self) -> dict[str, str]:
        goal = "" if self.goal is None else f"ratio {self.sense} {self.goal:g}"
        return {"item": str(self.item), "measure": self.measure, "ours": _fmt(self.ours),
                "reference": _fmt(self.reference), "unit": self.unit, "ratio": _fmt(self.ratio),
                "goal": goal, "met": self.met, "note": self.note}  # fmt: skip


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}"


# --- timing ---------------------------------------------------------------------------------------


def median_times(fns: list[Callable[[], object]], reps: int, warmup: int) -> list[float]:
    """Median wall time in seconds of each callable; repetitions interleaved across callables."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times, strict=True):
            tic = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - tic)
    return [statistics.median(ts) for ts in times]


def gflop(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call, in GFLOP (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


# --- models and inputs ----------------------------------------------------------------------------


def gfl_model(quality: str = "dgqp") -> nn.Module:
    """GFLV2 (quality "dgqp") or GFLV1 ("none") R-50-FPN, random init, 80 classes."""
    from gfl_repro.build import build_model
    from gfl_repro.config import ModelConfig, QualityConfig

    torch.manual_seed(0)
    return build_model(ModelConfig(quality=QualityConfig(kind=quality)))


def fcos_model() -> nn.Module:
    """torchvision's FCOS R-50-FPN made to train the same backbone layers as ours.

    Without backbone weights torchvision uses plain BatchNorm and trains every layer; ours has
    frozen BatchNorm and a frozen stem and stage 1 (mmdetection's frozen_stages=1, torchvision's
    trainable_backbone_layers=3, its default with weights). So the BatchNorms are swapped for
    FrozenBatchNorm2d and conv1 / layer1 are frozen.
    """
    from torchvision.models.detection import fcos_resnet50_fpn
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(0)
    model = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=80)
    body = model.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(module, key).detach())
            parent, _, leaf = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, leaf, frozen)
    for module in (body.conv1, body.layer1):
        module.requires_grad_(False)
    return model


def random_targets(batch: int, size: tuple[int, int], num_boxes: int, seed: int = 0) -> list[dict]:
    """``num_boxes`` random boxes (pixels, 8 px to half the side) and labels per image."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    targets = []
    for _ in range(batch):
        wh = 8 + torch.rand(num_boxes, 2, generator=g) * (torch.tensor([w, h]) / 2 - 8)  # (M, 2)
        xy = torch.rand(num_boxes, 2, generator=g) * (torch.tensor([w, h]) - wh)  # (M, 2)
        boxes = torch.cat([xy, xy + wh], dim=1)  # (M, 4)
        labels = torch.randint(0, 80, (num_boxes,), generator=g)  # (M,)
        targets.append({"boxes": boxes, "labels": labels, "pad_shape": (h, w)})
    return targets


def _sgd(model: nn.Module) -> torch.optim.SGD:
    # A small rate keeps the random-init models finite over the repetitions; speed is the same.
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=1e-5, momentum=0.9, weight_decay=1e-4)


def gfl_step(model: nn.Module, images: torch.Tensor, targets: list[dict]) -> Callable[[], object]:
    from gfl_repro.engine.train import train_step

    model.train()
    optimizer = _sgd(model)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return lambda: train_step(model, model, optimizer, scaler, images, targets, 0)


def fcos_step(model: nn.Module, images: torch.Tensor, targets: list[dict]) -> Callable[[], object]:
    """The same step for torchvision's FCOS; its transform is set to keep H x W unresized."""
    _keep_size(model, images)
    model.train()
    optimizer = _sgd(model)
    tv_images = list(images)
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]

    def step() -> None:
        losses = model(tv_images, tv_targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    return step


def gfl_infer(model: nn.Module, image: torch.Tensor) -> Callable[[], object]:
    model.eval()
    metas = [{"img_shape": tuple(image.shape[-2:]), "scale_factor": [1.0] * 4}]
    return torch.no_grad()(lambda: model.predict(image, metas))


def _keep_size(model: nn.Module, images: torch.Tensor) -> None:
    """torchvision's detection transform resizes to (min_size, max_size): set both to the input's
    short and long side so that it keeps H x W."""
    h, w = images.shape[-2:]
    model.transform.min_size, model.transform.max_size = (min(h, w),), max(h, w)


def fcos_infer(model: nn.Module, image: torch.Tensor) -> Callable[[], object]:
    _keep_size(model, image)
    model.eval()
    return torch.no_grad()(lambda: model(list(image)))


def _images(batch: int, size: int) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


# --- items ----------------------------------------------------------------------------------------


def bench_detectors(args: argparse.Namespace, items: set[int]) -> list[Row]:
    """Items 1-3: our models against FCOS and GFLV2 against GFLV1, step and inference."""
    s, rows = args.size, []
    images, targets = _images(2, s), random_targets(2, (s, s), args.boxes)
    image = _images(1, s)
    v2 = gfl_model("dgqp")
    v1 = gfl_model("none") if 3 in items else None
    fcos = fcos_model() if items & {1, 2} else None
    if items & {1, 3}:
        fns = {"v2": gfl_step(v2, images, targets)}
        if 1 in items:
            fns["fcos"] = fcos_step(fcos, images, targets)
        if 3 in items:
            fns["v1"] = gfl_step(v1, images, targets)
        work = {key: gflop(fn) for key, fn in fns.items()}  # also a first, untimed step
        t = dict(zip(fns, median_times(list(fns.values()), args.reps, args.warmup), strict=True))
        shape = f"2x3x{s}x{s}"
        if 1 in items:
            rows.append(Row(1, f"train step {shape}, GFLV2 / FCOS", t["v2"], t["fcos"], goal=1.0,
                            note=f"GFLOP ratio {work['v2'] / work['fcos']:.4f}; {args.boxes} "
                            f"boxes/img; FCOS: FrozenBN, layer2-4 trainable, transform min/max "
                            f"{s}"))  # fmt: skip
        if 3 in items:
            rows.append(Row(3, f"train step {shape}, GFLV2 / GFLV1", t["v2"], t["v1"], goal=1.02,
                            note=f"GFLOP ratio {work['v2'] / work['v1']:.4f}"))  # fmt: skip
    if items & {2, 3}:
        fns = {"v2": gfl_infer(v2, image)}
        if 2 in items:
            fns["fcos"] = fcos_infer(fcos, image)
        if 3 in items:
            fns["v1"] = gfl_infer(v1, image)
        work = {key: gflop(fn) for key, fn in fns.items()}
        reps = args.reps * 2  # inference is cheap next to a step; more samples, same budget
        t = dict(zip(fns, median_times(list(fns.values()), reps, args.warmup), strict=True))
        shape = f"1x3x{s}x{s}"
        if 2 in items:
            rows.append(Row(2, f"inference {shape}, GFLV2 / FCOS", t["v2"], t["fcos"], goal=1.0,
                            note=f"GFLOP ratio {work['v2'] / work['fcos']:.4f}; forward + "
                            "post-processing, no_grad"))  # fmt: skip
        if 3 in items:
            rows.append(Row(3, f"inference {shape}, GFLV2 / GFLV1", t["v2"], t["v1"], goal=1.02,
                            note=f"GFLOP ratio {work['v2'] / work['v1']:.4f}"))  # fmt: skip
    if 3 in items:
        total = sum(p.numel() for p in v2.parameters())
        dgqp = sum(p.numel() for p in v2.head.quality.parameters())
        rows.append(Row(3, "DGQP parameters / all parameters", dgqp, total, unit="params",
                        note=f"{100 * dgqp / total:.4f}% (paper: ~0.003%)"))  # fmt: skip
    return rows


def level_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """(h, w) of P3-P7 for an input of h x w (multiples of 32): P6, P7 are stride-2 3x3 convs."""
    sizes = [(h // s, w // s) for s in STRIDES[:3]]
    for _ in STRIDES[3:]:
        ph, pw = sizes[-1]
        sizes.append(((ph + 1) // 2, (pw + 1) // 2))
    return sizes


def bench_atss(args: argparse.Namespace) -> list[Row]:
    """Item 4: ATSS targets of one 1333 x 800 image with 100 gt boxes (padded input 1344 x 800)."""
    from gfl_repro.models.box_coding import make_priors
    from gfl_repro.models.targets import image_targets

    h, w = ATSS_SHAPE
    pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
    priors = make_priors(level_sizes(pad_h, pad_w), list(STRIDES))
    target = random_targets(1, (h, w), ATSS_NUM_GT, seed=1)[0]
    boxes, labels = target["boxes"], target["labels"]
    reps = max(args.reps, 5) * 4  # milliseconds each: many repetitions cost nothing
    (assign,) = median_times(
        [lambda: image_targets(priors, boxes, labels, (h, w), 80)], reps, args.warmup + 1
    )
    if args.atss_step == "measure":
        model = gfl_model("dgqp")
        image = torch.randn(1, 3, pad_h, pad_w, generator=torch.Generator().manual_seed(0))
        big = [{**target, "pad_shape": (h, w)}]
        (step,) = median_times([gfl_step(model, image, big)], 1, min(args.warmup, 1))
        how = f"step at 1x3x{pad_h}x{pad_w} measured once"
    else:
        s = args.size
        (step,) = median_times(
            [gfl_step(gfl_model("dgqp"), _images(1, s), random_targets(1, (s, s), args.boxes))],
            args.reps,
            args.warmup,
        )
        step *= pad_h * pad_w / (s * s)
        how = f"step estimated from 1x3x{s}x{s} scaled by pixels"
    return [
        Row(4, "ATSS targets, 1 image 1333x800, 100 gt", assign, unit="s",
            note=f"{priors.anchors.shape[0]} priors"),
        Row(4, "ATSS targets / training step", assign, step, goal=0.05, note=how),
    ]  # fmt: skip


def bench_loading(args: argparse.Namespace) -> list[Row]:
    """Item 5: images per second of the mini preset's loader against its training step."""
    from experiments.presets import mini
    from gfl_repro.build import build_model
    from gfl_repro.engine.data import ensure_dataset, train_loader
    from gfl_repro.engine.distributed import DistInfo

    cfg = mini()
    data = dataclasses.replace(cfg.data, root=str(args.data_root))
    ensure_dataset(data, DistInfo())
    loader = train_loader(data, DistInfo(), seed=0)
    loader.sampler.set_epoch(0)
    batches = iter(loader)
    images, targets = next(batches)  # starts the workers; not timed
    n = max(args.load_batches, 1)
    tic, count = time.perf_counter(), 0
    for _, (batch, _) in zip(range(n), batches, strict=False):
        count += batch.shape[0]
    load_rate = count / (time.perf_counter() - tic)
    del batches
    torch.manual_seed(0)
    model = build_model(cfg.model)
    (step,) = median_times([gfl_step(model, images, targets)], args.reps, args.warmup)
    step_rate = images.shape[0] / step
    note = f"{data.workers} worker(s), batch {data.images_per_process}, {count} images timed"
    return [Row(5, "mini loader img/s / mini step img/s", load_rate, step_rate, unit="img/s",
                goal=2.0, sense=">=", note=note)]  # fmt: skip


def noisy_detections(ann_file: Path, seed: int = 0) -> list[dict]:
    """Result dicts made from the ground truth: jittered boxes, random scores, some false ones."""
    data = json.loads(Path(ann_file).read_text())
    g = torch.Generator().manual_seed(seed)
    dets = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        for _ in range(3):
            jitter = (torch.randn(4, generator=g) * 0.1 * torch.tensor([w, h, w, h])).tolist()
            box = [x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0)]
            score = float(torch.rand(1, generator=g))
            dets.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                         "bbox": box, "score": score})  # fmt: skip
    return dets


def bench_evaluation(args: argparse.Namespace) -> list[Row]:
    """Item 6: the same detections evaluated by pycocotools and by faster-coco-eval."""
    from gfl_repro.engine.evaluation import METRICS, evaluate

    ann = Path(args.ann_file)
    if Path(args.detections).is_file():
        dets, source = json.loads(Path(args.detections).read_text()), str(args.detections)
    else:
        dets, source = noisy_detections(ann), "ground truth with noise"
    results = {}

    def run(backend: str) -> Callable[[], None]:
        def fn() -> None:
            results[backend] = evaluate(ann, copy.copy(dets), backend=backend)

        return fn

    reps = max(1, args.reps // 2)  # seconds each at the mini scale
    faster, pycoco = median_times([run("faster"), run("pycocotools")], reps, min(args.warmup, 1))
    diff = max(abs(results["faster"][m] - results["pycocotools"][m]) for m in METRICS)
    note = f"{len(dets)} detections from {source}; AP {results['pycocotools']['AP']:.4f}"
    return [
        Row(6, "COCO eval, faster-coco-eval / pycocotools", faster, pycoco, goal=1.0, note=note),
        Row(6, "largest metric difference (AP..APl)", diff, unit="AP"),
    ]


def bench_flops(args: argparse.Namespace) -> list[Row]:
    """Item 7: GFLOP/s of the R-50-FPN forward (backbone + FPN) against a float32 matmul."""
    model = gfl_model("dgqp").eval()
    net = nn.Sequential(model.backbone, model.neck)
    image = _images(1, args.size)
    forward_fn = torch.no_grad()(lambda: net(image))
    work = gflop(forward_fn)
    n = args.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    forward, matmul = median_times([forward_fn, lambda: a @ b], args.reps, args.warmup)
    achieved, peak = work / forward, 2 * n**3 / matmul / 1e9
    note = f"{work:.1f} GFLOP per 1x3x{args.size}x{args.size} forward; matmul {n}^3"
    return [Row(7, "GFLOP/s, R-50-FPN forward / matmul", achieved, peak, unit="GFLOP/s",
                note=note)]  # fmt: skip


# --- command --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `gfl-repro bench`."""
    parser.add_argument("--size", type=int, default=512, help="image side of items 1-3, 7")
    parser.add_argument("--boxes", type=int, default=10, help="random gt boxes per image")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (median kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--skip", type=int, nargs="*", default=[], choices=ITEMS, metavar="N",
                        help="items not to run, e.g. --skip 4 6")  # fmt: skip
    parser.add_argument(
        "--atss-step",
        choices=["measure", "estimate"],
        default="measure",
        help="item 4: measure a step at 1344x800 once, or scale the --size step by pixels",
    )
    parser.add_argument("--data-root", type=Path, default=Path("data/mini"), help="item 5")
    parser.add_argument("--load-batches", type=int, default=20, help="item 5: batches timed")
    parser.add_argument(
        "--detections", type=Path, default=Path("runs/mini/gflv2/seed0/detections.json")
    )
    parser.add_argument(
        "--ann-file", type=Path, default=Path("data/mini/annotations/instances_val.json")
    )
    parser.add_argument("--matmul-size", type=int, default=2048, help="item 7")
    parser.add_argument("--out", type=Path, default=Path("results/bench.csv"))


def run_items(args: argparse.Namespace) -> list[Row]:
    items = set(ITEMS) - set(args.skip)
    rows = []
    if items & {1, 2, 3}:
        rows += bench_detectors(args, items)
    steps: list[tuple[int, Callable[[argparse.Namespace], list[Row]]]] = [
        (4, bench_atss), (5, bench_loading), (6, bench_evaluation), (7, bench_flops)
    ]  # fmt: skip
    for item, bench in steps:
        if item in items:
            rows += bench(args)
    return rows


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(row.values() for row in rows)


def format_table(rows: list[Row]) -> str:
    cells = [COLUMNS, *[tuple(r.values()[c] for c in COLUMNS) for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # fixed for every item
    tic = time.perf_counter()
    rows = run_items(args)
    write_csv(rows, args.out)
    print(format_table(rows))
    print(
        f"{threads} thread(s), median of {args.reps} after {args.warmup} warm-up; "
        f"{time.perf_counter() - tic:.0f} s; written: {args.out}"
    )
    return 0
