"""The ``gfl-repro`` command.

One builder per command (``_add_<command>``) declares its arguments, the ones several commands
share come from parent parsers (``Parents``), and one handler per command turns the arguments
into typed options and calls the library: sweeps in ``engine/sweep.py``, timing in
``engine/bench/``. The CLI is the top layer: it alone joins the recipes (``experiments/``) to
the engine.
"""

import argparse
import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from experiments.presets import PRESETS, preset
from experiments.registry import EXPERIMENTS, TABLES


def _options(cls: type, args: argparse.Namespace):
    """The dataclass ``cls`` from the arguments of the same names; fields without an argument
    keep their defaults, lists become tuples."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _experiment(name: str) -> str:
    """An argparse type: a registered experiment name."""
    if name not in EXPERIMENTS:
        raise argparse.ArgumentTypeError(
            f"unknown experiment {name!r} (gfl-repro experiments lists them)"
        )
    return name


# --- handlers -------------------------------------------------------------------------------------


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


def _train(args: argparse.Namespace) -> int:
    from experiments.registry import canonical_name, resolve, rows_of
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
    if not args.set:  # every row with this config, so that tables read them from the folder
        rows += rows_of(args.experiment, args.preset)
    meta = identity(args.preset, name, rows, args.experiment, args.set)
    train_run(cfg, run_dir, args.seed, resume=args.resume, meta=meta)
    return 0


def _test(args: argparse.Namespace) -> int:
    from gfl_repro.engine.test import test_run

    metrics = test_run(args.run_dir, args.checkpoint)
    if metrics is not None:
        print(" ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def _table_numbers(name: str) -> tuple[str, ...]:
    """The tables a sweep of ``name`` covers: "all" is every table of the ablations and
    analysis; Table 7 (backbones, 2x) runs only when named."""
    return tuple(t for t in TABLES if t != "7") if name == "all" else (name,)


def _speed_rows(numbers: tuple[str, ...]) -> set[str]:
    """The rows of the tables with speed columns (Tables 3-6's FPS, Table 8's training hours
    and FPS): the ones a sweep with --bench times."""
    from experiments.paper import COLUMNS
    from experiments.registry import table
    from gfl_repro.analysis.collect import SPEED

    return {e.name for n in numbers if set(COLUMNS.get(n, ())) & set(SPEED) for e in table(n)}


def _packer(records: Path | None):
    """With --records: a callback that packs a run's record the moment it completes."""
    if records is None:
        return None
    from gfl_repro.engine import archive

    def pack(run) -> None:
        path = archive.record_path(records, run.run_dir)
        archive.pack_run(run.run_dir, path)
        print(f"record written: {path}", flush=True)

    return pack


def _sweep(args: argparse.Namespace) -> int:
    from experiments.presets import COSTS
    from experiments.registry import canonical_name, resolve, rows_of, table
    from experiments.tables import paper_table
    from gfl_repro.engine import archive, sweep

    numbers = _table_numbers(args.table)
    rows = [e.name for number in numbers for e in table(number)]
    if args.records and not args.dry_run and args.records.is_dir():
        tally = archive.unpack(args.records, args.runs / args.preset)
        print(f"run records of {args.records} unpacked: {tally}")
    runs = sweep.plan(rows, args.preset, args.seeds, resolve, canonical_name, args.runs)
    for run in runs:  # the folder records every row it stands for, not only the ones asked
        run.rows = sorted({*run.rows, *rows_of(run.name, args.preset)})
    cost = COSTS[args.preset]
    unit = "GPU-hours" if cost.processes > 1 else "hours"
    print(f"Table {args.table} at {args.preset}, {args.seeds} seed(s); cost from {cost.source}")
    print(sweep.format_plan(runs, lambda run: sweep.device_seconds(cost, run), unit))
    if args.dry_run:
        return 0
    sweep.check_data(runs)
    if args.launcher == "slurm":
        folder = args.runs / args.preset / "slurm"
        sweep.submit_slurm(runs, args.preset, _options(sweep.SlurmOptions, args), folder)
        return 0
    failed = sweep.run_local(runs, args.preset, lambda r: sweep.wall_seconds(cost, r), args.jobs,
                             _packer(args.records))  # fmt: skip
    if args.bench:
        sweep.bench_unbenched(runs, _speed_rows(numbers), args.results)
    if args.records:  # bench-model's files, and anything else added to a complete run
        tally = archive.pack(args.runs / args.preset, args.records)
        print(f"run records of {args.records} packed: {tally}")
    for number in numbers:
        if number != "main":
            print(paper_table(number, args.preset, args.runs, args.results)[2])
    return 1 if failed else 0


