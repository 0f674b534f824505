"""Write a comparison table as CSV (wide, for machines) and Markdown (one row per experiment,
for people) under results/<preset>/; the cells are shared with the results page."""

import math
from pathlib import Path

import pandas as pd

from gfl_repro.io import atomic_write_text

MISSING = "missing"
PAPER_ROW = "↳ *paper (Δ)*"  # the line under each experiment: the paper's value (ours − paper)


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def digits(metric: str) -> int:
    """Decimals of a metric: PCC is a correlation in [-1, 1], the rest are percents or rates."""
    return 3 if metric == "PCC" else 1


def ours_cell(row, metric: str) -> str:
    """Ours: the mean over the row's complete seeds ± their std (no std with one seed), and
    "(n of N seeds)" when fewer seeds stand behind the cell than behind the row (a speed column:
    the seeds that were timed); "missing" when the row's runs are not all complete or do not
    measure ``metric``."""
    d, value, std = digits(metric), row.get(metric), row.get(f"{metric}_std")
    if is_missing(value):
        return MISSING
    n, seeds = row.get(f"{metric}_n"), row.get("seeds")
    fewer = "" if is_missing(n) or is_missing(seeds) or n >= seeds else f" ({n} of {seeds} seeds)"
    return f"{value:.{d}f}" + ("" if is_missing(std) else f" ± {std:.{d + 1}f}") + fewer


def paper_cell(row, metric: str) -> str:
    """The paper's value and, in brackets, ours − paper; "—" where the paper has no number."""
    d, paper, diff = digits(metric), row.get(f"{metric}_paper"), row.get(f"{metric}_diff")
    if is_missing(paper):
        return "—"
    return f"{paper:.{d}f}" + ("" if is_missing(diff) else f" ({diff:+.{d}f})")


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def to_markdown(table: pd.DataFrame, metrics: list[str], title: str, note: str = "") -> str:
    """One row per experiment with ours (mean ± std over its complete seeds) per metric, and the
    paper's row beneath it with ours − paper in brackets. A table with a "row" column (the
    paper's row label) shows it beside the experiment; "{metric}_ci" columns (each seed's
    interval, e.g. Table 6's PCC) are listed under the table."""
    labelled = "row" in table.columns
    head = ["experiment", *(["paper row"] if labelled else []), "seeds", *metrics]
    lines = [f"## {title}", "", _line(head), "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        label = [r["experiment"], *([str(r["row"])] if labelled else [])]
        lines.append(_line([*label, str(r["seeds"]), *(ours_cell(r, m) for m in metrics)]))
        blank = [""] * labelled
        lines.append(_line([PAPER_ROW, *blank, "", *(paper_cell(r, m) for m in metrics)]))
    lines += ["", "Each experiment: ours, mean ± std over its complete seeds (\"missing\" while "
              "one of its runs is still training); beneath it the paper's value and, in brackets, "
              "ours − paper."]  # fmt: skip
    lines += _intervals(table, metrics)
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


DIAGNOSTICS_NOTE = (
    "AP_agnostic: COCO AP with classes ignored in the matching. dAP_*: AP50 points an oracle "
    "fixing only that TIDE error type would add (cls: right box, wrong class; loc: right class, "
    "0.1 <= IoU < 0.5; both; dupe: duplicate; bkg: background; miss: missed gt)."
)


def diagnostics_markdown(table: pd.DataFrame, label: str = "experiment") -> str:
    """Class-agnostic AP and TIDE's dAP50 per error type, one line per row of ``table``
    (``compare_with_paper`` over collect.DIAGNOSTICS): mean ± std over its complete seeds,
    missing unless every one wrote diagnostics.json."""
    columns = [c for c in table.columns if f"{c}_n" in table.columns]
    if table[columns].isna().all().all():
        return "No diagnostics.json in these runs yet: `gfl-repro diagnose RUN_DIR ...`.\n"
    head = [label, "seeds", *columns]
    lines = [_line(head), "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        seeds = str(max(r[c + "_n"] for c in columns))
        lines.append(_line([r["experiment"], seeds, *(ours_cell(r, c) for c in columns)]))
    return "\n".join([*lines, "", DIAGNOSTICS_NOTE]) + "\n"


def _intervals(table: pd.DataFrame, metrics: list[str]) -> list[str]:
    """Each seed's interval of the metrics that have one ("{metric}_ci"), one line per row."""
    out = []
    for m in metrics:
        if f"{m}_ci" not in table.columns:
            continue
        have = [(r["experiment"], r[f"{m}_ci"]) for _, r in table.iterrows()]
        have = [(e, ci) for e, ci in have if isinstance(ci, str) and ci]
        if have:
            out += ["", f"{m}, each seed's 95 % interval:", ""]
            out += [f"- {e}: {ci}" for e, ci in have]
    return out


def write_table(table: pd.DataFrame, out_dir: Path, name: str, markdown: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, markdown)
    return csv_path, md_path
