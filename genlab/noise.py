"""Training noise that is the same whether a batch runs on one process or is split over many.

Under DDP every process holds the same RNG state (Lightning seeds them alike), so noise drawn
naively is identical on every rank: each shard of the global batch gets the *same* noise. These
functions instead draw the noise of the whole global batch and keep this process's rows, the rows
``rank, rank + world, ...`` that genlab's sampler deals to it (``ResumableSampler``). A run on N
processes then draws, example for example, the noise of a 1-process run with an N times larger
batch, and on one process they are plain ``torch.randn`` / ``rand`` / ``randint``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor


def process_share(module: L.LightningModule) -> tuple[int, int]:
    """``(rank, world_size)`` of the process training ``module``; ``(0, 1)`` outside a fit."""
    trainer = module._trainer
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size


def _share(module: L.LightningModule, shape: Sequence[int], dim: int,
           draw: Callable[[tuple[int, ...]], Tensor]) -> Tensor:
    rank, world = process_share(module)
    if world == 1:
        return draw(tuple(shape))
    full = list(shape)
    full[dim] *= world
    return draw(tuple(full)).unflatten(dim, (-1, world)).select(dim + 1, rank).contiguous()


def batch_randn(module: L.LightningModule, shape: Sequence[int], dim: int = 0,
                generator: torch.Generator | None = None,
                dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise of ``shape``, this process's share of the global batch's.

    Args:
        module: The module being trained (its device, rank and world size are used).
        shape: The local shape; ``shape[dim]`` is the local batch size.
        dim: The batch dimension.
        generator: Random-number generator; ``None``: torch's global one.
        dtype: Floating dtype; ``None``: the default.
    """
    return _share(module, shape, dim, lambda s: torch.randn(
        s, generator=generator, device=module.device, dtype=dtype))


def batch_rand(module: L.LightningModule, shape: Sequence[int], dim: int = 0,
               generator: torch.Generator | None = None,
               dtype: torch.dtype | None = None) -> Tensor:
    """Uniform ``[0, 1)`` noise of ``shape``, this process's share (see ``batch_randn``)."""
    return _share(module, shape, dim, lambda s: torch.rand(
        s, generator=generator, device=module.device, dtype=dtype))


def batch_randint(module: L.LightningModule, low: int, high: int, shape: Sequence[int],
                  dim: int = 0, generator: torch.Generator | None = None) -> Tensor:
    """Integers in ``[low, high)`` of ``shape``, this process's share (see ``batch_randn``)."""
    return _share(module, shape, dim, lambda s: torch.randint(
        low, high, s, generator=generator, device=module.device))


class NoiseStream:
    """A plugin's own training-noise generator, saved in checkpoints and continued on resume.

    Seeded from torch's global RNG when first used (so ``seed_everything`` fixes it), on the
    module's device. Every rank draws the same stream; ``batch_randn`` and friends deal each
    process its share. A resumed fit draws the noise an uninterrupted one would have.

    Args:
        key: The checkpoint entry holding the generator's state, e.g. ``"gan_noise_state"``.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._generator: torch.Generator | None = None
        self._state: Tensor | None = None  # loaded from a checkpoint, not yet drawn from

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator on ``device``: continued from the checkpoint, else freshly seeded."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            if self._state is not None:
                self._generator.set_state(self._state)
            else:
                self._generator.manual_seed(int(torch.randint(2**62, ())))
        return self._generator

    def save(self, checkpoint: dict[str, Any]) -> None:
        """Add the generator's state to ``checkpoint`` (from ``on_save_checkpoint``)."""
        if self._generator is not None:
            checkpoint[self.key] = self._generator.get_state()

    def load(self, checkpoint: dict[str, Any]) -> None:
        """Continue from the state in ``checkpoint`` (from ``on_load_checkpoint``)."""
        self._state = checkpoint.get(self.key)
        self._generator = None
