"""Decision 5 of the mini regime search (docs/differences.md): has a schedule reached the plateau?

python analysis/plateau.py REFERENCE_ROOT CANDIDATE_ROOT [CANDIDATE_ROOT ...] [--seed 0]
    [--margin 0.5] [--out-dir DIR]

REFERENCE_ROOT is the runs root of the long reference (one run per model, evaluated every epoch:
``runtime.eval_every_epoch``); each CANDIDATE_ROOT holds a shorter schedule's runs of the same
seed. A candidate has reached the plateau when, for each model, its final val AP is at least the
best AP the reference reaches at any epoch minus ``margin``. Also given: each schedule's summed
learning rate (the per-iteration lr of the run's own schedule, warm-up and drops included, summed
over its iterations). Writes plateau.md, plateau.csv (the reference's AP per epoch) and
plateau.png (the curves, each candidate's final AP as a marker) under --out-dir (default: print
the Markdown only). The difference between GFLV1 and GFLV2 decides nothing here.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from gfl_repro.analysis.plots import log_lines  # noqa: E402
from gfl_repro.config import Config  # noqa: E402
from gfl_repro.engine.runs import load_run_config  # noqa: E402
from gfl_repro.engine.train import Schedule, scaled_lr, total_iters  # noqa: E402

MODELS = ("gflv1", "gflv2")


def run_dir(root: Path, model: str, seed: int) -> Path:
    return root / "mini" / model / f"seed{seed}"


def iters_per_epoch(cfg: Config) -> int:
    return -(-cfg.data.mini_train // cfg.data.images_per_process)


def summed_lr(cfg: Config) -> float:
    """The learning rate summed over every iteration of the run's schedule (one process)."""
    per_epoch = iters_per_epoch(cfg)
    sched = Schedule(scaled_lr(cfg, 1), per_epoch, total_iters(per_epoch, cfg.schedule),
                     cfg.schedule)  # fmt: skip
    return sum(sched.lr_at(i) for i in range(sched.total_iters))


def reference_curve(run: Path) -> pd.DataFrame:
    """Val AP (%) after each epoch of the reference run: one row per "val" line of its log."""
    per_epoch = iters_per_epoch(load_run_config(run))
    rows = [(d["iter"] // per_epoch, 100 * d["AP"]) for d in log_lines(run, "val")]
    return pd.DataFrame(rows, columns=["epoch", "AP"]).drop_duplicates("epoch", keep="last")


def final_ap(run: Path) -> float:
    return 100 * json.loads((run / "metrics.json").read_text())["AP"]


def plateau(reference: Path, candidates: list[Path], seed: int, margin: float):
    """(curves: model, epoch, AP of the reference; verdicts: one row per candidate and model)."""
    curves, rows = [], []
    for model in MODELS:
        curve = reference_curve(run_dir(reference, model, seed))
        if curve.empty:
            raise SystemExit(f"{run_dir(reference, model, seed)}: no val line in metrics.jsonl")
        curves.append(curve.assign(model=model))
        best = curve.loc[curve["AP"].idxmax()]
        for root in candidates:
            run = run_dir(root, model, seed)
            cfg = load_run_config(run)
            ap = final_ap(run)
            rows.append({
                "candidate": root.name, "model": model, "epochs": cfg.schedule.epochs,
                "summed_lr": summed_lr(cfg), "final_AP": ap, "reference_best_AP": best["AP"],
                "reference_best_epoch": int(best["epoch"]), "shortfall": best["AP"] - ap,
                "reached": bool(ap >= best["AP"] - margin),
            })  # fmt: skip
    return pd.concat(curves, ignore_index=True), pd.DataFrame(rows)


def markdown(reference: Path, curves: pd.DataFrame, verdicts: pd.DataFrame, margin: float,
             seed: int) -> str:  # fmt: skip
    ref_config = load_run_config(run_dir(reference, MODELS[0], seed))
    wide = curves.pivot_table(index="epoch", columns="model", values="AP")
    lines = [f"## The reference: {reference.name}, seed {seed} "
             f"(summed lr {summed_lr(ref_config):.1f})\n",
             "| epoch | " + " | ".join(MODELS) + " |", "|---|" + "---|" * len(MODELS)]  # fmt: skip
    for epoch, row in wide.iterrows():
        lines.append(f"| {epoch} | " + " | ".join(f"{row[m]:.2f}" for m in MODELS) + " |")
    lines += ["", f"## The candidates (plateau: final AP >= the reference's best - {margin})\n",
              "| candidate | epochs | summed lr | model | final AP | reference best (epoch) | "
              "shortfall | reached |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in verdicts.iterrows():
        lines.append(
            f"| {r.candidate} | {r.epochs} | {r.summed_lr:.1f} | {r.model} | {r.final_AP:.2f} | "
            f"{r.reference_best_AP:.2f} ({r.reference_best_epoch}) | {r.shortfall:+.2f} | "
            f"{'yes' if r.reached else 'no'} |"
        )
    lines.append("")
    for name, group in verdicts.groupby("candidate", sort=False):
        both = "reaches" if group["reached"].all() else "does not reach"
        lines.append(f"- {name}: {both} the plateau for both models.")
    return "\n".join(lines) + "\n"


def draw(curves: pd.DataFrame, verdicts: pd.DataFrame, margin: float, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, rows in curves.groupby("model"):
        (line,) = ax.plot(rows["epoch"], rows["AP"], marker="o", label=f"{model}: reference")
        best = rows["AP"].max()
        ax.axhspan(best - margin, best, color=line.get_color(), alpha=0.12)
        cands = verdicts[verdicts["model"] == model]
        ax.scatter(cands["epochs"], cands["final_AP"], marker="*", s=120, color=line.get_color(),
                   edgecolor="k", zorder=3, label=f"{model}: candidates' final AP")  # fmt: skip
    ax.set(xlabel="epoch", ylabel="val AP (%)", title=f"Plateau (band: best - {margin} AP)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference", type=Path, metavar="REFERENCE_ROOT")
    p.add_argument("candidates", type=Path, nargs="+", metavar="CANDIDATE_ROOT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--margin", type=float, default=0.5, help="AP points below the best (0.5)")
    p.add_argument("--out-dir", type=Path, default=None)
    args = p.parse_args(argv)
    curves, verdicts = plateau(args.reference, args.candidates, args.seed, args.margin)
    text = markdown(args.reference, curves, verdicts, args.margin, args.seed)
    if args.out_dir is None:
        print(text, end="")
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "plateau.md").write_text(text)
    curves.to_csv(args.out_dir / "plateau.csv", index=False)
    draw(curves, verdicts, args.margin, args.out_dir / "plateau.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
