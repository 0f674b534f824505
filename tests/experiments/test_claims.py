"""Claims over training seeds on hand-made run folders, and the statistics behind them.

The val set is 400 images of 100 x 100 px with one 30 x 30 box each. A run's detections are the
gt boxes, except on the images it "misses": there the box is 6 px off (IoU 720 / 1080 = 0.67, a
true positive at 4 of COCO's 10 IoU thresholds only). So a run's AP falls with its number of
missed images, and the difference between two runs has a known sign on every seed.
"""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from experiments.claims import Checker, Claim, Comparison, best_row, check_claims, main_claim
from gfl_repro.analysis import page
from gfl_repro.analysis.stats import holm, seed_interval, verdict_over_seeds

IMAGES = 400
SCRIPTS = Path(__file__).parents[2] / "analysis"


def _gt(path: Path) -> Path:
    boxes = {i: [5 + (i * 7) % 60, 5 + (i * 13) % 60, 30, 30] for i in range(1, IMAGES + 1)}
    coco = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in boxes],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": b, "area": 900, "iscrowd": 0}
            for i, b in boxes.items()
        ],
        "categories": [{"id": 1, "name": "square"}],
    }
    path.write_text(json.dumps(coco))
    return path


def _run(root: Path, name: str, seed: int, missed: int, env: dict | None = None) -> None:
    """runs/mini/<name>/seed<seed>: the first ``missed`` images' boxes are 6 px off. env.json
    holds the older schema's keys (no rows) and ``env``."""
    gt = json.loads((root / "ann.json").read_text())["annotations"]
    dets = [{"image_id": a["image_id"], "category_id": 1, "score": 0.9,
             "bbox": [a["bbox"][0] + 6 * (a["image_id"] <= missed), *a["bbox"][1:]]}
            for a in gt]  # fmt: skip
    run = root / "runs" / "mini" / name / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    record = {"preset": "mini", "experiment": name, "seed": seed, "git_commit": "0123456789abcdef"}
    (run / "env.json").write_text(json.dumps({**record, **(env or {})}))
    (run / "detections.json").write_text(json.dumps(dets))
    (run / "metrics.json").write_text(json.dumps({"AP": 1 - missed * 0.6 / IMAGES}))


def _root(tmp_path: Path, missed: dict[str, list[int]]) -> Path:
    """Run folders for each row: ``missed[row][s]`` missed images at seed s."""
    _gt(tmp_path / "ann.json")
    for name, per_seed in missed.items():
        for seed, m in enumerate(per_seed):
            _run(tmp_path, name, seed, m)
    return tmp_path


def _main_claim(root: Path) -> Claim:
    return main_claim(Checker(root / "runs", "mini", root / "ann.json", n_boot=100))


def test_one_seed_measures_no_training_noise(tmp_path):
    claim = _main_claim(_root(tmp_path, {"gflv1": [200], "gflv2": [0]}))
    record, text = claim.record(), claim.markdown()
    assert (record["verdict"], record["seeds"]) == ("not enough seeds", 1)
    assert record["low"] is None and record["mean"] == record["per_seed"][0]["diff"] > 0
    assert "**not enough seeds**" in text
    assert "1 seed: training noise not measured" in text
    assert "seed 0: +" in text  # the per-seed number is still printed
    assert "supported" not in text and "contradicted" not in text


def test_two_seeds_measure_no_training_noise_either(tmp_path):
    claim = _main_claim(_root(tmp_path, {"gflv1": [200, 220], "gflv2": [0, 10]}))
    text = claim.markdown()
    assert (claim.verdict, claim.seeds) == ("not enough seeds", 2)
    assert "**not enough seeds**" in text and "2 seeds: training noise not measured" in text


