"""Sums of sines with random frequencies, phases and amplitudes, drawn once from a seed."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from genlab.data.splits import SplitDataModule
from genlab.errors import GenlabError


def sum_of_sines(num: int, length: int, num_sines: int, max_freq: int,
                 generator: torch.Generator) -> Tensor:
    """``(num, length)`` signals: each a sum of ``num_sines`` sines in [-1, 1].

    Frequencies are whole cycles per signal in ``1..max_freq``, so each sits on one FFT bin.
    """
    t = torch.arange(length) / length
    freq = torch.randint(1, max_freq + 1, (num, num_sines, 1), generator=generator)
    phase = 2 * math.pi * torch.rand(num, num_sines, 1, generator=generator)
    amp = 0.5 + 0.5 * torch.rand(num, num_sines, 1, generator=generator)
    waves = amp * torch.sin(2 * math.pi * freq * t + phase)
    return waves.sum(1) / num_sines


class SignalsDataset(Dataset):
    """Rows of a ``(N, length)`` tensor as ``{"x": signal}``."""

    def __init__(self, signals: Tensor) -> None:
        self.signals = signals

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.signals[i]}


class SinesDataModule(SplitDataModule):
    """1-D signals: sums of ``num_sines`` sines of random frequency, phase and amplitude.

    Args:
        length: Samples per signal.
        num_sines: Sines summed in each signal.
        max_freq: Highest frequency, in cycles per signal.
        train_size: Training signals.
        val_size: Validation (and test) signals.
        batch_size: Signals per batch.
        seed: Seed of the generator that draws the signals.
        num_workers: DataLoader worker processes.
    """

    def __init__(self, length: int = 64, num_sines: int = 2, max_freq: int = 6,
                 train_size: int = 4096, val_size: int = 512, batch_size: int = 64,
                 seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        if not 1 <= max_freq < length // 2:
            raise GenlabError(f"data.max_freq must be in 1..{length // 2 - 1} for length "
                              f"{length}, got {max_freq}")
        self.save_hyperparameters(logger=False)
        self.data_shape: tuple[int] = (length,)

    def setup(self, stage: str | None = None) -> None:
        """Draw the signals (identical on every rank for a given seed)."""
        h = self.hparams
        gen = torch.Generator().manual_seed(h.seed)
        train, val = (sum_of_sines(n, h.length, h.num_sines, h.max_freq, gen)
                      for n in (h.train_size, h.val_size))
        self.sets = {"train": SignalsDataset(train), "val": SignalsDataset(val),
                     "test": SignalsDataset(val)}

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """The DataLoader of ``split`` (see ``SplitDataModule``)."""
        data = self.sets[split]
        return DataLoader(data, batch_size=self.hparams.batch_size, drop_last=train,
                          sampler=self.train_sampler(len(data)) if train else None,
                          num_workers=self.hparams.num_workers, generator=self.loader_rng())