def _table(args: argparse.Namespace) -> int:
    from experiments.tables import paper_table

    csv_path, md_path, markdown = paper_table(args.table, args.preset, args.runs, args.results)
    print(markdown)
    print(f"written: {csv_path}, {md_path}")
    return 0


def _lqe(args: argparse.Namespace) -> int:
    from gfl_repro.analysis.stats import bootstrap_ci
    from gfl_repro.engine.lqe import class_first, load_lqe, run_lqe

    path = run_lqe(args.run_dir, args.protocol)
    frame = load_lqe(path.parent, path.stem)
    pcc = bootstrap_ci(frame["joint"].to_numpy(), frame["iou"].to_numpy(), n=200)
    first = class_first(frame)
    print(f"{path}: {len(frame)} rows; PCC(J, IoU) {pcc.value:.3f} [{pcc.low:.3f}, {pcc.high:.3f}]"
          + (f"; gt class first at {100 * first:.1f} % of them" if args.protocol == "positives"
             else ""))  # fmt: skip
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
    from experiments.presets import mini
    from gfl_repro.engine.bench import suite

    suite.run(_options(suite.BenchOptions, args), loading=mini())
    return 0


def _bench_model(args: argparse.Namespace) -> int:
    from gfl_repro.engine.bench.model import ModelBenchOptions, bench_runs, format_records

    opts = _options(ModelBenchOptions, args)
    records = bench_runs(args.run_dirs, opts, args.results)
    print(format_records(records))
    written = sorted({str(args.results / r["preset"] / "bench_model.csv") for r in records})
    print(f"median of {opts.train_iters} steps after {opts.train_warmup}, of {opts.images} images "
          f"(batch 1) after {opts.warmup}; written: bench_model.json in each run, "
          f"{', '.join(written)}")  # fmt: skip
    return 0


def _pack_runs(args: argparse.Namespace) -> int:
    from gfl_repro.engine.archive import pack

    print(pack(args.runs / args.preset, args.archive))
    return 0


def _unpack_runs(args: argparse.Namespace) -> int:
    from gfl_repro.engine.archive import unpack

    if not args.archive.is_dir():
        raise FileNotFoundError(f"{args.archive}: no such folder of run records")
    print(unpack(args.archive, args.runs / args.preset))
    return 0


def _experiment_cost(args: argparse.Namespace) -> int:
    from experiments.registry import resolve
    from gfl_repro.engine.bench import cost

    # Table 7's rows (COCO backbones, 2x) are not models of the small presets: only by name.
    names = args.experiments or [n for n, e in EXPERIMENTS.items() if e.table != "7"]
    cases = [cost.Case(n, EXPERIMENTS[n].table, EXPERIMENTS[n].row, resolve(n, args.preset))
             for n in names]  # fmt: skip
    opts = _options(cost.CostOptions, args)
    records = cost.experiment_costs(resolve("gflv2", args.preset), cases, opts)
    out = args.results / args.preset / "experiment_cost.csv"
    print(cost.write_costs(records, out))
    print(f"written: {out}")
    return 0


