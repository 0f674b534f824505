"""metrics.jsonl (one JSON object a line, read back by pandas), TensorBoard when installed."""

import json
import logging
import sys
from pathlib import Path

from gfl_repro.engine.runs import RunFolder
from gfl_repro.io import atomic_write_text

log = logging.getLogger("gfl_repro")


class MetricsLogger:
    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = run_dir / RunFolder.LOG
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tb"))
            except ImportError:  # tensorboard is an optional extra
                self.writer = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = record.get("iter", 0)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("iter", "epoch"):
                    self.writer.add_scalar(f"{record.get('mode', 'train')}/{key}", value, step)

    def drop_after(self, iteration: int) -> int:
        """Forget the lines logged after ``iteration`` (a resume from its checkpoint logs them
        again), so that the file holds each iteration once. Returns how many were dropped."""
        if not self.enabled or not self.path.is_file():
            return 0
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if json.loads(line).get("iter", 0) <= iteration]
        if len(kept) < len(lines):
            atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))
        return len(lines) - len(kept)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def setup_logging(run_dir: Path | None, is_main: bool, name: str = RunFolder.TRAIN_LOG) -> None:
    """INFO to stderr (rank 0) and to run_dir/<name>."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None and is_main:
        handlers.append(logging.FileHandler(run_dir / name))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
