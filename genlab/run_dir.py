"""One directory per run, ``<root>/<name>/version_<n>/``: config, checkpoints, samples, logs."""

from __future__ import annotations

import os
from pathlib import Path

from genlab.errors import GenlabError

# Set by the launching process so that DDP workers it spawns write into the same directory.
RUN_DIR_ENV = "GENLAB_RUN_DIR"


def _is_spawned_worker() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def claim_run_dir(root: str | Path, name: str, version: str | None = None) -> Path:
    """Create and return a fresh run directory, or the one given explicitly by ``version``.

    ``version_<n>`` is taken with an exclusive ``mkdir``, so concurrent runs never share one.
    Worker processes launched by this run inherit its directory through ``GENLAB_RUN_DIR``.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and _is_spawned_worker():
        return Path(inherited)
    parent = Path(root) / name
    try:
        run_dir = _make_run_dir(parent, version)
    except OSError as err:
        raise GenlabError(f"--run.root {root}: cannot create {err.filename or parent} "
                          f"({err.strerror or type(err).__name__}); give a directory you can "
                          f"write to, e.g. --run.root runs") from err
    run_dir = run_dir.resolve()  # one spelling, so a resumed run's checkpoint state matches
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def _make_run_dir(parent: Path, version: str | None) -> Path:
    if version is not None:
        run_dir = parent / version
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    parent.mkdir(parents=True, exist_ok=True)
    n = len(list(parent.glob("version_*")))
    while True:
        run_dir = parent / f"version_{n}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1


def latest_checkpoint(root: str | Path, name: str) -> Path | None:
    """``checkpoints/last.ckpt`` of the newest version of run ``name`` that has one."""
    def version_number(path: Path) -> int:
        suffix = path.parent.parent.name.removeprefix("version_")
        return int(suffix) if suffix.isdigit() else -1

    found = sorted(Path(root, name).glob("*/checkpoints/last.ckpt"), key=version_number)
    return found[-1] if found else None


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run directory ``<root>/<name>/<version>`` a checkpoint sits in, if it is in one."""
    path = Path(checkpoint).resolve()
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None
