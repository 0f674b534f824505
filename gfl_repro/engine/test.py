"""``gfl-repro test RUN_DIR``: evaluate a run folder's checkpoint on its val set.

The results go to a folder of their own, ``RUN_DIR/test/<checkpoint name>/`` (metrics.json,
detections.json, per_class_ap.csv, diagnostics.json, test.log): the run's own files, which the
tables read, are never replaced.
"""

from pathlib import Path

import torch

from gfl_repro.build import build_model
from gfl_repro.engine import checkpoint as ckpt
from gfl_repro.engine.data import ensure_dataset, val_loader
from gfl_repro.engine.distributed import init_distributed
from gfl_repro.engine.inference import evaluate_run
from gfl_repro.engine.logger import setup_logging
from gfl_repro.engine.runs import load_run_config


def test_dir(run_dir: Path, checkpoint: Path) -> Path:
    """Where the evaluation of ``checkpoint`` goes: RUN_DIR/test/<checkpoint file stem>."""
    return Path(run_dir) / "test" / Path(checkpoint).stem


def test_run(run_dir: Path, checkpoint: Path | None = None) -> dict | None:
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    dist = init_distributed(cfg.runtime.device)
    path = checkpoint or ckpt.latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint (iter_*.pth) in {run_dir}; pass --checkpoint")
    out = test_dir(run_dir, path)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out, dist.is_main, name="test.log")
    ensure_dataset(cfg.data, dist)
    model = build_model(cfg.model).to(dist.device)
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    return evaluate_run(
        model, val_loader(cfg.data, dist), dist, out, record={"checkpoint": str(path)}
    )
