"""analysis/plateau.py (decision 5): the reference's best epoch, the plateau verdict per model and
the summed learning rate, on hand-made run folders."""

import json

import pytest

from analysis.plateau import main, plateau, summed_lr
from gfl_repro.config import Config, from_dict


def config(epochs, steps, lr=0.16):
    return {
        "data": {"mini_train": 16, "images_per_process": 8},
        "schedule": {"epochs": epochs, "steps": steps, "lr": lr, "base_batch": 16, "gamma": 0.1,
                     "warmup_iters": 2, "warmup_ratio": 0.5},
    }  # fmt: skip


def write_run(path, cfg, val_aps=(), final=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg))
    lines = [{"mode": "train", "iter": 1, "loss": 1.0}]
    lines += [{"mode": "val", "iter": 2 * (e + 1), "AP": ap} for e, ap in enumerate(val_aps)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    if final is not None:
        (path / "metrics.json").write_text(json.dumps({"AP": final}))


def test_summed_lr_by_hand():
    # 2 iterations per epoch at 0.16 x 8 / 16 = 0.08: warm-up from half, 0.04 then 0.06; after
    # the drop at epoch 1, 0.008 twice: 0.116.
    assert summed_lr(from_dict(Config, config(2, [1]))) == pytest.approx(0.116)


@pytest.fixture
def roots(tmp_path):
    ref, short = tmp_path / "ref", tmp_path / "short"
    # reference bests: gflv1 0.30 at epoch 3, gflv2 0.25 at epoch 2
    write_run(ref / "mini/gflv1/seed0", config(4, [3]), (0.20, 0.28, 0.30, 0.29))
    write_run(ref / "mini/gflv2/seed0", config(4, [3]), (0.18, 0.25, 0.24, 0.245))
    write_run(short / "mini/gflv1/seed0", config(2, [1]), final=0.296)  # 0.4 below: reached
    write_run(short / "mini/gflv2/seed0", config(2, [1]), final=0.244)  # 0.6 below: not
    return ref, short


def test_a_candidate_reaches_the_plateau_only_if_both_models_do(roots):
    ref, short = roots
    curves, verdicts = plateau(ref, [short], seed=0, margin=0.5)
    assert list(curves[curves.model == "gflv1"]["epoch"]) == [1, 2, 3, 4]
    v = verdicts.set_index("model")
    assert v.loc["gflv1", "reference_best_AP"] == pytest.approx(30.0)
    assert v.loc["gflv1", "reference_best_epoch"] == 3
    assert v.loc["gflv2", "reference_best_epoch"] == 2
    assert v.loc["gflv1", "shortfall"] == pytest.approx(0.4)
    assert bool(v.loc["gflv1", "reached"]) and not bool(v.loc["gflv2", "reached"])
    assert all(x == pytest.approx(0.116) for x in v["summed_lr"])


def test_main_writes_the_table_and_the_figure(roots, tmp_path, capsys):
    ref, short = roots
    assert main([str(ref), str(short)]) == 0
    assert "short: does not reach the plateau for both models." in capsys.readouterr().out
    out = tmp_path / "out"
    assert main([str(ref), str(short), "--margin", "0.7", "--out-dir", str(out)]) == 0
    assert "short: reaches the plateau" in (out / "plateau.md").read_text()
    assert (out / "plateau.png").stat().st_size > 0 and (out / "plateau.csv").is_file()
