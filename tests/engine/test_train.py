"""The training engine: resume, DDP equivalence, overrides, non-finite losses, run completion."""

import dataclasses
import json
import os
import socket
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gfl_repro.build import build_model
from gfl_repro.cli import main
from gfl_repro.config import ConfigError, apply_overrides
from gfl_repro.engine.distributed import DistInfo
from gfl_repro.engine.lqe import load_lqe
from gfl_repro.engine.runs import is_complete, recorded_seconds
from gfl_repro.engine.train import NonFiniteLossError, Schedule, Trainer, train_run, train_step
from tests.engine.conftest import tiny_config


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_after_n_of_2n_iterations_equals_2n_straight(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root)
    straight = Trainer(cfg, tmp_path / "a", seed=5, dist=DistInfo())
    total = straight.schedule.total_iters
    assert total == 12  # 12 images, 2 a batch, 2 epochs
    straight.train()

    half = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, max_iters=5))
    first = Trainer(half, tmp_path / "b", seed=5, dist=DistInfo())
    first.train()  # "interrupted" mid-epoch after 5 iterations, checkpoint iter_5.pth
    assert (tmp_path / "b" / "iter_5.pth").is_file()
    torch.manual_seed(1234)  # a resumed process starts with other RNG states
    second = Trainer(cfg, tmp_path / "b", seed=5, dist=DistInfo())
    second.resume(tmp_path / "b" / "iter_5.pth")
    # the training time carries over: what the loop had taken when the checkpoint was written
    saved = torch.load(tmp_path / "b" / "iter_5.pth", weights_only=False)["train_seconds"]
    assert 0 < saved <= first.train_seconds and second.train_seconds == saved
    tic = time.perf_counter()
    second.train()
    assert saved < second.train_seconds <= saved + time.perf_counter() - tic
    assert second.iteration == total
    a, b = _state(straight.model), _state(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    log_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert log_a[-1]["loss"] == log_b[-1]["loss"]


def _fixed_batch(n: int):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 64, 64, generator=gen)
    targets = []
    for i in range(n):
        xy = torch.rand(2, 2, generator=gen) * 30
        wh = torch.rand(2, 2, generator=gen) * 30 + 6
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.tensor([i % 3, 1]),
                        "pad_shape": (64, 64)})  # fmt: skip
    return images, targets


def _steps(model, ddp, images, targets, iters: int = 3) -> list[dict]:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return [train_step(model, ddp, opt, scaler, images, targets, it) for it in range(iters)]