def test_three_consistent_seeds_support_the_claim(tmp_path):
    claim = _main_claim(_root(tmp_path, {"gflv1": [200, 160, 240], "gflv2": [0, 10, 0]}))
    text = claim.markdown()
    assert "## GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4): **supported**" in text
    assert "over 3 seeds" in text and "(t, 2 df" in text
    assert claim.record()["low"] > 0 and claim.record()["paper"] == 0.9  # 41.1 - 40.2 in Table 2
    # Swapped rows: the same evidence contradicts the claim.
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    claim = _main_claim(_root(swapped, {"gflv1": [0, 10, 0], "gflv2": [200, 160, 240]}))
    assert "**contradicted**" in claim.markdown() and claim.record()["high"] < 0


def test_three_seeds_whose_differences_change_sign_are_within_noise(tmp_path):
    text = _main_claim(_root(tmp_path, {"gflv1": [200, 0, 200], "gflv2": [0, 200, 0]})).markdown()
    assert "**within noise**" in text
    lines = [line for line in text.splitlines() if line.startswith("- seed ")]
    signs = {line.split(": ")[1][0] for line in lines}
    assert signs == {"+", "-"}  # the per-seed differences do change sign


def test_best_row_with_equal_rows_is_never_contradicted(tmp_path):
    # Every row of Table 1 has the same three APs over its seeds, in another order.
    orders = [
        [100, 150, 200],
        [150, 200, 100],
        [200, 100, 150],
        [150, 100, 200],
        [100, 200, 150],
        [200, 150, 100],
    ]
    names = ["t1_topk", "t1_mean", "t1_var", "gflv2", "t1_topk_var", "t1_topk_mean_var"]
    root = _root(tmp_path, dict(zip(names, orders, strict=True)))
    check = Checker(root / "runs", "mini", root / "ann.json", n_boot=100)
    rows = ["t1_topk", "t1_mean", "t1_var", "t1_topk_mean", "t1_topk_var", "t1_topk_mean_var"]
    claim = best_row(check, "Top-k + Mean is the best input", "1", "t1_topk_mean", rows)
    text = claim.markdown()
    assert "**within noise**" in text and "contradicted" not in text
    assert "against 5 rivals" in text and "indistinguishable from 5" in text
    assert [r["outcome"] for r in claim.record()["rivals"]] == ["tied"] * 5


def test_best_row_counts_significant_rivals(tmp_path):
    # The winner (gflv2) misses no image; t1_mean misses half of them on every seed (clearly
    # worse, significant even after Holm over 5 rivals with 2 df); the rest tie with the winner
    # on two seeds and lose on one, or tie on all three.
    missed = {"gflv2": [0, 0, 0], "t1_mean": [200, 204, 196], "t1_topk": [0, 40, 0],
              "t1_var": [40, 0, 0], "t1_topk_var": [0, 0, 40],
              "t1_topk_mean_var": [0, 0, 0]}  # fmt: skip
    root = _root(tmp_path, missed)
    check = Checker(root / "runs", "mini", root / "ann.json", n_boot=100)
    rows = ["t1_topk", "t1_mean", "t1_var", "t1_topk_mean", "t1_topk_var", "t1_topk_mean_var"]
    claim = best_row(check, "Top-k + Mean is the best input", "1", "t1_topk_mean", rows)
    text = claim.markdown()
    assert "significantly better than 1, worse than 0, indistinguishable from 4" in text
    assert "**within noise**" in text
    record = claim.record()
    rivals = {r["row"]: (r["outcome"], r["seeds"]) for r in record["rivals"]}
    assert rivals == {"t1_topk": ("tied", 3), "t1_mean": ("better", 3), "t1_var": ("tied", 3),
                      "t1_topk_var": ("tied", 3), "t1_topk_mean_var": ("tied", 3)}  # fmt: skip
    assert (record["verdict"], record["seeds"], record["mean"]) == ("within noise", 3, None)
    mean = next(r for r in record["rivals"] if r["row"] == "t1_mean")
    assert mean["p_holm"] < 0.05 and mean["low"] > 0
    assert f"{mean['low']:+.2f}, {mean['high']:+.2f}], p = {mean['p']:.3g}" in text


