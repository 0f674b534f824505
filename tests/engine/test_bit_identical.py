"""A seeded tiny GFLV2 and GFLV1 run gives bit-identical weights, losses and metrics to the ones
recorded before the run-folder restructuring (commit 418356c): refactoring must not change results.

Float results depend on the CPU kernels torch picks, so the fingerprint is kept per platform
(torch version and CPU capability); on a platform with no recording the test skips and says how
to record one: copy this file into a checkout of the commit named in the recording, run
``PYTHONPATH=. python -m tests.engine.test_bit_identical`` there and add its output's platform
entry to ``data/tiny_run_fingerprint.json``.
"""

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from gfl_repro.data import mini as mini_data
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.train import Trainer
from tests.engine.conftest import tiny_config

RECORDED = Path(__file__).parent / "data" / "tiny_run_fingerprint.json"


def platform() -> str:
    return f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}"


def run_fingerprint(root: Path, work: Path, quality: str) -> dict:
    """sha256 over the state dict (sorted keys, raw bytes), the logged loss terms and the val
    metrics of a 12-iteration run (seed 5) of the tiny preset with ``quality``."""
    cfg = tiny_config(root)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, mini_seed=3))
    model = dataclasses.replace(
        cfg.model, quality=dataclasses.replace(cfg.model.quality, kind=quality)
    )
    trainer = Trainer(
        dataclasses.replace(cfg, model=model), work / quality, seed=5, dist=DistInfo()
    )
    trainer.train()
    metrics = trainer.evaluate(final=True)
    digest = hashlib.sha256()
    for key, value in sorted(trainer.model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    lines = [json.loads(x) for x in (work / quality / "metrics.jsonl").read_text().splitlines()]
    losses = [{k: v for k, v in r.items() if k.startswith("loss")} for r in lines if "loss" in r]
    return {"weights_sha256": digest.hexdigest(), "losses": losses,
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)}}  # fmt: skip


def fingerprints(tmp: Path) -> dict:
    torch.set_num_threads(1)
    root = tmp / "data"
    mini_data.generate(root, seed=3, n_train=12, n_val=4, size=64, workers=1)
    return {quality: run_fingerprint(root, tmp, quality) for quality in ("dgqp", "none")}


def test_a_seeded_tiny_run_is_bit_identical_to_the_recording(tmp_path):
    recorded = json.loads(RECORDED.read_text())
    expected = recorded["platforms"].get(platform())
    if expected is None:
        pytest.skip(f"no fingerprint recorded for {platform()} in {RECORDED.name}; record one at "
                    f"{recorded['recorded_at_commit']} (see this module's docstring)")  # fmt: skip
    threads = torch.get_num_threads()
    try:
        got = fingerprints(tmp_path)
    finally:
        torch.set_num_threads(threads)
    for quality in ("dgqp", "none"):
        assert got[quality]["losses"] == expected[quality]["losses"], quality
        assert got[quality]["metrics"] == expected[quality]["metrics"], quality
        assert got[quality]["weights_sha256"] == expected[quality]["weights_sha256"], quality


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        json.dump({platform(): fingerprints(Path(tmp))}, sys.stdout, indent=1)
