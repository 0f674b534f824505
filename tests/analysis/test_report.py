"""Markdown tables: one line per experiment (ours), the paper's line beneath it."""

import math

import pandas as pd

from gfl_repro.analysis.report import ours_cell, paper_cell, to_markdown

NAN = math.nan


def test_cells_by_hand():
    row = pd.Series({"AP": 31.0, "AP_std": 1.41, "AP_paper": 41.1, "AP_diff": -10.1,
                     "PCC": 0.6163, "PCC_std": NAN, "PCC_paper": 0.66, "PCC_diff": -0.0437,
                     "FPS": NAN, "FPS_std": NAN, "FPS_paper": NAN, "FPS_diff": NAN})  # fmt: skip
    assert (ours_cell(row, "AP"), paper_cell(row, "AP")) == ("31.0 ± 1.41", "41.1 (-10.1)")
    assert (ours_cell(row, "PCC"), paper_cell(row, "PCC")) == ("0.616", "0.660 (-0.044)")
    assert (ours_cell(row, "FPS"), paper_cell(row, "FPS")) == ("missing", "—")  # not in the paper


def test_markdown_has_one_line_per_experiment_and_the_paper_beneath():
    table = pd.DataFrame([
        {"experiment": "gflv1", "row": "GFLV1", "seeds": 0, "AP": NAN, "AP_std": NAN,
         "AP_paper": 40.2, "AP_diff": NAN, "AP_ci": ""},
        {"experiment": "gflv2", "row": "GFLV2", "seeds": 3, "AP": 42.0, "AP_std": 0.5,
         "AP_paper": 41.1, "AP_diff": 0.9, "AP_ci": "[41, 42]; [42, 43]; [41.5, 42.5]"},
    ])  # fmt: skip
    lines = to_markdown(table, ["AP"], "Table 9", "A note.").splitlines()
    assert lines[:8] == [
        "## Table 9",
        "",
        "| experiment | paper row | seeds | AP |",
        "|---|---|---|---|",
        "| gflv1 | GFLV1 | 0 | missing |",
        "| ↳ *paper (Δ)* |  |  | 40.2 |",
        "| gflv2 | GFLV2 | 3 | 42.0 ± 0.50 |",
        "| ↳ *paper (Δ)* |  |  | 41.1 (+0.9) |",
    ]
    assert "- gflv2: [41, 42]; [42, 43]; [41.5, 42.5]" in lines and "gflv1:" not in str(lines)
    assert lines[-1] == "A note."
