"""Lightning's own monitors that every logged run gets: learning rates and throughput."""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only

# genlab's modules do not count their FLOPs; samples / s and batches / s are what we report.
warnings.filterwarnings("ignore", message=".*you need to define a `flops_per_batch`")
# Lightning 2.6's own use of a torch API torch 2.10+ deprecates: nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def batch_size(batch: Any) -> int:
    """Examples in a genlab batch (``{"x": (B, ...)}``) or a plain tensor batch."""
    x = batch["x"] if isinstance(batch, dict) else batch
    return len(x)


class TrainThroughput(ThroughputMonitor):
    """Lightning's ``ThroughputMonitor`` reporting training only.

    Its validation figures are logged at the validation batch index as the step, which would
    put points at step 1, 2, ... of W&B's x-axis in the middle of a run; validation is still
    timed, so that training throughput excludes it.
    """

    @rank_zero_only
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                outputs: Any, batch: Any, *_: Any, **__: Any) -> None:
        """Time the batch without logging a validation rate."""
        if not trainer.sanity_checking:
            iter_num = trainer._evaluation_loop.batch_progress.total.ready
            self._update(trainer, pl_module, batch, iter_num)


def monitors(trainer: L.Trainer) -> list[Callback]:
    """Lightning's learning-rate and throughput monitors for a trainer with loggers.

    ``LearningRateMonitor`` logs every logged step (so warm-up and cosine show),
    ``TrainThroughput`` training samples and batches per second; either is left out when the config
    already has one.
    """
    if not trainer.loggers:
        return []  # both log through the trainer's loggers; LearningRateMonitor refuses none
    have = {type(c) for c in trainer.callbacks}
    added: list[Callback] = []
    if not any(issubclass(t, LearningRateMonitor) for t in have):
        added.append(LearningRateMonitor(logging_interval="step"))
    if not any(issubclass(t, ThroughputMonitor) for t in have):
        added.append(TrainThroughput(batch_size_fn=batch_size))
    return added
