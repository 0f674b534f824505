"""analysis/regime.py on hand-made run folders: the per-model table, the AP over both models
with its t-interval, and decision 2's error-profile criterion."""

import json

import pytest

from tests.analysis.conftest import analysis_script

ERRORS = ("cls", "loc", "both", "dupe", "bkg", "miss")


def write_run(root, model, seed, ap, dap, class_first=None):
    folder = root / "mini" / model / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    env = {"preset": "mini", "experiment": f"{model}-0123abcd", "seed": seed}
    (folder / "env.json").write_text(json.dumps(env))
    metrics = {m: ap for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    if class_first is not None:
        metrics["class_first"] = class_first
    (folder / "metrics.json").write_text(json.dumps(metrics))
    diagnostics = {"AP_agnostic": ap + 0.1, "AP50_agnostic": ap, "AP75_agnostic": ap,
                   "tide": {"dAP": dict(zip(ERRORS, dap, strict=True))}}  # fmt: skip
    (folder / "diagnostics.json").write_text(json.dumps(diagnostics))


@pytest.fixture
def candidate(tmp_path):
    root = tmp_path / "width-0.5"
    write_run(root, "gflv1", 0, 0.20, (3, 5, 0, 0, 1, 4), class_first=0.4)
    write_run(root, "gflv1", 1, 0.22, (3, 5, 0, 0, 1, 4), class_first=0.5)
    write_run(root, "gflv2", 0, 0.18, (6, 5, 0, 0, 1, 4))
    write_run(root, "gflv2", 1, 0.24, (6, 5, 0, 0, 1, 4))
    return root


def test_candidate_table(candidate):
    regime = analysis_script("regime")
    runs = regime.candidate_runs(candidate)
    assert sorted(runs["model"]) == ["gflv1", "gflv1", "gflv2", "gflv2"]
    # Over both models: seed 0 (20 + 18) / 2 = 19, seed 1 (22 + 24) / 2 = 23.
    assert regime.both_models(runs).tolist() == pytest.approx([19.0, 23.0])
    text = regime.candidate_markdown("width-0.5", runs, baseline=23.76)
    # GFLV1: AP 20, 22 -> 21.00 ± 1.41; loc 5 >= cls 3 and loc is the largest -> met.
    assert "| gflv1 | 0,1 | 21.00 ± 1.41 |" in text
    assert "| yes (largest: loc) |" in text
    # GFLV2: cls 6 > loc 5 -> not met, cls the largest.
    assert "| no (largest: cls) |" in text
    # class_first: GFLV1 40 and 50 % -> 45.00 ± 7.07; GFLV2's runs predate it -> a dash.
    gflv1, gflv2 = (line.split(" | ") for line in text.splitlines() if line.startswith("| gflv"))
    assert gflv1[6] == "45.00 ± 7.07" and gflv2[6] == "–"
    # Mean 21, std 2 sqrt 2 = 2.83, t(0.975, 1 df) = 12.706: 21 -+ 12.706 * 2 = [-4.41, 46.41].
    assert "Mean 21.00 ± 2.83 over 2 seeds, 95 % t-interval [-4.41, 46.41]" in text
    assert "change from the baseline's 23.76: -2.76 AP." in text


def test_command_writes_markdown(candidate, tmp_path):
    out = tmp_path / "regime.md"
    regime = analysis_script("regime")
    assert regime.main([str(candidate), "--baseline", "23.63,23.89", "--out", str(out)]) == 0
    assert out.read_text().startswith("## width-0.5\n")


def test_a_root_without_runs_is_named_in_the_error(tmp_path):
    regime = analysis_script("regime")
    with pytest.raises(SystemExit, match=f"{tmp_path / 'nowhere'}: no run folder"):
        regime.main([str(tmp_path / "nowhere"), "--baseline", "23.63,23.89"])


def test_paired_difference_against_a_reference(tmp_path):
    """Both-model AP per seed: reference 20, 22, 24; candidate 22, 24.2, 26.4, so the differences
    are 2.0, 2.2, 2.4: mean 2.2, std 0.2, t(0.975, 2 df) = 4.3027 x 0.2 / sqrt 3 = 0.497, so
    [1.70, 2.70], a gain. Against itself shifted down, a loss; with spread, neither."""
    regime = analysis_script("regime")
    ref, cand = tmp_path / "scale-0.4", tmp_path / "scale-1"
    for seed, a in enumerate((0.20, 0.22, 0.24)):
        write_run(ref, "gflv1", seed, a - 0.01, (3, 5, 0, 0, 1, 4))
        write_run(ref, "gflv2", seed, a + 0.01, (3, 5, 0, 0, 1, 4))
        gain = 0.02 + 0.002 * seed
        write_run(cand, "gflv1", seed, a + gain, (3, 5, 0, 0, 1, 4))
        write_run(cand, "gflv2", seed, a + gain, (3, 5, 0, 0, 1, 4))
    runs, ref_runs = regime.candidate_runs(cand), regime.candidate_runs(ref)
    text = regime.paired_markdown("scale-1", runs, "scale-0.4", ref_runs)
    assert "seed 0: +2.00, seed 1: +2.20, seed 2: +2.40" in text
    assert "Mean +2.20 ± 0.20 over 3 seeds, 95 % t-interval [+1.70, +2.70]: a gain." in text
    assert "[-2.70, -1.70]: a loss." in regime.paired_markdown("x", ref_runs, "y", runs)
    out = tmp_path / "table.md"
    regime.main(
        [str(ref), str(cand), "--baseline", "20,20", "--against", str(ref), "--out", str(out)]
    )
    written = out.read_text()
    assert written.count(" against scale-0.4") == 1 and "a gain." in written


def test_paired_difference_with_spread_is_neither(tmp_path):
    """Differences 1, 2, 3: mean 2, std 1, t(0.975, 2 df) x 1 / sqrt 3 = 2.48: [-0.48, +4.48]."""
    regime = analysis_script("regime")
    ref, cand = tmp_path / "a", tmp_path / "b"
    for seed in range(3):
        for model in ("gflv1", "gflv2"):
            write_run(ref, model, seed, 0.20, (3, 5, 0, 0, 1, 4))
            write_run(cand, model, seed, 0.21 + 0.01 * seed, (3, 5, 0, 0, 1, 4))
    text = regime.paired_markdown("b", regime.candidate_runs(cand), "a", regime.candidate_runs(ref))
    assert "[-0.48, +4.48]: neither a gain nor a loss." in text
