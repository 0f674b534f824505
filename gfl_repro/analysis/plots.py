"""The paper's figures from run folders: each function computes the figure's data as a table,
writes it as CSV, then draws the PNG and PDF from that same table (Figs. 1b, 4, 6, 8, 9, and
each run's training curves).

Legend: N samples (LQE rows), n = reg_max (n + 1 bins), k top-k, G bins per axis of a density.

Figs. 1c/d and 7 (example images with side distributions, boxes before and after NMS) need the
model's per-image outputs: ``examples`` draws them from what the probe ``engine.examples`` wrote
into RUN/examples/.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from gfl_repro.analysis.stats import pearson  # noqa: E402
from gfl_repro.engine.runs import RunFolder  # noqa: E402
from gfl_repro.models.quality import distribution_statistics  # noqa: E402

DENSITY_BINS = 50  # G
EMA_ALPHA = 0.1  # weight of the newest logged point in the loss-curve smoothing


def save(fig: plt.Figure, table: pd.DataFrame, out_dir: str | Path, name: str) -> list[Path]:
    """``out_dir/<name>.{png,pdf,csv}``; closes the figure. The PDF has no creation date, so the
    same figure writes the same bytes and a re-published results folder changes only what
    changed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{ext}" for ext in ("png", "pdf", "csv")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    table.to_csv(paths[2], index=False)
    return paths


# --- Figs. 1b and 9: density scatters with the Pearson r ---------------------------------------


def density_table(x, y, bins: int = DENSITY_BINS) -> pd.DataFrame:
    """2-D histogram of (x, y) on [0, 1]^2, one row per cell: x_lo, x_hi, y_lo, y_hi, count, and
    the Pearson r and sample count N of the points (the same on every row, for the title).
    Rows with NaN in x or y are dropped (a dirac box has no top-1)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)  # (N,)
    x, y = x[ok], y[ok]
    edges = np.linspace(0.0, 1.0, bins + 1)  # (G + 1,)
    counts, _, _ = np.histogram2d(x, y, bins=[edges, edges])  # (G, G), x along axis 0
    i, j = np.meshgrid(np.arange(bins), np.arange(bins), indexing="ij")  # (G, G)
    return pd.DataFrame({
        "x_lo": edges[i.ravel()], "x_hi": edges[i.ravel() + 1],
        "y_lo": edges[j.ravel()], "y_hi": edges[j.ravel() + 1],
        "count": counts.ravel().astype(int),
        "r": pearson(x, y) if len(x) > 1 else float("nan"),
        "N": len(x),
    })  # fmt: skip


def draw_density(table: pd.DataFrame, xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """A density scatter from ``density_table``'s rows (log colour scale, empty cells blank)."""
    xs = np.unique(np.r_[table["x_lo"], table["x_hi"]])  # (G + 1,)
    ys = np.unique(np.r_[table["y_lo"], table["y_hi"]])  # (G + 1,)
    counts = table.pivot(index="y_lo", columns="x_lo", values="count").to_numpy()  # (G, G)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    mesh = ax.pcolormesh(xs, ys, np.ma.masked_equal(counts, 0), cmap="viridis", norm=LogNorm())
    fig.colorbar(mesh, ax=ax, label="samples")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"{title}\nPearson r = {table['r'].iloc[0]:.3f} (N = {table['N'].iloc[0]})")
    return fig


