"""Every figure that the run folders of a preset allow, and claims.md with claims.json; prints
what it skips.

python analysis/figures.py --preset mini [--runs runs] [--results results] [--boot 200]
    [--example-images 100]

Figs. 1c/d and 7 draw from RUN/examples/ of the first gflv2 (and gflv1) seed; where a run has
a checkpoint but no examples, or examples of another checkpoint or number of images, the probe
(gfl_repro.engine.examples) first runs it over the first --example-images val images. Fig. 6
needs results/<preset>/bench_model.csv, which `make reproduce` does not time: the skip line names
the command that writes it. Every complete run gets its training curves,
curves_<experiment>_seed<S>.
"""

import argparse
from pathlib import Path

import pandas as pd

from experiments.claims import check_claims
from gfl_repro.analysis import examples, plots
from gfl_repro.analysis.collect import collect_runs, val_annotations
from gfl_repro.engine.examples import EXAMPLE_IMAGES, first_with_examples
from gfl_repro.engine.lqe import load_lqe
from gfl_repro.engine.runs import RunFolder


def first_dump(runs_dir: Path, experiment: str) -> Path | None:
    dumps = sorted((runs_dir / experiment).glob(f"seed*/{RunFolder.LQE}.npz"))
    return dumps[0].parent if dumps else None


def example_figures(runs_dir: Path, out: Path, max_images: int) -> tuple[list[Path], list[str]]:
    """Figs. 1c/d (first gflv2 seed) and 7 (first gflv1 and gflv2 seeds): written paths and
    skip reasons."""
    v1, v2 = (first_with_examples(runs_dir, e, max_images) for e in ("gflv1", "gflv2"))
    written, skipped = [], []
    # ValueError: e.g. no detection in the images looked through
    if v2 is None:
        skipped.append("fig1cd: no gflv2 run folder with a checkpoint or examples")
    else:
        try:
            written += examples.fig1cd(v2, out)
        except ValueError as err:
            skipped.append(f"fig1cd: {err}")
    if v1 is None or v2 is None:
        skipped.append("fig7: needs gflv1 and gflv2 run folders with a checkpoint or examples")
    else:
        try:
            written += examples.fig7(v1, v2, out)
        except ValueError as err:
            skipped.append(f"fig7: {err}")
    return written, skipped


def lqe_figures(runs_dir: Path, out: Path) -> tuple[list[Path], list[str]]:
    """Figs. 1b and 9 (the first LQE dumps of gflv1 and gflv2), Fig. 8 and the LQE over
    training (every seed's metrics.jsonl): written paths and skip reasons."""
    written, skipped = [], []
    v1, v2 = first_dump(runs_dir, "gflv1"), first_dump(runs_dir, "gflv2")
    if v1:
        written += plots.fig1b(load_lqe(v1), out)
    else:
        skipped.append("fig1b: no gflv1 run with lqe.npz (gfl-repro lqe <run>)")
    if v2:
        written += plots.fig9(load_lqe(v2), out)
    else:
        skipped.append("fig9: no gflv2 run with lqe.npz (gfl-repro lqe <run>)")
    curves = {e: sorted((runs_dir / e).glob("seed*/")) for e in ("gflv1", "gflv2")}
    curves = {e: [r for r in dirs if (r / RunFolder.LOG).is_file()] for e, dirs in curves.items()}
    if all(curves.values()):
        written += plots.fig8(curves, out)
    else:
        skipped.append("fig8: needs metrics.jsonl of both gflv1 and gflv2")
    try:  # runs trained with runtime.lqe_every_epoch=true
        written += plots.fig_lqe_training(curves, out)
    except ValueError as err:
        skipped.append(f"lqe_over_training: {err}")
    return written, skipped


def training_curve_figures(runs: pd.DataFrame, out: Path) -> tuple[list[Path], list[str]]:
    """curves_<experiment>_seed<S> of every complete run of ``runs`` (``collect_runs``): written
    paths and skip reasons."""
    written, skipped = [], []
    for _, run in runs[runs["complete"]].sort_values(["experiment", "seed"]).iterrows():
        name = f"curves_{run['experiment']}_seed{run['seed']}"
        try:
            written += plots.fig_training_curves(run["run"], out, name)
        except (FileNotFoundError, ValueError) as err:
            skipped.append(f"{name}: {err}")
    return written, skipped


def bench_command(runs: pd.DataFrame, runs_dir: Path, results: Path) -> str:
    """The command that times GFLV1 and GFLV2 for Fig. 6: bench-model on the first complete
    seed of each in ``runs`` (``collect_runs`` of ``runs_dir``; seed0 where none is complete)."""
    folders = []
    for experiment in ("gflv1", "gflv2"):
        done = runs[runs["complete"] & (runs["experiment"] == experiment)].sort_values("seed")
        folders.append(done["run"].iloc[0] if len(done) else str(runs_dir / experiment / "seed0"))
    where = "" if results == Path("results") else f" --results {results}"
    return f"gfl-repro bench-model {' '.join(folders)}{where}"


def speed_figure(runs_dir: Path, results: Path, out: Path) -> tuple[list[Path], list[str]]:
    """Fig. 6 from results/<preset>/bench_model.csv (``runs_dir`` is runs/<preset>): written
    paths and skip reasons; the skip reason names the command that writes the file, which
    ``make reproduce`` does not run (``make table8`` does, after training ATSS* too)."""
    bench, runs = results / runs_dir.name / "bench_model.csv", collect_runs(runs_dir)
    if not bench.is_file():
        command = bench_command(runs, runs_dir, results)
        return [], [f"fig6: no {bench}: `{command}` writes it (or `make table8`, which also "
                     "trains and times ATSS*), then rerun this script"]  # fmt: skip
    table = plots.speed_table(runs, pd.read_csv(bench))
    if not len(table):
        return [], [f"fig6: no complete run among the experiments of {bench}"]
    return plots.fig6(table, out), []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--ann-file", type=Path, default=None)
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples per AP pair")
    parser.add_argument("--example-images", type=int, default=EXAMPLE_IMAGES,
                        help="val images looked through for Figs. 1c/d and 7")  # fmt: skip
    args = parser.parse_args()
    runs_dir, out = args.runs / args.preset, args.results / args.preset / "figures"
    written, skipped = plots.fig4(out), []
    for found, reasons in (lqe_figures(runs_dir, out),
                           speed_figure(runs_dir, args.results, out),
                           example_figures(runs_dir, out, args.example_images),
                           training_curve_figures(collect_runs(runs_dir), out)):  # fmt: skip
        written, skipped = written + found, skipped + reasons

    ann_file = args.ann_file or val_annotations(runs_dir)
    report = check_claims(args.runs, args.preset, ann_file, n_boot=args.boot)
    claims_paths = report.write(args.results / args.preset)  # claims.md, claims.json
    print(report.markdown())
    print("written:", *[str(p) for p in [*written, *claims_paths]], sep="\n  ")
    print("skipped:", *skipped, sep="\n  ")


if __name__ == "__main__":
    main()
