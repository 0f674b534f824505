"""The sweep driver: shared rows trained once, re-issued sweeps run only what is missing,
the submitit path, and the generated sbatch parameters."""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from experiments.presets import COSTS
from experiments.registry import canonical_name, resolve
from gfl_repro.config import to_dict
from gfl_repro.engine import sweep
from gfl_repro.engine.runs import is_complete


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _plan(rows, seeds=1):
    return sweep.plan(rows, "tiny", seeds, resolve, canonical_name, "runs")


def test_rows_of_several_tables_with_one_config_are_one_run(in_tmp):
    runs = _plan(["t1_topk_mean", "t2_k4_p64", "t3_distribution", "t2_k0", "t4_gflv1", "gflv2"])
    assert [(r.name, sorted(r.rows)) for r in runs] == [
        ("gflv2", ["gflv2", "t1_topk_mean", "t2_k4_p64", "t3_distribution"]),
        ("gflv1", ["t2_k0", "t4_gflv1"]),
    ]
    assert [r.run_dir.as_posix() for r in _plan(["gflv2"], seeds=2)] == [
        "runs/tiny/gflv2/seed0", "runs/tiny/gflv2/seed1"]  # fmt: skip


def test_a_reissued_sweep_runs_only_the_missing_runs(in_tmp, monkeypatch):
    launched = []
    real_popen = subprocess.Popen

    def spy(cmd, **kwargs):
        launched.append(cmd[cmd.index("train") + 1])
        return real_popen(cmd, **kwargs)

    monkeypatch.setattr(sweep.subprocess, "Popen", spy)
    runs = _plan(["t2_k0", "t1_topk_mean", "t2_k4_p64"])  # two distinct runs
    seconds = lambda run: 1.0  # noqa: E731
    assert sweep.run_local(runs, "tiny", seconds) == []
    assert launched == ["gflv1", "gflv2"] and all(is_complete(r.run_dir) for r in runs)

    (runs[0].run_dir / "metrics.json").unlink()  # gflv1 "interrupted" during its evaluation
    launched.clear()
    runs = _plan(["t2_k0", "t1_topk_mean", "t2_k4_p64"])
    assert [r.status for r in runs] == ["partial", "complete"]
    assert sweep.run_local(runs, "tiny", seconds) == []
    assert launched == ["gflv1"]  # resumed from its checkpoint; gflv2 untouched
    launched.clear()
    assert sweep.run_local(_plan(["t2_k0", "gflv2"]), "tiny", seconds) == [] and launched == []


def test_a_sweep_with_records_packs_each_run_and_a_new_machine_trains_none(in_tmp, monkeypatch,
                                                                           capsys):  # fmt: skip
    from gfl_repro.cli import main

    assert main(["sweep", "main", "--preset", "tiny", "--records", "rec"]) == 0
    records = sorted(p.relative_to("rec").as_posix() for p in Path("rec").rglob("*.tar.xz"))
    assert records == ["gflv1/seed0.tar.xz", "gflv2/seed0.tar.xz"]
    assert "record written: rec/gflv1/seed0.tar.xz" in capsys.readouterr().out

    launched = []
    monkeypatch.setattr(sweep.subprocess, "Popen", lambda cmd, **kw: launched.append(cmd))
    metrics = Path("runs/tiny/gflv2/seed0/metrics.json").read_bytes()
    shutil.rmtree("runs")  # a new machine: the records are all that is left
    assert main(["sweep", "main", "--preset", "tiny", "--records", "rec"]) == 0
    assert launched == []  # both runs came back complete: nothing to train
    assert Path("runs/tiny/gflv2/seed0/metrics.json").read_bytes() == metrics
    assert "rec unpacked: 2 written, 0 unchanged" in capsys.readouterr().out


def test_plan_shows_what_complete_runs_took(in_tmp):
    runs = _plan(["gflv2", "t2_k0", "t1_topk"])
    gflv2, gflv1, _ = (r.run_dir for r in runs)
    for folder in (gflv2, gflv1):
        folder.mkdir(parents=True)
    # 2 processes x (3000 + 100 + 500) s = 2.00 device-hours; gflv1 predates the recording
    (gflv2 / "metrics.json").write_text(
        '{"AP": 0.4, "train_seconds": 3000, "lqe_seconds": 100, "eval_seconds": 500}'
    )
    (gflv2 / "env.json").write_text('{"processes": 2}')
    (gflv1 / "metrics.json").write_text('{"AP": 0.4, "eval_seconds": 500}')
    lines = sweep.format_plan(runs, lambda run: 1800.0, "GPU-hours").splitlines()
    assert lines[1].split()[:5] == ["gflv2", "0", "complete", "0.50", "2.00"]
    assert lines[2].split()[:5] == ["gflv1", "0", "complete", "0.50", "t2_k0"]
    assert lines[3].split()[:5] == ["t1_topk", "0", "new", "0.50", "t1_topk"]
    assert lines[-1] == (
        "3 distinct runs (2 complete, 1 of them took 2.0 GPU-hours); estimated 0.5 GPU-hours to go"
    )


