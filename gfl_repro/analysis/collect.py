"""Read run folders into one table. Analysis reads only run folders, never live models."""

import time
from pathlib import Path

import numpy as np
import pandas as pd

from gfl_repro.analysis.stats import bootstrap_ci, pearson
from gfl_repro.engine.diagnostics import summary_columns
from gfl_repro.engine.runs import RunFolder, recorded_seconds

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# column: bench_model.json key ("FPS" in Tables 3-6, "Inference FPS" in Table 8)
SPEED = {"Training Hours": "training_hours", "Inference FPS": "fps", "FPS": "fps"}
# diagnostics.json: class-agnostic AP and TIDE's dAP50 per error type, in percent
DIAGNOSTICS = ("AP_agnostic", "AP50_agnostic", "AP75_agnostic", "dAP_cls", "dAP_loc", "dAP_both",
               "dAP_dupe", "dAP_bkg", "dAP_miss")  # fmt: skip


def collect_runs(root: str | Path = "runs") -> pd.DataFrame:
    """One row per run folder (any folder holding config.json): preset, experiment, seed, run
    path, rows (the table rows it serves, comma-separated), complete, the COCO metrics in percent
    when the run is complete, class_first (metrics.json, in percent), the PCC of its LQE dump,
    the speed columns (Table 8's "Training Hours" and "Inference FPS", Tables 3-6's "FPS") from
    its bench_model.json, and the diagnostics from its diagnostics.json (NaN without)."""
    rows = []
    for config in sorted(Path(root).glob(f"**/{RunFolder.CONFIG}")):
        run = RunFolder(config.parent)
        env, metrics = run.identity, run.metrics
        row = {
            "preset": env.get("preset"),
            "experiment": env.get("experiment"),
            "seed": env.get("seed"),
            "run": str(run.path),
            "rows": ",".join(env["rows"]),
            "complete": bool(metrics),
        }
        row.update({m: 100 * metrics[m] for m in METRICS if m in metrics})
        # of the val positives, the share whose gt class ranks first (runs since it was recorded)
        row["class_first"] = 100 * metrics.get("class_first", float("nan"))
        row["PCC"] = _pcc(run)
        row.update(summary_columns(run.read(run.DIAGNOSTICS)))  # gfl-repro diagnose
        bench = run.read(run.BENCH)  # gfl-repro bench-model
        row.update({column: bench.get(key, float("nan")) for column, key in SPEED.items()})
        rows.append(row)
    columns = ["preset", "experiment", "seed", "run", "rows", "complete", *METRICS, "class_first",
               "PCC", *SPEED, *DIAGNOSTICS]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _pcc(run: RunFolder) -> float:
    """Pearson correlation of the predicted joint score J at the gt class with the real IoU over
    the run's val positives (lqe.npz), NaN without a dump (Table 6)."""
    path = run.lqe_file()
    if not path.is_file():
        return float("nan")
    with np.load(path) as data:
        return pearson(data["joint"], data["iou"])


def pcc_intervals(runs: pd.DataFrame, n: int = 1000) -> str:
    """Percentile bootstrap 95 % intervals of each complete run's PCC (Table 6), resampling its
    val positives ``n`` times: "[low, high]" per seed, in seed order; "" without LQE dumps."""
    out = []
    for _, row in runs[runs["complete"]].sort_values("seed").iterrows():
        path = RunFolder(row["run"]).lqe_file()
        if path.is_file():
            with np.load(path) as data:
                ci = bootstrap_ci(data["joint"], data["iou"], n=n)
            out.append(f"[{ci.low:.3f}, {ci.high:.3f}]")
    return "; ".join(out)


def val_annotations(runs_dir: str | Path) -> Path | None:
    """The val annotation file that the first complete run under ``runs_dir`` was evaluated on
    (metrics.json records it), or None without any complete run."""
    done = sorted(Path(runs_dir).glob(f"*/seed*/{RunFolder.METRICS}"))
    return Path(RunFolder(done[0].parent).metrics["ann_file"]) if done else None


def provenance(runs: pd.DataFrame) -> dict:
    """Where the complete runs of ``runs`` come from: their git commits, CPU kernels (float
    results differ between them), the UTC dates their metrics were written, and their recorded
    device-hours (training, LQE dump, evaluation)."""
    done = [RunFolder(r) for r in runs.loc[runs["complete"], "run"]]
    commits = sorted({r.env.get("git_commit", "unknown") for r in done})
    kernels = sorted({r.kernels for r in done})
    stamps = [(r / r.METRICS).stat().st_mtime for r in done]
    dates = sorted({time.strftime("%Y-%m-%d", time.gmtime(t)) for t in stamps})
    seconds = [recorded_seconds(r.path) for r in done]
    hours = sum(s for s in seconds if s is not None) / 3600
    return {"runs": len(done), "commits": commits, "kernels": kernels, "dates": dates,
            "hours": hours, "untimed": sum(s is None for s in seconds)}  # fmt: skip


def compare_with_paper(
    runs: pd.DataFrame,
    paper: dict[str, dict[str, float]],
    rows: list[str] | list[tuple[str, str]],
    columns: tuple[str, ...] = METRICS,
) -> pd.DataFrame:
    """Per row: ours (mean, std and number of complete seeds), the paper's value, the difference.

    ``rows`` are experiment names, or (row name, run name) pairs when rows share a run folder.
    A row whose runs are not all complete is shown as missing (NaN), never filled in; so is a
    column that the runs do not measure. A speed column (SPEED, from bench-model) averages the
    seeds that were timed, since speed does not depend on the seed; ``{metric}_n`` counts them.
    """
    out = []
    for item in rows:
        row_name, run_name = item if isinstance(item, tuple) else (item, item)
        mine = runs[runs["experiment"] == run_name]
        done = mine[mine["complete"]]
        ok = len(done) > 0 and len(done) == len(mine)
        row = {"experiment": row_name, "run": run_name, "seeds": len(done)}
        nan = float("nan")
        for m in columns:
            digits = 3 if m == "PCC" else 1
            values = done[m] if ok and m in done else pd.Series(dtype=float)
            values = values.dropna() if m in SPEED else values  # the seeds that were timed
            have = len(values) > 0 and values.notna().all()
            mean = values.mean() if have else nan
            row[m] = round(mean, digits) if have else nan
            std = round(values.std(ddof=1), digits + 1) if have and len(values) > 1 else nan
            row[f"{m}_std"] = std
            row[f"{m}_n"] = len(values) if have else 0  # the seeds behind the cell
            row[f"{m}_paper"] = paper.get(row_name, {}).get(m, nan)
            row[f"{m}_diff"] = round(mean - row[f"{m}_paper"], digits) if have else nan
        out.append(row)
    return pd.DataFrame(out)
