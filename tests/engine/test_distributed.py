"""Process-group environment: torchrun, Slurm, or alone."""

from gfl_repro.engine import distributed as d


def test_alone_when_no_launcher(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    assert d._env_ranks() is None
    info = d.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)


def test_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert d._env_ranks() == (3, 8, 1)


def test_slurm_environment_and_master_host(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08],gpu11")
    assert d._env_ranks() == (5, 16, 1)
    assert d.os.environ["MASTER_ADDR"] == "gpu07"
    monkeypatch.setenv("SLURM_NTASKS", "1")  # a one-task Slurm job runs alone
    assert d._env_ranks() is None
