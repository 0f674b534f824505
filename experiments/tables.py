"""A paper table from run folders: our numbers (mean ± std over seeds) beside the paper's."""

from pathlib import Path

from experiments.paper import COLUMNS, PAPER
from experiments.registry import canonical_name, table
from gfl_repro.analysis.report import to_markdown, write_table
from gfl_repro.analysis.runs import collect_runs, compare_with_paper, pcc_intervals

NOTE = (
    "Ours: COCO-style AP (%) on the preset's val set, mean ± std over complete seeds (a row whose "
    "runs are not all complete is missing). Paper: R-50 1x on COCO minival. At the mini preset "
    "data and model differ from the paper's: compare directions and gaps, not absolute values. "
    "FPS comes from `gfl-repro bench-model`, PCC from the LQE dump of each run (with each seed's "
    "bootstrap 95 % interval over val positives); until those have run they are missing."
)


def paper_table(number: str, preset: str, runs_root: Path = Path("runs"),
                results_root: Path = Path("results")) -> tuple[Path, Path, str]:  # fmt: skip
    number = str(number)
    runs = collect_runs(runs_root / preset)
    rows = [(e.name, canonical_name(e.name, preset)) for e in table(number)]
    paper_key = "8" if number == "8" else number
    frame = compare_with_paper(runs, PAPER[paper_key], rows, COLUMNS[paper_key])
    if "PCC" in COLUMNS[paper_key]:  # Table 6: each seed's bootstrap interval beside the mean
        frame["PCC_ci"] = [
            pcc_intervals(runs[runs["experiment"] == run]) if ok else ""
            for run, ok in zip(frame["run"], frame["PCC"].notna(), strict=True)
        ]
    labels = {e.name: e.row for e in table(number)}
    frame.insert(1, "row", frame["experiment"].map(labels))
    title = f"Table {number} ({preset})"
    markdown = to_markdown(frame, list(COLUMNS[paper_key]), title, NOTE)
    csv_path, md_path = write_table(frame, results_root / preset, f"table{number}", markdown)
    return csv_path, md_path, markdown
