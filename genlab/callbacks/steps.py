"""What a step is for the user: one iteration is one training batch, whatever the family.

Lightning's ``trainer.global_step`` counts optimizer steps, so a GAN (a D and a G step per batch)
reaches ``max_steps`` after half as many batches. The progress bar, the ``train/iteration``
metric (W&B's x-axis) and checkpoint names all count batches instead; ``trainer.max_steps``
keeps Lightning's meaning.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import WandbLogger

ITERATION = "train/iteration"
# ModelCheckpoint's file name when the config gives none: epoch and iteration, not optimizer step.
CHECKPOINT_FILENAME = "epoch={epoch}-iteration={" + ITERATION + ":.0f}"
# The bar redraws at most this often (and at an epoch's or the run's last batch).
REDRAW_SECONDS = 0.1


def iteration(trainer: L.Trainer) -> int:
    """Training batches that stepped so far: the x-axis Lightning logs metrics against."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


class IterationLog(Callback):
    """Log ``train/iteration`` (batches done) and make it W&B's step metric for every chart."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Declare ``train/iteration`` the x-axis of every W&B chart (no-op on other ranks)."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                logger.experiment.define_metric(ITERATION)
                logger.experiment.define_metric("*", step_metric=ITERATION, step_sync=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log the batches done, this one included (Lightning counts it after this hook)."""
        pl_module.log(ITERATION, float(iteration(trainer) + 1), on_step=True, on_epoch=False,
                      batch_size=1)


class IterationBar(RichProgressBar):
    """Lightning's rich bar counting batches up to where ``max_steps`` stops the run.

    The optimizer steps a batch makes are measured as training goes (estimated from the number
    of optimizers before the first batch), so the bar of a GAN ends at its batches, not at half
    of ``max_steps``. Without an epoch limit the description reads ``Epoch n``, not ``n/-2``.
    It updates at most every ``REDRAW_SECONDS``: Lightning's reads the metrics every batch and
    redraws up to ``refresh_rate`` (100) times a second, which at GPU speed is a share of each
    step that no one can read.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remember where the run (re)starts, to measure optimizer steps per batch."""
        super().on_train_start(trainer, pl_module)
        self._start_step, self._batches = trainer.global_step, 0

    def _steps_per_batch(self) -> float:
        trainer = self.trainer
        steps = trainer.global_step - getattr(self, "_start_step", 0)
        if getattr(self, "_batches", 0) > 0 and steps > 0:
            return steps / self._batches
        if not trainer.lightning_module.automatic_optimization:
            return float(max(len(trainer.optimizers), 1))
        return 1.0 / trainer.accumulate_grad_batches

    def _total(self, done: int) -> int | float:
        """Batches of this epoch, cut where ``max_steps`` ends the run, ``done`` of them done."""
        trainer = self.trainer
        batches = trainer.num_training_batches
        if trainer.max_steps is None or trainer.max_steps < 0:
            return batches
        left = math.ceil(max(trainer.max_steps - trainer.global_step, 0) / self._steps_per_batch())
        return min(batches, done + left)

    @property
    def total_train_batches(self) -> int | float:
        """Batches of this epoch, cut where ``max_steps`` ends the run."""
        return self._total(self.trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Advance the bar at most every ``REDRAW_SECONDS`` and at the last batch.

        An update (reading the metrics, then a redraw in rich's thread) costs a fraction of a
        millisecond, a share of a fast run's step.
        """
        self._batches = getattr(self, "_batches", 0) + 1
        self._pending = batch_idx + 1
        now = time.monotonic()
        if now - getattr(self, "_drawn_at", -math.inf) >= REDRAW_SECONDS or (
                self._total(batch_idx + 1) <= batch_idx + 1):
            self._drawn_at = now
            self._draw_pending(trainer, pl_module)

    def _draw_pending(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Draw the batches done, correcting the total as the steps per batch are measured."""
        done, self._pending = getattr(self, "_pending", None), None
        if done is None:
            return
        if self.progress is not None and self.train_progress_bar_id is not None:
            total = self._total(done)
            if not math.isinf(total):
                self.progress.update(self.train_progress_bar_id, total=total)
        # Lightning's bar reads only the batch index of these arguments.
        super().on_train_batch_end(trainer, pl_module, None, None, done - 1)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Show the training batches done before validation's bar appears."""
        self._draw_pending(trainer, pl_module)
        super().on_validation_start(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Show the epoch's last batches (their draw may have been skipped)."""
        self._draw_pending(trainer, pl_module)
        super().on_train_epoch_end(trainer, pl_module)

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            text += f"/{self.trainer.max_epochs - 1}"
        return f"{text:{len(self.validation_description)}}"  # padded as Lightning's, no flicker


def count_iterations(trainer: L.Trainer) -> None:
    """Make a built trainer count iterations, as users read steps.

    Logs ``train/iteration``, names checkpoints by it (unless a ``ModelCheckpoint`` has its own
    ``filename``) and puts ``IterationBar`` in place of Lightning's rich bar (keeping its theme,
    console and a refresh rate of at most ``1 / REDRAW_SECONDS`` per second).
    """
    trainer.callbacks.append(IterationLog())
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.filename is None:
            callback.filename, callback.auto_insert_metric_name = CHECKPOINT_FILENAME, False
    for i, bar in enumerate(trainer.callbacks):
        if type(bar) is RichProgressBar:
            # Rich's thread wakes refresh_rate times a second; the bar asks for a redraw at
            # most 1 / REDRAW_SECONDS times a second, so more wake-ups would only cost CPU.
            rate = min(bar.refresh_rate, max(1, round(1 / REDRAW_SECONDS)))
            trainer.callbacks[i] = IterationBar(refresh_rate=rate, leave=bar._leave,
                                                theme=bar.theme, console_kwargs=bar._console_kwargs)
