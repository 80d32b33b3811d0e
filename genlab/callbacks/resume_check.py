"""Refuse a resume whose learning-rate schedulers are not the ones its checkpoint saved."""

from __future__ import annotations

from typing import Any

import lightning as L

from genlab.errors import GenlabError


class ScheduleCheck(L.Callback):
    """Before Lightning restores a checkpoint's schedulers, check that the config makes the same.

    Lightning pairs saved and configured schedulers by position: a config with fewer or more of
    them than the checkpoint (``lr_schedule: constant`` resumed as ``cosine``) silently restarts
    or drops a schedule, and one of another kind (a cosine resumed as a two-phase ``LambdaLR``)
    fails deep in torch with a bare ``KeyError``. Both become one ``GenlabError`` here.
    """

    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] | None = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Keep the saved schedulers' states (optimizers do not exist yet at this point)."""
        self.saved = checkpoint.get("lr_schedulers")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compare, after the optimizers are built and before their states are restored."""
        if self.saved is None:
            return
        configured = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        same = len(configured) == len(self.saved) and all(
            set(now) == set(then) for now, then in zip(configured, self.saved))
        if not same:
            raise GenlabError(
                f"{trainer.ckpt_path} was trained with another learning-rate schedule "
                f"({len(self.saved)} scheduler(s) saved, the config makes {len(configured)}, "
                f"or of another kind): resume it with the schedule options it was started with "
                f"(its hyperparameters hold them), or start a new run")
