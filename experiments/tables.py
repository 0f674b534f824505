"""A paper table from run folders: our numbers (mean ± std over seeds) beside the paper's.

A row's runs are found from the run folders' own record (``RunFolder.identity``, env.json), not
by resolving configs: a folder stands for the rows it was launched for, its own experiment name
and, in the older local schema, the experiment asked for.
"""

from collections import defaultdict
from pathlib import Path

from experiments.paper import COLUMNS, PAPER
from experiments.registry import canonical_name, table
from gfl_repro.analysis.collect import (
    DIAGNOSTICS,
    collect_runs,
    compare_with_paper,
    pcc_intervals,
)
from gfl_repro.analysis.report import diagnostics_markdown, to_markdown, write_table
from gfl_repro.engine.runs import RunFolder

NOTE = (
    "Ours: COCO-style AP (%) on the preset's val set, mean ± std over the seeds in the seeds "
    "column (a row with a run still training is missing; a sweep still under way can leave a "
    "row on fewer seeds than it asked for). Paper: R-50 1x on COCO minival. At the mini preset "
    "data and model differ from the paper's: compare directions and gaps, not absolute values. "
    "FPS comes from `gfl-repro bench-model`, over the seeds it timed (a run restored from its "
    "record keeps a checkpoint only at seed 0), PCC from the LQE dump of each run (with each "
    "seed's bootstrap 95 % interval over val positives); until those have run they are missing."
)


class RowIndex:
    """Which run folders under ``runs_dir`` (``runs/<preset>``) stand for each paper row, read
    from their env.json. A run with ``--set`` overrides has a config of its own and stands for
    no row. Two experiments standing for one row is an error that names them."""

    def __init__(self, runs_dir: str | Path, preset: str):
        self.preset = preset
        self.rows: dict[str, set[str]] = defaultdict(set)  # row -> experiments
        self.folders: dict[str, list[RunFolder]] = defaultdict(list)  # experiment -> its runs
        for config in sorted(Path(runs_dir).glob(f"**/{RunFolder.CONFIG}")):
            run = RunFolder(config.parent)
            ident = run.identity
            if not ident["experiment"] or ident["overrides"]:
                continue
            self.folders[ident["experiment"]].append(run)
            for row in {*ident["rows"], ident["experiment"], ident["requested"]}:
                self.rows[row].add(ident["experiment"])

    def experiment(self, row: str) -> str:
        """The experiment (run folder name) whose runs stand for ``row``.

        Launchers record every row with the run's config (``registry.rows_of``). A row that no
        folder records falls back to the registry's canonical name, for folders written before
        they did, which name only the rows they were launched for (a run of the main pair
        then lists no Table 6 row)."""
        found = self.rows.get(row)
        if not found:
            return canonical_name(row, self.preset)
        if len(found) > 1:
            raise ValueError(
                f"row {row!r} is recorded by the runs of several experiments "
                f"({', '.join(sorted(found))}); move the stale run folders away"
            )
        return next(iter(found))

    def runs(self, row: str) -> list[RunFolder]:
        """The run folders (any state) that stand for ``row``."""
        return self.folders.get(self.experiment(row), [])


def paper_table(number: str, preset: str, runs_root: Path = Path("runs"),
                results_root: Path = Path("results")) -> tuple[Path, Path, str]:  # fmt: skip
    number = str(number)
    runs = collect_runs(runs_root / preset)
    index = RowIndex(runs_root / preset, preset)
    rows = [(e.name, index.experiment(e.name)) for e in table(number)]
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
    # every row's class-agnostic AP and TIDE error breakdown, beside the table (CSV) and under it
    diagnostics = compare_with_paper(runs, {}, rows, DIAGNOSTICS)
    for column in DIAGNOSTICS:
        frame[[column, f"{column}_std", f"{column}_n"]] = diagnostics[
            [column, f"{column}_std", f"{column}_n"]
        ].to_numpy()
    markdown += "\n### Diagnostics\n\n" + diagnostics_markdown(diagnostics)
    csv_path, md_path = write_table(frame, results_root / preset, f"table{number}", markdown)
    return csv_path, md_path, markdown
