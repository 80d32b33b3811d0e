"""Weights & Biases without surprises: decide up front whether a run can go online.

A run with no API key, no network, or ``WANDB_MODE=offline`` logs offline instead of crashing,
hanging or prompting, and says so in one line (with the ``wandb sync`` command for later).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

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
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why W&B must run offline here (a short phrase), or ``None`` when it can go online."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in OFFLINE_MODES:
        return f"WANDB_MODE={mode}"
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
