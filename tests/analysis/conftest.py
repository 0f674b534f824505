"""Tiny trained run folders shared by the example figures and the notebooks that draw them."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from gfl_repro.engine.train import train_run
from gfl_repro.models.postprocess import InferenceConfig
from tests.engine.conftest import tiny_config, tiny_root  # noqa: F401 (fixture)


@pytest.fixture(scope="session")
def runs(tiny_root, tmp_path_factory):  # noqa: F811
    """RUNS/mini, holding gflv1/seed0 and gflv2/seed0: tiny models trained 12 iterations, with
    the env.json keys of ``gfl-repro train`` (preset, experiment, seed). The threshold is 0
    because a model this small scores every box low. Read only: copy it before writing."""
    root = tmp_path_factory.mktemp("runs") / "mini"
    inference = InferenceConfig(score_thr=0.0, max_per_img=20)
    for name, kind in (("gflv1", "none"), ("gflv2", "dgqp")):
        cfg = tiny_config(tiny_root)
        quality = dataclasses.replace(cfg.model.quality, kind=kind)
        model = dataclasses.replace(cfg.model, quality=quality, inference=inference)
        meta = {"preset": "mini", "experiment": name}
        train_run(dataclasses.replace(cfg, model=model), root / name / "seed0", seed=0, meta=meta)
    return root


def figures_script():
    """analysis/figures.py, the script (not a package module), loaded as a module."""
    return analysis_script("figures")


def analysis_script(stem: str):
    """analysis/<stem>.py, a script (not a package module), loaded as a module."""
    path = Path(__file__).parents[2] / "analysis" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"{stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
