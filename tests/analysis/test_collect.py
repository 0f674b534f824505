"""Run folders into tables: means over seeds, the paper beside ours, missing rows stay missing."""

import json
import math

from gfl_repro.analysis.collect import collect_runs, compare_with_paper
from gfl_repro.analysis.report import to_markdown


def _run(root, exp, seed, ap=None):
    run = root / "mini" / exp / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "env.json").write_text(json.dumps({"preset": "mini", "experiment": exp, "seed": seed}))
    if ap is not None:
        metrics = {k: ap for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
        (run / "metrics.json").write_text(json.dumps(metrics))


def test_compare_with_paper_means_stds_and_missing(tmp_path):
    _run(tmp_path, "gflv2", 0, 0.30)
    _run(tmp_path, "gflv2", 1, 0.32)
    _run(tmp_path, "gflv1", 0, 0.28)
    _run(tmp_path, "gflv1", 1)  # incomplete: the whole row is missing, never filled in
    runs = collect_runs(tmp_path)
    assert len(runs) == 4 and runs["complete"].sum() == 3
    paper = {"gflv2": {"AP": 41.1}, "gflv1": {"AP": 40.2}}
    table = compare_with_paper(runs, paper, ["gflv1", "gflv2"]).set_index("experiment")
    assert math.isclose(table.loc["gflv2", "AP"], 31.0)
    assert math.isclose(table.loc["gflv2", "AP_std"], round(math.sqrt(2.0), 2))  # 30, 32 -> 1.41
    assert math.isclose(table.loc["gflv2", "AP_diff"], -10.1)
    assert table.loc["gflv2", "AP_n"] == 2 and table.loc["gflv1", "AP_n"] == 0
    assert math.isnan(table.loc["gflv1", "AP"]) and math.isnan(table.loc["gflv1", "AP_diff"])
    md = to_markdown(table.reset_index(), ["AP"], "t")
    # One line per experiment (ours), the paper's beneath it with ours − paper in brackets.
    assert "| gflv1 | 1 | missing |\n| ↳ *paper (Δ)* |  | 40.2 |\n" in md
    assert "| gflv2 | 2 | 31.0 ± 1.41 |\n| ↳ *paper (Δ)* |  | 41.1 (-10.1) |\n" in md


def test_a_speed_column_averages_the_seeds_that_were_timed(tmp_path):
    for seed, ap in enumerate((0.30, 0.32, 0.34)):
        _run(tmp_path, "gflv2", seed, ap)
    for seed, fps in ((0, 20.0), (2, 24.0)):  # seed 1 kept no checkpoint: not timed
        bench = {"fps": fps, "training_hours": 0.5}
        (tmp_path / "mini" / "gflv2" / f"seed{seed}" / "bench_model.json").write_text(
            json.dumps(bench))  # fmt: skip
    table = compare_with_paper(collect_runs(tmp_path), {}, ["gflv2"], ("AP", "FPS"))
    assert math.isclose(table.loc[0, "FPS"], 22.0) and table.loc[0, "FPS_n"] == 2
    assert math.isclose(table.loc[0, "FPS_std"], round(math.sqrt(8.0), 2))  # 20, 24 -> 2.83
    assert math.isclose(table.loc[0, "AP"], 32.0) and table.loc[0, "AP_n"] == 3
    md = to_markdown(table, ["AP", "FPS"], "t")
    assert "| gflv2 | 3 | 32.0 ± 2.00 | 22.0 ± 2.83 (2 of 3 seeds) |" in md


def test_table6_shows_each_seeds_pcc_interval(tmp_path):
    import numpy as np

    from experiments.tables import paper_table
    from gfl_repro.analysis.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    iou = rng.uniform(0, 1, 300)  # (N,)
    joint = 0.5 * iou + rng.normal(0, 0.2, 300)
    _run(tmp_path, "gflv2", 0, 0.30)
    np.savez(tmp_path / "mini" / "gflv2" / "seed0" / "lqe.npz", joint=joint, iou=iou)
    _, _, md = paper_table("6", "mini", tmp_path, tmp_path / "results")
    ci = bootstrap_ci(joint, iou, n=1000)
    pcc = np.corrcoef(joint, iou)[0, 1]
    row = f"| t6_gflv2 | GFLV2 (ours) | 1 | 30.0 | missing | {pcc:.3f} |"
    paper = f"| ↳ *paper (Δ)* |  |  | 41.1 (-11.1) | 19.4 | 0.660 ({pcc - 0.66:+.3f}) |"
    assert f"{row}\n{paper}\n" in md
    assert f"- t6_gflv2: [{ci.low:.3f}, {ci.high:.3f}]" in md  # under the table
    assert ci.low < ci.value < ci.high


def test_diagnostics_columns_from_the_run_folder(tmp_path):
    _run(tmp_path, "gflv2", 0, 0.30)
    _run(tmp_path, "gflv2", 1, 0.32)
    dap = {"cls": 4.0, "loc": 2.0, "both": 0.5, "dupe": 0.1, "bkg": 1.0, "miss": 3.0}
    for seed, agnostic in ((0, 0.40), (1, 0.44)):
        diagnostics = {"AP_agnostic": agnostic, "AP50_agnostic": 0.6, "AP75_agnostic": 0.4,
                       "tide": {"dAP": {k: v + seed for k, v in dap.items()}}}  # fmt: skip
        path = tmp_path / "mini" / "gflv2" / f"seed{seed}" / "diagnostics.json"
        path.write_text(json.dumps(diagnostics))
    _run(tmp_path, "gflv1", 0, 0.28)  # no diagnostics.json: its columns are NaN
    runs = collect_runs(tmp_path).set_index(["experiment", "seed"])
    assert math.isclose(runs.loc[("gflv2", 1), "AP_agnostic"], 44.0)
    assert math.isclose(runs.loc[("gflv2", 1), "dAP_cls"], 5.0)
    assert math.isnan(runs.loc[("gflv1", 0), "AP_agnostic"])
    table = compare_with_paper(runs.reset_index(), {}, ["gflv2"], ("AP_agnostic", "dAP_miss"))
    assert math.isclose(table.loc[0, "AP_agnostic"], 42.0) and table.loc[0, "AP_agnostic_n"] == 2
    assert math.isclose(table.loc[0, "dAP_miss"], 3.5)


def test_every_paper_table_carries_its_rows_diagnostics(tmp_path):
    """Table 6's GFLV2 row with two seeds of diagnostics (class-agnostic AP 40 and 44 %, dAP_cls
    4 and 5): mean ± std under the table and in the CSV; a row without runs is missing."""
    import pandas as pd

    from experiments.tables import paper_table

    dap = {"cls": 4.0, "loc": 2.0, "both": 0.5, "dupe": 0.1, "bkg": 1.0, "miss": 3.0}
    for seed, agnostic in ((0, 0.40), (1, 0.44)):
        _run(tmp_path, "gflv2", seed, 0.30)
        diagnostics = {"AP_agnostic": agnostic, "AP50_agnostic": 0.6, "AP75_agnostic": 0.4,
                       "tide": {"dAP": {k: v + seed for k, v in dap.items()}}}  # fmt: skip
        path = tmp_path / "mini" / "gflv2" / f"seed{seed}" / "diagnostics.json"
        path.write_text(json.dumps(diagnostics))
    csv_path, _, md = paper_table("6", "mini", tmp_path, tmp_path / "results")
    diagnostics = md.split("### Diagnostics")[1]
    # 40, 44 -> 42 ± 2.83; 4, 5 -> 4.5 ± 0.71; 2, 3 -> 2.5 ± 0.71
    assert (
        "| t6_gflv2 | 2 | 42.0 ± 2.83 | 60.0 ± 0.00 | 40.0 ± 0.00 | 4.5 ± 0.71 | 2.5 ± 0.71 |"
        in (diagnostics)
    )
    assert "| t6_gflv1 | 0 | missing |" in diagnostics
    frame = pd.read_csv(csv_path).set_index("experiment")
    assert math.isclose(frame.loc["t6_gflv2", "AP_agnostic"], 42.0)
    assert math.isclose(frame.loc["t6_gflv2", "dAP_cls_std"], 0.71)
    assert frame.loc["t6_gflv2", "dAP_cls_n"] == 2 and math.isnan(frame.loc["t6_gflv1", "dAP_cls"])
