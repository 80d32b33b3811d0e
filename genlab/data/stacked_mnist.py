"""Stacked MNIST: three digits as the red, green and blue channels, 1,000 modes.

The mode-collapse benchmark of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018),
derived here from any MNIST-like source (grayscale digits with labels 0-9).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from genlab.data.images import ImageDataModule
from genlab.errors import GenlabError


class StackedDataset(Dataset):
    """Example ``i`` stacks the digits ``triples[i]`` of ``digits`` as its three channels.

    The label is ``100 * l_red + 10 * l_green + l_blue`` (0-999).

    Args:
        digits: A dataset whose ``__getitems__`` returns a batch ``{"x": (B, 1, H, W),
            "label": (B,)}`` (``BatchFetch``).
        size: Number of stacked examples.
        seed: Seed of the draw of the digit triples (fixed for the life of the dataset).
    """

    def __init__(self, digits: Any, size: int, seed: int) -> None:
        self.digits = digits
        gen = torch.Generator().manual_seed(seed)
        self.triples = torch.randint(len(digits), (size, 3), generator=gen)  # (N, 3)

    def __len__(self) -> int:
        return len(self.triples)

    def __getitems__(self, keys: list[int]) -> dict[str, Tensor]:
        """A batch of stacked examples, fetching its ``3 * len(keys)`` digits in one call.

        Args:
            keys: Example indices, or ``epoch * len + index`` keys of a keyed sampler
                (``genlab.data.resumable.ResumableSampler``); the digits are then fetched with
                keys of the same epoch, so their per-epoch randomness (binarization) follows.
        """
        keys = torch.tensor(keys)
        epochs, indices = keys // len(self), keys % len(self)
        digit_keys = self.triples[indices] + epochs[:, None] * len(self.digits)  # (B, 3)
        digits = self.digits.__getitems__(digit_keys.flatten().tolist())  # x: (3B, 1, H, W)
        x = digits["x"].reshape(len(indices), 3, *digits["x"].shape[-2:])  # (B, 3, H, W)
        red, green, blue = digits["label"].reshape(-1, 3).unbind(1)
        return {"x": x, "label": 100 * red + 10 * green + blue}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


class StackedMNISTDataModule(ImageDataModule):
    """Stacked MNIST batches ``{"x": (B, 3, S, S) in [-1, 1], "label": (B,) in 0-999}``.

    Each split stacks random triples of that split's digits, drawn once with ``seed``.

    Args:
        source: An MNIST-like source: hub name (``ylecun/mnist``) or a local path (e.g. a
            directory of parquet files with ``image`` and ``label`` columns).
        subset: Configuration name of a hub dataset that has several.
        image_size: Side of the square images served (28 for MNIST's own size, 32 or 64 for
            DCGAN-style networks).
        binarize: Dynamic binarization of each digit.
        image_column: Column of the digit images; ``auto``: the only image column.
        label_column: Column of the digit labels (0-9); ``auto``: label / labels.
        train_size: Number of stacked training examples; ``None``: as many as training digits.
        val_size: Number of stacked validation examples; ``None``: as many as validation digits.
        train_split: Name of the training split.
        val_split: Name of the validation split; ``None``: validation / valid / val if present,
            else ``val_fraction`` of train carved out with ``seed``.
        test_split: Name of the split served by ``test_dataloader``, or ``None``.
        val_fraction: Share of train carved out for validation when there is no validation split.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes.
        in_memory: Decode every digit once at setup (see ``ImageDataModule``).
        seed: Seed of the carve-out and of the digit triples.
    """

    def __init__(
        self,
        source: str,
        subset: str | None = None,
        image_size: int = 28,
        binarize: bool = False,
        image_column: str = "auto",
        label_column: str = "auto",
        train_size: int | None = None,
        val_size: int | None = None,
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str | None = "test",
        val_fraction: float = 0.05,
        batch_size: int = 128,
        num_workers: int = 2,
        in_memory: bool = False,
        seed: int = 0,
    ) -> None:
        for key, value in (("train_size", train_size), ("val_size", val_size)):
            if value is not None and value <= 0:
                raise GenlabError(f"data.{key} must be positive, got {value}")
        super().__init__(
            source, subset, image_size=image_size, channels=1, binarize=binarize,
            image_column=image_column, label_column=label_column,
            train_split=train_split, val_split=val_split, test_split=test_split,
            val_fraction=val_fraction, batch_size=batch_size, num_workers=num_workers,
            in_memory=in_memory, seed=seed,
        )
        self.data_shape = (3, image_size, image_size)
        self.sizes = {"train": train_size, "val": val_size}

    @property
    def num_classes(self) -> int:
        """1,000: one class per (red, green, blue) digit triple."""
        return 1000

    def columns(self) -> tuple[str, str | None]:
        """Image and label columns; Stacked MNIST needs the labels."""
        image, label = super().columns()
        if label is None:
            raise GenlabError(
                f"Stacked MNIST needs digit labels but {self.source!r} has no label column; "
                f"set data.label_column"
            )
        if self._num_classes is not None and self._num_classes > 10:
            raise GenlabError(
                f"Stacked MNIST needs digits labelled 0-9 but the labels of {self.source!r} "
                f"({label!r}) have {self._num_classes} classes; use an MNIST-like source"
            )
        return image, label

    def build_sets(self) -> dict[str, Dataset]:
        """Each split's digits wrapped in a ``StackedDataset`` with its own seed."""
        seeds = {"train": self.hparams.seed, "val": self.hparams.seed + 1,
                 "test": self.hparams.seed + 2}
        return {
            name: StackedDataset(digits, self.sizes.get(name) or len(digits), seeds[name])
            for name, digits in super().build_sets().items()
        }
