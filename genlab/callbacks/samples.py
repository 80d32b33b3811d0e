"""Callbacks that draw samples from fixed noise: pictures for disk and loggers, sample metrics."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from PIL import Image
from torch import Tensor

from genlab.modality import log_rendered, modality_of
from genlab.recipes import sample_labels
from genlab.sharding import draws_here
from genlab.visualize import save_rendered


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


def _labels(pl_module: L.LightningModule, num: int) -> Tensor | None:
    """Classes in turn for a conditional model whose ``sample`` takes ``labels``, else ``None``.

    Given explicitly, so that the logged samples say which class each was drawn with.
    """
    classes = getattr(pl_module, "hparams", {}).get("num_classes")
    takes = "labels" in inspect.signature(pl_module.sample).parameters
    return sample_labels(num, None, classes, pl_module.device) if classes and takes else None


class SampleLogger(L.Callback):
    """Every ``every_n_steps`` and at the end of training, draw samples and show them.

    Samples come from the same noise every time (``seed``), so pictures at different steps are
    comparable. The model's modality draws them (image grid, points over real points from the
    training data, text, ...), writes them to ``<run dir>/samples/`` and logs them to W&B and
    TensorBoard. The model's own pictures (``GenerativeModule.pictures``, given a few training
    examples) are saved and logged with them, as ``pictures/<name>``, on the step axis of the
    metrics.

    Args:
        every_n_steps: Trainer steps between two logs; 0 logs only at the end of training.
        num: Number of samples; ``None``: the modality's ``picture_num`` (64 images, ...).
        seed: Seed of the fixed noise.
    """

    def __init__(self, every_n_steps: int = 500, num: int | None = None, seed: int = 0) -> None:
        self.every_n_steps = every_n_steps
        self.num = num
        self.seed = seed
        self._last_bucket = 0
        self._logged_step: int | None = None
        self._real: Tensor | None = None
        self._batch: dict[str, Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed run goes on logging at the multiples it has not reached yet."""
        if self.every_n_steps > 0:
            self._last_bucket = trainer.global_step // self.every_n_steps

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        """Keep a few real examples to plot next to generated points."""
        if self._real is None and isinstance(batch, dict) and "x" in batch:
            num = self._num(pl_module)
            self._batch = {k: v[:num].detach().cpu() for k, v in batch.items()
                           if isinstance(v, Tensor)}
            self._real = self._batch["x"]

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
        return self.num or modality_of(pl_module).picture_num

    def log_samples(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Draw, render, save and log one set of samples; returns the file written on rank 0."""
        if not draws_here(trainer, pl_module):
            return None
        labels = _labels(pl_module, self._num(pl_module))
        options = {} if labels is None else {"labels": labels}
        with fixed_seed(self.seed, pl_module.device):
            samples = pl_module.sample_eval(self._num(pl_module), **options)
        step = self._logged_step = trainer.global_step  # on every rank that drew
        pictures = self._pictures(pl_module)  # sharded networks run their forward on every rank
        if not trainer.is_global_zero:
            return None
        modality = modality_of(pl_module)
        rendered = modality.render(samples, real=self._real, decode=_decoder(trainer, pl_module),
                                   title=f"step {step}")
        out = Path(trainer.default_root_dir) / "samples" / f"step_{step:07d}"
        path = save_rendered(rendered, out)
        # The x-axis Lightning logs metrics against: batches, which differs from global_step
        # when a family steps several optimizers per batch (GAN).
        log_step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            modality.log(logger, rendered, samples, log_step, seed=self.seed, labels=labels)
        for name, picture in pictures.items():
            save_rendered(picture, out.with_name(f"{name}_step_{step:07d}"))
            for logger in trainer.loggers:
                log_rendered(logger, picture, log_step, key=f"pictures/{name}")
        return path

    def _pictures(self, pl_module: L.LightningModule) -> dict[str, Image.Image]:
        """The model's own pictures from the kept training examples, drawn in eval mode."""
        hook = getattr(pl_module, "pictures", None)
        if not callable(hook) or not self._batch:
            return {}
        batch = {k: v.to(pl_module.device) for k, v in self._batch.items()}
        was_training = pl_module.training
        pl_module.eval()
        try:
            with fixed_seed(self.seed, pl_module.device), torch.no_grad():
                return hook(batch)
        finally:
            pl_module.train(was_training)


class SampleMetrics(L.Callback):
    """At the end of each validation, score generated samples with the data module's metrics.

    The model's modality says which metrics apply (``Modality.sample_metrics``; by default the
    data module's own ``sample_metrics() -> dict[str, torchmetrics.Metric]``); each metric is
    updated with generated samples and its values are logged as ``val/<prefix><name>`` (e.g.
    ``val/modes_covered`` for the toy data's mode coverage).

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
        if trainer.sanity_checking or self.num <= 0:
            return
        found = modality_of(pl_module).sample_metrics(trainer.datamodule)
        if not found:
            return
        metrics = {prefix: m.to(pl_module.device) for prefix, m in found.items()}
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
