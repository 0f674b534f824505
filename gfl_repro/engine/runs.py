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


class RunFolder:
    """A run folder, ``runs/<preset>/<experiment>/seed<S>/``: the contract between training and
    every table. It owns the folder's file names; every reader and writer goes through it.

    Written by training: ``config.json`` (the resolved config), ``env.json`` (versions, commit,
    device, processes, and the run's identity: preset, experiment, seed, the rows it serves, what
    was asked for), ``metrics.jsonl`` (a line per logged iteration, evaluation or LQE summary),
    ``train.log``, checkpoints ``iter_N.pth``, ``lqe.npz``, ``detections.json``,
    ``per_class_ap.csv``, ``diagnostics.json`` and, last, ``metrics.json``, which marks the run
    complete. Later: ``bench_model.json`` (gfl-repro bench-model), ``test/<checkpoint>/``
    (gfl-repro test), ``examples/`` (``engine.examples``: per-image outputs for Figs. 1c/d, 7).
    """

    CONFIG = "config.json"
    ENV = "env.json"
    METRICS = "metrics.json"
    LOG = "metrics.jsonl"
    TRAIN_LOG = "train.log"
    DETECTIONS = "detections.json"
    PER_CLASS = "per_class_ap.csv"
    DIAGNOSTICS = "diagnostics.json"
    LQE = "lqe"  # lqe.npz (the positives protocol), lqe_<protocol>.npz otherwise
    BENCH = "bench_model.json"
    # examples/ (engine.examples, for Figs. 1c/d and 7); examples.json is written last
    EXAMPLES_INFO = "examples/examples.json"
    EXAMPLES_DETECTIONS = "examples/detections.csv"
    EXAMPLES_DISTRIBUTIONS = "examples/distributions.npz"
    EXAMPLES_CANDIDATES = "examples/candidates.csv"
    EXAMPLES_GT = "examples/gt.csv"
    EXAMPLES_IMAGES = "examples/images"  # <image_id>.jpg

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, preset: str, experiment: str, seed: int, root: str | Path = "runs") -> "RunFolder":
        return cls(Path(root) / preset / experiment / f"seed{seed}")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @classmethod
    def lqe_name(cls, protocol: str = "positives") -> str:
        """The stem of the LQE dump of ``protocol``: lqe (.npz) or lqe_<protocol>."""
        return cls.LQE if protocol == "positives" else f"{cls.LQE}_{protocol}"

    def lqe_file(self, protocol: str = "positives") -> Path:
        return self.path / f"{self.lqe_name(protocol)}.npz"

    def read(self, name: str) -> dict:
        """A json file of the folder, {} when absent."""
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def is_run(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    @property
    def is_complete(self) -> bool:
        """Complete only when its final metrics file exists (written last, atomically)."""
        return (self.path / self.METRICS).is_file()

    @property
    def env(self) -> dict:
        return self.read(self.ENV)

    @property
    def metrics(self) -> dict:
        return self.read(self.METRICS)

    def log(self, mode: str) -> list[dict]:
        """The lines of metrics.jsonl with ``mode`` (train | val | lqe) of the history that
        survived, in order. A run killed after its last checkpoint and resumed from it logs the
        iterations past the checkpoint twice; code before 3422b85 kept both attempts (a run
        restarted from scratch, its whole first attempt). The survivors are the lines whose
        iteration is below that of every later line of the same mode."""
        path = self / self.LOG
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        kept, below = [], float("inf")
        for line in reversed([x for x in lines if x.get("mode") == mode]):
            if line.get("iter", -1) < below:
                kept.append(line)
                below = line.get("iter", below)
        return kept[::-1]

    @property
    def kernels(self) -> str:
        """The vector ISA of the CPU kernels the run computed with, from env.json ("AVX2",
        "AVX512"), or "unrecorded" for a run written before env.json recorded it."""
        return (self.env.get("cpu") or {}).get("capability", "unrecorded")

    @property
    def identity(self) -> dict:
        """preset, experiment, seed, rows, requested and overrides from env.json. Folders written
        before the schema was one (a Slurm job wrote no requested/overrides, a local run no rows)
        read with the missing keys filled: rows and requested default to the experiment."""
        env = self.env
        experiment = env.get("experiment")
        return {"preset": env.get("preset"), "experiment": experiment, "seed": env.get("seed"),
                "rows": list(env.get("rows") or ([experiment] if experiment else [])),
                "requested": env.get("requested") or experiment,
                "overrides": list(env.get("overrides") or [])}  # fmt: skip


def identity(preset: str, experiment: str, rows: list[str] | tuple[str, ...] = (),
             requested: str = "", overrides: list[str] | tuple[str, ...] = ()) -> dict:  # fmt: skip
    """The identity a run records in env.json, the same from every launcher (local, torchrun,
    Slurm): its preset, canonical experiment (the folder's name), the table rows it serves, what
    was asked for, the --set overrides."""
    return {"preset": preset, "experiment": experiment,
            "rows": sorted(set(rows)) or [requested or experiment],
            "requested": requested or experiment, "overrides": list(overrides)}  # fmt: skip


def default_run_dir(preset: str, experiment: str, seed: int, root: str | Path = "runs") -> Path:
    return RunFolder.of(preset, experiment, seed, root).path


def is_complete(run_dir: str | Path) -> bool:
    """A run is complete only when its final metrics file exists (written last, atomically)."""
    return RunFolder(run_dir).is_complete


def recorded_seconds(run_dir: str | Path) -> float | None:
    """Device-seconds a complete run took: the wall time of its training (summed over resumes),
    LQE dump and final evaluation, times its processes. None when the run is not complete or
    predates the recording of training time."""
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        return None
    metrics = RunFolder(run_dir).metrics
    if "train_seconds" not in metrics:
        return None
    wall = sum(metrics.get(k, 0.0) for k in ("train_seconds", "lqe_seconds", "eval_seconds"))
    return wall * RunFolder(run_dir).env.get("processes", 1)


def check_same_config(run_dir: Path, cfg: Config) -> None:
    """A run folder written by another config is an error, never silently reused or resumed.
    A key missing from the saved config (a field added to the code since) means its default."""
    saved = RunFolder(run_dir) / RunFolder.CONFIG
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


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU a run computed on: its model (with family and model numbers, which name the
    generation when the name alone is generic) and the vector ISA torch's kernels use. Float
    results differ between ISAs, so a CPU run's numbers are reproduced bit for bit only on its
    own."""
    fields = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = (x.strip() for x in line.partition(":"))
            fields.setdefault(key, value)
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown"
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return {"model": name, "capability": torch.backends.cpu.get_cpu_capability()}


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
        "cpu": cpu(),
        "processes": dist.world_size,
        "threads": torch.get_num_threads(),
    }


def write_run_files(run_dir: Path, cfg: Config, seed: int, dist: DistInfo, meta: dict) -> None:
    """config.json, and env.json: the environment, the seed and ``meta`` (``identity(...)``)."""
    folder = RunFolder(run_dir)
    atomic_write_json(folder / folder.CONFIG, to_dict(cfg))
    atomic_write_json(folder / folder.ENV, {**environment(dist), "seed": seed, **meta})


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config a run folder was trained with."""
    return from_dict(Config, read_json(RunFolder(run_dir) / RunFolder.CONFIG))