def test_rows_are_found_from_the_run_folders_record(tmp_path):
    # The run folder "custom" says it stands for gflv2 and t1_topk_mean: the claim finds it
    # there, with no gflv2 folder and without asking the registry.
    _root(tmp_path, {"gflv1": [200, 160, 240]})
    for seed, m in enumerate([0, 10, 0]):
        _run(tmp_path, "custom", seed, m, {"rows": ["gflv2", "t1_topk_mean"]})
    check = Checker(tmp_path / "runs", "mini", tmp_path / "ann.json", n_boot=100)
    assert check.seeds("gflv2") == check.seeds("t1_topk_mean")
    assert sorted(check.seeds("gflv2")) == [0, 1, 2] and check.seeds("custom")
    assert main_claim(check).verdict == "supported"


def test_a_run_with_overrides_stands_for_no_row(tmp_path):
    _root(tmp_path, {"gflv1": [0]})
    env = {"rows": ["gflv2"], "requested": "gflv2", "overrides": ["model.quality.hidden=8"]}
    _run(tmp_path, "gflv2-0123abcd", 0, 0, env)
    check = Checker(tmp_path / "runs", "mini", tmp_path / "ann.json", n_boot=100)
    claim = main_claim(check)
    assert check.seeds("gflv2") == {} and "**not run yet**" in claim.markdown()
    assert (claim.verdict, claim.seeds, claim.record()["per_seed"]) == ("not run yet", 0, [])


def test_folders_of_the_older_schema_stand_for_what_they_record(tmp_path):
    # An older local run recorded what was asked for (requested); one without rows stands for
    # its experiment, and for the rows no folder records, the registry's canonical name
    # (Table 6's GFLV1 row is the gflv1 config).
    _root(tmp_path, {"gflv1": [0]})
    _run(tmp_path, "gflv2", 0, 0, {"requested": "t1_topk_mean", "overrides": []})
    index = Checker(tmp_path / "runs", "mini", tmp_path / "ann.json", n_boot=100).index
    assert index.experiment("t1_topk_mean") == index.experiment("gflv2") == "gflv2"
    assert index.experiment("t6_gflv1") == "gflv1" and len(index.runs("t6_gflv1")) == 1


def test_a_row_recorded_by_two_experiments_is_an_error(tmp_path):
    _root(tmp_path, {"gflv1": [0]})
    for name in ("old", "new"):
        _run(tmp_path, name, 0, 0, {"rows": ["gflv2"]})
    check = Checker(tmp_path / "runs", "mini", tmp_path / "ann.json", n_boot=100)
    with pytest.raises(ValueError, match=r"row 'gflv2' .* \(new, old\)"):
        check.seeds("gflv2")


def test_claims_file_names_the_method_and_every_claim(tmp_path):
    root = _root(tmp_path, {"gflv1": [200], "gflv2": [0]})
    text = check_claims(root / "runs", "mini", root / "ann.json", n_boot=20).markdown()
    assert "Student-t interval" in text and "Holm" in text
    assert text.count("**not run yet**") >= 4  # Tables 1, 2, 4 and 6 have no runs here


def _every_claim(claims: list[dict]) -> list[dict]:
    return [p for c in claims for p in [c, *c["parts"]]]