def test_bench_times_the_speed_tables_runs_once(in_tmp, capsys):
    from gfl_repro.cli import main

    assert main(["sweep", "8", "--preset", "tiny", "--bench"]) == 0
    runs = _plan(["t6_atss_star", "t6_gflv1", "t6_gflv2"])
    assert all((r.run_dir / "bench_model.json").is_file() for r in runs)
    table8 = pd.read_csv(in_tmp / "results" / "tiny" / "table8.csv")
    assert table8["Inference FPS"].gt(0).all() and table8["Training Hours"].notna().all()
    assert "bench-model: timing 3 run(s)" in capsys.readouterr().out
    extra = _plan(["t2_k1_p64", "t6_gflv2"])  # Table 2 shows no speed: its runs are not timed
    (extra[0].run_dir).mkdir(parents=True)
    (extra[0].run_dir / "metrics.json").write_text("{}")
    assert sweep.unbenched(extra, {"t6_gflv2"}) == []
    assert sweep.unbenched(extra, {"t2_k1_p64"}) == []  # no checkpoint: fresh weights, not timed
    (extra[0].run_dir / "iter_3.pth").write_bytes(b"")
    assert sweep.unbenched(extra, {"t2_k1_p64"}) == [extra[0].run_dir]


def test_a_folder_of_another_config_is_refused(in_tmp):
    run = _plan(["gflv2"])[0]
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "config.json").write_text('{"model": {}}')
    with pytest.raises(RuntimeError, match="another config than the one asked for"):
        _plan(["gflv2"])


def test_a_config_saved_before_a_field_existed_means_its_default(in_tmp):
    run = _plan(["gflv2"])[0]
    run.run_dir.mkdir(parents=True)
    saved = to_dict(run.config)
    del saved["schedule"]["grad_clip"]  # as written by the code before grad_clip existed
    (run.run_dir / "config.json").write_text(json.dumps(saved))
    assert _plan(["gflv2"])[0].run_dir == run.run_dir
    saved["schedule"]["grad_clip"] = 35.0  # another value is another config
    (run.run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RuntimeError, match="another config than the one asked for"):
        _plan(["gflv2"])
    saved["schedule"]["grad_clip"], saved["schedule"]["gone"] = 0.0, 1  # a key the code lacks
    (run.run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RuntimeError, match="another config than the one asked for"):
        _plan(["gflv2"])


def test_submitit_local_executor_trains_a_run(in_tmp):
    pytest.importorskip("submitit", reason="the cluster extra is not installed")
    runs = _plan(["gflv1"])
    jobs = sweep.submit_slurm(runs, "tiny", sweep.SlurmOptions(time_min=10), in_tmp / "slurm",
                              cluster="local")  # fmt: skip
    assert len(jobs) == 1
    metrics = jobs[0].result()
    assert is_complete(runs[0].run_dir) and 0 <= metrics["AP"] <= 1
    assert sweep.submit_slurm(_plan(["gflv1"]), "tiny", sweep.SlurmOptions(), in_tmp / "s2",
                              cluster="local") == []  # complete: nothing submitted  # fmt: skip


def test_generated_sbatch_parameters(in_tmp, monkeypatch):
    submitit = pytest.importorskip("submitit", reason="the cluster extra is not installed")
    fake = in_tmp / "bin"
    fake.mkdir()
    for tool in ("srun", "sbatch"):  # submitit checks that a Slurm client is installed
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
        (fake / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    opts = sweep.SlurmOptions(nodes=2, gpus_per_node=8, cpus_per_task=6, partition="gpu",
                              time_min=720, mem_gb=400)  # fmt: skip
    params = sweep.slurm_parameters(opts, "gfl-coco-1x-gflv2-s0")
    executor = submitit.AutoExecutor(folder=str(in_tmp / "slurm"), cluster="slurm")
    executor.update_parameters(**params)
    text = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --partition=gpu", "#SBATCH --time=720",
                 "#SBATCH --mem=400GB", "#SBATCH --job-name=gfl-coco-1x-gflv2-s0"):  # fmt: skip
        assert line in text, line


