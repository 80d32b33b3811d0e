"""A training sampler whose order depends only on (seed, epoch), so a run can resume mid-epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Shuffled indices ``0 .. size - 1``: epoch ``e`` is permutation ``e`` of its own generator.

    ``position()`` says where training stands, ``(epoch, examples already served in it)``, each
    time an epoch's iteration starts: a resumed run (whose progress Lightning restores) picks up
    the interrupted epoch's permutation at the example where it stopped, and the global RNG is
    never touched, so the data order is that of an uninterrupted run.

    Args:
        size: Number of examples.
        seed: Seed of the permutations.
        position: Returns ``(epoch, examples_done)``; ``None``: count epochs from 0.
    """

    def __init__(self, size: int, seed: int = 0,
                 position: Callable[[], tuple[int, int]] | None = None) -> None:
        self.size, self.seed, self.position = size, seed, position
        self._epochs = 0

    def __iter__(self) -> Iterator[int]:
        epoch, start = self.position() if self.position else (self._epochs, 0)
        self._epochs += 1
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return iter(torch.randperm(self.size, generator=gen)[start:].tolist())

    def __len__(self) -> int:
        return self.size