def test_claims_json_holds_what_claims_md_says(tmp_path):
    # The main claim over 3 seeds, one Table 5 pair over 3 seeds and one over 1, the rest not run.
    missed = {"gflv1": [200, 160, 240], "gflv2": [0, 10, 0], "t5_fcos": [30, 40, 20],
              "t5_fcos_gflv2": [0, 10, 0], "t5_atss": [30], "t5_atss_gflv2": [0]}  # fmt: skip
    root = _root(tmp_path, missed)
    report = check_claims(root / "runs", "mini", root / "ann.json", n_boot=50)
    md, js = report.write(root / "results" / "mini")
    text, record = md.read_text(), json.loads(js.read_text())
    assert (record["preset"], record["bootstrap"], record["min_seeds"]) == ("mini", 50, 3)
    assert record["method"] in text and "(50 resamples of the val images" in record["method"]
    claims = {c["title"]: c for c in _every_claim(record["claims"])}
    got = {t: (c["verdict"], c["seeds"]) for t, c in claims.items() if "Table" not in t}
    assert got == {"`t5_retinanet` → `t5_retinanet_gflv2`": ("not run yet", 0),
                   "`t5_foveabox` → `t5_foveabox_gflv2`": ("not run yet", 0),
                   "`t5_fcos` → `t5_fcos_gflv2`": ("supported", 3),
                   "`t5_atss` → `t5_atss_gflv2`": ("not enough seeds", 1)}  # fmt: skip
    main = claims["GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4)"]
    assert (main["verdict"], main["seeds"], main["unit"]) == ("supported", 3, "AP")
    # The interval and per-seed numbers are those of the comparison computed here, and the
    # Markdown prints them.
    comp = Checker(root / "runs", "mini", root / "ann.json", n_boot=50).paired("gflv1", "gflv2")
    interval = (comp.interval.mean, comp.interval.low, comp.interval.high)
    assert (main["mean"], main["low"], main["high"]) == pytest.approx(interval, abs=1e-12)
    assert [d["diff"] for d in main["per_seed"]] == pytest.approx(comp.diffs, abs=1e-12)
    assert f"95 % interval [{main['low']:+.2f}, {main['high']:+.2f}]" in text
    for seed in main["per_seed"]:
        assert f"seed {seed['seed']}: {seed['diff']:+.2f} [{seed['low']:+.2f}, " in text
    # Every claim and part: its verdict and each of its lines are in claims.md.
    for claim in _every_claim(record["claims"]):
        head = f"## {claim['title']}" if claim["verdict"] is None else f"{claim['title']}: **"
        assert head + (claim["verdict"] or "") in text
        assert all(line in text for line in claim["lines"])
    # metrics.json AP: 1 - 30 * 0.6 / 400 = 95.5 % and 100 %.
    part = (
        "- `t5_atss` → `t5_atss_gflv2`: **not enough seeds** (1 seed); "
        "`t5_atss` 95.5 AP (1 seed) → `t5_atss_gflv2` 100.0 AP (1 seed); "
        "paper +1.9 AP\n  - 1 seed: "
    )
    assert part in text
    assert "## GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4): **supported** (3 seeds)\n" in text


def test_claims_md_opens_with_every_verdict_and_its_seed_count(tmp_path):
    # The main pair over 3 seeds; Table 5's FCOS pair over 3 seeds, its ATSS pair over 1.
    missed = {"gflv1": [200, 160, 240], "gflv2": [0, 10, 0], "t5_fcos": [30, 40, 20],
              "t5_fcos_gflv2": [0, 10, 0], "t5_atss": [30], "t5_atss_gflv2": [0]}  # fmt: skip
    root = _root(tmp_path, missed)
    report = check_claims(root / "runs", "mini", root / "ann.json", n_boot=50)
    text = report.markdown()
    summary = text[text.index("## Summary") : text.index("\n## ", text.index("## Summary") + 1)]
    # 6 single claims (main, Tables 1-4 best rows, PCC) and Table 5's 4 pairs; the PCC claim has
    # no LQE dumps here, so it is not run.
    assert (
        "10 claims: 2 supported, 0 within noise, 0 contradicted, 1 not enough seeds, "
        "7 not run yet." in summary
    )
    assert report.counts() == {"supported": 2, "within noise": 0, "contradicted": 0,
                               "not enough seeds": 1, "not run yet": 7}  # fmt: skip
    # Every table row but the header.
    rows = [line.split(" | ") for line in summary.splitlines() if line.startswith("| ")][1:]
    by_title = {r[0][2:]: r[1:] for r in rows}
    assert len(by_title) == 10
    comp = Checker(root / "runs", "mini", root / "ann.json", n_boot=50).paired("gflv1", "gflv2")
    i = comp.interval
    main = by_title["GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4)"]
    assert main == ["supported", "3", f"{i.mean:+.2f} [{i.low:+.2f}, {i.high:+.2f}] AP",
                    "+0.9 AP |"]  # fmt: skip
    # COCO AP of 30 missed images of 400: a true positive at IoU 0.5-0.65 (4 thresholds, AP 1);
    # at the 6 others the 30 misses (images 1-30) rank first among equal scores, so precision
    # rises to 370 / 400 = 0.925 at recall 0.925, covering 93 of the 101 recall points:
    # AP = (4 + 6 * 93 * 0.925 / 101) / 10 = 91.10 %, 8.90 below the run without misses.
    atss = by_title["Table 5: `t5_atss` → `t5_atss_gflv2`"]
    expected = 100 - (4 + 6 * 93 * 0.925 / 101) * 10
    assert atss == ["not enough seeds", "1", f"{expected:+.2f} AP (no interval)", "+1.9 AP |"]
    table3 = [t for t in by_title if "(Table 3)" in t]
    assert len(table3) == 1 and by_title[table3[0]] == [
        "not run yet",
        "0",
        "–",
        "+0.3 AP over the runner-up |",
    ]
    # Every verdict other than "not run yet" rests on the seeds the table names.
    for title, (verdict, seeds, *_rest) in by_title.items():
        if verdict in ("supported", "contradicted"):
            assert int(seeds) >= 3, title


