"""The mini regime search (docs/differences.md): per candidate, each model's AP, class-agnostic AP,
class_first (the share of val positives whose gt class ranks first) and TIDE's dAP50 per error
type, mean ± std over seeds; the AP averaged over both models per seed
with its 95 % t-interval and its change from the baseline's; and decision 2's error-profile
criterion per model (dAP_loc >= dAP_cls and classification not the largest error type).

python analysis/regime.py CANDIDATE_ROOT [CANDIDATE_ROOT ...] --baseline 23.63,23.89
    [--against REFERENCE_ROOT] [--out F.md]

Each CANDIDATE_ROOT is a runs root (mini/gflv1/seed0/, mini/gflv2/seed0/, ...) named after its
candidate; a model is its run's folder name (gflv1 or gflv2). A run needs only its small files
(config.json, env.json, metrics.json, diagnostics.json), as published under
docs/results/mini/regime/runs/. With --against, each candidate's AP averaged over both models
is also held against the reference candidate's, paired by seed (decisions 3 and 4): the
difference per seed, its mean with a 95 % t-interval, and whether that shows a gain (the interval
above 0), a loss (below) or neither. The difference between GFLV1 and GFLV2 is not computed: no
decision of the search uses it.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from gfl_repro.analysis.collect import collect_runs
from gfl_repro.analysis.stats import mean_std

MODELS = ("gflv1", "gflv2")
COLUMNS = ("AP", "AP50", "AP75", "AP_agnostic", "class_first", "dAP_cls", "dAP_loc", "dAP_both",
           "dAP_dupe", "dAP_bkg", "dAP_miss")  # fmt: skip
ERRORS = ("dAP_cls", "dAP_loc", "dAP_both", "dAP_dupe", "dAP_bkg", "dAP_miss")


def candidate_runs(root: Path) -> pd.DataFrame:
    """The complete runs under ``root``, one row each, with its model (the folder's name)."""
    runs = collect_runs(root)
    if runs.empty:
        raise SystemExit(f"{root}: no run folder under it (mini/gflv1/seed0/config.json, ...)")
    runs = runs[runs["complete"]].copy()
    runs["model"] = [Path(run).parent.name for run in runs["run"]]
    return runs[runs["model"].isin(MODELS)]


def error_profile(row: pd.Series) -> tuple[bool, str]:
    """Decision 2's criterion on one model's mean dAP: met, and the largest error type."""
    largest = max(ERRORS, key=lambda k: row[k])
    return bool(row["dAP_loc"] >= row["dAP_cls"] and largest != "dAP_cls"), largest[4:]


def both_models(runs: pd.DataFrame) -> pd.Series:
    """The AP averaged over GFLV1 and GFLV2 at each seed both completed."""
    wide = runs.pivot_table(index="seed", columns="model", values="AP")
    return wide.reindex(columns=list(MODELS)).dropna().mean(axis=1)


def candidate_markdown(name: str, runs: pd.DataFrame, baseline: float) -> str:
    lines = [f"## {name}\n", "| model | seeds | " + " | ".join(COLUMNS) + " | profile met |",
             "|---|---|" + "---|" * (len(COLUMNS) + 1)]  # fmt: skip
    for model, group in runs.groupby("model"):
        cells = []
        for column in COLUMNS:
            values = group[column].dropna()  # class_first: runs since metrics.json records it
            if values.empty:
                cells.append("–")
                continue
            mean, std = mean_std(values)
            cells.append(f"{mean:.2f}" if len(values) < 2 else f"{mean:.2f} ± {std:.2f}")
        met, largest = error_profile(group[list(ERRORS)].mean())
        seeds = ",".join(str(int(s)) for s in sorted(group["seed"]))
        lines.append(f"| {model} | {seeds} | " + " | ".join(cells) +
                     f" | {'yes' if met else 'no'} (largest: {largest}) |")  # fmt: skip
    both = both_models(runs)
    per_seed = ", ".join(f"seed {int(s)}: {v:.2f}" for s, v in both.items())
    text = f"\nAP averaged over both models, per seed: {per_seed}. "
    if len(both) >= 2:
        mean, std = mean_std(both)
        low, high = stats.t.interval(0.95, len(both) - 1, mean, stats.sem(both))
        text += (f"Mean {mean:.2f} ± {std:.2f} over {len(both)} seeds, 95 % t-interval "
                 f"[{low:.2f}, {high:.2f}]; change from the baseline's {baseline:.2f}: "
                 f"{mean - baseline:+.2f} AP.")  # fmt: skip
    elif len(both) == 1:
        text += (
            f"One seed: change from the baseline's {baseline:.2f}: {both.iloc[0] - baseline:+.2f}."
        )
    return "\n".join(lines) + "\n" + text + "\n"


def paired_markdown(name: str, runs: pd.DataFrame, reference: str, ref_runs: pd.DataFrame) -> str:
    """The candidate's AP averaged over both models minus the reference's, at their common seeds."""
    diff = (both_models(runs) - both_models(ref_runs)).dropna()
    per_seed = ", ".join(f"seed {int(s)}: {v:+.2f}" for s, v in diff.items())
    text = f"\n{name} against {reference}, AP averaged over both models, per seed: {per_seed}. "
    if len(diff) < 2:
        return text + "Fewer than 2 common seeds: no interval.\n"
    mean, std = mean_std(diff)
    low, high = stats.t.interval(0.95, len(diff) - 1, mean, stats.sem(diff))
    verdict = "a gain" if low > 0 else "a loss" if high < 0 else "neither a gain nor a loss"
    return text + (f"Mean {mean:+.2f} ± {std:.2f} over {len(diff)} seeds, 95 % t-interval "
                   f"[{low:+.2f}, {high:+.2f}]: {verdict}.\n")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", type=Path, nargs="+", metavar="CANDIDATE_ROOT")
    p.add_argument("--baseline", required=True,
                   help="the baseline mean AP of GFLV1 and of GFLV2: A,B")  # fmt: skip
    p.add_argument("--against", type=Path, default=None, metavar="REFERENCE_ROOT",
                   help="hold each candidate's AP over both models against this one's")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="Markdown file (default: stdout)")
    args = p.parse_args(argv)
    v1, v2 = (float(x) for x in args.baseline.split(","))
    ref_runs = candidate_runs(args.against) if args.against else None
    parts = []
    for root in args.roots:
        runs = candidate_runs(root)
        parts.append(candidate_markdown(root.name, runs, (v1 + v2) / 2))
        if ref_runs is not None and root.resolve() != args.against.resolve():
            parts[-1] += paired_markdown(root.name, runs, args.against.name, ref_runs)
    text = "\n".join(parts)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
