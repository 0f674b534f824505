"""GFLV1 against GFLV2 at a preset, beside the paper's R-50 1x numbers (Table 2, k = 0 and 4).

python analysis/main_result.py --preset mini [--runs runs] [--results results]
"""

import argparse
from pathlib import Path

from experiments.paper import R50_1X
from gfl_repro.analysis.report import to_markdown, write_table
from gfl_repro.analysis.runs import METRICS, collect_runs, compare_with_paper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    runs = collect_runs(args.runs / args.preset)
    table = compare_with_paper(runs, R50_1X, ["gflv1", "gflv2"])
    note = (
        "Ours: COCO-style AP (%) on the preset's val set, mean ± std over complete seeds. Paper: "
        "R-50 1x on COCO minival (Table 2). At the mini preset the data and model differ from the "
        "paper's, so only the direction of the GFLV1 -> GFLV2 difference is comparable."
    )
    markdown = to_markdown(table, list(METRICS), f"GFLV1 vs GFLV2 ({args.preset})", note)
    csv_path, md_path = write_table(table, args.results / args.preset, "main", markdown)
    print(markdown)
    print(f"written: {csv_path}, {md_path}")


if __name__ == "__main__":
    main()
