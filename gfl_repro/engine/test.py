"""``gfl-repro test RUN_DIR``: evaluate a run folder's checkpoint on its val set."""

from pathlib import Path

import torch

from gfl_repro.engine import checkpoint as ckpt
from gfl_repro.engine.data import ensure_dataset, val_loader
from gfl_repro.engine.distributed import init_distributed
from gfl_repro.engine.inference import evaluate_run
from gfl_repro.engine.logger import setup_logging
from gfl_repro.engine.runs import load_run_config
from gfl_repro.models.build import build_model


def test_run(run_dir: Path, checkpoint: Path | None = None) -> dict | None:
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    dist = init_distributed(cfg.runtime.device)
    setup_logging(run_dir, dist.is_main)
    path = checkpoint or ckpt.latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint (iter_*.pth) in {run_dir}; pass --checkpoint")
    ensure_dataset(cfg.data, dist)
    model = build_model(cfg.model).to(dist.device)
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    return evaluate_run(model, val_loader(cfg.data, dist), dist, run_dir)
