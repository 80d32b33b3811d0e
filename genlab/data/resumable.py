"""A training sampler whose order depends only on (seed, epoch), so a run can resume mid-epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Shuffled indices ``0 .. size - 1``: epoch ``e`` is permutation ``e`` of its own generator.

    ``position()`` says where training stands, ``(epoch, examples already served in it)``, each
    time an epoch's iteration starts: a resumed run (whose progress Lightning restores) picks up
    the interrupted epoch's permutation at the example where it stopped, and the global RNG is
    never touched, so the data order is that of an uninterrupted run.

    Under DDP each process serves the positions ``rank, rank + world, ...`` of the epoch's
    permutation (padded like ``DistributedSampler``, which it is, so Lightning does not wrap it
    in a sampler of its own that would reshuffle it): step ``i`` of an N-process run trains on
    the examples of step ``i`` of a 1-process run with an N times larger batch, and a mid-epoch
    resume skips each process's own served examples.

    With ``keyed``, it yields *keys* ``epoch * size + index`` instead of indices, for datasets
    whose per-example randomness (augmentation, dynamic binarization) must be a function of
    (example, epoch) rather than of the global RNG: see ``genlab.data.image_transforms.BatchFetch``.

    Args:
        size: Number of examples.
        seed: Seed of the permutations.
        position: Returns ``(epoch, examples this process served)``; ``None``: count epochs
            from 0.
        keyed: Yield ``epoch * size + index`` keys.
        num_replicas: Number of processes sharing the data.
        rank: This process's rank.
    """

    def __init__(self, size: int, seed: int = 0,
                 position: Callable[[], tuple[int, int]] | None = None,
                 keyed: bool = False, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True,
                         seed=seed)
        self.size, self.position, self.keyed = size, position, keyed
        self._epochs = 0

    def __iter__(self) -> Iterator[int]:
        epoch, start = self.position() if self.position else (self._epochs, 0)
        self._epochs += 1
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=gen)
        if self.keyed:
            order += epoch * self.size
        if self.num_replicas > 1:
            order = order.repeat(-(-self.total_size // self.size))[:self.total_size]
            order = order[self.rank::self.num_replicas]
        return iter(order[start:].tolist())

    def __len__(self) -> int:
        return self.num_samples