def _ddp_worker(rank: int, port: int, cfg, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    images, targets = _fixed_batch(4)
    mine = slice(2 * rank, 2 * rank + 2)
    losses = _steps(model, ddp, images[mine], targets[mine])
    torch.save({"losses": losses, "state": model.state_dict()}, f"{out_dir}/rank{rank}.pth")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process_with_the_whole_batch(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root)  # the mini model: GroupNorm only, no batch statistics
    torch.manual_seed(0)
    model = build_model(cfg.model)
    images, targets = _fixed_batch(4)
    single = _steps(model, model, images, targets)
    mp.spawn(_ddp_worker, args=(_free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pth", weights_only=False) for r in range(2)]
    for it in range(3):
        for key in single[it]:
            # each process logs its local sum over the process-averaged normaliser: their mean is
            # the one-process loss
            mean = (ranks[0]["losses"][it][key] + ranks[1]["losses"][it][key]) / 2
            assert mean == pytest.approx(single[it][key], rel=1e-4, abs=1e-6), (it, key)
    for key, value in model.state_dict().items():
        assert torch.allclose(ranks[0]["state"][key], value, atol=1e-5), key
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key


def test_unknown_set_keys_and_bad_values_are_rejected(tiny_root):
    cfg = tiny_config(tiny_root)
    with pytest.raises(ConfigError, match="unknown key 'lrate'"):
        apply_overrides(cfg, ["schedule.lrate=0.1"])
    with pytest.raises(ConfigError, match="expected a value of type int"):
        apply_overrides(cfg, ["data.images_per_process=two"])
    with pytest.raises(ConfigError, match="model.quality.kind"):
        apply_overrides(cfg, ["model.quality.kind=centerness"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(cfg, ["schedule.lr"])
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        main(["--debug", "train", "gflv2", "--preset", "mini", "--set", "nope.x=1"])


def test_non_finite_loss_stops_naming_iteration_and_term(tiny_root, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_root)
    cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, checkpoint_every=2))
    trainer = Trainer(cfg, tmp_path, seed=0, dist=DistInfo())
    real = trainer.model.losses

    def poisoned(out, targets):
        losses = real(out, targets)
        if trainer.iteration == 3:
            losses["loss_dfl"] = losses["loss_dfl"] * float("nan")
        return losses

    monkeypatch.setattr(trainer.model, "losses", poisoned)
    with pytest.raises(NonFiniteLossError, match="iteration 3: loss term loss_dfl = nan"):
        trainer.train()
    assert (tmp_path / "iter_2.pth").is_file()  # the last good checkpoint is kept
    assert not (tmp_path / "iter_3.pth").exists() and not (tmp_path / "iter_4.pth").exists()


def test_a_run_is_complete_only_when_its_metrics_file_exists(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root, max_iters=3)
    run = tmp_path / "run"
    assert not is_complete(run)
    tic = time.perf_counter()
    metrics = train_run(cfg, run, seed=0)
    wall = time.perf_counter() - tic
    assert is_complete(run)
    names = {p.name for p in run.iterdir()}
    expected = {"config.json", "env.json", "metrics.jsonl", "detections.json", "iter_3.pth"}
    assert expected | {"lqe.npz", "diagnostics.json"} <= names
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert 0 <= diagnostics["AP_agnostic"] <= 1 and set(diagnostics["tide"]["dAP"]) == {
        "cls", "loc", "both", "dupe", "bkg", "miss"}  # fmt: skip
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["AP"] == metrics["AP"] and 0 <= saved["AP"] <= 1
    parts = [saved["train_seconds"], saved["lqe_seconds"], saved["eval_seconds"]]
    assert min(parts) > 0 and sum(parts) <= wall
    dump = load_lqe(run)  # the gt class ranks first at this share of the val positives
    assert saved["class_first"] == pytest.approx((dump["top_label"] == dump["label"]).mean())
    assert torch.load(run / "iter_3.pth", weights_only=False)["train_seconds"] > 0
    assert recorded_seconds(run) == pytest.approx(sum(parts))  # one process
    (run / "metrics.json").unlink()  # e.g. killed during evaluation
    assert recorded_seconds(run) is None
    assert not is_complete(run)


def test_linear_warmup_and_steps_by_epoch():
    from gfl_repro.config import ScheduleConfig

    s = Schedule(0.01, iters_per_epoch=100, total_iters=1200, cfg=ScheduleConfig())
    assert s.lr_at(0) == pytest.approx(0.01 * 0.001)  # warm-up starts at ratio 0.001
    assert s.lr_at(250) == pytest.approx(0.01 * (1 - 0.5 * 0.999))
    assert s.lr_at(500) == pytest.approx(0.01)
    assert s.lr_at(799) == pytest.approx(0.01) and s.lr_at(800) == pytest.approx(0.001)
    assert s.lr_at(1100) == pytest.approx(0.0001)


class _Linear(torch.nn.Module):
    """loss = w . (30, 40): its gradient is (30, 40), of L2 norm 50, whatever w is."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))

    def forward(self, images):
        return images

    def losses(self, out, targets):
        return {"loss": (self.w * torch.tensor([30.0, 40.0])).sum()}


@pytest.mark.parametrize(("clip", "expected"), [(0.0, [-27.0, -36.0]), (5.0, [0.0, 0.0]),
                                                (100.0, [-27.0, -36.0])])  # fmt: skip
def test_grad_clip_scales_the_total_gradient_norm_down_to_its_limit(clip, expected):
    model = _Linear()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # w <- w - grad
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    train_step(model, model, opt, scaler, torch.zeros(1, 3, 4, 4), [{}], 0, grad_clip=clip)
    # 5 / 50 of the gradient (30, 40) is (3, 4); a limit above the norm 50 leaves it whole
    assert model.w.detach().tolist() == pytest.approx(expected, abs=1e-6)


def test_lqe_every_epoch_logs_a_summary_and_leaves_training_unchanged(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root)  # 2 epochs of 6 iterations
    plain = train_run(cfg, tmp_path / "plain", seed=0)
    runtime = dataclasses.replace(cfg.runtime, lqe_every_epoch=True)
    logged = train_run(dataclasses.replace(cfg, runtime=runtime), tmp_path / "lqe", seed=0)
    assert logged["AP"] == plain["AP"]  # the same weights: training did not notice
    a = torch.load(tmp_path / "plain" / "iter_12.pth", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "lqe" / "iter_12.pth", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(s) for s in (tmp_path / "lqe" / "metrics.jsonl").read_text().splitlines()]
    lqe = [d for d in lines if d["mode"] == "lqe"]
    assert [d["iter"] for d in lqe] == [6, 12] and [d["epoch"] for d in lqe] == [0, 1]
    final = load_lqe(tmp_path / "lqe")  # the end-of-training dump, from the same weights
    assert lqe[-1]["samples"] == len(final)
    assert lqe[-1]["pcc_joint"] == pytest.approx(np.corrcoef(final["joint"], final["iou"])[0, 1])
    assert lqe[-1]["quality_mean"] == pytest.approx(final["quality"].mean())


def test_test_command_writes_its_own_folder_and_leaves_the_run_alone(tiny_root, tmp_path):
    run = tmp_path / "run"
    train_run(tiny_config(tiny_root, max_iters=3), run, seed=0)
    own = {name: (run / name).read_bytes() for name in ("metrics.json", "detections.json")}
    checkpoint = run / "iter_3.pth"
    assert main(["test", str(run), "--checkpoint", str(checkpoint)]) == 0
    assert {name: (run / name).read_bytes() for name in own} == own  # byte-identical
    out = run / "test" / "iter_3"
    assert {"metrics.json", "detections.json", "diagnostics.json", "test.log"} <= {
        p.name for p in out.iterdir()}  # fmt: skip
    tested = json.loads((out / "metrics.json").read_text())
    assert tested["checkpoint"] == str(checkpoint)
    assert tested["AP"] == json.loads(own["metrics.json"])["AP"]  # the same weights


def test_a_missing_data_root_is_an_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "no_such_data"
    argv = ["train", "gflv2", "--work-dir", str(tmp_path / "run"), "--set", f"data.root={missing}"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"gfl-repro: error: data.root = {missing}: no such folder. " \
        "Put the mini data set there or set data.root to where it is; nothing is downloaded at " \
        "run time.\n"  # fmt: skip
    assert not missing.exists()  # nothing generated there
    with pytest.raises(FileNotFoundError, match="no such folder"):  # --debug: the traceback
        main(["--debug", *argv])


def test_metrics_hold_each_iteration_once_after_a_resume(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root)  # 12 iterations, a line every 2, checkpoints at 6 and 12
    run = tmp_path / "run"
    train_run(cfg, run, seed=0)
    (run / "metrics.json").unlink()  # killed after its last checkpoint: resume from iteration 6
    (run / "iter_12.pth").unlink()
    train_run(cfg, run, seed=0, resume="auto")
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [d["iter"] for d in lines if d["mode"] == "train"] == [2, 4, 6, 8, 10, 12]


def _broken_val(tiny_root, tmp_path, how: str):
    """A copy of the tiny data set whose val set is broken in one way."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    ann = root / "annotations" / "instances_val.json"
    data = json.loads(ann.read_text())
    if how == "malformed":
        ann.write_text(ann.read_text()[:-20])  # truncated json
    elif how == "missing image":
        (root / "val" / data["images"][1]["file_name"]).unlink()
    elif how == "unknown category":
        data["annotations"][0]["category_id"] = 999
        ann.write_text(json.dumps(data))
    return root, ann, data


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("malformed", "instances_val.json"),
        ("missing image", "missing image file (image id"),
        ("unknown category", "unknown category id 999"),
    ],  # fmt: skip
)
def test_a_broken_val_set_stops_train_before_the_first_iteration(tiny_root, tmp_path, capsys,
                                                                 how, expected):  # fmt: skip
    root, _, _ = _broken_val(tiny_root, tmp_path, how)
    run = tmp_path / "run"
    argv = ["train", "gflv2", "--preset", "tiny", "--work-dir", str(run), "--set",
            f"data.root={root}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err  # the progress log (INFO lines) may come before the error
    last = err.splitlines()[-1]
    assert last.startswith("gfl-repro: error: ") and expected in last and "Traceback" not in err
    assert not list(run.glob("iter_*.pth"))  # no iteration ran
    log = (run / "train.log").read_text()
    assert "ERROR run failed" in log and expected in log and "Traceback" in log


def test_a_broken_val_set_stops_the_sweep_before_any_run(tiny_root, tmp_path, capsys, monkeypatch):
    root, _, _ = _broken_val(tiny_root, tmp_path, "missing image")
    monkeypatch.chdir(tmp_path)
    from experiments import presets

    tiny = presets.PRESETS["tiny"]
    monkeypatch.setitem(presets.PRESETS, "tiny", lambda: dataclasses.replace(
        tiny(), data=dataclasses.replace(tiny().data, root=str(root))))  # fmt: skip
    assert main(["sweep", "main", "--preset", "tiny"]) == 2
    assert "missing image file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
