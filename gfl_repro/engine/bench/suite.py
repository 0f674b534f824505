"""`gfl-repro bench`: the speed of our code against references, one table and one CSV.

Each line compares two measurements taken in the same run on the same inputs: a warm-up, then
``reps`` repetitions whose median is kept (timing.median_times). Where a line has two contenders
their repetitions are interleaved (A, B, A, B, ...) so that a load on the machine lands on both
alike.

Items (``skip`` takes their numbers):
  1 training step, GFLV2 R-50-FPN against torchvision's FCOS R-50-FPN (B x 3 x S x S)
  2 inference (forward + post-processing, batch 1), the same pair
  3 DGQP's cost: GFLV2 against GFLV1, step and inference time, share of parameters
  4 ATSS assignment of one 1333 x 800 image with 100 gt boxes, and its share of a step
  5 data loading of a preset (the CLI passes mini) against the images per second its training
    step consumes
  6 COCO evaluation, pycocotools against faster-coco-eval, time and largest metric difference
  7 achieved GFLOP/s of the R-50-FPN forward against a large float32 matrix product
  8 the speed levers of a preset's training step (the CLI passes mini): each lever's step
    against the preset's own, per image (levers.py)
  9 a whole run of the preset against one with the mini regime's lever (width x 0.5, or another
    of item 8's that change the experiment), each fitted from two short runs (levers.py)

Legend: B images, S image side in pixels, M gt boxes, P priors over all levels.
"""

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gfl_repro.build import STRIDES
from gfl_repro.config import Config
from gfl_repro.engine.bench import levers
from gfl_repro.engine.bench.table import format_table, write_csv
from gfl_repro.engine.bench.timing import gflop, median_times
from gfl_repro.engine.bench.workloads import (
    fcos_infer,
    fcos_model,
    fcos_step,
    gfl_infer,
    gfl_model,
    gfl_step,
    random_images,
    random_targets,
    seeded_model,
)

COLUMNS = ("item", "measure", "ours", "reference", "unit", "ratio", "goal", "met", "note")
ITEMS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
ATSS_STEPS = ("measure", "estimate")
HALF_RUN = 0.5  # item 9's goal: a mini run in at most half of the preset's time
ATSS_SHAPE = (800, 1333)  # (h, w) of the image; padded to a multiple of 32: 800 x 1344
ATSS_NUM_GT = 100


@dataclass(frozen=True)
class BenchOptions:
    size: int = 512  # image side of items 1-3, 7
    boxes: int = 10  # random gt boxes per image
    reps: int = 5  # timed repetitions (median kept)
    warmup: int = 1  # untimed repetitions first
    threads: int = 0  # torch threads (0: all cores)
    skip: tuple[int, ...] = ()  # items not to run
    atss_step: str = "measure"  # item 4: measure a step at 1344 x 800 once, or "estimate"
    data_root: Path = Path("data/mini")  # item 5
    load_batches: int = 20  # item 5: batches timed
    detections: Path = Path("runs/mini/gflv2/seed0/detections.json")  # item 6; else made up
    ann_file: Path = Path("data/mini/annotations/instances_val.json")  # item 6
    matmul_size: int = 2048  # item 7
    short_runs: tuple[int, int] = levers.SHORT_RUNS  # item 9: steps of each config's short runs
    whole_run_lever: str = levers.WHOLE_RUN_LEVER  # item 9: the lever (levers.LEVERS) it times
    out: Path = Path("results/bench.csv")

    def __post_init__(self) -> None:
        if min(self.size, self.reps, self.load_batches, self.matmul_size) < 1:
            raise ValueError("bench: size, reps, load_batches and matmul_size must be at least 1")
        levers.lever_named(self.whole_run_lever)  # an unknown name is an error here
        if len(self.short_runs) != 2 or min(self.short_runs) < 1 or len(set(self.short_runs)) < 2:
            raise ValueError("bench: short_runs is two different numbers of steps, each >= 1")
        if min(self.boxes, self.warmup, self.threads) < 0:
            raise ValueError("bench: boxes, warmup and threads must not be negative")
        if self.atss_step not in ATSS_STEPS or not set(self.skip) <= set(ITEMS):
            raise ValueError(f"bench: atss_step is one of {ATSS_STEPS}, skip items of {ITEMS}")


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


