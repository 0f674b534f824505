"""Figures, claims and notebooks on a small fixture of run folders (two experiments, two seeds)."""

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.claims import claims
from gfl_repro.analysis import plots
from gfl_repro.analysis.collect import collect_runs
from gfl_repro.engine.lqe import SIDES, TOPK, load_lqe, save_lqe
from tests.analysis.conftest import figures_script

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
# notebook -> the figures it writes into RESULTS/PRESET/figures (each as png, pdf and csv)
FIGURES = {
    "fig1b_fig9_lqe.ipynb": ("fig1b_top1_vs_iou", "fig9_dgqp_input_output"),
    "fig1cd_fig7_examples.ipynb": ("fig1cd_distributions", "fig7_nms"),
    "fig4_shift.ipynb": ("fig4_shift_invariance",),
    "fig6_table8_speed.ipynb": ("fig6_speed_accuracy",),
    "fig8_loss_curves.ipynb": ("fig8_lqe_loss", "curves_gflv1_seed0", "curves_gflv2_seed1"),
}
TRAINED = {"fig1cd_fig7_examples.ipynb", "fig6_table8_speed.ipynb"}  # read the tiny trained runs
BOXES = {1: [10, 10, 40, 30], 2: [50, 20, 30, 60], 3: [5, 60, 50, 30]}  # image -> gt xywh


def _lqe(rng: np.random.Generator, gflv2: bool, n: int = 300) -> pd.DataFrame:
    iou = rng.uniform(0.3, 1.0, n)  # (N,)
    top1 = np.clip(0.5 * iou + rng.normal(0, 0.1, n), 0, 1)
    cols = {"image_id": rng.integers(1, 4, n), "level": rng.integers(0, 5, n),
            "location": rng.integers(0, 100, n), "label": np.ones(n, dtype=int),
            "quality": np.clip(top1 + 0.1, 0, 1) if gflv2 else np.full(n, np.nan),
            "joint": np.clip(iou + rng.normal(0, 0.05 if gflv2 else 0.3, n), 0, 1),
            "iou": iou, "top1_mean": top1}  # fmt: skip
    for s in SIDES:
        for j in range(TOPK):
            cols[f"top{j + 1}_{s}"] = top1 / (j + 1)
        cols[f"topk_mean_{s}"] = top1 / 2
    return pd.DataFrame(cols)


def _detections(shift: float) -> list[dict]:
    return [{"image_id": i, "category_id": 1, "bbox": [x + shift, y, w, h], "score": 0.9}
            for i, (x, y, w, h) in BOXES.items()]  # fmt: skip


def _run(root: Path, exp: str, seed: int, rng: np.random.Generator) -> None:
    run = root / "mini" / exp / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "env.json").write_text(json.dumps({"preset": "mini", "experiment": exp, "seed": seed}))
    base = 0.5 if exp == "gflv1" else 0.4
    lines = [{"mode": "train", "iter": it, "epoch": 0, "lr": 0.01, "loss": 1.0, "time": 0.1,
              "loss_qfl": base + 0.3 * np.exp(-it / 50) + rng.normal(0, 0.02)}
             for it in range(10, 210, 10)]  # fmt: skip
    lines.append({"mode": "val", "iter": 200, "AP": 0.3})
    quality = 0.3 if exp == "gflv2" else None  # GFLV1 has no I: its values are NaN
    lines += [{"mode": "lqe", "iter": it, "epoch": it // 100 - 1, "samples": 50,
               "pcc_joint": 0.4 + it / 1000, "pcc_quality": quality and 0.5 + it / 1000,
               "quality_mean": quality, "quality_std": quality and 0.1, "joint_mean": 0.2,
               "joint_std": 0.05} for it in (100, 200)]  # fmt: skip
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    ap = 0.5 if exp == "gflv2" else 0.3
    (run / "metrics.json").write_text(json.dumps({"AP": ap + 0.01 * seed, "AP50": ap}))
    dets = _detections(0.0 if exp == "gflv2" else 6.0)  # GFLV1's boxes are off by 6 px
    (run / "detections.json").write_text(json.dumps(dets))
    save_lqe(_lqe(rng, exp == "gflv2"), run)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fixture")
    rng = np.random.default_rng(0)
    for exp in ("gflv1", "gflv2"):
        for seed in (0, 1):
            _run(root / "runs", exp, seed, rng)
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in BOXES]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3],
             "iscrowd": 0} for i, b in BOXES.items()]  # fmt: skip
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (root / "ann.json").write_text(json.dumps(coco))
    return root


