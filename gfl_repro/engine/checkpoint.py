"""Training checkpoints: written atomically, found again by ``--resume auto``.

A checkpoint holds the model, the optimizer (and AMP scaler), the number of iterations done, and
the RNG states of torch, numpy and random, so that a resumed run continues exactly where the
interrupted one stopped. The model config travels with it so that ``predict`` and ``test`` can
rebuild the model from the file alone.
"""

import random
import re
from pathlib import Path

import numpy as np
import torch

from gfl_repro.io import atomic_torch_save

PATTERN = re.compile(r"iter_(\d+)\.pth$")


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, *, model, optimizer, iteration: int, extra: dict) -> None:
    state = {
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": iteration,
        "rng": rng_state(),
        **extra,
    }
    atomic_torch_save(state, path)


def checkpoints(folder: Path) -> list[Path]:
    """The folder's checkpoints, oldest first."""
    found = [
        (int(m.group(1)), p) for p in folder.glob("iter_*.pth") if (m := PATTERN.search(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder: Path, keep: int) -> None:
    for old in checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