def _gpu_check(args: argparse.Namespace) -> int:
    from gfl_repro import gpu_check

    reps, warmup = (1, 0) if args.tiny else (args.reps, args.warmup)  # --tiny: the logic, once
    return gpu_check.run(gpu_check.CheckOptions(args.device, args.tiny, reps, warmup, args.out))


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
    """The built-in set a preset describes (its data.mini_* fields, changed by --set; the count
    and size flags are shorthands for data.mini_train, _val, _size and _seed) into --out."""
    from gfl_repro.config import apply_overrides
    from gfl_repro.data import mini

    flags = {"mini_seed": args.seed, "mini_train": args.train, "mini_val": args.val,
             "mini_size": args.size}  # fmt: skip
    shorthands = [f"data.{k}={v}" for k, v in flags.items() if v is not None]
    data = apply_overrides(preset(args.preset), [*shorthands, *args.set]).data
    out = args.out or Path(data.root)
    stats = mini.generate(out, data.mini_seed, data.mini_train, data.mini_val, data.mini_size,
                          variant=data.mini_variant())  # fmt: skip
    print(mini.format_stats(stats))
    if args.contact_sheet:
        print(f"contact sheet: {mini.contact_sheet(out, args.contact_sheet)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from gfl_repro.analysis.page import build_page
    from gfl_repro.config import to_dict

    base = to_dict(preset(args.preset))  # the preset's own config: GFLV2 at that scale
    page = build_page(args.runs / args.preset, args.results / args.preset, args.preset, base=base)
    print(f"written: {page}")
    return 0


def _experiments(args: argparse.Namespace) -> int:
    width = max(len(n) for n in EXPERIMENTS)
    for e in EXPERIMENTS.values():
        print(f"{e.name:<{width}}  table {e.table:<7} {e.row}\n{'':<{width}}  {e.describe()}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from gfl_repro import convert

    return convert.run(args) or 0


def _export_checkpoint(args: argparse.Namespace) -> int:
    from gfl_repro.convert import export_checkpoint

    print(f"written: {export_checkpoint(args.src, args.dst)}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from gfl_repro import predict

    return predict.run(args) or 0


# --- parsers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parents:
    """Arguments several commands share, as argparse parent parsers."""

    debug: argparse.ArgumentParser
    preset: argparse.ArgumentParser
    overrides: argparse.ArgumentParser
    runs: argparse.ArgumentParser
    results: argparse.ArgumentParser


def _parent(*names: str, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(*names, **kwargs)
    return parser


def _parents() -> Parents:
    return Parents(
        # SUPPRESS: after a command, --debug sets the flag without resetting `gfl-repro --debug`.
        debug=_parent("--debug", action="store_true", default=argparse.SUPPRESS,
                      help="on an error, raise it with its traceback"),
        preset=_parent("--preset", choices=tuple(PRESETS), default="mini",
                       help="the scale of the runs (default: mini)"),
        overrides=_parent("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override a config field, e.g. --set schedule.lr=0.02 "
                               "(repeatable)"),
        runs=_parent("--runs", type=Path, default=Path("runs"), help="root of the run folders"),
        results=_parent("--results", type=Path, default=Path("results"),
                        help="where tables and CSVs go (RESULTS/PRESET/...)"),
    )  # fmt: skip


Subparsers = argparse._SubParsersAction  # the type add_subparsers returns


def _add_demo(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser("demo", parents=[parents.debug],
                       help="build GFLV2 R-50-FPN and run one random image through it")  # fmt: skip
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--width", type=int, default=1216)
    p.set_defaults(func=_demo)


def _add_train(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser("train", parents=[parents.debug, parents.preset, parents.overrides],
                       help="train one experiment at a preset, then evaluate it")  # fmt: skip
    p.add_argument("experiment", type=_experiment,
                   help="an experiment name (gfl-repro experiments lists them)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--work-dir", type=Path, default=None, help="run folder (default runs/PRESET/EXP/seedS)"
    )
    p.add_argument("--resume", default="auto", help="auto (latest checkpoint; default), none, PATH")
    p.add_argument("--rows", default="", help="the table rows this run stands for, comma-separated "
                   "(the sweep sets it; default: the experiment)")  # fmt: skip
    p.set_defaults(func=_train)


def _add_test(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser("test", parents=[parents.debug],
                       help="evaluate a run folder's checkpoint on its val set")  # fmt: skip
    p.add_argument("run_dir", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the latest")
    p.set_defaults(func=_test)


def _add_sweep(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser(
        "sweep", parents=[parents.debug, parents.preset, parents.runs, parents.results],
        help="run a paper table's missing runs, then write the table",
    )  # fmt: skip
    p.add_argument("table", choices=(*TABLES, "all"), help="main, 1, ..., 8 or all (all but 7)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1 per run")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost only")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="local runs at once: one per GPU, or on CPU each with cores / JOBS threads "
        "(unless OMP_NUM_THREADS is set)",
    )
    p.add_argument("--bench", action="store_true",
                   help="after training locally, time the complete runs of the tables' "
                        "speed columns that have no bench_model.json (bench-model)")  # fmt: skip
    p.add_argument("--records", type=Path, default=None,
                   help="a folder of run records (pack-runs): unpacked into RUNS/PRESET first; "
                        "each run that completes is packed there at once (for machines that "
                        "keep nothing between sessions)")  # fmt: skip
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--cpus-per-task", type=int, default=5)
    p.add_argument("--partition", default="")
    p.add_argument("--time-min", type=int, default=24 * 60)
    p.set_defaults(func=_sweep)


def _add_table(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser(
        "table", parents=[parents.debug, parents.preset, parents.runs, parents.results],
        help="write a paper table from the run folders that exist",
    )  # fmt: skip
    p.add_argument("table", help="1, 2, 3, 4, 5, 6 or 8")
    p.set_defaults(func=_table)


def _add_lqe(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser("lqe", parents=[parents.debug],
                       help="dump a run's predicted vs real IoU of every val positive")  # fmt: skip
    p.add_argument("run_dir", type=Path)
    p.add_argument("--protocol", choices=["positives", "detections"], default="positives")
    p.set_defaults(func=_lqe)


def _add_diagnose(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser(
        "diagnose", parents=[parents.debug],
        help="class-agnostic AP and TIDE errors of complete runs: diagnostics.json",
    )  # fmt: skip
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--force", action="store_true", help="redo runs that have diagnostics.json")
    p.set_defaults(func=_diagnose)


def _add_bench(sub: Subparsers, parents: Parents) -> None:
    from gfl_repro.engine.bench.suite import ATSS_STEPS, ITEMS, BenchOptions

    d = BenchOptions()  # the defaults
    p = sub.add_parser("bench", parents=[parents.debug],
                       help="speed against torchvision's FCOS, DGQP's cost: bench.csv")  # fmt: skip
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
    p.add_argument("--short-runs", type=int, nargs=2, default=d.short_runs, metavar=("N1", "N2"),
                   help="item 9: steps of the two short runs a run is fitted from")  # fmt: skip
    p.add_argument("--whole-run-lever", default=d.whole_run_lever, metavar="NAME",
                   help="item 9: the lever a whole run is timed with (item 8's names)")  # fmt: skip
    p.add_argument("--out", type=Path, default=d.out)
    p.set_defaults(func=_bench)


def _add_bench_model(sub: Subparsers, parents: Parents) -> None:
    from gfl_repro.engine.bench.model import ModelBenchOptions

    d = ModelBenchOptions()  # the defaults
    p = sub.add_parser(
        "bench-model", parents=[parents.debug, parents.results],
        help="time training steps and inference of run folders (Table 8, Fig. 6)",
    )  # fmt: skip
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads (default: the run's runtime.threads, else 2)")  # fmt: skip
    p.add_argument("--train-iters", type=int, default=d.train_iters,
                   help="timed training steps (median)")  # fmt: skip
    p.add_argument("--train-warmup", type=int, default=d.train_warmup,
                   help="untimed training steps first")  # fmt: skip
    p.add_argument("--images", type=int, default=d.images,
                   help="timed val images, batch 1 (median)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed val images first")
    p.set_defaults(func=_bench_model)


def _add_experiment_cost(sub: Subparsers, parents: Parents) -> None:
    from gfl_repro.engine.bench.cost import CostOptions

    d = CostOptions()  # the defaults
    p = sub.add_parser(
        "experiment-cost", parents=[parents.debug, parents.preset, parents.results],
        help="each experiment's training step against GFLV2's: RESULTS/PRESET/experiment_cost.csv",
    )  # fmt: skip
    p.add_argument("experiments", type=_experiment, nargs="*", metavar="EXPERIMENT",
                   help="default: every experiment but Table 7's")  # fmt: skip
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps of each pair")
    p.add_argument("--reps", type=int, default=d.reps, help="timed steps of each (median)")
    p.set_defaults(func=_experiment_cost)


def _add_gpu_check(sub: Subparsers, parents: Parents) -> None:
    from gfl_repro.gpu_check import CheckOptions

    p = sub.add_parser("gpu-check", parents=[parents.debug],
                       help="step times, FPS, memory and ratios on a GPU: one CSV")  # fmt: skip
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny inputs, 1 rep: logic only")
    p.add_argument("--reps", type=int, default=CheckOptions.reps)
    p.add_argument("--warmup", type=int, default=CheckOptions.warmup)
    p.add_argument("--out", type=Path, default=CheckOptions.out)
    p.set_defaults(func=_gpu_check)


def _add_experiments(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser("experiments", parents=[parents.debug],
                       help="list every experiment with its table, row and diff")  # fmt: skip
    p.set_defaults(func=_experiments)


def _add_levels(sub: Subparsers, parents: Parents) -> None:
    p = sub.add_parser("levels", parents=[parents.debug, parents.preset, parents.overrides],
                       help="an experiment's training positives per pyramid level")  # fmt: skip
    p.add_argument("experiment", type=_experiment, nargs="?", default="gflv2")
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.set_defaults(func=_levels)


def _add_report(sub: Subparsers, parents: Parents) -> None:
    shared = [parents.debug, parents.preset, parents.runs, parents.results]
    help_ = "write RESULTS/PRESET/index.html: claims, tables, figures, runs"
    p = sub.add_parser("report", parents=shared, help=help_)
    p.set_defaults(func=_report)


def _add_records(sub: Subparsers, parents: Parents) -> None:
    """pack-runs and unpack-runs: complete runs without checkpoints, one .tar.xz each."""
    shared = [parents.debug, parents.preset, parents.runs]
    p = sub.add_parser("pack-runs", parents=shared,
                       help="write each complete run of RUNS/PRESET, checkpoints left out, to "
                            "ARCHIVE/EXP/seedS.tar.xz (only what changed)")  # fmt: skip
    p.add_argument("archive", type=Path, help="the folder of run records")
    p.set_defaults(func=_pack_runs)
    p = sub.add_parser("unpack-runs", parents=shared,
                       help="put the run records of ARCHIVE back under RUNS/PRESET (complete "
                            "folders are kept, incomplete ones replaced)")  # fmt: skip
    p.add_argument("archive", type=Path, help="the folder of run records")
    p.set_defaults(func=_unpack_runs)


def _add_data(sub: Subparsers, parents: Parents) -> None:
    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command",
                                                                  required=True)  # fmt: skip
    p = data.add_parser("mini", parents=[parents.debug, parents.preset, parents.overrides],
                        help="write the built-in synthetic COCO-format dataset")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="default: the preset's data.root")
    for flag, field in (("--seed", "mini_seed"), ("--train", "mini_train"), ("--val", "mini_val"),
                        ("--size", "mini_size")):  # fmt: skip
        p.add_argument(flag, type=int, default=None, help=f"short for --set data.{field}=N")
    p.add_argument("--contact-sheet", type=Path, default=None, help="also write a PNG of boxes")
    p.set_defaults(func=_data_mini)


def _add_checkpoints(sub: Subparsers, parents: Parents) -> None:
    """convert-checkpoint, export-checkpoint and predict: checkpoints in and out."""
    from gfl_repro import convert, predict

    p = sub.add_parser("convert-checkpoint", parents=[parents.debug],
                       help="map an mmdetection GFL checkpoint onto this model")  # fmt: skip
    convert.add_arguments(p)
    p.set_defaults(func=_convert)
    p = sub.add_parser("export-checkpoint", parents=[parents.debug],
                       help="write a run's checkpoint under the official GFocalV2 / "
                            "mmdetection 2.x names")  # fmt: skip
    p.add_argument("src", type=Path, help="a run folder (its latest checkpoint) or a checkpoint")
    p.add_argument("dst", type=Path, help="the checkpoint file to write")
    p.set_defaults(func=_export_checkpoint)
    p = sub.add_parser("predict", parents=[parents.debug],
                       help="detect objects in one image with a checkpoint")  # fmt: skip
    predict.add_arguments(p)
    p.set_defaults(func=_predict)


BUILDERS = (_add_demo, _add_train, _add_test, _add_sweep, _add_table, _add_lqe, _add_diagnose,
            _add_bench_model, _add_experiments, _add_levels, _add_data, _add_bench,
            _add_experiment_cost, _add_gpu_check, _add_checkpoints, _add_records,
            _add_report)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The gfl-repro parser: one subcommand per builder of BUILDERS, in help order."""
    parser = argparse.ArgumentParser(prog="gfl-repro", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--debug", action="store_true", help="on an error, raise it with its traceback"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    parents = _parents()
    for add in BUILDERS:
        add(sub, parents)
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
