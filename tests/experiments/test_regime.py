"""The regime search's candidates: each builds a valid mini config, the published runs are
reproduced by their candidate's overrides, and the runner's commands follow analysis/regime.py's
layout."""

import json
from pathlib import Path

import pytest

from experiments.regime import (
    CANDIDATES,
    SEARCH_BASE,
    candidate_overrides,
    commands,
    data_root,
    main,
    promote,
)
from experiments.registry import resolve
from gfl_repro.config import to_dict
from gfl_repro.engine.runs import RunFolder, RunFolderError

PUBLISHED = Path(__file__).parents[2] / "docs/results/mini/regime/runs"


@pytest.mark.parametrize("candidate", sorted(CANDIDATES))
def test_every_candidate_builds_a_config_for_both_models(candidate):
    """Each candidate differs from the search's base, and its own data root (if any) is the
    config's."""
    for model in ("gflv1", "gflv2"):
        cfg = resolve(model, "mini", list(candidate_overrides(candidate)))
        assert to_dict(cfg) != to_dict(resolve(model, "mini", list(SEARCH_BASE)))
        assert cfg.data.root == (data_root(CANDIDATES[candidate]) or "data/mini")
        assert cfg.model.num_classes == len(cfg.data.mini_classes)


def test_width_half_is_every_channel_count_halved():
    cfg = resolve("gflv2", "mini", list(candidate_overrides("width-0.5")))
    preset = resolve("gflv2", "mini", list(SEARCH_BASE))
    assert cfg.model.mini_widths == tuple(w // 2 for w in preset.model.mini_widths)
    assert cfg.model.fpn_channels == preset.model.fpn_channels // 2
    assert cfg.model.head.feat_channels == preset.model.head.feat_channels // 2
    assert cfg.data == preset.data and cfg.schedule == preset.schedule


PUBLISHED_RUNS = sorted(p.parent for p in PUBLISHED.glob("*/mini/*/seed*/config.json"))


@pytest.mark.parametrize("run", PUBLISHED_RUNS, ids=lambda p: str(p.relative_to(PUBLISHED)))
def test_published_runs_are_their_candidates_overrides(run):
    """The model, data and schedule of every published run equal its candidate's config (the
    runtime differs: seed 0 also logged every epoch's val AP and LQE)."""
    candidate, model = run.parents[2].name, run.parent.name
    recorded = json.loads((run / "config.json").read_text())
    built = to_dict(resolve(model, "mini", list(candidate_overrides(candidate))))
    for part in ("model", "data", "schedule"):
        assert built[part] == recorded[part], part


def test_commands_generate_a_variant_once_and_train_both_models_per_seed(tmp_path):
    generate, trains = commands("width-0.5-six-classes", 2, tmp_path)
    assert generate[generate.index("--out") + 1] == "data/mini-six"
    assert "model.num_classes=6" in generate and "model.fpn_channels=32" not in generate
    dirs = [Path(cmd[cmd.index("--work-dir") + 1]) for cmd in trains]
    assert [d.relative_to(tmp_path).parts for d in dirs] == [
        ("width-0.5-six-classes", "mini", model, f"seed{seed}")
        for seed in (0, 1) for model in ("gflv1", "gflv2")
    ]  # fmt: skip
    assert commands("width-0.5", 1, tmp_path)[0] is None
    assert data_root(CANDIDATES["width-0.5-colour-0.5"]) == "data/mini-c05"


def test_the_search_base_is_the_regime_it_started_from():
    """Today's preset with the base's overrides is the mini regime of a506073: widths 16-256,
    64-channel FPN and head, object_scale 0.4, 0.16 per 16 images, 6 epochs, drops after 4 and 5."""
    cfg = resolve("gflv2", "mini", list(SEARCH_BASE))
    assert cfg.model.mini_widths == (16, 32, 64, 128, 256)
    assert (cfg.model.fpn_channels, cfg.model.head.feat_channels) == (64, 64)
    assert cfg.model.object_scale == 0.4
    assert (cfg.schedule.lr, cfg.schedule.epochs, cfg.schedule.steps) == (0.16, 6, (4, 5))


def test_unknown_candidate_names_the_known_ones(capsys):
    with pytest.raises(SystemExit, match="width-0.5"):
        main(["width-0.25", "--dry-run"])


def test_dry_run_prints_every_command(capsys):
    assert main(["width-0.5-colour-1.0", "--seeds", "1", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("gfl-repro data mini --out data/mini-c10")


def _fake_run(folder: Path, model: str, overrides, complete: bool = True) -> None:
    """A run folder as `gfl-repro train MODEL --set ...` leaves it: config, identity, metrics."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(to_dict(resolve(model, "mini", overrides))))
    env = {"git_commit": "abc", "seed": 0, "preset": "mini", "experiment": f"{model}-1234abcd",
           "rows": [model], "requested": model, "overrides": list(overrides)}  # fmt: skip
    (folder / "env.json").write_text(json.dumps(env))
    if complete:
        (folder / "metrics.json").write_text(json.dumps({"AP": 0.25}))


def test_promote_copies_the_chosen_candidate_as_the_presets_runs(tmp_path):
    """The 8-epoch candidate's config is the preset's: its runs become runs/mini/gflv{1,2}/seed0
    with the preset's identity (name, every row the config serves) and where they came from."""
    candidate = "width-0.5-scale-1-8-epochs"
    overrides = list(candidate_overrides(candidate))
    for model in ("gflv1", "gflv2"):
        _fake_run(tmp_path / "regime" / candidate / "mini" / model / "seed0", model, overrides)
    assert main([candidate, "--seeds", "1", "--runs", str(tmp_path / "regime"),
                 "--promote", str(tmp_path / "runs")]) == 0  # fmt: skip
    for model in ("gflv1", "gflv2"):
        dest = RunFolder.of("mini", model, 0, tmp_path / "runs")
        assert dest.is_complete and dest.metrics == {"AP": 0.25}
        env = dest.identity
        assert env["experiment"] == model and env["requested"] == model
        assert env["overrides"] == [] and model in env["rows"] and f"t6_{model}" in env["rows"]
        came = dest.env["promoted_from"]
        assert came["experiment"] == f"{model}-1234abcd" and came["overrides"] == overrides
        assert Path(came["run"]).parent.name == model and dest.env["git_commit"] == "abc"
    # promoting again keeps what is there
    assert promote(candidate, 1, tmp_path / "regime", tmp_path / "runs") == []


def test_promote_refuses_another_config_and_incomplete_runs(tmp_path):
    """width-0.5 (6 epochs, object_scale 0.4) is not the preset: nothing is copied."""
    for model in ("gflv1", "gflv2"):
        _fake_run(tmp_path / "width-0.5" / "mini" / model / "seed0", model,
                  list(candidate_overrides("width-0.5")))  # fmt: skip
    with pytest.raises(RunFolderError, match="another config than the mini preset's gflv1"):
        promote("width-0.5", 1, tmp_path, tmp_path / "runs")
    chosen = "width-0.5-scale-1-8-epochs"
    _fake_run(tmp_path / chosen / "mini" / "gflv1" / "seed0", "gflv1", [])
    _fake_run(tmp_path / chosen / "mini" / "gflv2" / "seed0", "gflv2", [], complete=False)
    with pytest.raises(RunFolderError, match="gflv2/seed0 is not a complete run"):
        promote(chosen, 1, tmp_path, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_promote_does_not_overwrite_another_run(tmp_path):
    chosen = "width-0.5-scale-1-8-epochs"
    for model in ("gflv1", "gflv2"):
        _fake_run(tmp_path / chosen / "mini" / model / "seed0", model, [])
    _fake_run(tmp_path / "runs" / "mini" / "gflv2" / "seed0", "gflv2", [])
    with pytest.raises(RunFolderError, match="exists and was not promoted from"):
        promote(chosen, 1, tmp_path, tmp_path / "runs")
    assert not (tmp_path / "runs" / "mini" / "gflv1").exists()  # nothing copied before the check
