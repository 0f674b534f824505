"""The mini regime search's candidates (docs/differences.md, "Choosing the mini regime"), each a
set of config overrides on the mini preset, and the runner that trains GFLV1 and GFLV2 in one.

python -m experiments.regime CANDIDATE [--seeds N] [--runs runs/regime] [--jobs 2] [--dry-run]
                             [--promote ROOT]
(or ``make regime CANDIDATE=NAME SEEDS=N``)

Runs go to RUNS/CANDIDATE/mini/{gflv1,gflv2}/seed{0..N-1}: the layout analysis/regime.py reads.
Finished runs are skipped and interrupted ones resume (``train --resume auto``). A candidate
with a generator variant of its own has its own data root, generated first, once. With
``--jobs J`` J trainings run at once, each with cores / J threads (OMP_NUM_THREADS): on 2 cores,
the two models side by side with one thread each, as the published runs were trained.

``--promote ROOT`` trains nothing: it copies the candidate's complete runs to
ROOT/mini/{gflv1,gflv2}/seed{S}, as the preset's own runs, when the candidate's config is the
preset's (the search's choice, once the preset takes it). The copies' env.json carries the
preset's identity and, under ``promoted_from``, the candidate's folder, name and overrides.
"""

import argparse
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = ("gflv1", "gflv2")

# The regime the search started from (the mini preset of commit a506073), pinned so that every
# candidate reproduces its published runs whatever the preset becomes once the search is done.
# Each candidate's overrides apply on top of these.
SEARCH_BASE = ("model.mini_widths=16,32,64,128,256", "model.fpn_channels=64",
               "model.head.feat_channels=64", "model.object_scale=0.4", "schedule.lr=0.16",
               "schedule.epochs=6", "schedule.steps=4,5")  # fmt: skip

# Decision 1's levers (every channel count x 0.5; image side 224 with every channel count x 0.75).
WIDTH_05 = ("model.mini_widths=8,16,32,64,128", "model.fpn_channels=32",
            "model.head.feat_channels=32")  # fmt: skip
SIDE_224_WIDTH_075 = ("model.mini_widths=16,24,48,96,192", "model.fpn_channels=48",
                      "model.head.feat_channels=48", "data.train_scale=224,224",
                      "data.test_scale=224,224")  # fmt: skip
# Decision 2's generator variants, in the order of its screen, at decision 1's width.
SIX_CLASSES = ("data.mini_classes=circle,square,triangle,star,ring,arrow", "model.num_classes=6")
SCALE_1 = ("model.object_scale=1",)
TWELVE_EPOCHS = ("schedule.epochs=12", "schedule.steps=10,11", "runtime.eval_every_epoch=true",
                 "runtime.lqe_every_epoch=true")  # fmt: skip

CANDIDATES: dict[str, tuple[str, ...]] = {
    "width-0.5": WIDTH_05,
    "side-224-width-0.75": SIDE_224_WIDTH_075,
    "width-0.5-colour-0.5": WIDTH_05 + ("data.root=data/mini-c05", "data.mini_class_colour=0.5"),
    "width-0.5-colour-1.0": WIDTH_05 + ("data.root=data/mini-c10", "data.mini_class_colour=1.0"),
    "width-0.5-six-classes": WIDTH_05 + ("data.root=data/mini-six",) + SIX_CLASSES,
    # Decision 3 (decision 2 kept today's generator): the recipe's object sizes.
    "width-0.5-scale-1": WIDTH_05 + SCALE_1,
    # Decision 4 (decision 3 kept object_scale 1): half and twice 0.16 per 16 images.
    "width-0.5-scale-1-lr-0.08": WIDTH_05 + SCALE_1 + ("schedule.lr=0.08",),
    "width-0.5-scale-1-lr-0.32": WIDTH_05 + SCALE_1 + ("schedule.lr=0.32",),
    # Decision 5's reference: 12 epochs (drops after 10 and 11), val AP and LQE every epoch.
    "width-0.5-scale-1-12-epochs": WIDTH_05 + SCALE_1 + TWELVE_EPOCHS,
    # Decision 5's longer candidate (the shorter, 6 epochs, is width-0.5-scale-1).
    "width-0.5-scale-1-8-epochs": WIDTH_05 + SCALE_1 + ("schedule.epochs=8", "schedule.steps=6,7"),
}


