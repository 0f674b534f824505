"""Time per training iteration of every registered experiment relative to the GFLV2 default,
measured in one process on the same batch (the paper's FPS columns say these costs are small).

    python analysis/experiment_cost.py --preset mini [--reps 5] [--out FILE.csv]
"""

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from experiments.registry import EXPERIMENTS, resolve
from gfl_repro.engine.data import ensure_dataset, train_loader
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.train import train_step
from gfl_repro.models.build import build_model


def step_time(cfg, images, targets, warmup: int, reps: int) -> float:
    """Median seconds of one SGD step (forward, losses, backward, update)."""
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    times = []
    for i in range(warmup + reps):
        tic = time.perf_counter()
        train_step(model, model, opt, scaler, images, targets, i)
        times.append(time.perf_counter() - tic)
    return statistics.median(times[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = resolve("gflv2", args.preset)
    ensure_dataset(base.data, DistInfo())
    images, targets = next(iter(train_loader(base.data, DistInfo(), seed=0)))
    rows = []
    for name, exp in EXPERIMENTS.items():
        seconds = step_time(resolve(name, args.preset), images, targets, args.warmup, args.reps)
        rows.append({"experiment": name, "table": exp.table, "row": exp.row, "step_s": seconds})
        print(f"{name:<22} {seconds:.3f} s/it", flush=True)
    table = pd.DataFrame(rows)
    table["relative_to_gflv2"] = (
        table["step_s"] / table.loc[table.experiment == "gflv2", "step_s"].item()
    )
    out = args.out or Path("results") / args.preset / "experiment_cost.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4f")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
