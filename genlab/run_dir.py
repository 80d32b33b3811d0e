"""One directory per run, ``<root>/<name>/version_<n>/``: config, checkpoints, samples, logs."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

from genlab.errors import GenlabError
from genlab.launch import Launch, current_launch

# Set by the launching process so that DDP workers it spawns write into the same directory.
RUN_DIR_ENV = "GENLAB_RUN_DIR"
# How long the other ranks of a launch wait for rank 0's claim (it starts with the same imports).
CLAIM_TIMEOUT_S = float(os.environ.get("GENLAB_CLAIM_TIMEOUT", "300"))


def _is_spawned_worker() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def _fresh_version(parent: Path) -> Path:
    """The next free ``version_<n>``, taken with an exclusive ``mkdir``: runs never share one."""
    parent.mkdir(parents=True, exist_ok=True)
    n = len(list(parent.glob("version_*")))
    while True:
        run_dir = parent / f"version_{n}"
        try:
            run_dir.mkdir()
            return run_dir.resolve()  # one spelling, so a resumed run's checkpoint state matches
        except FileExistsError:
            n += 1


def _claim_file(parent: Path, stage: str, launch: Launch) -> Path:
    return parent / f".claim-{stage}-{launch.job_id}-{launch.command}.json"


def _recorded(parent: Path, stage: str, launch: Launch) -> Path | None:
    """The directory an earlier start of this job claimed (a requeue lands in it again)."""
    if launch.job_id is None:
        store = _store(launch) if launch.store is not None else None
        key = _store_key(parent, stage)
        if store is not None and store.check([key]):  # an elastic restart of the same launch
            return Path(store.get(key).decode())
        return None
    try:
        claim = json.loads(_claim_file(parent, stage, launch).read_text())
    except (OSError, ValueError):
        return None
    run_dir = Path(claim["run_dir"])
    return run_dir if run_dir.is_dir() else None


def _publish(parent: Path, stage: str, launch: Launch, run_dir: Path) -> None:
    """Rank 0 tells the other ranks (and later starts of the job) which directory it took."""
    if launch.job_id is not None:  # a shared filesystem: written whole, then renamed
        claim = _claim_file(parent, stage, launch)
        tmp = claim.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"run_dir": str(run_dir), "attempt": launch.attempt}))
        os.replace(tmp, claim)
    if launch.store is not None:
        _store(launch).set(_store_key(parent, stage), str(run_dir))


def _store(launch: Launch):  # noqa: ANN202 (torch's TCPStore, imported here: torch is slow)
    from torch.distributed import TCPStore

    host, port = launch.store
    return TCPStore(host, port, is_master=False, timeout=timedelta(seconds=CLAIM_TIMEOUT_S))


def _store_key(parent: Path, stage: str) -> str:
    return f"genlab/run_dir/{stage}/{parent.resolve()}"


def _wait_for_claim(parent: Path, stage: str, launch: Launch) -> Path:
    """A rank other than 0 takes the directory rank 0 claimed for this start of the launch."""
    if launch.store is not None:  # torchrun: its store answers once rank 0 has set the key
        try:
            return Path(_store(launch).get(_store_key(parent, stage)).decode())
        except RuntimeError as err:
            raise GenlabError(f"rank {launch.rank} waited {CLAIM_TIMEOUT_S:.0f} s for rank 0 to "
                              f"claim a run directory under {parent} and got none ({err}); "
                              f"see rank 0's error, or raise GENLAB_CLAIM_TIMEOUT") from None
    claim, deadline = _claim_file(parent, stage, launch), time.monotonic() + CLAIM_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            record = json.loads(claim.read_text())
            if record["attempt"] == launch.attempt:
                return Path(record["run_dir"])
        except (OSError, ValueError, KeyError):
            pass  # not written yet
        time.sleep(0.2)
    raise GenlabError(f"rank {launch.rank} waited {CLAIM_TIMEOUT_S:.0f} s for rank 0 of job "
                      f"{launch.job_id} to write {claim}; see rank 0's error, or check that "
                      f"--run.root is on a filesystem all nodes share (or raise "
                      f"GENLAB_CLAIM_TIMEOUT)")


def claim_run_dir(root: str | Path, name: str, version: str | None = None,
                  stage: str = "fit") -> Path:
    """Create and return the run directory ``<root>/<name>/version_<n>`` of this launch.

    ``version`` names it explicitly. Otherwise one process takes a fresh ``version_<n>``; under a
    launcher that starts every rank itself, rank 0 takes it and the others wait for its choice
    (torchrun: through torchrun's store; SLURM: through ``<root>/<name>/.claim-<stage>-<job
    id>-<command digest>.json``, which a requeued job, keeping its job id and command, finds
    again). Worker processes that
    Lightning starts inherit the directory through ``GENLAB_RUN_DIR``.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and _is_spawned_worker():
        return Path(inherited)
    parent = Path(root) / name
    launch = current_launch()
    try:
        if version is not None:
            run_dir = (parent / version).resolve()
            run_dir.mkdir(parents=True, exist_ok=True)
        elif launch.external and launch.rank > 0:
            run_dir = _wait_for_claim(parent, stage, launch)
        else:
            run_dir = _recorded(parent, stage, launch) or _fresh_version(parent)
            if launch.external:
                _publish(parent, stage, launch, run_dir)
    except OSError as err:
        raise GenlabError(f"--run.root {root}: cannot create {err.filename or parent} "
                          f"({err.strerror or type(err).__name__}); give a directory you can "
                          f"write to, e.g. --run.root runs") from err
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def _version_number(run_dir: Path) -> int:
    suffix = run_dir.name.removeprefix("version_")
    return int(suffix) if suffix.isdigit() else -1


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's newest resumable checkpoint, by modification time.

    That is ``checkpoints/last.ckpt`` or, if written later, one of Lightning's SLURM auto-requeue
    checkpoints (``hpc_ckpt_<n>.ckpt`` in the run directory).
    """
    run_dir = Path(run_dir)
    found = [p for p in (run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt"))
             if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def latest_checkpoint(root: str | Path, name: str) -> Path | None:
    """The newest checkpoint (``newest_checkpoint``) of the newest version of ``name`` with one."""
    versions = sorted((p for p in Path(root, name).glob("*") if p.is_dir()), key=_version_number)
    for run_dir in reversed(versions):
        found = newest_checkpoint(run_dir)
        if found is not None:
            return found
    return None


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run directory ``<root>/<name>/<version>`` a checkpoint sits in, if it is in one."""
    path = Path(checkpoint).resolve()
    # checkpoints/*.ckpt, or Lightning's hpc_ckpt_<n>.ckpt beside config.yaml
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if run_dir != path.parent.parent and not path.name.startswith("hpc_ckpt_"):
        return None
    return run_dir if (run_dir / "config.yaml").is_file() else None