def candidate_overrides(candidate: str) -> tuple[str, ...]:
    """The candidate's overrides on the mini preset: the search's base, then its own."""
    return SEARCH_BASE + CANDIDATES[candidate]


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
    cli = [sys.executable, "-m", "gfl_repro.cli"]
    root = data_root(CANDIDATES[candidate])
    generate = None
    if root is not None:
        generate = [*cli, "data", "mini", "--out", root,
                    *set_args(data_overrides(CANDIDATES[candidate]))]  # fmt: skip
    trains = [
        [*cli, "train", model, "--preset", "mini", "--seed", str(seed), "--resume", "auto",
         "--work-dir", str(runs / candidate / "mini" / model / f"seed{seed}"),
         *set_args(candidate_overrides(candidate))]
        for seed in range(seeds) for model in MODELS
    ]  # fmt: skip
    return generate, trains


def promote(candidate: str, seeds: int, runs: Path, root: Path) -> list[Path]:
    """Copy the candidate's runs of seeds 0 .. seeds-1 to ``root`` as the mini preset's runs of
    GFLV1 and GFLV2, and return the new folders. Every run must be complete and trained with the
    preset's config (config.json equal to ``resolve(model, "mini")``), else a RunFolderError names
    the folder. A destination already promoted from the same folder is kept; any other existing
    destination is an error."""
    from experiments.registry import canonical_name, resolve, rows_of
    from gfl_repro.engine.runs import RunFolder, RunFolderError, check_same_config, identity
    from gfl_repro.io import atomic_write_json

    if candidate not in CANDIDATES:
        raise SystemExit(f"unknown candidate {candidate!r}; known: {', '.join(CANDIDATES)}")
    pairs = []
    for seed in range(seeds):
        for model in MODELS:
            src = RunFolder(runs / candidate / "mini" / model / f"seed{seed}")
            if not src.is_complete:
                raise RunFolderError(f"{src.path} is not a complete run (no {src.METRICS})")
            try:
                check_same_config(src.path, resolve(model, "mini"))
            except RunFolderError:
                raise RunFolderError(
                    f"{src.path} was trained with another config than the mini preset's {model}; "
                    "only a candidate the preset has taken can be promoted"
                ) from None
            name = canonical_name(model, "mini")
            dest = RunFolder.of("mini", name, seed, root)
            if dest.path.exists():
                if dest.env.get("promoted_from", {}).get("run") == str(src.path.resolve()):
                    continue
                raise RunFolderError(f"{dest.path} exists and was not promoted from {src.path}")
            pairs.append((src, dest, model, name))
    written = []
    for src, dest, model, name in pairs:  # every check first, then the copies
        partial = dest.path.with_name(dest.path.name + ".promoting")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(src.path, partial)
        old = src.identity
        rows = [model, *rows_of(model, "mini")]
        atomic_write_json(partial / RunFolder.ENV, {
            **src.env, **identity("mini", name, rows, model),
            "promoted_from": {"run": str(src.path.resolve()), "experiment": old["experiment"],
                              "overrides": old["overrides"]},
        })  # fmt: skip
        partial.rename(dest.path)
        written.append(dest.path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("candidate", help=f"one of: {', '.join(CANDIDATES)}")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per model (default 3)")
    p.add_argument("--runs", type=Path, default=Path("runs/regime"), help="root of the runs")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once (default 2)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument(
        "--promote",
        type=Path,
        metavar="ROOT",
        help="copy the candidate's runs to ROOT as the mini preset's own (no training)",
    )
    args = p.parse_args(argv)
    if args.promote is not None:
        for path in promote(args.candidate, args.seeds, args.runs, args.promote):
            print(f"promoted: {path}")
        return 0
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
