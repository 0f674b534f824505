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
)
from experiments.registry import resolve
from gfl_repro.config import to_dict

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