def _check(paths: list[Path]) -> None:
    assert sorted(p.suffix for p in paths) == [".csv", ".pdf", ".png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_every_figure_writes_png_pdf_csv(fixture, tmp_path):
    runs = fixture / "runs" / "mini"
    _check(plots.fig1b(load_lqe(runs / "gflv1" / "seed0"), tmp_path))
    _check(plots.fig9(load_lqe(runs / "gflv2" / "seed0"), tmp_path))
    _check(plots.fig4(tmp_path))
    curves = {e: sorted((runs / e).glob("seed*")) for e in ("gflv1", "gflv2")}
    _check(plots.fig8(curves, tmp_path))
    table = pd.DataFrame({"experiment": ["gflv1", "gflv2"], "AP": [30.0, 50.0],
                          "fps": [20.0, 19.0], "ms": [50.0, 52.6]})  # fmt: skip
    _check(plots.fig6(table, tmp_path))


def test_the_same_figure_writes_the_same_bytes(tmp_path):
    # Fig. 4 depends on no run: drawn twice a second apart, its files must not differ (no
    # creation date in the PDF), so a re-published results folder shows only real changes.
    first = plots.fig4(tmp_path / "a")
    time.sleep(1.1)
    second = plots.fig4(tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes(), a.name


def test_lqe_over_training_from_metrics_lines(fixture, tmp_path):
    runs = {e: sorted((fixture / "runs" / "mini" / e).glob("seed*")) for e in ("gflv1", "gflv2")}
    table = plots.lqe_over_training(runs)
    assert len(table) == 2 * 2 * 2  # experiments x seeds x logged checkpoints
    v2 = table[(table["experiment"] == "gflv2") & (table["iter"] == 200)]
    assert np.allclose(v2["pcc_joint"], 0.6) and np.allclose(v2["pcc_quality"], 0.7)
    assert table.loc[table["experiment"] == "gflv1", "quality_mean"].isna().all()
    _check(plots.fig_lqe_training(runs, tmp_path))
    with pytest.raises(ValueError, match="lqe_every_epoch"):
        plots.fig_lqe_training({"gflv1": []}, tmp_path)


# A run's log: five train lines over two epochs, two evaluations (after epochs 1 and 2), an LQE
# line that the curves leave out. TRAIN: (iter, epoch, loss) of each train line.
TRAIN = [(25, 0, 2.0), (50, 0, 1.6), (75, 1, 1.3), (100, 1, 1.1), (125, 1, 1.0)]  # fmt: skip
TERMS = {"loss_qfl": 0.2, "loss_bbox": 0.5, "loss_dfl": 0.3}  # share of the total


def _log(run: Path) -> Path:
    lines = [{"mode": "train", "iter": it, "epoch": ep, "lr": 0.01, "loss": loss,
              **{k: share * loss for k, share in TERMS.items()}}
             for it, ep, loss in TRAIN]  # fmt: skip
    lines.insert(2, {"mode": "val", "iter": 50, "AP": 0.2, "AP50": 0.4, "AP75": 0.1})
    lines += [{"mode": "lqe", "iter": 125, "epoch": 1, "pcc_joint": 0.5},
              {"mode": "val", "iter": 125, "AP": 0.3, "AP50": 0.5, "AP75": 0.25}]  # fmt: skip
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    return run


def test_training_curves_one_line_per_loss_term_and_ap_per_evaluated_epoch(tmp_path):
    table = plots.training_curves(_log(tmp_path / "run"))
    fig = plots.draw_training_curves(table, "run")
    losses, aps = fig.axes
    lines = {line.get_label(): line for line in losses.lines}
    assert list(lines) == ["loss", "loss_qfl", "loss_bbox", "loss_dfl"]  # the total first
    for name, line in lines.items():
        share = TERMS.get(name, 1.0)
        np.testing.assert_allclose(line.get_xdata(), [it for it, _, _ in TRAIN])
        np.testing.assert_allclose(line.get_ydata(), [share * loss for _, _, loss in TRAIN])
    points = {line.get_label(): line for line in aps.lines}
    assert list(points) == ["AP", "AP50", "AP75"]
    np.testing.assert_allclose(points["AP"].get_xdata(), [1, 2])  # epochs trained before each
    np.testing.assert_allclose(points["AP"].get_ydata(), [20, 30])  # percent
    np.testing.assert_allclose(points["AP75"].get_ydata(), [10, 25])
    labels = sorted(float(t.get_text()) for t in aps.texts)  # each point's value, in percent
    assert labels == [10, 20, 25, 30, 40, 50]
    assert set(table["mode"]) == {"train", "val"}  # the lqe line is not a curve
    paths = plots.fig_training_curves(tmp_path / "run", tmp_path / "out", "curves_x_seed0")
    assert [p.name for p in paths] == [f"curves_x_seed0.{e}" for e in ("png", "pdf", "csv")]


def test_training_curves_without_val_lines_say_so(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"mode": "train", "iter": 5, "epoch": 0,
                                                   "loss": 1.0}) + "\n")  # fmt: skip
    fig = plots.draw_training_curves(plots.training_curves(run), "run")
    assert len(fig.axes[1].lines) == 0 and "no val" in fig.axes[1].texts[0].get_text()
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="no train or val line"):
        plots.fig_training_curves(run, tmp_path, "curves")


