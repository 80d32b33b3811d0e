"""Who started this process: a launcher's rank and job id, and what the machine can hold.

A launcher (``torchrun``, SLURM's ``srun``) starts every rank itself, so nothing rank 0 decides
before the process group exists reaches the others unless it is shared some other way: through
torchrun's own key-value store, or a small file next to the runs, keyed by the scheduler's job id
(which a requeued job keeps). ``genlab.run_dir`` uses this to give all ranks one run directory.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from typing import Any

from genlab.errors import GenlabError

# Resident memory of one CPU training process (torch imported, a small model): about 0.5 GiB.
PROCESS_GIB = 0.6
# More processes than this many per core only time-slice the same cores.
PROCESSES_PER_CORE = 4


@dataclass(frozen=True)
class Launch:
    """How this process was started.

    Attributes:
        rank: Global rank (0 when no launcher started it).
        job_id: The scheduler's job id, shared by all ranks and kept by a requeue (SLURM), or
            ``None``.
        attempt: Differs between starts of the same job (requeue, another ``srun`` step), so
            that ranks never read a claim left by an earlier start.
        store: ``(host, port)`` of torchrun's agent store, which every rank can reach.
        command: A digest of the command line: within one job, one command is one run (a
            requeue repeats it; a sweep of commands in one job gets a run each).
    """

    rank: int
    job_id: str | None
    attempt: str
    store: tuple[str, int] | None
    command: str = ""

    @property
    def external(self) -> bool:
        """Whether a launcher started the ranks (so each one claims its run directory itself)."""
        return self.job_id is not None or self.store is not None


def _slurm_job_id() -> str | None:
    """The SLURM job id (``<array job>_<task>`` for an array), as Lightning's requeue names it.

    ``None`` outside a job, and in an interactive allocation (job name ``bash`` or
    ``interactive``, where Lightning does not treat the shell as SLURM either): there every
    ``genlab fit`` typed by hand is a run of its own.
    """
    env = os.environ
    if "SLURM_JOB_ID" not in env or env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def current_launch() -> Launch:
    """Read this process's launcher from the environment (torchrun, SLURM, Lightning, none)."""
    env = os.environ
    job_id = _slurm_job_id()
    if "RANK" in env:  # torchrun, or any launcher that sets the usual variables
        rank = int(env["RANK"])
    elif job_id is not None and "SLURM_PROCID" in env:
        rank = int(env["SLURM_PROCID"])
    else:  # Lightning's own launcher marks the processes it starts with these
        rank = int(env.get("LOCAL_RANK", "0")) or int(env.get("NODE_RANK", "0"))
    store = None
    if env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and "MASTER_ADDR" in env:
        store = (env["MASTER_ADDR"], int(env["MASTER_PORT"]))
    attempt = ".".join(env.get(var, "0") for var in (
        "SLURM_STEP_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT"))
    command = hashlib.sha1("\0".join(sys.argv[1:]).encode()).hexdigest()[:8]
    return Launch(rank=rank, job_id=job_id, attempt=attempt, store=store, command=command)


def _available_gib() -> float:
    """Memory available to new processes (``MemAvailable``; free pages where it is missing)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def cpu_process_limit() -> tuple[int, str]:
    """How many CPU training processes this machine can hold, and which resource sets it."""
    cores = os.cpu_count() or 1
    by_memory = int(_available_gib() / PROCESS_GIB)
    by_cores = max(2, PROCESSES_PER_CORE * cores)
    if by_memory < by_cores:
        return by_memory, f"{_available_gib():.0f} GiB available at ~{PROCESS_GIB} GiB a process"
    return by_cores, f"{cores} CPU cores ({PROCESSES_PER_CORE} processes a core at most)"


def _wants_cpu(accelerator: Any) -> bool:
    if accelerator in (None, "auto"):
        import torch

        return not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return str(accelerator) == "cpu"


def check_cpu_processes(trainer_cfg: Any) -> None:
    """Refuse, before Lightning starts them, more CPU processes than the machine can hold.

    Lightning accepts ``--trainer.devices N`` on CPU for any N and starts N processes of about
    half a GiB each; too many swap for minutes before anything fails. Processes a launcher
    started already exist, so only Lightning's own start is checked.
    """
    devices, launch = trainer_cfg.get("devices"), current_launch()
    if launch.external or launch.rank != 0 or not _wants_cpu(trainer_cfg.get("accelerator")):
        return  # a launcher's processes exist already; Lightning's own were checked by rank 0
    try:
        count = int(devices)
    except (TypeError, ValueError):
        return  # "auto" (one process on CPU) or a list of ids
    limit, reason = cpu_process_limit()
    limit = max(limit, 1)
    if count > limit:
        raise GenlabError(f"--trainer.devices {count} on CPU starts {count} processes, but this "
                          f"machine holds at most {limit} ({reason}); use --trainer.devices "
                          f"{limit} or fewer, or GPUs / more machines (--trainer.num_nodes)")
