"""Time per training iteration of every registered experiment relative to the GFLV2 default,
measured in one process on the same batch (the paper's FPS columns say these costs are small).

Each experiment is timed right next to a GFLV2 reference step (paired), so that drifts of a shared
machine cancel in the ratio. Table 7 (COCO backbones, 2x) is left out: its rows are not mini-scale
models.

    python analysis/experiment_cost.py --preset mini [--reps 5] [--out FILE.csv]
"""

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from experiments.registry import EXPERIMENTS, resolve
from gfl_repro.build import build_model
from gfl_repro.engine.data import ensure_dataset, train_loader
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.train import train_step


class Stepper:
    """A model and its optimizer; ``time(reps)`` is the median seconds of one SGD step."""

    def __init__(self, cfg, images, targets):
        torch.manual_seed(0)
        self.model = build_model(cfg.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)
        self.images, self.targets, self.i = images, targets, 0

    def time(self, reps: int) -> float:
        times = []
        for _ in range(reps):
            tic = time.perf_counter()
            m = self.model
            train_step(m, m, self.opt, self.scaler, self.images, self.targets, self.i)
            times.append(time.perf_counter() - tic)
            self.i += 1
        return statistics.median(times)


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
    reference = Stepper(base, images, targets)
    reference.time(args.warmup)
    rows = []
    for name, exp in EXPERIMENTS.items():
        if exp.table == "7":
            continue
        stepper = Stepper(resolve(name, args.preset), images, targets)
        stepper.time(args.warmup)
        seconds, ref = stepper.time(args.reps), reference.time(args.reps)
        rows.append({"experiment": name, "table": exp.table, "row": exp.row, "step_s": seconds,
                     "gflv2_step_s": ref, "relative_to_gflv2": seconds / ref})  # fmt: skip
        print(f"{name:<22} {seconds:.3f} s/it, GFLV2 beside it {ref:.3f} s/it", flush=True)
    table = pd.DataFrame(rows)
    out = args.out or Path("results") / args.preset / "experiment_cost.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4f")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
