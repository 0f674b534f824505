"""The ``gfl-repro`` command."""

import argparse
import hashlib
import json
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    import time

    import torch

    from gfl_repro.build import build_model
    from gfl_repro.config import ModelConfig

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(ModelConfig()).eval()
    n_params = sum(p.numel() for p in model.parameters())
    n_dgqp = sum(p.numel() for p in model.head.quality.parameters())
    print(f"GFLV2 R-50-FPN (random init, 80 classes): {n_params:,} parameters, DGQP {n_dgqp:,}")
    image = torch.randn(1, 3, args.height, args.width)
    meta = {"img_shape": (args.height, args.width), "scale_factor": [1.0] * 4}
    with torch.no_grad():
        t1 = time.perf_counter()
        out = model(image)
        dets = model.head.predict(out, model.priors(out), [meta], model.inference)[0]
        t2 = time.perf_counter()
    for (h, w), s in zip(out.level_sizes, model.strides, strict=True):
        print(f"  P{s.bit_length() - 1}: stride {s:3d}, {h}x{w}")
    print(f"scores {tuple(out.scores.shape)}, box distributions {tuple(out.reg.shape)}")
    print(f"mean J at init {out.scores.mean():.4f}; {len(dets['scores'])} detections above 0.05")
    print(
        f"build {t1 - t0:.1f} s, forward + post-processing of one {args.height}x{args.width} "
        f"image {t2 - t1:.1f} s on {torch.get_num_threads()} threads"
    )
    return 0


def _convert(args: argparse.Namespace) -> int:
    from gfl_repro import convert

    return convert.run(args) or 0


def _predict(args: argparse.Namespace) -> int:
    from gfl_repro import predict

    return predict.run(args) or 0


def _train(args: argparse.Namespace) -> int:
    from experiments.registry import canonical_name, resolve
    from gfl_repro.config import to_dict
    from gfl_repro.engine.runs import default_run_dir, identity
    from gfl_repro.engine.train import train_run

    cfg = resolve(args.experiment, args.preset, args.set)
    name = canonical_name(args.experiment, args.preset)
    if args.set:  # a config of its own: a folder of its own
        digest = hashlib.sha1(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:8]
        name = f"{args.experiment}-{digest}"
    run_dir = args.work_dir or default_run_dir(args.preset, name, args.seed)
    rows = args.rows.split(",") if args.rows else [args.experiment]
    meta = identity(args.preset, name, rows, args.experiment, args.set)
    train_run(cfg, run_dir, args.seed, resume=args.resume, meta=meta)
    return 0


