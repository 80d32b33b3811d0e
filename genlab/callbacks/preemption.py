"""Preemption: SIGTERM (or SIGUSR1, as SLURM sends it) saves a checkpoint and stops the run."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class Preemption(L.Callback):
    """Write ``path`` when Lightning stops training on SIGTERM, so ``--ckpt_path auto`` resumes.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary, on every
    rank; this callback saves the state reached then. Outside SLURM SIGUSR1 is treated as
    SIGTERM, the usual warning of a cluster's time limit. Under SLURM, Lightning handles SIGUSR1
    itself: it writes ``hpc_ckpt_<n>.ckpt`` (wherever the step stands) and requeues the job,
    whose end comes as SIGTERM, landing here; ``--ckpt_path auto`` takes the newer of the two.

    Args:
        path: Checkpoint file to write (the run's ``checkpoints/last.ckpt``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.saved: Path | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Forward SIGUSR1 to the SIGTERM path, unless someone (SLURM requeue) handles it."""
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(usr1) in (signal.SIG_DFL, None):
            signal.signal(usr1, lambda *_: os.kill(os.getpid(), signal.SIGTERM))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        """On SIGTERM, save the state of the last finished step (all ranks take part)."""
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved = self.path

    def state_dict(self) -> dict[str, Any]:
        """Nothing to restore: the callback only reacts to signals."""
        return {}
