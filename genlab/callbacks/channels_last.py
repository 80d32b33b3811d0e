"""Channels-last memory format for conv nets: NHWC weights and image batches."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class ChannelsLast(L.Callback):
    """Train in channels-last (NHWC) memory format, which conv kernels on tensor cores prefer.

    At setup the module's 4-D tensors (conv weights; EMA copies too) are converted; each
    training batch's 4-D ``batch["x"]`` is converted after it reaches the device. Points and
    token models are left as they are. Values, state-dict keys and checkpoints do not change:
    only the order in memory does.

    Args:
        enabled: Convert; ``False``: do nothing (the default).
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Convert the module's 4-D parameters and buffers before the strategy wraps it."""
        if self.enabled:
            pl_module.to(memory_format=torch.channels_last)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        """Convert the batch's images in place (the training step receives this dict)."""
        if self.enabled and isinstance(batch, dict):
            x = batch.get("x")
            if isinstance(x, torch.Tensor) and x.dim() == 4:
                batch["x"] = x.contiguous(memory_format=torch.channels_last)
