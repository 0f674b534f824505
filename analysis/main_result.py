"""GFLV1 against GFLV2 at a preset, beside the paper's R-50 1x numbers (Table 2, k = 0 and 4):
the table over seeds, each seed's AP and paired difference, the claim's verdict over seeds, and
where the runs come from (commit, dates, device-hours).

python analysis/main_result.py --preset mini [--runs runs] [--results results] [--ann-file F]
    [--boot 200]
"""

import argparse
from pathlib import Path

import pandas as pd

from experiments.claims import Checker, gflv2_vs_gflv1
from experiments.paper import R50_1X
from gfl_repro.analysis.collect import (
    DIAGNOSTICS,
    METRICS,
    collect_runs,
    compare_with_paper,
    provenance,
    val_annotations,
)
from gfl_repro.analysis.report import diagnostics_markdown, to_markdown, write_table
from gfl_repro.analysis.stats import mean_std
from gfl_repro.io import atomic_write_text

PAIR = ("gflv1", "gflv2")
NOTE = (
    "Ours: COCO-style AP (%) on the preset's val set. Paper: R-50 1x on COCO minival (Table 2). "
    "At the mini preset the data and model differ from the paper's, so only the direction of "
    "the GFLV1 -> GFLV2 difference is comparable."
)


def per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """AP of GFLV1 and GFLV2 at every seed both completed, and GFLV2 − GFLV1 (AP points)."""
    done = runs[runs["complete"]]
    if done.empty:
        return pd.DataFrame(columns=["seed", *PAIR, "diff"])
    wide = done.pivot_table(index="seed", columns="experiment", values="AP")
    wide = wide.reindex(columns=list(PAIR)).dropna()
    wide["diff"] = wide["gflv2"] - wide["gflv1"]
    return wide.reset_index()


def per_seed_markdown(table: pd.DataFrame) -> str:
    lines = ["| seed | GFLV1 AP | GFLV2 AP | GFLV2 − GFLV1 |", "|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {int(r['seed'])} | {r['gflv1']:.1f} | {r['gflv2']:.1f} | "
                     f"{r['diff']:+.2f} |")  # fmt: skip
    if len(table) > 1:
        (m1, s1), (m2, s2), (md, sd) = (mean_std(table[c]) for c in (*PAIR, "diff"))
        cells = [f"{m1:.2f} ± {s1:.2f}", f"{m2:.2f} ± {s2:.2f}", f"{md:+.2f} ± {sd:.2f}"]
        lines.append(f"| mean ± std ({len(table)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pair_diagnostics(runs: pd.DataFrame) -> str:
    """Class-agnostic AP and TIDE's dAP50 per error type of GFLV1 and GFLV2."""
    return diagnostics_markdown(compare_with_paper(runs, {}, list(PAIR), DIAGNOSTICS), "model")


def origin(runs: pd.DataFrame) -> str:
    p = provenance(runs[runs["experiment"].isin(PAIR)])
    untimed = f" ({p['untimed']} run(s) did not record it)" if p["untimed"] else ""
    return (f"Runs: {p['runs']} complete, from commit(s) {', '.join(c[:7] for c in p['commits'])}"
            f", CPU kernels {', '.join(p['kernels'])}, written on {', '.join(p['dates'])}; "
            f"{p['hours']:.2f} device-hours of training, LQE dump and evaluation in all"
            f"{untimed}.\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument(
        "--ann-file",
        type=Path,
        default=None,
        help="val annotations (default: those the runs were evaluated on)",
    )
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples of val images")
    args = parser.parse_args()
    runs = collect_runs(args.runs / args.preset)
    table = compare_with_paper(runs, R50_1X, list(PAIR))
    markdown = to_markdown(table, list(METRICS), f"GFLV1 vs GFLV2 ({args.preset})", NOTE)
    seeds = per_seed(runs)
    if len(seeds):
        ann_file = args.ann_file or val_annotations(args.runs / args.preset)
        claim = gflv2_vs_gflv1(Checker(args.runs, args.preset, ann_file, args.boot))
        markdown += "\n".join(["", "### Per seed", "", per_seed_markdown(seeds),
                               "### Diagnostics", "", pair_diagnostics(runs),
                               "#" + claim, origin(runs)])  # fmt: skip
    csv_path, md_path = write_table(table, args.results / args.preset, "main", markdown)
    seeds_path = args.results / args.preset / "main_seeds.csv"
    atomic_write_text(seeds_path, seeds.to_csv(index=False))
    print(markdown)
    print(f"written: {csv_path}, {md_path}, {seeds_path}")


if __name__ == "__main__":
    main()