# --- items 1-3 ------------------------------------------------------------------------------------


def _timed_with_work(fns: dict[str, Callable[[], object]], reps: int, warmup: int):
    """Median seconds and GFLOP of each callable; counting the work is also a first, untimed
    call."""
    work = {key: gflop(fn) for key, fn in fns.items()}
    times = dict(zip(fns, median_times(list(fns.values()), reps, warmup), strict=True))
    return times, work


def _step_rows(opts: BenchOptions, items: set[int], models: dict[str, nn.Module]) -> list[Row]:
    """Items 1 and 3: a training step of 2 images, GFLV2 against FCOS and against GFLV1."""
    s = opts.size
    images, targets = random_images(2, s), random_targets(2, (s, s), opts.boxes)
    fns = {key: (fcos_step if key == "fcos" else gfl_step)(model, images, targets)
           for key, model in models.items()}  # fmt: skip
    t, work = _timed_with_work(fns, opts.reps, opts.warmup)
    shape, rows = f"2x3x{s}x{s}", []
    if 1 in items:
        rows.append(Row(1, f"train step {shape}, GFLV2 / FCOS", t["v2"], t["fcos"], goal=1.0,
                        note=f"GFLOP ratio {work['v2'] / work['fcos']:.4f}; {opts.boxes} "
                        f"boxes/img; FCOS: FrozenBN, layer2-4 trainable, transform min/max "
                        f"{s}"))  # fmt: skip
    if 3 in items:
        rows.append(Row(3, f"train step {shape}, GFLV2 / GFLV1", t["v2"], t["v1"], goal=1.02,
                        note=f"GFLOP ratio {work['v2'] / work['v1']:.4f}"))  # fmt: skip
    return rows


def _inference_rows(opts: BenchOptions, items: set[int], models: dict[str, nn.Module]) -> list[Row]:
    """Items 2 and 3: inference of one image, GFLV2 against FCOS and against GFLV1."""
    s = opts.size
    image = random_images(1, s)
    fns = {key: (fcos_infer if key == "fcos" else gfl_infer)(model, image)
           for key, model in models.items()}  # fmt: skip
    # Inference is cheap next to a step: more samples, same budget.
    t, work = _timed_with_work(fns, opts.reps * 2, opts.warmup)
    shape, rows = f"1x3x{s}x{s}", []
    if 2 in items:
        rows.append(Row(2, f"inference {shape}, GFLV2 / FCOS", t["v2"], t["fcos"], goal=1.0,
                        note=f"GFLOP ratio {work['v2'] / work['fcos']:.4f}; forward + "
                        "post-processing, no_grad"))  # fmt: skip
    if 3 in items:
        rows.append(Row(3, f"inference {shape}, GFLV2 / GFLV1", t["v2"], t["v1"], goal=1.02,
                        note=f"GFLOP ratio {work['v2'] / work['v1']:.4f}"))  # fmt: skip
    return rows


def bench_detectors(opts: BenchOptions, items: set[int]) -> list[Row]:
    """Items 1-3: our models against FCOS and GFLV2 against GFLV1, step and inference."""
    v2 = gfl_model("dgqp")
    models = {"v2": v2, "fcos": fcos_model() if items & {1, 2} else None,
              "v1": gfl_model("none") if 3 in items else None}  # fmt: skip

    def contenders(fcos_item: int) -> dict[str, nn.Module]:
        return {key: model for key, model in models.items()
                if model is not None and (key != "fcos" or fcos_item in items)}  # fmt: skip

    rows = []
    if items & {1, 3}:
        rows += _step_rows(opts, items, contenders(1))
    if items & {2, 3}:
        rows += _inference_rows(opts, items, contenders(2))
    if 3 in items:
        total = sum(p.numel() for p in v2.parameters())
        dgqp = sum(p.numel() for p in v2.head.quality.parameters())
        rows.append(Row(3, "DGQP parameters / all parameters", dgqp, total, unit="params",
                        note=f"{100 * dgqp / total:.4f}% (paper: ~0.003%)"))  # fmt: skip
    return rows


# --- items 4-7 ------------------------------------------------------------------------------------


