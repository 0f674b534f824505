"""Run records: a complete run folder packed without its checkpoints comes back byte for byte,
packing is deterministic and only redoes what changed, and an archive that is not a run's record
is an error naming it."""

import io
import os
import random
import re
import tarfile

import pytest

from gfl_repro.cli import main
from gfl_repro.engine.archive import pack, unpack
from gfl_repro.engine.runs import RunFolder, RunFolderError

T0 = 1_700_000_000  # a fixed mtime for every file, so two packs can be compared byte for byte
RECORD = {"config.json": "{}", "metrics.json": '{"bbox_mAP": 0.25}', "detections.json": "[]",
          "metrics.jsonl": '{"iter": 3}\n', "test/iter_12/metrics.json": "{}"}  # fmt: skip
LEFT_OUT = {"iter_3.pth": "weights", "iter_12.pth": "weights", "examples/examples.json": "{}"}


def _run(root, experiment="gflv2", seed=0, files=RECORD):
    run = RunFolder.of("mini", experiment, seed, root)
    for name, text in {**files, **LEFT_OUT}.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
        os.utime(run / name, (T0, T0))
    return run


def _tree(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_a_complete_run_round_trips_with_only_seed_0s_last_checkpoint(tmp_path, capsys):
    seed0, seed1 = _run(tmp_path / "runs"), _run(tmp_path / "runs", seed=1)
    _run(tmp_path / "runs", "gflv1", 1, files={"config.json": "{}"})  # training, not complete
    assert main(["pack-runs", "--runs", str(tmp_path / "runs"), str(tmp_path / "rec")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 written, 0 unchanged")
    assert "gflv1/seed1: skipped, not complete (no metrics.json)" in out
    archive = tmp_path / "rec" / "gflv2" / "seed0.tar.xz"
    with tarfile.open(archive) as tar:  # sorted; iter_12 is the last by number, not by name
        assert tar.getnames() == sorted([*RECORD, "iter_12.pth"])
        assert {(m.uid, m.gid, m.uname, m.mtime) for m in tar.getmembers()} == {(0, 0, "", T0)}
    with tarfile.open(tmp_path / "rec" / "gflv2" / "seed1.tar.xz") as tar:
        assert tar.getnames() == sorted(RECORD)  # no checkpoint, no examples/

    assert main(["unpack-runs", "--runs", str(tmp_path / "back"), str(tmp_path / "rec")]) == 0
    assert capsys.readouterr().out.startswith("2 written, 0 unchanged")
    for run, kept in ((seed0, {*RECORD, "iter_12.pth"}), (seed1, set(RECORD))):
        expected = {k: v for k, v in _tree(run.path).items() if k in kept}
        assert _tree(tmp_path / "back" / "mini" / "gflv2" / run.path.name) == expected


def test_packing_is_deterministic_and_redoes_only_a_changed_folder(tmp_path):
    run = _run(tmp_path / "runs")
    first, second = tmp_path / "a", tmp_path / "b"
    assert pack(run.path.parent.parent, first).written == ["gflv2/seed0"]
    assert pack(run.path.parent.parent, second).written == ["gflv2/seed0"]
    archive = first / "gflv2" / "seed0.tar.xz"
    assert archive.read_bytes() == (second / "gflv2" / "seed0.tar.xz").read_bytes()

    again = pack(run.path.parent.parent, first)
    assert (again.written, again.unchanged) == ([], ["gflv2/seed0"])
    (run / RunFolder.BENCH).write_text('{"fps": 12.5}')  # bench-model, after the pack
    later = archive.stat().st_mtime + 10
    os.utime(run / RunFolder.BENCH, (later, later))
    assert pack(run.path.parent.parent, first).written == ["gflv2/seed0"]
    with tarfile.open(archive) as tar:
        assert RunFolder.BENCH in tar.getnames()


def test_unpack_keeps_a_complete_folder_and_replaces_an_incomplete_one(tmp_path):
    pack(_run(tmp_path / "runs").path.parent.parent, tmp_path / "rec")
    pack(_run(tmp_path / "runs", seed=1).path.parent.parent, tmp_path / "rec")
    target = tmp_path / "target" / "mini"
    kept = _run(target.parent, files={**RECORD, "metrics.json": '{"bbox_mAP": 0.3}'})
    partial = _run(target.parent, seed=1, files={"config.json": "{}", "train.log": "iter 3\n"})
    tally = unpack(tmp_path / "rec", target)
    assert (tally.written, tally.unchanged) == (["gflv2/seed1"], ["gflv2/seed0"])
    assert tally.notes == ["gflv2/seed1: replaced an incomplete folder"]
    assert (kept / "metrics.json").read_text() == '{"bbox_mAP": 0.3}'  # its own, not the record
    assert sorted(_tree(partial.path)) == sorted(RECORD)  # the stale checkpoints and log are gone


def _archive(path, members: dict[str, bytes]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("members", "message"),
    [({"../escape.json": b"{}", "metrics.json": b"{}"}, "cannot be unpacked"),
     ({"config.json": b"{}"}, "not a complete run (no metrics.json)")],
)  # fmt: skip
def test_an_archive_that_is_not_a_run_record_is_an_error_naming_it(tmp_path, members, message):
    archive = tmp_path / "rec" / "gflv2" / "seed0.tar.xz"
    _archive(archive, members)
    with pytest.raises(RunFolderError, match=re.escape(message)) as err:
        unpack(tmp_path / "rec", tmp_path / "runs")
    assert str(archive) in str(err.value)
    assert not (tmp_path / "escape.json").exists()
    assert not (tmp_path / "runs" / "gflv2" / "seed0").exists()  # nothing half-written


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:100],  # cut short
     lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1 :]],  # flipped
    ids=["truncated", "corrupt-mid-stream"],
)  # fmt: skip
def test_a_damaged_archive_is_an_error_naming_it(tmp_path, capsys, damage):
    files = {**RECORD, "detections.json": random.Random(0).randbytes(40_000).hex()}  # long stream
    pack(_run(tmp_path / "runs", files=files).path.parent.parent, tmp_path / "rec")
    archive = tmp_path / "rec" / "gflv2" / "seed0.tar.xz"
    archive.write_bytes(damage(archive.read_bytes()))
    assert main(["unpack-runs", "--runs", str(tmp_path / "back"), str(tmp_path / "rec")]) == 2
    assert f"{archive}: cannot be unpacked" in capsys.readouterr().err
    assert not (tmp_path / "back" / "gflv2" / "seed0").exists()  # nothing half-written