def fig1b(lqe_gflv1: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Fig. 1b: mean top-1 probability of the four side distributions against the real IoU of
    GFLV1's val positives (``lqe_gflv1`` is ``load_lqe`` of a GFLV1 run)."""
    table = density_table(lqe_gflv1["top1_mean"], lqe_gflv1["iou"])
    fig = draw_density(table, "Top-1 value (mean over 4 sides)", "IoU", "GFLV1 val positives")
    return save(fig, table, out_dir, "fig1b_top1_vs_iou")


def fig9(lqe_gflv2: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Fig. 9: DGQP's input (mean top-1 probability) against its output I for GFLV2's val
    positives."""
    table = density_table(lqe_gflv2["top1_mean"], lqe_gflv2["quality"])
    fig = draw_density(
        table, "DGQP input: Top-1 value (mean over 4 sides)", "DGQP output I", "GFLV2 val positives"
    )
    return save(fig, table, out_dir, "fig9_dgqp_input_output")


# --- Fig. 4: the statistics ignore where the distribution sits ---------------------------------


def shifted_features(reg_max: int = 16, k: int = 4, shift: int = 6) -> pd.DataFrame:
    """Top-k + mean statistics of one side distribution and of the same distribution shifted
    ``shift`` bins to the right; long table: series (original | shifted), kind (distribution |
    feature), index (bin y_i or feature name), value."""
    bins = np.arange(reg_max + 1)  # (n+1,)
    center = reg_max / 4
    sigma = np.where(bins < center, 1.0, 1.5)  # (n+1,) a longer right tail: a skewed shape
    logits = torch.tensor(-((bins - center) ** 2) / (2 * sigma**2), dtype=torch.float32)  # (n+1,)
    names = [f"top{j + 1}" for j in range(k)] + ["mean"]
    rows = []
    for series, side in (("original", logits), ("shifted", logits.roll(shift))):
        # The roll wraps the right tail to the left edge; with the peak at n / 4 and a shift
        # of n / 2 or less, that tail holds under 1e-4 of the probability.
        reg = side.repeat(4).reshape(1, 4 * (reg_max + 1), 1, 1)  # (1, 4(n+1), 1, 1)
        prob = side.softmax(dim=0)  # (n+1,)
        feats = distribution_statistics(reg, reg_max, k, ("topk", "mean"))[0, : k + 1, 0, 0]
        rows += [(series, "distribution", str(i), float(p)) for i, p in enumerate(prob)]
        rows += [(series, "feature", n, float(f)) for n, f in zip(names, feats, strict=True)]
    return pd.DataFrame(rows, columns=["series", "kind", "index", "value"])


def fig4(out_dir: str | Path, reg_max: int = 16, k: int = 4, shift: int = 6) -> list[Path]:
    """Fig. 4: a side distribution and its shifted copy (left) give the same Top-k + mean
    features (right), so DGQP sees the shape, not the position."""
    table = shifted_features(reg_max, k, shift)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for offset, series, color in ((-0.2, "original", "C0"), (0.2, "shifted", "C1")):
        rows = table[table["series"] == series]
        dist, feat = rows[rows["kind"] == "distribution"], rows[rows["kind"] == "feature"]
        left.bar(dist["index"].astype(int) + offset, dist["value"], 0.4, color=color, label=series)
        right.bar(np.arange(len(feat)) + offset, feat["value"], 0.4, color=color, label=series)
    left.set(xlabel="bin y_i (stride units)", ylabel="probability", title="side distribution")
    right.set_xticks(np.arange(len(feat)), feat["index"])
    right.set(ylabel="value", title="Top-k + mean features")
    left.legend()
    right.legend()
    return save(fig, table, out_dir, "fig4_shift_invariance")


# --- Fig. 8: the LQE (QFL) loss over training ---------------------------------------------------


def log_lines(run_dir: str | Path, mode: str) -> list[dict]:
    """The lines of a run's metrics.jsonl with ``mode`` (train | val | lqe) that survived its
    resumes, in order (RunFolder.log)."""
    return RunFolder(run_dir).log(mode)


def loss_curves(runs: dict[str, list[Path]], key: str = "loss_qfl") -> pd.DataFrame:
    """Per experiment and logged iteration: the EMA-smoothed ``key`` loss, mean / min / max over
    the seeds that logged that iteration. Columns: experiment, iter, mean, min, max, seeds."""
    parts = []
    for experiment, dirs in runs.items():
        curves = {}
        for run in dirs:
            train = pd.DataFrame([d for d in log_lines(run, "train") if key in d])
            if len(train):
                smooth = train[key].ewm(alpha=EMA_ALPHA, adjust=True).mean()
                curves[str(run)] = pd.Series(smooth.to_numpy(), index=train["iter"])
        if not curves:
            continue
        wide = pd.DataFrame(curves)  # (iters, seeds), NaN where a seed did not log
        parts.append(pd.DataFrame({
            "experiment": experiment, "iter": wide.index,
            "mean": wide.mean(axis=1).to_numpy(), "min": wide.min(axis=1).to_numpy(),
            "max": wide.max(axis=1).to_numpy(), "seeds": wide.notna().sum(axis=1).to_numpy(),
        }))  # fmt: skip
    columns = ["experiment", "iter", "mean", "min", "max", "seeds"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def fig8(runs: dict[str, list[Path]], out_dir: str | Path) -> list[Path]:
    """Fig. 8: QFL (the LQE loss) of GFLV1 against GFLV2 over training; ``runs`` maps an
    experiment label to its seeds' run folders. Line: mean over seeds; band: min to max."""
    table = loss_curves(runs)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for experiment, rows in table.groupby("experiment", sort=False):
        seeds = int(rows["seeds"].max())
        label = f"{experiment} ({seeds} seed{'s' * (seeds != 1)})"
        ax.plot(rows["iter"], rows["mean"], label=label)
        ax.fill_between(rows["iter"], rows["min"], rows["max"], alpha=0.25)
    ax.set(xlabel="iteration", ylabel="QFL loss (EMA)", title="LQE loss during training")
    ax.legend()
    return save(fig, table, out_dir, "fig8_lqe_loss")


# --- a run's training curves -------------------------------------------------------------------


VAL_METRICS = ("AP", "AP50", "AP75")  # drawn per evaluated epoch, in percent


def training_curves(run_dir: str | Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a long table: mode (train | val), iter, epoch, metric, value.
    Train rows: every loss term of each logged iteration (``loss``, the weighted sum, and its
    terms ``loss_*``), epoch 0-based as logged. Val rows: ``VAL_METRICS`` of each evaluation in
    percent, epoch the number of epochs trained before it (1-based: the epoch of the last
    train line at or before its iteration, plus one; NaN without one)."""
    train, val = log_lines(run_dir, "train"), log_lines(run_dir, "val")
    rows = [("train", d["iter"], d["epoch"], k, v)
            for d in train for k, v in d.items() if k.split("_")[0] == "loss"]  # fmt: skip
    iters = np.array([d["iter"] for d in train])  # (T,) logged in order
    epochs = np.array([d["epoch"] for d in train], dtype=float)  # (T,)
    for d in val:
        before = np.flatnonzero(iters <= d["iter"])
        epoch = epochs[before[-1]] + 1 if len(before) else np.nan
        rows += [("val", d["iter"], epoch, k, 100 * d[k]) for k in VAL_METRICS if k in d]
    return pd.DataFrame(rows, columns=["mode", "iter", "epoch", "metric", "value"])


def draw_training_curves(table: pd.DataFrame, title: str) -> plt.Figure:
    """Left: each loss term against the iteration (the total in black); right: val AP, AP50 and
    AP75 (%) against the epoch, each point labelled with its value, over every epoch trained."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), width_ratios=(3, 2))
    train, val = table[table["mode"] == "train"], table[table["mode"] == "val"]
    order = sorted(train["metric"].unique(), key=lambda m: m != "loss")  # the total first
    for metric in order:
        rows = train[train["metric"] == metric]
        style = {"color": "black", "lw": 1.8} if metric == "loss" else {"lw": 1.2}
        left.plot(rows["iter"], rows["value"], label=metric, **style)
    left.set(xlabel="iteration", ylabel="loss", title="training losses (per logged iteration)")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    for metric, rows in val.groupby("metric", sort=False):
        (line,) = right.plot(rows["epoch"], rows["value"], marker="o", label=metric)
        for x, y in zip(rows["epoch"], rows["value"], strict=True):
            right.annotate(f"{y:.1f}", (x, y), xytext=(4, 2), textcoords="offset points",
                           fontsize=7, color=line.get_color())  # fmt: skip
    epochs = int(np.nanmax([train["epoch"].max() + 1, val["epoch"].max(), 1]))  # trained
    right.set_xlim(0.5, epochs + 0.5)
    right.set_xticks(np.arange(1, epochs + 1, max(1, epochs // 12)))
    if len(val):
        right.set_ylim(0, 1.15 * val["value"].max() + 1)
        right.legend(fontsize=8, loc="lower right")
    else:
        right.text(0.5, 0.5, "no val evaluation in metrics.jsonl", ha="center", va="center",
                   transform=right.transAxes, color="0.4")  # fmt: skip
    right.set(xlabel="epoch", ylabel="AP (%)", title="val AP (per evaluated epoch)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fig_training_curves(run_dir: str | Path, out_dir: str | Path, name: str) -> list[Path]:
    """A run's training curves as detection toolkits draw them: ``out_dir/<name>.*``."""
    table = training_curves(run_dir)
    if table.empty:
        raise ValueError(f"{Path(run_dir) / RunFolder.LOG}: no train or val line")
    return save(draw_training_curves(table, f"training curves of {run_dir}"), table, out_dir, name)


# --- LQE over training (runtime.lqe_every_epoch) ----------------------------------------------


LQE_COLUMNS = ("pcc_joint", "pcc_quality", "quality_mean", "quality_std", "joint_mean",
               "joint_std", "samples")  # fmt: skip


def lqe_over_training(runs: dict[str, list[Path]]) -> pd.DataFrame:
    """The "lqe" lines of each run's metrics.jsonl: one row per experiment, run and logged
    checkpoint, columns experiment, run, iter, epoch and ``LQE_COLUMNS``."""
    rows = []
    for experiment, dirs in runs.items():
        for run in dirs:
            rows += [
                {"experiment": experiment, "run": str(run), **d} for d in log_lines(run, "lqe")
            ]
    columns = ["experiment", "run", "iter", "epoch", *LQE_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def fig_lqe_training(runs: dict[str, list[Path]], out_dir: str | Path) -> list[Path]:
    """LQE during training: PCC of J and of I with the IoU over the val positives at each
    logged checkpoint (left), and the mean of I and J with a band of one std (right); one line
    per run."""
    table = lqe_over_training(runs)
    if table.empty:
        raise ValueError("no run logged LQE during training (runtime.lqe_every_epoch=true)")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for (experiment, run), rows in table.groupby(["experiment", "run"], sort=False):
        label = f"{experiment} {Path(run).name}"
        left.plot(rows["iter"], rows["pcc_joint"], marker="o", label=f"{label}: J")
        if rows["pcc_quality"].notna().any():
            left.plot(rows["iter"], rows["pcc_quality"], marker="s", ls="--", label=f"{label}: I")
        for col, ls in (("joint", "-"), ("quality", "--")):
            if rows[f"{col}_mean"].notna().any():
                mean, std = rows[f"{col}_mean"], rows[f"{col}_std"]
                right.plot(rows["iter"], mean, ls=ls, label=f"{label}: {col}")
                right.fill_between(rows["iter"], mean - std, mean + std, alpha=0.2)
    left.set(xlabel="iteration", ylabel="PCC with the IoU", title="LQE over training")
    right.set(xlabel="iteration", ylabel="value at val positives", title="I and J (mean ± std)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    return save(fig, table, out_dir, "lqe_over_training")


# --- Fig. 6: speed-accuracy ---------------------------------------------------------------------


def speed_table(runs: pd.DataFrame, bench: pd.DataFrame) -> pd.DataFrame:
    """Mean AP over complete seeds (``collect_runs``) joined with the benchmark's latency per
    experiment (columns experiment, fps, ms; the median over its benchmarked seeds). Experiments
    without both are left out."""
    ap = runs[runs["complete"]].groupby("experiment")["AP"].agg(["mean", "count"])
    ap = ap.rename(columns={"mean": "AP", "count": "seeds"}).reset_index()
    speed = bench.groupby("experiment")[["fps", "ms"]].median().reset_index()
    return ap.merge(speed, on="experiment", how="inner")


def fig6(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Fig. 6: AP (%) against inference latency (ms per image), one point per experiment."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(table["ms"], table["AP"])
    for _, row in table.iterrows():
        ax.annotate(row["experiment"], (row["ms"], row["AP"]), fontsize=8, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    ax.set(xlabel="inference latency (ms / image)", ylabel="AP (%)", title="speed vs accuracy")
    return save(fig, table, out_dir, "fig6_speed_accuracy")