def _test(args: argparse.Namespace) -> int:
    from gfl_repro.engine.test import test_run

    metrics = test_run(args.run_dir, args.checkpoint)
    if metrics is not None:
        print(" ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _bench_model(args: argparse.Namespace) -> int:
    from gfl_repro.engine.bench.model import ModelBenchOptions, bench_runs, format_records

    opts = ModelBenchOptions(args.threads, args.train_iters, args.train_warmup, args.images,
                             args.warmup)  # fmt: skip
    records = bench_runs(args.run_dirs, opts, args.results)
    print(format_records(records))
    written = sorted({str(args.results / r["preset"] / "bench_model.csv") for r in records})
    print(f"median of {opts.train_iters} steps after {opts.train_warmup}, of {opts.images} images "
          f"(batch 1) after {opts.warmup}; written: bench_model.json in each run, "
          f"{', '.join(written)}")  # fmt: skip
    return 0


def _levels(args: argparse.Namespace) -> int:
    from experiments.registry import resolve
    from gfl_repro.engine.data import ensure_dataset
    from gfl_repro.engine.distributed import DistInfo
    from gfl_repro.engine.levels import format_levels, positives_per_level

    cfg = resolve(args.experiment, args.preset, args.set)
    ensure_dataset(cfg.data, DistInfo())
    print(format_levels(positives_per_level(cfg, args.limit)))
    return 0


def _data_mini(args: argparse.Namespace) -> int:
    from gfl_repro.data import mini

    stats = mini.generate(args.out, args.seed, args.train, args.val, args.size)
    print(mini.format_stats(stats))
    if args.contact_sheet:
        print(f"contact sheet: {mini.contact_sheet(args.out, args.contact_sheet)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from experiments.presets import COSTS
    from experiments.registry import TABLES, canonical_name, resolve, table
    from experiments.tables import paper_table
    from gfl_repro.engine import sweep

    if args.table not in (*TABLES, "all"):
        raise SystemExit(f"unknown table {args.table!r}; known: {', '.join(TABLES)}, all")
    # "all": every table of the ablations and analysis; Table 7 (backbones, 2x) only by name.
    numbers = tuple(t for t in TABLES if t != "7") if args.table == "all" else (args.table,)
    rows = [e.name for number in numbers for e in table(number)]
    runs = sweep.plan(rows, args.preset, args.seeds, resolve, canonical_name, args.runs)
    cost = COSTS[args.preset]

    def seconds(run: sweep.PlannedRun) -> float:
        iters = sweep.total_iterations(run.config, cost.train_images, cost.processes)
        return cost.run_seconds(run.name, iters) * cost.processes  # device-seconds

    unit = "GPU-hours" if cost.processes > 1 else "hours"
    print(f"Table {args.table} at {args.preset}, {args.seeds} seed(s); cost from {cost.source}")
    print(sweep.format_plan(runs, seconds, unit))
    if args.dry_run:
        return 0
    _check_data(runs)  # a broken val set stops the sweep before anything runs or is submitted
    if args.launcher == "slurm":
        opts = sweep.SlurmOptions(args.nodes, args.gpus_per_node, args.cpus_per_task,
                                  args.partition, args.time_min)  # fmt: skip
        sweep.submit_slurm(runs, args.preset, opts, args.runs / args.preset / "slurm")
        return 0
    failed = sweep.run_local(runs, args.preset, lambda r: seconds(r) / cost.processes, args.jobs)
    if args.bench:
        _bench_unbenched(runs, numbers, args.results)
    for number in numbers:
        if number != "main":
            print(paper_table(number, args.preset, args.runs, args.results)[2])
    return 1 if failed else 0


def _check_data(runs: list) -> None:
    """Each distinct data set of the planned runs: present (the built-in one is generated) and
    its val annotations and images valid."""
    from gfl_repro.engine.data import check_val_set, ensure_dataset
    from gfl_repro.engine.distributed import DistInfo

    for data in {run.config.data for run in runs}:
        ensure_dataset(data, DistInfo())
        check_val_set(data)


def _bench_unbenched(runs: list, numbers: tuple[str, ...], results: Path) -> None:
    """bench-model, with its defaults, on the complete runs of the tables with speed columns
    (Tables 3-6's FPS, Table 8's training hours and FPS) that were not benchmarked yet."""
    from experiments.paper import COLUMNS
    from experiments.registry import table
    from gfl_repro.analysis.runs import SPEED
    from gfl_repro.engine import sweep
    from gfl_repro.engine.bench.model import ModelBenchOptions, bench_runs, format_records

    rows = {e.name for n in numbers if set(COLUMNS.get(n, ())) & set(SPEED) for e in table(n)}
    folders = sweep.unbenched(runs, rows)
    if folders:
        print(f"bench-model: timing {len(folders)} run(s) for the speed columns", flush=True)
        print(format_records(bench_runs(folders, ModelBenchOptions(), results)), flush=True)


def _table(args: argparse.Namespace) -> int:
    from experiments.tables import paper_table

    csv_path, md_path, markdown = paper_table(args.table, args.preset, args.runs, args.results)
    print(markdown)
    print(f"written: {csv_path}, {md_path}")
    return 0


def _lqe(args: argparse.Namespace) -> int:
    from gfl_repro.analysis.stats import bootstrap_ci
    from gfl_repro.engine.lqe import load_lqe, run_lqe

    path = run_lqe(args.run_dir, args.protocol)
    frame = load_lqe(path.parent, path.stem)
    pcc = bootstrap_ci(frame["joint"].to_numpy(), frame["iou"].to_numpy(), n=200)
    print(f"{path}: {len(frame)} rows; PCC(J, IoU) {pcc.value:.3f} [{pcc.low:.3f}, {pcc.high:.3f}]")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from gfl_repro.engine.diagnostics import diagnose, summary_columns
    from gfl_repro.engine.runs import RunFolder
    from gfl_repro.io import atomic_write_json

    for run in map(RunFolder, args.run_dirs):
        path = run / run.DIAGNOSTICS
        if path.is_file() and not args.force:
            print(f"{path}: exists (--force to redo)")
            continue
        ann_file = run.metrics["ann_file"]  # what the run was evaluated on
        out = diagnose(ann_file, run / run.DETECTIONS)
        atomic_write_json(path, out)
        cells = ", ".join(f"{k} {v:.1f}" for k, v in summary_columns(out).items())
        print(f"{path}: {cells} ({out['seconds']:.0f} s)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from experiments.presets import mini
    from gfl_repro.engine.bench import suite

    values = {f.name: getattr(args, f.name) for f in fields(suite.BenchOptions)}
    suite.run(suite.BenchOptions(**{**values, "skip": tuple(args.skip)}), loading=mini())
    return 0


def _experiment_cost(args: argparse.Namespace) -> int:
    from experiments.registry import EXPERIMENTS, resolve
    from gfl_repro.engine.bench import cost

    # Table 7's rows (COCO backbones, 2x) are not models of the small presets: only by name.
    names = args.experiments or [n for n, e in EXPERIMENTS.items() if e.table != "7"]
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        raise SystemExit(f"unknown experiment(s) {', '.join(unknown)}; gfl-repro experiments")
    cases = [cost.Case(n, EXPERIMENTS[n].table, EXPERIMENTS[n].row, resolve(n, args.preset))
             for n in names]  # fmt: skip
    opts = cost.CostOptions(args.warmup, args.reps)
    records = cost.experiment_costs(resolve("gflv2", args.preset), cases, opts)
    out = args.results / args.preset / "experiment_cost.csv"
    print(cost.write_costs(records, out))
    print(f"written: {out}")
    return 0


def _gpu_check(args: argparse.Namespace) -> int:
    from gfl_repro import gpu_check

    reps, warmup = (1, 0) if args.tiny else (args.reps, args.warmup)  # --tiny: the logic, once
    return gpu_check.run(gpu_check.CheckOptions(args.device, args.tiny, reps, warmup, args.out))


def _experiments(args: argparse.Namespace) -> int:
    from experiments.registry import EXPERIMENTS

    width = max(len(n) for n in EXPERIMENTS)
    for e in EXPERIMENTS.values():
        print(f"{e.name:<{width}}  table {e.table:<7} {e.row}\n{'':<{width}}  {e.describe()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gfl-repro", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="on an error, raise it with its traceback"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="build GFLV2 R-50-FPN and run one random image through it")
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--width", type=int, default=1216)
    p.set_defaults(func=_demo)

    p = sub.add_parser("train", help="train one experiment at a preset, then evaluate it")
    p.add_argument("experiment", help="an experiment name (gfl-repro experiments lists them)")
    p.add_argument("--preset", default="mini", help="mini (default), coco-1x, coco-2x-ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--work-dir", type=Path, default=None, help="run folder (default runs/PRESET/EXP/seedS)"
    )
    p.add_argument("--resume", default="auto", help="auto (latest checkpoint; default), none, PATH")
    p.add_argument("--rows", default="", help="the table rows this run stands for, comma-separated "
                   "(the sweep sets it; default: the experiment)")  # fmt: skip
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set schedule.lr=0.02 (repeatable)",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("test", help="evaluate a run folder's checkpoint on its val set")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the latest")
    p.set_defaults(func=_test)

    p = sub.add_parser("sweep", help="run a paper table's missing runs, then write the table")
    p.add_argument("table", help="main, 1, 2, 3, 4, 5, 6, 8 or all")
    p.add_argument("--preset", default="mini")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1 per run")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost only")
    p.add_argument("--jobs", type=int, default=1, help="local runs at once (one per GPU)")
    p.add_argument("--bench", action="store_true",
                   help="after training locally, time the complete runs of the tables' "
                        "speed columns that have no bench_model.json (bench-model)")  # fmt: skip
    p.add_argument("--runs", type=Path, default=Path("runs"), help="root of the run folders")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--cpus-per-task", type=int, default=5)
    p.add_argument("--partition", default="")
    p.add_argument("--time-min", type=int, default=24 * 60)
    p.set_defaults(func=_sweep)

    p = sub.add_parser("table", help="write a paper table from the run folders that exist")
    p.add_argument("table", help="1, 2, 3, 4, 5, 6 or 8")
    p.add_argument("--preset", default="mini")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--results", type=Path, default=Path("results"))
    p.set_defaults(func=_table)

    p = sub.add_parser("lqe", help="dump a run's predicted vs real IoU of every val positive")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--protocol", choices=["positives", "detections"], default="positives")
    p.set_defaults(func=_lqe)

    p = sub.add_parser(
        "diagnose", help="class-agnostic AP and TIDE errors of complete runs: diagnostics.json"
    )
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--force", action="store_true", help="redo runs that have diagnostics.json")
    p.set_defaults(func=_diagnose)

    p = sub.add_parser(
        "bench-model", help="time training steps and inference of run folders (Table 8, Fig. 6)"
    )
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default: the run's runtime.threads, else 2)")  # fmt: skip
    p.add_argument("--train-iters", type=int, default=10, help="timed training steps (median)")
    p.add_argument("--train-warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--images", type=int, default=50, help="timed val images, batch 1 (median)")
    p.add_argument("--warmup", type=int, default=5, help="untimed val images first")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="bench_model.csv goes to RESULTS/PRESET/")  # fmt: skip
    p.set_defaults(func=_bench_model)

    p = sub.add_parser("experiments", help="list every experiment with its table, row and diff")
    p.set_defaults(func=_experiments)

    p = sub.add_parser("levels", help="an experiment's training positives per pyramid level")
    p.add_argument("experiment", nargs="?", default="gflv2")
    p.add_argument("--preset", default="mini")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.set_defaults(func=_levels)

    data = sub.add_parser("data", help="datasets")
    data = data.add_subparsers(dest="data_command", required=True)
    p = data.add_parser("mini", help="write the built-in synthetic COCO-format dataset")
    p.add_argument("--out", type=Path, default=Path("data/mini"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=3000, help="training images")
    p.add_argument("--val", type=int, default=500, help="validation images")
    p.add_argument("--size", type=int, default=320, help="image side in pixels")
    p.add_argument("--contact-sheet", type=Path, default=None, help="also write a PNG of boxes")
    p.set_defaults(func=_data_mini)

    from gfl_repro import convert, predict
    from gfl_repro.engine.bench.cost import CostOptions
    from gfl_repro.engine.bench.suite import ATSS_STEPS, ITEMS, BenchOptions
    from gfl_repro.gpu_check import CheckOptions

    d = BenchOptions()  # the defaults
    p = sub.add_parser("bench", help="speed against torchvision's FCOS, DGQP's cost: bench.csv")
    p.add_argument("--size", type=int, default=d.size, help="image side of items 1-3, 7")
    p.add_argument("--boxes", type=int, default=d.boxes, help="random gt boxes per image")
    p.add_argument("--reps", type=int, default=d.reps, help="timed repetitions (median kept)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: all cores)")
    p.add_argument("--skip", type=int, nargs="*", default=[], choices=ITEMS, metavar="N",
                   help="items not to run, e.g. --skip 4 6")  # fmt: skip
    p.add_argument("--atss-step", choices=ATSS_STEPS, default=d.atss_step,
                   help="item 4: measure a step at 1344x800 once, or scale the --size step by "
                        "pixels")  # fmt: skip
    p.add_argument("--data-root", type=Path, default=d.data_root, help="item 5")
    p.add_argument("--load-batches", type=int, default=d.load_batches,
                   help="item 5: batches timed")  # fmt: skip
    p.add_argument("--detections", type=Path, default=d.detections)
    p.add_argument("--ann-file", type=Path, default=d.ann_file)
    p.add_argument("--matmul-size", type=int, default=d.matmul_size, help="item 7")
    p.add_argument("--out", type=Path, default=d.out)
    p.set_defaults(func=_bench)

    p = sub.add_parser(
        "experiment-cost",
        help="each experiment's training step against GFLV2's: RESULTS/PRESET/experiment_cost.csv",
    )
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                   help="default: every experiment but Table 7's")  # fmt: skip
    p.add_argument("--preset", default="mini")
    p.add_argument("--warmup", type=int, default=CostOptions().warmup)
    p.add_argument("--reps", type=int, default=CostOptions().reps)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.set_defaults(func=_experiment_cost)

    p = sub.add_parser("gpu-check", help="step times, FPS, memory and ratios on a GPU: one CSV")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny inputs, 1 rep: logic only")
    p.add_argument("--reps", type=int, default=CheckOptions.reps)
    p.add_argument("--warmup", type=int, default=CheckOptions.warmup)
    p.add_argument("--out", type=Path, default=CheckOptions.out)
    p.set_defaults(func=_gpu_check)

    p = sub.add_parser(
        "convert-checkpoint", help="map an mmdetection GFL checkpoint onto this model"
    )
    convert.add_arguments(p)
    p.set_defaults(func=_convert)

    p = sub.add_parser("predict", help="detect objects in one image with a checkpoint")
    predict.add_arguments(p)
    p.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. The toolkit's own errors (config, data set, run folder, a missing file)
    print as one line on stderr with exit status 2; ``--debug`` raises them with the traceback."""
    from gfl_repro.errors import ToolkitError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ToolkitError, FileNotFoundError) as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the message holds
        print(f"gfl-repro: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
