"""Weights & Biases without surprises: decide up front whether a run can go online.

A run with no API key, no network, or ``WANDB_MODE=offline`` logs offline instead of crashing,
hanging or prompting, and says so in one line (with the ``wandb sync`` command for later).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

OFFLINE_MODES = ("offline", "dryrun", "disabled")
DEFAULT_HOST = "https://api.wandb.ai"


def _has_credentials() -> bool:
    import wandb

    # prompt=False reads env, settings and .netrc without ever asking; verify=False stays local.
    try:
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:
        return False


def _reachable(url: str, timeout: float) -> bool:
    # An HTTP answer, not just a TCP connection: a proxy or firewall that accepts connections
    # and never replies would otherwise let wandb.init hang for its 90 s before failing.
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:  # any HTTP status is an answer
        return True
    except (OSError, ValueError):  # refused, timed out, unresolvable, malformed URL
        return False


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why W&B must run offline here (a short phrase), or ``None`` when it can go online."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in OFFLINE_MODES:
        return f"WANDB_MODE={mode}"
    return server_problem(timeout)


def server_problem(timeout: float = 3.0) -> str | None:
    """Why the W&B server cannot be used from here (no key, unreachable), or ``None``."""
    if not _has_credentials():
        return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    host = os.environ.get("WANDB_BASE_URL", DEFAULT_HOST)
    if not _reachable(host, timeout):
        return f"{host} is not reachable"
    return None


def offline_message(reason: str, save_dir: str) -> str:
    """The one line printed when a run goes offline."""
    return (
        f"W&B offline: {reason}. Logging to {save_dir}/wandb; upload later with "
        f"`wandb sync {save_dir}/wandb/offline-run-*`"
    )


def git_commit(path: str | os.PathLike = ".") -> str | None:
    """The commit of the git working tree holding ``path`` (``+dirty`` when it has changes)."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=path, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


def hardware() -> dict[str, object]:
    """What the run ran on: CPU, core count, GPUs, torch and CUDA versions."""
    import platform

    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "gpus": gpus, "torch": str(torch.__version__), "cuda": torch.version.cuda,
            "python": platform.python_version()}


def run_metadata(model: object) -> dict[str, object]:
    """The versions of genlab and the model plugin, the git commit and the hardware of a run."""
    import genlab
    from genlab.registry import origin

    return {"genlab_version": genlab.__version__, "plugin": origin(type(model)),
            "git_commit": git_commit(), "hardware": hardware()}


def wandb_run(loggers: list[object]) -> dict[str, str] | None:
    """Id, project, directory and group of the W&B run among ``loggers`` (kept in checkpoints)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger.version:
            return {"id": str(logger.version), "project": str(logger.name or ""),
                    "save_dir": str(logger.save_dir or ""),
                    "group": str(logger._wandb_init.get("group") or "")}
    return None
