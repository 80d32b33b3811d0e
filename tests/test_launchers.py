"""Launchers that start every rank themselves (torchrun, SLURM's srun): one run directory, one
config, one W&B run, and a requeued SLURM job resuming in place, bitwise the uninterrupted run.

The commands are the README's torchrun line and ``examples/slurm/train.sbatch`` as shipped, on CPU
with 2 processes; ``srun`` and ``scontrol`` are stand-ins that set what SLURM would.
"""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from genlab.errors import GenlabError
from genlab.run_dir import RUN_DIR_ENV, claim_run_dir, newest_checkpoint

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "examples/slurm/train.sbatch"
GENLAB = Path(sys.executable).parent / "genlab"
JOB_ID = "4242"


class Preempt(L.Callback):
    """Record the cluster environment Lightning detected; at ``step`` of a job's first start, do
    what SLURM does before a time limit: SIGUSR1 to every task, then the requeue's SIGTERM."""

    def __init__(self, record: str, step: int | None = None) -> None:
        self.record, self.step = Path(record), step

    def on_train_start(self, trainer, pl_module):
        start = os.environ.get("SLURM_RESTART_COUNT", "0")
        env = type(trainer.strategy.cluster_environment).__name__
        (self.record / f"start{start}-rank{trainer.global_rank}").write_text(env)

    def on_train_batch_end(self, trainer, *args):
        first_start = os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
        if self.step is not None and first_start and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)  # every rank signals itself at the same step
            os.kill(os.getpid(), signal.SIGTERM)


def overrides(tmp_path: Path, step: int | None = None) -> list[str]:
    """Test-sized settings on top of the shipped command (a tiny fit, no validation)."""
    (tmp_path / "record").mkdir(exist_ok=True)
    cfg = {"trainer": {"max_steps": 12, "limit_val_batches": 0, "enable_progress_bar": False,
                       "enable_model_summary": False, "callbacks": [{
                           "class_path": "tests.test_launchers.Preempt",
                           "init_args": {"record": str(tmp_path / "record"), "step": step}}]},
           "data": {"init_args": {"batch_size": 32, "train_size": 256}},
           "samples": {"every_n_steps": 0}}
    path = tmp_path / "test_sized.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["--config", str(path), "--run.root", str(tmp_path / "runs")]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in ("RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONPATH=str(REPO), **extra)
    return env


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 12
    return ckpt["state_dict"]


def one_run(root: Path) -> Path:
    """The only run under ``root``: one version, one config, one checkpoint directory."""
    [name] = root.iterdir()  # the run's name: the last config file's stem
    versions = [p for p in name.iterdir() if p.is_dir()]
    assert [p.name for p in versions] == ["version_0"], versions
    assert len(list(root.rglob("config.yaml"))) == 1
    assert len([p for p in root.rglob("checkpoints") if p.is_dir()]) == 1
    return versions[0]


def wandb_ids(run_dir: Path) -> set[str]:
    return {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}


def readme_command(prefix: str) -> str:
    lines = [ln for ln in (REPO / "README.md").read_text().splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, f"README has {len(lines)} lines starting {prefix!r}"
    return lines[0]


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory):
    """The README's torchrun command, uninterrupted: the reference for the requeued job."""
    tmp_path = tmp_path_factory.mktemp("torchrun")
    command = readme_command("torchrun ").replace("$(which genlab)", str(GENLAB))
    argv = [sys.executable, "-m", "torch.distributed.run", *shlex.split(command)[1:]]
    done = run(argv + overrides(tmp_path), environment())
    return tmp_path, done.stdout + done.stderr


def test_torchrun_ranks_share_one_run(torchrun_run):
    tmp_path, output = torchrun_run
    run_dir = one_run(tmp_path / "runs")
    assert sorted(p.name for p in (tmp_path / "record").iterdir()) == ["start0-rank0",
                                                                        "start0-rank1"]
    assert {p.read_text() for p in (tmp_path / "record").iterdir()} == {
        "TorchElasticEnvironment"}
    assert output.count("W&B offline") == 1
    assert len(wandb_ids(run_dir)) == 1
    assert "Restoring states" not in output  # --ckpt_path auto on a new run: a fresh start
    weights(run_dir)


