"""Callbacks that draw samples from fixed noise: pictures for disk and loggers, sample metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image
from torch import Tensor

from genlab.sharding import draws_here
from genlab.visualize import render, save_rendered

DEFAULT_NUM = {"image": 64, "points": 1000, "tokens": 4}


@contextlib.contextmanager
def fixed_seed(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global RNGs seeded, restoring the training RNG state afterwards.

    Seeding the global generators (not a generator argument) gives every plugin's ``sample``
    the same noise at every call, without the plugin having to accept a generator.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _decoder(trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
    for owner in (pl_module, trainer.datamodule):
        decode = getattr(owner, "decode", None)
        if callable(decode):
            return decode
    return None


class SampleLogger(L.Callback):
    """Every ``every_n_steps`` and at the end of training, draw samples and show them.

    Samples come from the same noise every time (``seed``), so pictures at different steps are
    comparable. They are written to ``<run dir>/samples/`` and logged to W&B (images, or a text
    table for tokens) and TensorBoard. Points are plotted over real points from the training data.

    Args:
        every_n_steps: Trainer steps between two logs; 0 logs only at the end of training.
        num: Number of samples; ``None`` takes 64 images, 1,000 points or 4 texts.
        seed: Seed of the fixed noise.
    """

    def __init__(self, every_n_steps: int = 500, num: int | None = None, seed: int = 0) -> None:
        self.every_n_steps = every_n_steps
        self.num = num
        self.seed = seed
        self._last_bucket = 0
        self._logged_step: int | None = None
        self._real: Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed run goes on logging at the multiples it has not reached yet."""
        if self.every_n_steps > 0:
            self._last_bucket = trainer.global_step // self.every_n_steps

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        """Keep a few real examples to plot next to generated points."""
        if self._real is None and isinstance(batch, dict) and "x" in batch:
            self._real = batch["x"][: self._num(pl_module)].detach().cpu()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log when the step count crosses a multiple of ``every_n_steps``."""
        if self.every_n_steps <= 0:
            return
        # With several optimizers the step count can jump past a multiple, so compare buckets.
        bucket = trainer.global_step // self.every_n_steps
        if bucket > self._last_bucket:
            self._last_bucket = bucket
            self.log_samples(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Always log the final samples (once, if the last step was a logging step too)."""
        if self._logged_step != trainer.global_step:
            self.log_samples(trainer, pl_module)

    def _num(self, pl_module: L.LightningModule) -> int:
        return self.num or DEFAULT_NUM.get(getattr(pl_module, "modality", ""), 64)

    def log_samples(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Draw, render, save and log one set of samples; returns the file written on rank 0."""
        if not draws_here(trainer, pl_module):
            return None
        with fixed_seed(self.seed, pl_module.device):
            samples = pl_module.sample_eval(self._num(pl_module))
        step = self._logged_step = trainer.global_step  # on every rank that drew
        if not trainer.is_global_zero:
            return None
        rendered = render(samples, pl_module.modality, real=self._real,
                          decode=_decoder(trainer, pl_module), title=f"step {step}")
        out = Path(trainer.default_root_dir) / "samples" / f"step_{step:07d}"
        path = save_rendered(rendered, out)
        # The x-axis Lightning logs metrics against: batches, which differs from global_step
        # when a family steps several optimizers per batch (GAN).
        log_step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            _log_to(logger, rendered, log_step)
        return path


def _log_to(logger: Any, rendered: Image.Image | list[str], step: int) -> None:
    if isinstance(logger, WandbLogger):
        if isinstance(rendered, Image.Image):
            logger.log_image("samples", [rendered], step=step)
        else:
            logger.log_text("samples", columns=["step", "text"],
                            data=[[step, text] for text in rendered], step=step)
    elif isinstance(logger, TensorBoardLogger):
        if isinstance(rendered, Image.Image):
            array = torch.from_numpy(np.asarray(rendered)).permute(2, 0, 1)
            logger.experiment.add_image("samples", array, global_step=step)
        else:
            logger.experiment.add_text("samples", "\n\n---\n\n".join(rendered), global_step=step)


class SampleMetrics(L.Callback):
    """At the end of each validation, score generated samples with the data module's metrics.

    A data module opts in by defining ``sample_metrics() -> dict[str, torchmetrics.Metric]``;
    each metric is updated with generated samples and its values are logged as
    ``val/<prefix><name>`` (e.g. ``val/modes_covered`` for the toy data's mode coverage).

    Args:
        num: Samples drawn in total, split across ranks (2,500 is the mode-coverage protocol).
        batch_size: Samples drawn per ``sample`` call.
        seed: Seed of the fixed noise (offset by the rank).
    """

    def __init__(self, num: int = 2500, batch_size: int = 2500, seed: int = 1) -> None:
        self.num = num
        self.batch_size = batch_size
        self.seed = seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Draw samples, update the metrics, log their values."""
        factory = getattr(trainer.datamodule, "sample_metrics", None)
        if trainer.sanity_checking or not callable(factory) or self.num <= 0:
            return
        metrics = {prefix: m.to(pl_module.device) for prefix, m in factory().items()}
        share = -(-self.num // trainer.world_size)
        with fixed_seed(self.seed + trainer.global_rank, pl_module.device):
            for start in range(0, share, self.batch_size):
                samples = pl_module.sample_eval(min(self.batch_size, share - start))
                for metric in metrics.values():
                    metric.update(samples)
        for prefix, metric in metrics.items():
            values = metric.compute()
            values = values if isinstance(values, dict) else {"": values}
            for name, value in values.items():
                pl_module.log(f"val/{prefix}{name}", value.float(), prog_bar=True)
