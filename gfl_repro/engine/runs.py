"""Run folders: where a run lives, what it records about itself, and when it is complete."""

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from gfl_repro.config import Config, ConfigError, from_dict, to_dict
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.errors import ToolkitError
from gfl_repro.io import atomic_write_json


class RunFolderError(ToolkitError, RuntimeError):
    """A run folder that cannot be used as asked (another config, missing files)."""


PACKAGES = ("torch", "torchvision", "numpy", "pycocotools", "gfl-repro")


def default_run_dir(preset: str, experiment: str, seed: int, root: str | Path = "runs") -> Path:
    return Path(root) / preset / experiment / f"seed{seed}"


def is_complete(run_dir: str | Path) -> bool:
    """A run is complete only when its final metrics file exists (written last, atomically)."""
    return (Path(run_dir) / "metrics.json").is_file()


def recorded_seconds(run_dir: str | Path) -> float | None:
    """Device-seconds a complete run took: the wall time of its training (summed over resumes),
    LQE dump and final evaluation, times its processes. None when the run is not complete or
    predates the recording of training time."""
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        return None
    metrics = read_json(run_dir / "metrics.json")
    if "train_seconds" not in metrics:
        return None
    wall = sum(metrics.get(k, 0.0) for k in ("train_seconds", "lqe_seconds", "eval_seconds"))
    env = run_dir / "env.json"
    return wall * (read_json(env).get("processes", 1) if env.is_file() else 1)


def check_same_config(run_dir: Path, cfg: Config) -> None:
    """A run folder written by another config is an error, never silently reused or resumed.
    A key missing from the saved config (a field added to the code since) means its default."""
    saved = Path(run_dir) / "config.json"
    if saved.is_file() and _with_defaults(json.loads(saved.read_text())) != to_dict(cfg):
        raise RunFolderError(
            f"{run_dir} holds a run of another config than the one asked for (the experiment, "
            "its overrides or the code changed); move the folder away or pass another --work-dir"
        )


def _with_defaults(saved: dict) -> dict | None:
    try:
        return to_dict(from_dict(Config, saved))
    except (ConfigError, TypeError, ValueError):
        return None  # a key the code no longer has, or a malformed file: another config


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(dist: DistInfo) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    device = str(dist.device)
    if dist.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(dist.device)})"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
        "device": device,
        "processes": dist.world_size,
        "threads": torch.get_num_threads(),
    }


def write_run_files(run_dir: Path, cfg: Config, seed: int, dist: DistInfo, meta: dict) -> None:
    atomic_write_json(run_dir / "config.json", to_dict(cfg))
    atomic_write_json(run_dir / "env.json", {**environment(dist), "seed": seed, **meta})


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config a run folder was trained with."""
    return from_dict(Config, read_json(Path(run_dir) / "config.json"))
