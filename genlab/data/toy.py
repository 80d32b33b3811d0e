"""Built-in 2-D toy data: Gaussian mixtures on a ring or a grid, the mode-collapse benchmarks."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from genlab.data.splits import SplitDataModule
from genlab.errors import GenlabError
from genlab.metrics import ModeCoverage

ToyName = Literal["ring8", "grid25"]

# Standard deviations of the mode-collapse benchmarks (VEEGAN, PacGAN).
DEFAULT_SIGMA: dict[str, float] = {"ring8": 0.01, "grid25": 0.05}


def toy_modes(name: ToyName) -> Tensor:
    """Mode centres: ring-8 at ``(cos 2πk/8, sin 2πk/8)``, grid-25 at ``{-4, -2, 0, 2, 4}²``."""
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)  # endpoint excluded
        return torch.stack([angles.cos(), angles.sin()], dim=1).float()
    if name == "grid25":
        axis = torch.arange(-4.0, 5.0, 2.0)
        return torch.cartesian_prod(axis, axis)
    raise GenlabError(f"unknown toy dataset {name!r}; choose one of {list(DEFAULT_SIGMA)}")


def sample_mixture(modes: Tensor, sigma: float, num: int, generator: torch.Generator) -> Tensor:
    """``num`` points from the equal-weight isotropic mixture centred on ``modes``: ``(num, D)``."""
    idx = torch.randint(len(modes), (num,), generator=generator)
    return modes[idx] + sigma * torch.randn(num, modes.shape[1], generator=generator)


class PointsDataset(Dataset):
    """A fixed tensor of points served as ``{"x": point}`` examples."""

    def __init__(self, points: Tensor) -> None:
        self.points = points

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.points[i]}


class ToyDataModule(SplitDataModule):
    """Mixture-of-Gaussians points, drawn once from a seeded generator.

    Validation measures mode coverage of generated samples through ``sample_metrics()``.

    Args:
        dataset: ``ring8`` (8 modes on the unit circle) or ``grid25`` (25 modes on a 5×5 grid).
        sigma: Standard deviation of each mode; ``None``: the benchmark's (ring 0.01, grid 0.05).
        train_size: Number of training points.
        val_size: Number of validation points.
        batch_size: Points per batch.
        seed: Seed of the generator that draws the points.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        dataset: ToyName = "ring8",
        sigma: float | None = None,
        train_size: int = 100_000,
        val_size: int = 2_500,
        batch_size: int = 256,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("train_size", train_size), ("val_size", val_size),
                           ("batch_size", batch_size)):
            if value <= 0:
                raise GenlabError(f"data.{key} must be positive, got {value}")
        if sigma is not None and sigma <= 0:
            raise GenlabError(f"data.sigma must be positive, got {sigma}")
        self.save_hyperparameters(logger=False)  # the CLI logs the whole resolved config
        self.modes = toy_modes(dataset)
        self.sigma = DEFAULT_SIGMA[dataset] if sigma is None else sigma
        self.dim = self.modes.shape[1]
        self.data_shape: tuple[int] = (self.dim,)

    def setup(self, stage: str | None = None) -> None:
        """Draw the train and validation points (identical on every rank for a given seed)."""
        gen = torch.Generator().manual_seed(self.hparams.seed)
        train = sample_mixture(self.modes, self.sigma, self.hparams.train_size, gen)
        val = sample_mixture(self.modes, self.sigma, self.hparams.val_size, gen)
        # Toy data has no separate test split: the validation points serve as test points.
        self.sets = {"train": PointsDataset(train), "val": PointsDataset(val),
                     "test": PointsDataset(val)}

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """The DataLoader of ``split`` (see ``SplitDataModule``)."""
        data = self.sets[split]
        return DataLoader(data, batch_size=self.hparams.batch_size, drop_last=train,
                          sampler=self.train_sampler(len(data)) if train else None,
                          num_workers=self.hparams.num_workers, generator=self.loader_rng())

    def sample_metrics(self) -> dict[str, Metric]:
        """Metrics that ``SampleMetrics`` updates with generated samples at validation end."""
        return {"": ModeCoverage(self.modes, self.sigma)}