def test_table3_claim_pits_the_statistics_against_the_convolutional_inputs_only(tmp_path):
    # Statistics (the GFLV2 default) miss no image; every convolutional input misses 100 at each
    # of 3 seeds; the baseline without a quality branch would win, but is no rival.
    conv = ["t3_point", "t3_region", "t3_border_dense", "t3_border_middle",
            "t3_border_extreme", "t3_regular", "t3_deformable"]  # fmt: skip
    missed = {"gflv2": [0, 0, 0], **{n: [100, 100, 100] for n in conv}}
    root = _root(tmp_path, missed)
    report = check_claims(root / "runs", "mini", root / "ann.json", n_boot=50)
    claim = next(c for c in report.claims if "(Table 3)" in c.title)
    assert sorted(claim.rivals) == sorted(conv)
    assert claim.verdict == "supported" and claim.seeds == 3
    # Each rival's COCO AP as in the summary test above, with 100 misses: precision 300 / 400 =
    # 0.75 up to recall 0.75, 76 of the 101 recall points; the winner's AP is 100.
    gap = 100 - (4 + 6 * 76 * 0.75 / 101) * 10
    assert claim.measured() == (
        f"beats 7, loses to 0, ties 0 of 7 rivals; winner − rival {gap:+.2f} to {gap:+.2f} AP"
    )


def test_page_reads_the_claims_json_written(tmp_path):
    root = _root(tmp_path, {"gflv1": [200, 160, 240], "gflv2": [0, 10, 0]})
    folder = root / "results" / "mini"
    check_claims(root / "runs", "mini", root / "ann.json", n_boot=20).write(folder)
    found = page.read_claims(folder)
    assert [c["verdict"] for c in found["claims"]][:3] == [
        "supported",
        "not run yet",
        "not run yet",
    ]
    # the main claim; Tables 1-4 best rows, 4 pairs of Table 5 and the PCC (no LQE dumps) not run
    assert found["verdicts"] == {"supported": 1, "within noise": 0, "contradicted": 0,
                                 "not run yet": 9}  # fmt: skip


def test_seed_interval_equals_scipy_t_interval():
    diffs = np.array([1.2, 0.4, 2.0, 0.9, 1.5])  # (S,)
    got = seed_interval(diffs)
    low, high = sps.t.interval(0.95, df=4, loc=diffs.mean(), scale=sps.sem(diffs))
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.p == pytest.approx(sps.ttest_1samp(diffs, 0.0).pvalue, abs=1e-12)
    assert got.std == pytest.approx(np.std(diffs, ddof=1)) and got.n == 5
    # By hand: mean 1.2, s^2 = 0.365, s^2 / n = 0.073; plus a sample variance of 0.027 the
    # standard error is sqrt(0.1) and the half-width t(0.975, 4) * sqrt(0.1) = 2.776445 * 0.316228
    # = 0.877989.
    wide = seed_interval(diffs, sample_var=0.027)
    assert wide.se == pytest.approx(np.sqrt(0.1))
    assert (wide.low, wide.high) == pytest.approx((1.2 - 0.877989, 1.2 + 0.877989), abs=1e-5)


