"""The mini regime search's candidates (docs/differences.md, "Choosing the mini regime"), each a
set of config overrides on the mini preset, and the runner that trains GFLV1 and GFLV2 in one.

python -m experiments.regime CANDIDATE [--seeds N] [--runs runs/regime] [--jobs 2] [--dry-run]
(or ``make regime CANDIDATE=NAME SEEDS=N``)

Runs go to RUNS/CANDIDATE/mini/{gflv1,gflv2}/seed{0..N-1}: the layout analysis/regime.py reads.
Finished runs are skipped and interrupted ones resume (``train --resume auto``). A candidate
with a generator variant of its own has its own data root, generated first, once. With
``--jobs J`` J trainings run at once, each with cores / J threads (OMP_NUM_THREADS): on 2 cores,
the two models side by side with one thread each, as the published runs were trained.
"""

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = ("gflv1", "gflv2")

# Decision 1's levers (every channel count x 0.5; image side 224 with every channel count x 0.75).
WIDTH_05 = ("model.mini_widths=8,16,32,64,128", "model.fpn_channels=32",
            "model.head.feat_channels=32")  # fmt: skip
SIDE_224_WIDTH_075 = ("model.mini_widths=16,24,48,96,192", "model.fpn_channels=48",
                      "model.head.feat_channels=48", "data.train_scale=224,224",
                      "data.test_scale=224,224")  # fmt: skip
# Decision 2's generator variants, in the order of its screen, at decision 1's width.
SIX_CLASSES = ("data.mini_classes=circle,square,triangle,star,ring,arrow", "model.num_classes=6")

CANDIDATES: dict[str, tuple[str, ...]] = {
    "width-0.5": WIDTH_05,
    "side-224-width-0.75": SIDE_224_WIDTH_075,
    "width-0.5-colour-0.5": WIDTH_05 + ("data.root=data/mini-c05", "data.mini_class_colour=0.5"),
    "width-0.5-colour-1.0": WIDTH_05 + ("data.root=data/mini-c10", "data.mini_class_colour=1.0"),
    "width-0.5-six-classes": WIDTH_05 + ("data.root=data/mini-six",) + SIX_CLASSES,
    # Decision 3 (decision 2 kept today's generator): the recipe's object sizes.
    "width-0.5-scale-1": WIDTH_05 + ("model.object_scale=1",),
    # Decision 4 (decision 3 kept object_scale 1): half and twice 0.16 per 16 images.
    "width-0.5-scale-1-lr-0.08": WIDTH_05 + ("model.object_scale=1", "schedule.lr=0.08"),
    "width-0.5-scale-1-lr-0.32": WIDTH_05 + ("model.object_scale=1", "schedule.lr=0.32"),
}


def data_overrides(overrides: tuple[str, ...]) -> list[str]:
    """The overrides that define the generated images (data.* and the class count, which
    data.mini_classes must match when the config is built)."""
    return [
        o for o in overrides if o.startswith(("data.mini_", "data.root=", "model.num_classes="))
    ]


def data_root(overrides: tuple[str, ...]) -> str | None:
    """The candidate's own data root, or None for the preset's."""
    roots = [o.split("=", 1)[1] for o in overrides if o.startswith("data.root=")]
    return roots[-1] if roots else None


def set_args(overrides) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def commands(candidate: str, seeds: int, runs: Path) -> tuple[list[str] | None, list[list[str]]]:
    """The data-generation command (None when the preset's set is used) and one training command
    per model and seed, seed-major so that both models of a seed finish together."""
    if candidate not in CANDIDATES:
        raise SystemExit(f"unknown candidate {candidate!r}; known: {', '.join(CANDIDATES)}")
    overrides = CANDIDATES[candidate]
    cli = [sys.executable, "-m", "gfl_repro.cli"]
    root = data_root(overrides)
    generate = None
    if root is not None:
        generate = [*cli, "data", "mini", "--out", root, *set_args(data_overrides(overrides))]
    trains = [
        [*cli, "train", model, "--preset", "mini", "--seed", str(seed), "--resume", "auto",
         "--work-dir", str(runs / candidate / "mini" / model / f"seed{seed}"), *set_args(overrides)]
        for seed in range(seeds) for model in MODELS
    ]  # fmt: skip
    return generate, trains


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("candidate", help=f"one of: {', '.join(CANDIDATES)}")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per model (default 3)")
    p.add_argument("--runs", type=Path, default=Path("runs/regime"), help="root of the runs")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once (default 2)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    generate, trains = commands(args.candidate, args.seeds, args.runs)
    if args.dry_run:
        for cmd in ([generate] if generate else []) + trains:
            print("gfl-repro", *cmd[3:])
        return 0
    root = data_root(CANDIDATES[args.candidate])
    if generate and not (Path(root) / "stats.json").is_file():
        subprocess.run(generate, check=True)
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = threads

    def run(cmd: list[str]) -> int:
        return subprocess.run(cmd, env=env).returncode

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        codes = list(pool.map(run, trains))
    failed = [" ".join(cmd[3:8]) for cmd, code in zip(trains, codes, strict=True) if code]
    for what in failed:
        print(f"failed: {what}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
