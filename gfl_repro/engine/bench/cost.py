"""`gfl-repro experiment-cost`: the time of one training iteration of each experiment relative to
a reference (GFLV2 at the same preset), measured in one process on the same batch; the paper's
FPS columns say these costs are small, and the sweep's estimates use them (experiments/presets.py).

Each experiment's step is timed interleaved with the reference's (timing.median_times), so that
drifts of a shared machine cancel in the ratio. Both take the reference's first training batch.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gfl_repro.config import Config
from gfl_repro.engine.bench.table import format_table, write_csv
from gfl_repro.engine.bench.timing import median_times
from gfl_repro.engine.bench.workloads import gfl_step, seeded_model
from gfl_repro.engine.data import ensure_dataset, train_loader
from gfl_repro.engine.distributed import DistInfo

COLUMNS = ("experiment", "table", "row", "step_s", "gflv2_step_s", "relative_to_gflv2")


@dataclass(frozen=True)
class CostOptions:
    warmup: int = 2  # untimed steps of each pair first
    reps: int = 5  # timed steps of each (median kept)

    def __post_init__(self) -> None:
        if self.reps < 1 or self.warmup < 0:
            raise ValueError("experiment-cost: reps must be at least 1, warmup not negative")


@dataclass(frozen=True)
class Case:
    """One experiment to time: its name, the paper table and row it stands for, its config."""

    name: str
    table: str
    row: str
    config: Config


def experiment_costs(reference: Config, cases: Iterable[Case], opts: CostOptions) -> list[dict]:
    """One record of COLUMNS per case (seconds per step), each paired with ``reference``."""
    ensure_dataset(reference.data, DistInfo())
    images, targets = next(iter(train_loader(reference.data, DistInfo(), seed=0)))
    ref_step = gfl_step(seeded_model(reference.model), images, targets)
    records = []
    for case in cases:
        step = gfl_step(seeded_model(case.config.model), images, targets)
        seconds, ref = median_times([step, ref_step], opts.reps, opts.warmup)
        records.append({"experiment": case.name, "table": case.table, "row": case.row,
                        "step_s": seconds, "gflv2_step_s": ref,
                        "relative_to_gflv2": seconds / ref})  # fmt: skip
        print(f"{case.name:<22} {seconds:.3f} s/it, GFLV2 beside it {ref:.3f} s/it", flush=True)
    return records


def write_costs(records: list[dict], out: Path) -> str:
    """Write the CSV (seconds to 4 decimals) and return the table to print (3 decimals)."""

    def cells(record: dict, digits: int) -> dict[str, str]:
        return {k: f"{v:.{digits}f}" if isinstance(v, float) else str(v)
                for k, v in record.items()}  # fmt: skip

    write_csv(out, COLUMNS, (cells(r, 4) for r in records))
    return format_table(COLUMNS, ([cells(r, 3)[c] for c in COLUMNS] for r in records))