def test_dry_run_on_coco_prints_every_table(capsys):
    from gfl_repro.cli import main

    assert main(["sweep", "all", "--preset", "coco-1x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "38 distinct runs (0 complete)" in out and "GPU-hours" in out
    per_run = COSTS["coco-1x"].seconds_per_iter * 8 * 7330 * 12 / 3600  # 8.2 h on 8 GPUs
    assert f"{per_run:.2f}" in out and f"{38 * per_run:.1f} GPU-hours to go" in out


def test_runs_at_once_share_the_cores_unless_threads_are_set(monkeypatch):
    """Two local runs on 8 cores get 4 threads each; one run keeps torch's default; a user's
    OMP_NUM_THREADS wins; each slot gets its own GPU of CUDA_VISIBLE_DEVICES."""
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    env = sweep._device_env(1, jobs=2)
    assert env["OMP_NUM_THREADS"] == "4" and env["CUDA_VISIBLE_DEVICES"] == "5"
    assert "OMP_NUM_THREADS" not in sweep._device_env(0, jobs=1)
    assert sweep._device_env(0, jobs=3)["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert sweep._device_env(0, jobs=2)["OMP_NUM_THREADS"] == "1"


def test_a_slot_takes_the_next_run_as_soon_as_its_own_ends(in_tmp, monkeypatch):
    """Two slots, runs of 0.6, 0.1 and 0.1 s: the third starts when the second ends, before
    the first is done, on the second's GPU; each run sees its own GPU; a failed run is
    returned."""
    import threading
    import time

    durations = {"t1_topk": 0.6, "t1_mean": 0.1, "t1_var": 0.1}
    events, lock = [], threading.Lock()

    class FakeProc:
        def __init__(self, cmd, env):
            self.name = cmd[cmd.index("train") + 1]
            self.folder = Path(cmd[cmd.index("--work-dir") + 1])
            self.gpu = env["CUDA_VISIBLE_DEVICES"]
            with lock:
                events.append(("start", self.name, self.gpu, time.monotonic()))

        def wait(self):
            time.sleep(durations[self.name])
            with lock:
                events.append(("end", self.name, self.gpu, time.monotonic()))
            if self.name == "t1_var":
                return 1
            self.folder.mkdir(parents=True)
            (self.folder / "metrics.json").write_text("{}")  # complete
            return 0

    monkeypatch.setattr(sweep.subprocess, "Popen", FakeProc)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    runs = _plan(["t1_topk", "t1_mean", "t1_var"])
    failed = sweep.run_local(runs, "tiny", lambda run: 1.0, jobs=2)
    assert [r.name for r in failed] == ["t1_var"]
    when = {(kind, name): (gpu, t) for kind, name, gpu, t in events}
    assert when[("start", "t1_var")][1] < when[("end", "t1_topk")][1]
    assert when[("start", "t1_var")][0] == when[("start", "t1_mean")][0]
    assert when[("start", "t1_topk")][0] != when[("start", "t1_mean")][0]


def _runs_taking(monkeypatch, seconds, outcome=lambda name: 0):
    """Fake trainings that each advance a fake clock by ``seconds`` and complete unless
    ``outcome`` (of the experiment's name) is non-zero; returns the clock."""
    now = [0.0]

    class FakeProc:
        def __init__(self, cmd, env):
            self.name = cmd[cmd.index("train") + 1]
            self.folder = Path(cmd[cmd.index("--work-dir") + 1])

        def wait(self):
            now[0] += seconds
            if outcome(self.name):
                return 1
            self.folder.mkdir(parents=True)
            (self.folder / "metrics.json").write_text("{}")
            return 0

    monkeypatch.setattr(sweep.subprocess, "Popen", FakeProc)
    return lambda: now[0]


def test_the_time_left_is_scaled_by_what_the_completed_runs_took(in_tmp, monkeypatch, capsys):
    """Three runs estimated at 10 min that take 15: 30 min left at the start, then the 20 min
    of estimates left times 15/10 = 30, then 10 x 1.5 = 15."""
    clock = _runs_taking(monkeypatch, 900.0)
    runs = _plan(["t1_topk", "t1_mean", "t1_var"])
    assert sweep.run_local(runs, "tiny", lambda run: 600.0, clock=clock) == []
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[run")]
    assert [line.split(" | ")[1] for line in lines] == [
        "0 min elapsed, about 30 min left (estimated)",
        "15 min elapsed, about 30 min left (estimated, x1.50 as the 1 run(s) completed here took)",
        "30 min elapsed, about 15 min left (estimated, x1.50 as the 2 run(s) completed here took)",
    ]


def test_the_time_left_is_shared_among_the_slots_and_a_failed_run_does_not_scale_it(
        in_tmp, monkeypatch, capsys):  # fmt: skip
    """A run that failed ends its estimate without telling how long a complete one takes; two
    slots halve the 30 min of estimates of three runs."""
    clock = _runs_taking(monkeypatch, 900.0, outcome=lambda name: name == "t1_topk")
    runs = _plan(["t1_topk", "t1_mean"])
    assert sweep.run_local(runs, "tiny", lambda run: 600.0, clock=clock) == runs[:1]
    others = _plan(["t1_var", "t1_topk_var", "t1_topk_mean_var"])
    assert sweep.run_local(others, "tiny", lambda run: 600.0, jobs=2, clock=clock) == []
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[run")]
    assert [line.split(", ", 1)[1] for line in lines[:3]] == [
        "about 20 min left (estimated)",
        "about 10 min left (estimated)",  # t1_topk failed: no scaling
        "about 15 min left (estimated)",  # the first of 3 runs on 2 slots
    ]