def fake_slurm_tools(bin_dir: Path) -> None:
    """``srun`` starting SLURM_NTASKS tasks with their ids; ``scontrol`` noting its arguments."""
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f"""#!{sys.executable}
import os, subprocess, sys
tasks = [subprocess.Popen(sys.argv[1:], env={{**os.environ, "SLURM_PROCID": str(r),
                                             "SLURM_LOCALID": str(r), "SLURM_NODEID": "0"}})
         for r in range(int(os.environ["SLURM_NTASKS"]))]
sys.exit(max(t.wait() for t in tasks))
""")
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_requeued_slurm_job_resumes_in_place_bitwise(tmp_path, torchrun_run):
    srun_line = [ln for ln in SBATCH.read_text().splitlines() if ln.startswith("srun ")]
    assert srun_line == [readme_command("srun ")]  # the README shows the tested line
    fake_slurm_tools(tmp_path / "bin")
    env = environment(
        PATH=f"{tmp_path / 'bin'}:{GENLAB.parent}:{os.environ['PATH']}", ACCELERATOR="cpu",
        SLURM_JOB_ID=JOB_ID, SLURM_JOB_NAME="genlab", SLURM_NTASKS="2", SLURM_NNODES="1",
        SLURM_NTASKS_PER_NODE="2", SLURM_NODELIST="localhost", MASTER_PORT=str(free_port()),
        SCONTROL_LOG=str(tmp_path / "scontrol.log"))
    argv = ["bash", str(SBATCH), *overrides(tmp_path, step=6)]
    first = run(argv, env)
    run_dir = one_run(tmp_path / "runs")
    assert {p.read_text() for p in (tmp_path / "record").iterdir()} == {"SLURMEnvironment"}
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", JOB_ID]
    assert (run_dir / "hpc_ckpt_1.ckpt").is_file()  # Lightning's auto-requeue checkpoint
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
    assert first.stderr.count("W&B offline") == 1

    env.update(SLURM_RESTART_COUNT="1", MASTER_PORT=str(free_port()))  # as SLURM sets on requeue
    second = run(argv, env)
    assert one_run(tmp_path / "runs") == run_dir
    assert re.search(r"Restoring states from the checkpoint path at \S+/last.ckpt",
                     second.stdout + second.stderr)
    assert len(wandb_ids(run_dir)) == 1  # the same W&B run, continued
    reference = weights(one_run(torchrun_run[0] / "runs"))
    resumed = weights(run_dir)
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key


@pytest.fixture
def slurm_rank(monkeypatch):
    def become(rank: int, restart: str = "0"):
        for var in ("RANK", "LOCAL_RANK", "TORCHELASTIC_USE_AGENT_STORE", RUN_DIR_ENV):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("SLURM_JOB_ID", JOB_ID)
        monkeypatch.setenv("SLURM_JOB_NAME", "genlab")
        monkeypatch.setenv("SLURM_PROCID", str(rank))
        monkeypatch.setenv("SLURM_RESTART_COUNT", restart)
    return become


def test_ranks_take_rank_zeros_claim_and_a_requeue_finds_it(tmp_path, slurm_rank, monkeypatch):
    import genlab.run_dir

    monkeypatch.setattr(genlab.run_dir, "CLAIM_TIMEOUT_S", 0.5)
    slurm_rank(1)
    with pytest.raises(GenlabError, match="waited 0 s for rank 0 of job 4242"):
        claim_run_dir(tmp_path, "run")
    slurm_rank(0)
    run_dir = claim_run_dir(tmp_path, "run")
    slurm_rank(1)
    assert claim_run_dir(tmp_path, "run") == run_dir
    slurm_rank(0, restart="1")  # the requeued job: same id, same directory
    assert claim_run_dir(tmp_path, "run") == run_dir
    slurm_rank(1, restart="1")
    assert claim_run_dir(tmp_path, "run") == run_dir
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--model.init_args.lr", "0.1"])
    slurm_rank(0, restart="1")
    assert claim_run_dir(tmp_path, "run") != run_dir  # another command of the job: another run
    claims = sorted(p.name for p in (tmp_path / "run").glob(".claim-*"))
    assert len(claims) == 2 and all(c.startswith(f".claim-fit-{JOB_ID}-") for c in claims)


def test_auto_takes_lightnings_hpc_checkpoint_when_it_is_newer(tmp_path):
    last = tmp_path / "checkpoints/last.ckpt"
    last.parent.mkdir()
    assert newest_checkpoint(tmp_path) is None
    last.write_bytes(b"")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"")
    os.utime(last, ns=(1, 1_000_000_000))
    os.utime(hpc, ns=(1, 2_000_000_000))
    assert newest_checkpoint(tmp_path) == hpc
    os.utime(last, ns=(1, 3_000_000_000))
    assert newest_checkpoint(tmp_path) == last
