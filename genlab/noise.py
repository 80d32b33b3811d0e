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