def level_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """(h, w) of P3-P7 for an input of h x w (multiples of 32): P6, P7 are stride-2 3x3 convs."""
    sizes = [(h // s, w // s) for s in STRIDES[:3]]
    for _ in STRIDES[3:]:
        ph, pw = sizes[-1]
        sizes.append(((ph + 1) // 2, (pw + 1) // 2))
    return sizes


def _atss_share_step(opts: BenchOptions, target: dict, pad: tuple[int, int]) -> tuple[float, str]:
    """Seconds of the training step item 4 divides by, and how it was had."""
    pad_h, pad_w = pad
    if opts.atss_step == "measure":
        image = torch.randn(1, 3, pad_h, pad_w, generator=torch.Generator().manual_seed(0))
        big = [{**target, "pad_shape": ATSS_SHAPE}]
        (step,) = median_times([gfl_step(gfl_model("dgqp"), image, big)], 1, min(opts.warmup, 1))
        return step, f"step at 1x3x{pad_h}x{pad_w} measured once"
    s = opts.size
    fn = gfl_step(gfl_model("dgqp"), random_images(1, s), random_targets(1, (s, s), opts.boxes))
    (step,) = median_times([fn], opts.reps, opts.warmup)
    return step * pad_h * pad_w / (s * s), f"step estimated from 1x3x{s}x{s} scaled by pixels"


def bench_atss(opts: BenchOptions) -> list[Row]:
    """Item 4: ATSS targets of one 1333 x 800 image with 100 gt boxes (padded input 1344 x 800)."""
    from gfl_repro.models.box_coding import make_priors
    from gfl_repro.models.targets import image_targets

    h, w = ATSS_SHAPE
    pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
    priors = make_priors(level_sizes(pad_h, pad_w), list(STRIDES))
    target = random_targets(1, (h, w), ATSS_NUM_GT, seed=1)[0]
    boxes, labels = target["boxes"], target["labels"]
    reps = max(opts.reps, 5) * 4  # milliseconds each: many repetitions cost nothing
    (assign,) = median_times(
        [lambda: image_targets(priors, boxes, labels, (h, w), 80)], reps, opts.warmup + 1
    )
    step, how = _atss_share_step(opts, target, (pad_h, pad_w))
    return [
        Row(4, "ATSS targets, 1 image 1333x800, 100 gt", assign, unit="s",
            note=f"{priors.anchors.shape[0]} priors"),
        Row(4, "ATSS targets / training step", assign, step, goal=0.05, note=how),
    ]  # fmt: skip


def bench_loading(opts: BenchOptions, cfg: Config) -> list[Row]:
    """Item 5: images per second of ``cfg``'s loader (data under ``opts.data_root``) against its
    training step."""
    from gfl_repro.engine.data import ensure_dataset, train_loader
    from gfl_repro.engine.distributed import DistInfo

    data = dataclasses.replace(cfg.data, root=str(opts.data_root))
    ensure_dataset(data, DistInfo())
    loader = train_loader(data, DistInfo(), seed=0)
    loader.sampler.set_epoch(0)
    batches = iter(loader)
    images, targets = next(batches)  # starts the workers; not timed
    tic, count = time.perf_counter(), 0
    for _, (batch, _) in zip(range(opts.load_batches), batches, strict=False):
        count += batch.shape[0]
    load_rate = count / (time.perf_counter() - tic)
    del batches
    fn = gfl_step(seeded_model(cfg.model), images, targets)
    (step,) = median_times([fn], opts.reps, opts.warmup)
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


def bench_evaluation(opts: BenchOptions) -> list[Row]:
    """Item 6: the same detections evaluated by pycocotools and by faster-coco-eval."""
    from gfl_repro.engine.evaluation import METRICS, evaluate

    if Path(opts.detections).is_file():
        dets, source = json.loads(Path(opts.detections).read_text()), str(opts.detections)
    else:
        dets, source = noisy_detections(opts.ann_file), "ground truth with noise"
    results = {}

    def run(backend: str) -> Callable[[], None]:
        def fn() -> None:
            results[backend] = evaluate(opts.ann_file, copy.copy(dets), backend=backend)

        return fn

    reps = max(1, opts.reps // 2)  # seconds each at the mini scale
    faster, pycoco = median_times([run("faster"), run("pycocotools")], reps, min(opts.warmup, 1))
    diff = max(abs(results["faster"][m] - results["pycocotools"][m]) for m in METRICS)
    note = f"{len(dets)} detections from {source}; AP {results['pycocotools']['AP']:.4f}"
    return [
        Row(6, "COCO eval, faster-coco-eval / pycocotools", faster, pycoco, goal=1.0, note=note),
        Row(6, "largest metric difference (AP..APl)", diff, unit="AP"),
    ]


def bench_flops(opts: BenchOptions) -> list[Row]:
    """Item 7: GFLOP/s of the R-50-FPN forward (backbone + FPN) against a float32 matmul."""
    model = gfl_model("dgqp").eval()
    net = nn.Sequential(model.backbone, model.neck)
    image = random_images(1, opts.size)
    forward_fn = torch.no_grad()(lambda: net(image))
    work = gflop(forward_fn)
    n = opts.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    forward, matmul = median_times([forward_fn, lambda: a @ b], opts.reps, opts.warmup)
    achieved, peak = work / forward, 2 * n**3 / matmul / 1e9
    note = f"{work:.1f} GFLOP per 1x3x{opts.size}x{opts.size} forward; matmul {n}^3"
    return [Row(7, "GFLOP/s, R-50-FPN forward / matmul", achieved, peak, unit="GFLOP/s",
                note=note)]  # fmt: skip


# --- the command ----------------------------------------------------------------------------------


def bench_regime(opts: BenchOptions, cfg: Config) -> list[Row]:
    """Item 8: each lever of ``cfg``'s training step against the step itself (levers.py)."""
    rows = []
    for r in levers.bench_levers(cfg, opts.reps, opts.warmup, opts.boxes):
        kind = "same numbers" if r["lever"].same_numbers else "changes the experiment"
        note = f"{r['lever'].changes}; {kind}; first call {r['first_call_s']:.1f} s"
        rows.append(Row(8, f"step with {r['lever'].name} / preset step", r["ours"], r["base"],
                        unit="s/img", note=note))  # fmt: skip
    return rows


def bench_whole_run(opts: BenchOptions, cfg: Config) -> list[Row]:
    """Item 9: a whole run of ``cfg`` against one with the regime's lever (levers.py)."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(opts.data_root)))
    runs = levers.bench_whole_run(cfg, opts.whole_run_lever, lengths=opts.short_runs)
    records = {r["name"]: r for r in runs}
    base = records.pop("preset")
    ((name, lever),) = records.items()
    short = ", ".join(f"{n} steps {t:.1f} s (loop {loop:.1f} s)"
                      for n, (t, loop) in sorted(lever["short"].items()))  # fmt: skip
    rows = []
    for key, what in (("whole", f"a whole run of {base['total']} steps"), ("step", "a step"),
                      ("fixed", "setup, evaluation and LQE dump")):  # fmt: skip
        note = f"fitted from short runs (ours: {short})" if key == "whole" else ""
        goal = HALF_RUN if key == "whole" else None
        rows.append(Row(9, f"{what}, {name} / preset", lever[key], base[key], goal=goal, note=note))
    return rows


def run_items(opts: BenchOptions, loading: Config) -> list[Row]:
    """Every item not skipped, in order; items 5, 8 and 9 time ``loading``'s loader, step, run."""
    items = set(ITEMS) - set(opts.skip)
    rows = bench_detectors(opts, items) if items & {1, 2, 3} else []
    steps: list[tuple[int, Callable[[], list[Row]]]] = [
        (4, lambda: bench_atss(opts)), (5, lambda: bench_loading(opts, loading)),
        (6, lambda: bench_evaluation(opts)), (7, lambda: bench_flops(opts)),
        (8, lambda: bench_regime(opts, loading)), (9, lambda: bench_whole_run(opts, loading)),
    ]  # fmt: skip
    for item, bench in steps:
        if item in items:
            rows += bench()
    return rows


def run(opts: BenchOptions, loading: Config) -> list[Row]:
    """Run the items on a fixed number of threads; write opts.out and print the table."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # fixed for every item
    tic = time.perf_counter()
    rows = run_items(opts, loading)
    write_csv(opts.out, COLUMNS, (row.values() for row in rows))
    print(format_table(COLUMNS, ([row.values()[c] for c in COLUMNS] for row in rows)))
    print(
        f"{threads} thread(s), median of {opts.reps} after {opts.warmup} warm-up; "
        f"{time.perf_counter() - tic:.0f} s; written: {opts.out}"
    )
    return rows