def test_script_draws_every_complete_runs_curves(fixture, tmp_path):
    runs = fixture / "runs" / "mini"
    written, skipped = figures_script().training_curve_figures(collect_runs(runs), tmp_path)
    names = sorted({p.stem for p in written})
    assert names == [f"curves_{e}_seed{s}" for e in ("gflv1", "gflv2") for s in (0, 1)]
    assert len(written) == 12 and skipped == []


def test_script_fig6_skip_names_the_command_that_times_the_runs(fixture, tmp_path):
    runs = fixture / "runs" / "mini"
    written, skipped = figures_script().speed_figure(runs, tmp_path / "results", tmp_path)
    (reason,) = skipped
    command = (f"gfl-repro bench-model {runs}/gflv1/seed0 {runs}/gflv2/seed0 "
               f"--results {tmp_path / 'results'}")  # fmt: skip
    assert written == [] and f"`{command}`" in reason and "make table8" in reason
    bench = tmp_path / "results" / "mini" / "bench_model.csv"
    bench.parent.mkdir(parents=True)
    pd.DataFrame(
        {"experiment": ["gflv1", "gflv2"], "fps": [20.0, 19.0], "ms": [50.0, 52.6]}
    ).to_csv(bench, index=False)
    written, skipped = figures_script().speed_figure(runs, tmp_path / "results", tmp_path)
    assert [p.name for p in written][0] == "fig6_speed_accuracy.png" and skipped == []


def test_density_table_counts_and_pearson():
    x, y = np.array([0.1, 0.5, 0.9, np.nan]), np.array([0.2, 0.5, 0.8, 0.3])
    table = plots.density_table(x, y, bins=10)
    assert table["count"].sum() == 3 and table["N"].iloc[0] == 3  # the NaN row is dropped
    np.testing.assert_allclose(table["r"].iloc[0], np.corrcoef(x[:3], y[:3])[0, 1])


def test_loss_curves_mean_min_max_over_seeds(fixture):
    runs = {e: sorted((fixture / "runs" / "mini" / e).glob("seed*")) for e in ("gflv1", "gflv2")}
    table = plots.loss_curves(runs)
    assert set(table["experiment"]) == {"gflv1", "gflv2"} and (table["seeds"] == 2).all()
    assert (table["min"] <= table["mean"]).all() and (table["mean"] <= table["max"]).all()


