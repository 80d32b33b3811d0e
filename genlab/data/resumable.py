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

    With ``keyed``, it yields *keys* ``epoch * size + index`` instead of indices, for datasets
    whose per-example randomness (augmentation, dynamic binarization) must be a function of
    (example, epoch) rather than of the global RNG: see ``genlab.data.image_transforms.BatchFetch``.

    Args:
        size: Number of examples.
        seed: Seed of the permutations.
        position: Returns ``(epoch, examples_done)``; ``None``: count epochs from 0.
        keyed: Yield ``epoch * size + index`` keys.
    """

    def __init__(self, size: int, seed: int = 0,
                 position: Callable[[], tuple[int, int]] | None = None,
                 keyed: bool = False) -> None:
        self.size, self.seed, self.position, self.keyed = size, seed, position, keyed
        self._epochs = 0

    def __iter__(self) -> Iterator[int]:
        epoch, start = self.position() if self.position else (self._epochs, 0)
        self._epochs += 1
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=gen)[start:]
        return iter((order + epoch * self.size if self.keyed else order).tolist())

    def __len__(self) -> int:
        return self.size
