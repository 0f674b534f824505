"""ensure_dataset generates the built-in set once when two processes start on it together."""

import dataclasses
import threading

from experiments.presets import tiny
from gfl_repro.data import mini
from gfl_repro.engine import data
from gfl_repro.engine.distributed import DistInfo


def _config(root):
    cfg = tiny().data
    return dataclasses.replace(cfg, root=str(root))


def _fake_generate(calls):
    """Stands in for mini.generate: records the call, writes the files ensure_dataset checks."""

    def generate(root, *args, **kwargs):
        calls.append(root)
        for split in mini.SPLITS:
            ann, images = mini.paths(root, split)
            ann.parent.mkdir(parents=True, exist_ok=True)
            images.mkdir(parents=True, exist_ok=True)
            ann.write_text("{}", encoding="utf-8")

    return generate


def test_missing_set_is_generated_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(mini, "generate", _fake_generate(calls))
    cfg = _config(tmp_path / "set")
    (tmp_path / "set").mkdir()
    data.ensure_dataset(cfg, DistInfo())
    data.ensure_dataset(cfg, DistInfo())
    assert calls == [str(tmp_path / "set")]


def test_waits_for_a_generation_in_progress_and_does_not_repeat_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(mini, "generate", _fake_generate(calls))
    root = tmp_path / "set"
    root.mkdir()
    cfg = _config(root)
    with data.generation_lock(root):  # another process is writing the set
        worker = threading.Thread(target=data.ensure_dataset, args=(cfg, DistInfo()))
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive(), "ensure_dataset must wait for the lock"
        assert calls == []
        _fake_generate([])(str(root))  # ... and finishes it
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert calls == [], "the set written under the lock must not be generated again"
