"""The run folder: one owner of its file names, one env.json schema from every launcher, and
folders written before the schema was one still readable."""

import json

import torch

from experiments.registry import canonical_name, resolve, rows_of
from gfl_repro.cli import main
from gfl_repro.engine.runs import RunFolder, cpu, identity
from gfl_repro.engine.sweep import PlannedRun, train_command


def _folder(tmp_path, env: dict) -> RunFolder:
    run = RunFolder.of("mini", env["experiment"], env["seed"], tmp_path)
    run.path.mkdir(parents=True)
    (run / run.CONFIG).write_text("{}")
    (run / run.ENV).write_text(json.dumps(env))
    return run


def test_folders_of_the_older_schemas_read_the_same_identity(tmp_path):
    local = _folder(tmp_path, {"experiment": "gflv2", "requested": "t1_topk_mean",
                               "preset": "mini", "overrides": [], "seed": 0})  # fmt: skip
    slurm = _folder(tmp_path, {"experiment": "gflv1", "preset": "mini", "seed": 1,
                               "rows": ["t2_k0", "gflv1"]})  # fmt: skip
    assert local.identity == {"preset": "mini", "experiment": "gflv2", "seed": 0,
                              "rows": ["gflv2"], "requested": "t1_topk_mean",
                              "overrides": []}  # fmt: skip
    assert slurm.identity == {"preset": "mini", "experiment": "gflv1", "seed": 1,
                              "rows": ["t2_k0", "gflv1"], "requested": "gflv1",
                              "overrides": []}  # fmt: skip
    assert local.path == tmp_path / "mini" / "gflv2" / "seed0" and local.is_run
    assert not local.is_complete and local.metrics == {}


def test_identity_is_one_schema():
    assert identity("mini", "gflv2", ["t2_k4_p64", "gflv2", "gflv2"]) == {
        "preset": "mini", "experiment": "gflv2", "rows": ["gflv2", "t2_k4_p64"],
        "requested": "gflv2", "overrides": []}  # fmt: skip
    assert identity("mini", "gflv1", requested="t4_gflv1")["rows"] == ["t4_gflv1"]


def test_the_local_sweep_passes_the_rows_a_run_serves(tmp_path):
    run = PlannedRun("gflv2", 0, None, tmp_path / "run", ["t2_k4_p64", "gflv2", "t1_topk_mean"])
    command = train_command(run, "mini")
    assert command[command.index("--rows") + 1] == "gflv2,t1_topk_mean,t2_k4_p64"


def test_train_writes_the_identity_into_env_json(tiny_root, tmp_path):
    run = RunFolder(tmp_path / "run")
    argv = ["train", "gflv2", "--preset", "tiny", "--seed", "3", "--work-dir", str(run.path),
            "--rows", "t1_topk_mean,gflv2", "--set", f"data.root={tiny_root}"]  # fmt: skip
    assert main(argv) == 0
    env = run.env
    assert env["experiment"].startswith("gflv2-") and env["requested"] == "gflv2"  # --set: own name
    assert env["rows"] == ["gflv2", "t1_topk_mean"] and env["seed"] == 3 and env["preset"] == "tiny"
    assert env["overrides"] == [f"data.root={tiny_root}"] and run.is_complete
    assert run.identity["rows"] == env["rows"]
    # the ISA torch's kernels used: float results, so a CPU run's numbers, differ between them
    assert env["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()


def test_the_cpu_record_names_the_generation_from_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\n"
        "processor\t: 1\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\n"
    )
    assert cpu(info)["model"] == "AMD EPYC (family 25, model 17)"


def test_rows_of_are_the_rows_with_one_config():
    rows = rows_of("gflv2", "mini")
    assert rows[0] == "gflv2" == canonical_name("t2_k4_p64", "mini")
    assert {"t1_topk_mean", "t2_k4_p64"} <= set(rows) and "gflv1" not in rows
    assert all(resolve(r, "mini") == resolve("gflv2", "mini") for r in rows)


def test_train_without_overrides_records_every_row_of_its_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tiny preset generates its set under ./data/tiny
    run = RunFolder(tmp_path / "run")
    assert main(["train", "gflv1", "--preset", "tiny", "--work-dir", str(run.path)]) == 0
    assert run.identity["rows"] == sorted(rows_of("gflv1", "tiny"))
    assert {"gflv1", "t2_k0"} <= set(run.identity["rows"])


def test_log_keeps_the_history_that_survived_the_resumes(tmp_path):
    """metrics.jsonl of a run killed twice, as code before 3422b85 wrote it: a first attempt
    from scratch (25, 50) that left no checkpoint, a second from scratch (25 ... 100) killed after
    its checkpoint at 50, then a resume from 50 (75 ... 125) with the final val line."""
    train = [25, 50, 25, 50, 75, 100, 75, 100, 125]
    lines = [{"mode": "train", "iter": i, "loss": n} for n, i in enumerate(train)]
    lines.append({"mode": "val", "iter": 125, "AP": 0.3})
    run = RunFolder(tmp_path)
    (tmp_path / RunFolder.LOG).write_text("".join(json.dumps(x) + "\n" for x in lines))
    kept = run.log("train")
    assert [x["iter"] for x in kept] == [25, 50, 75, 100, 125]
    assert [x["loss"] for x in kept] == [2, 3, 6, 7, 8]  # the second attempt, then the resume
    assert run.log("val") == [lines[-1]] and run.log("lqe") == []