def test_seed_interval_without_spread_and_verdicts():
    same = seed_interval([0.5, 0.5, 0.5])
    assert (same.low, same.high, same.p) == (0.5, 0.5, 0.0)
    assert verdict_over_seeds(same) == "supported"
    assert verdict_over_seeds(seed_interval([-0.5, -0.5, -0.5])) == "contradicted"
    assert verdict_over_seeds(seed_interval([0.5, 0.6])) == "not enough seeds"
    with pytest.raises(ValueError, match="at least 2"):
        seed_interval([1.0])


def test_holm_by_hand():
    # p sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1 = 0.5).
    np.testing.assert_allclose(holm([0.03, 0.5, 0.01, 0.02]), [0.06, 0.5, 0.04, 0.06])
    # Monotone: a larger p never gets a smaller adjusted p; capped at 1.
    np.testing.assert_allclose(holm([0.04, 0.04, 0.9]), [0.12, 0.12, 0.9])
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])  # 1.2 and max(1.2, 0.7), capped


def test_comparison_interval_holds_the_val_sample_variance():
    diffs = np.array([1.0, 1.2, 0.8])  # (S,)
    draws = diffs + np.array([[-1.0], [1.0], [-1.0], [1.0]])  # (R, S): the mean moves by +-1
    comp = Comparison.from_draws([0, 1, 2], diffs, draws)
    assert comp.interval.se == pytest.approx(np.sqrt(0.04 / 3 + 4 / 3))  # var of +-1 over 4
    assert comp.verdict == "within noise"  # 1.0 +- 4.30 * 1.16


def test_main_result_per_seed_table_and_verdict(tmp_path, monkeypatch, capsys):
    root = _root(tmp_path, {"gflv1": [200, 160, 240], "gflv2": [0, 10, 0], "t1_mean": [5]})
    argv = ["main_result.py", "--runs", str(root / "runs"), "--results", str(root / "results"),
            "--ann-file", str(root / "ann.json"), "--boot", "50"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPTS / "main_result.py"), run_name="__main__")
    text = (root / "results" / "mini" / "main.md").read_text()
    # metrics.json AP: 1 - missed * 0.6 / 400, so GFLV1 70.0, 76.0, 64.0 and GFLV2 100, 98.5, 100;
    # differences 30, 22.5, 36: mean 29.5, std sqrt((0.25 + 49 + 42.25) / 2) = 6.76.
    assert "| 0 | 70.0 | 100.0 | +30.00 |" in text and "| 1 | 76.0 | 98.5 | +22.50 |" in text
    assert "| mean ± std (3 seeds) | 70.00 ± 6.00 | 99.50 ± 0.87 | +29.50 ± 6.76 |" in text
    assert "No diagnostics.json in these runs yet" in text
    assert "### GFLV2 > GFLV1 in AP (Table 2, k = 0 vs k = 4): **supported**" in text
    assert "Runs: 6 complete, from commit(s) 0123456, CPU kernels unrecorded, written on " in text
    seeds = (root / "results" / "mini" / "main_seeds.csv").read_text().splitlines()
    assert seeds[0] == "seed,gflv1,gflv2,diff" and len(seeds) == 4


def test_main_result_without_a_complete_run(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "mini" / "gflv1" / "seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")  # started, not complete
    argv = ["main_result.py", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPTS / "main_result.py"), run_name="__main__")
    text = (tmp_path / "out" / "mini" / "main.md").read_text()
    assert "| gflv1 | 0 | missing |" in text and "### Per seed" not in text
