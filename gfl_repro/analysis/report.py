"""Write a comparison table as CSV and Markdown under results/<preset>/."""

import math
from pathlib import Path

import pandas as pd

from gfl_repro.io import atomic_write_text


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: float, digits: int = 1) -> str:
    return "missing" if _missing(value) else f"{value:.{digits}f}"


def to_markdown(table: pd.DataFrame, metrics: list[str], title: str, note: str = "") -> str:
    """One row per experiment; per metric: ours (mean ± std over n seeds), the paper's, the
    difference. "seeds" counts the row's complete seeds; n those behind each cell."""
    head = ["experiment", "seeds"] + [f"{m} ours | {m} paper | {m} Δ" for m in metrics]
    lines = [f"## {title}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * (2 + 3 * len(metrics))]  # fmt: skip
    for _, r in table.iterrows():
        cells = [r["experiment"], str(r["seeds"])]
        for m in metrics:
            digits = 3 if m == "PCC" else 1
            ours = _cell(r[m], digits)
            std, n = r.get(f"{m}_std"), r.get(f"{m}_n", 0)
            if not _missing(std):
                ours += f" ± {std:.{digits + 1}f}"
            if n:
                ours += f" (n={n})"
            interval = r.get(f"{m}_ci")
            if isinstance(interval, str) and interval:
                ours += f" {interval}"
            cells += [ours, _cell(r[f"{m}_paper"], digits), _cell(r[f"{m}_diff"], digits)]
        lines.append("| " + " | ".join(cells) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, out_dir: Path, name: str, markdown: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, markdown)
    return csv_path, md_path