def test_fig4_features_do_not_move_with_the_shift():
    table = plots.shifted_features(reg_max=16, k=4, shift=6)
    dist = table[table["kind"] == "distribution"].pivot(index="index", columns="series")["value"]
    assert dist["original"].idxmax() != dist["shifted"].idxmax()  # the peak did move
    feats = table[table["kind"] == "feature"].pivot(index="index", columns="series")["value"]
    np.testing.assert_allclose(feats["original"], feats["shifted"], atol=1e-6)
    assert feats.loc["top1", "original"] > feats.loc["top4", "original"]


def test_claims_verdict_and_not_run_yet(fixture):
    text = claims(fixture / "runs", "mini", fixture / "ann.json", n_boot=20)
    section = text.split("## GFLV2 > GFLV1 in AP")[1].split("##")[0]
    # GFLV1's boxes are 6 px off on every image, but two seeds measure no training noise.
    assert "**not enough seeds**" in section and "2 seeds: training noise not measured" in section
    assert "seed 0: +" in section and "seed 1: +" in section
    table1 = text.split("(Table 1): ")[1].split("##")[0]  # its section, not the summary row
    assert "not run yet" in table1 and "t1_topk" in table1
    assert "Higher PCC" in text and "GFLV2" in text.split("Higher PCC")[1]
    table2 = text.split("best DGQP setting (Table 2): ")[1].split("##")[0]
    assert "not run yet" in table2 and "t2_k0" not in table2  # GFLV1 has no DGQP setting


def _kernel() -> str:
    from jupyter_client.kernelspec import find_kernel_specs

    if "python3" not in find_kernel_specs():  # a fresh venv: install this interpreter's spec
        from ipykernel.kernelspec import install

        install(prefix=sys.prefix)
    return "python3"


def _execute(path: Path, runs: Path, results: Path, monkeypatch) -> dict:
    """Run a notebook headless, its parameters set through the environment and its working
    folder ``results``'s parent; the executed notebook (a dict of cells) comes back."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("RUNS", str(runs))
    monkeypatch.setenv("RESULTS", str(results))
    monkeypatch.setenv("PRESET", "mini")
    monkeypatch.setenv("MAX_IMAGES", "2")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name=_kernel(),
        resources={"metadata": {"path": str(results.parent)}},
    )
    client.execute()
    return nb


@pytest.fixture(scope="module")
def benched(runs, tmp_path_factory) -> Path:
    """A copy of the tiny trained runs (RUNS/mini/gflv{1,2}/seed0) with their bench_model.json,
    and results/mini/bench_model.csv beside it, from one timed step and image per run."""
    from gfl_repro.cli import main

    root = tmp_path_factory.mktemp("benched")
    shutil.copytree(runs, root / "runs" / "mini")
    folders = [str(root / "runs" / "mini" / e / "seed0") for e in ("gflv1", "gflv2")]
    argv = ["bench-model", *folders, "--train-iters", "1", "--train-warmup", "0", "--images", "1",
            "--warmup", "0", "--results", str(root / "results")]  # fmt: skip
    assert main(argv) == 0
    return root


def test_every_notebook_is_listed_and_saved_without_outputs():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(FIGURES)
    for name in FIGURES:
        cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), name


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_runs_headless(fixture, request, tmp_path, monkeypatch, name):
    results = tmp_path / "results"
    if name in TRAINED:  # checkpoints and bench_model.csv; the fixture's runs have neither
        benched = request.getfixturevalue("benched")
        shutil.copytree(benched / "results", results)
        runs = benched / "runs"
    else:
        runs = fixture / "runs"
    _execute(NOTEBOOKS / name, runs, results, monkeypatch)
    for figure in FIGURES[name]:
        paths = [results / "mini" / "figures" / f"{figure}.{ext}" for ext in ("png", "pdf", "csv")]
        assert all(p.is_file() and p.stat().st_size > 0 for p in paths), figure


def test_speed_notebook_without_bench_says_how_to_make_it(fixture, tmp_path, monkeypatch):
    results = tmp_path / "results"
    nb = _execute(NOTEBOOKS / "fig6_table8_speed.ipynb", fixture / "runs", results, monkeypatch)
    printed = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    assert "gfl-repro bench-model" in printed
    assert not (results / "mini").exists()  # nothing drawn, no table written
