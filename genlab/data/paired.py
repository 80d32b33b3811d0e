"""Paired images for image-to-image translation, derived from any image source.

Each batch carries the image as ``x`` and a source image computed from it as ``source`` (the
condition key of a source image), labels kept: the paired tasks of pix2pix (Isola et al. 2017)
made from MNIST without new files. The sources come from fixed torch ops, so the pairing is
exact and the same in every process:

- ``edges``: the morphological gradient (dilation minus erosion by a 3x3 square), the outline
  of every stroke, like the edge maps -> photos task.
- ``erode``: the image eroded by a 3x3 square, strokes thinned (thin strokes -> full digits).
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from genlab.data.images import ImageDataModule
from genlab.errors import GenlabError

Pairing = Literal["edges", "erode"]
PAIRINGS: tuple[str, ...] = ("edges", "erode")


def dilate(x: Tensor, size: int = 3) -> Tensor:
    """Grayscale dilation of images ``(B, C, H, W)`` by a ``size`` square (a max filter)."""
    return F.max_pool2d(x, size, stride=1, padding=size // 2)


def erode(x: Tensor, size: int = 3) -> Tensor:
    """Grayscale erosion of images ``(B, C, H, W)`` by a ``size`` square (a min filter)."""
    return -dilate(-x, size)


def source_of(x: Tensor, pairing: Pairing) -> Tensor:
    """The source image of images ``x`` ``(B, C, H, W)`` in [-1, 1], in [-1, 1].

    Args:
        x: Images in [-1, 1] (the background of MNIST is -1).
        pairing: ``edges`` (morphological gradient, from -1 on flat areas up to 1) or ``erode``.
    """
    if pairing == "edges":
        return (dilate(x) - erode(x) - 1).clamp(-1, 1)  # the gradient is in [0, 2]
    if pairing == "erode":
        return erode(x)
    raise GenlabError(f"data.pairing must be one of {list(PAIRINGS)}, got {pairing!r}")


class PairedDataset(Dataset):
    """Batches of ``images`` with ``source = source_of(x, pairing)`` added.

    Args:
        images: A dataset whose ``__getitems__`` returns a batch ``{"x": (B, C, H, W), ...}``
            (``BatchFetch``).
        pairing: How the source is made from ``x``.
    """

    def __init__(self, images: Any, pairing: Pairing) -> None:
        self.images, self.pairing = images, pairing

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, keys: list[int]) -> dict[str, Tensor]:
        """A batch of images and their sources.

        Args:
            keys: Example keys chosen by the sampler.
        """
        batch = self.images.__getitems__(keys)
        return {**batch, "source": source_of(batch["x"], self.pairing)}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


class PairedImageDataModule(ImageDataModule):
    """``{"x": (B, C, S, S), "source": (B, C, S, S), "label": (B,)}`` batches in [-1, 1].

    An ``ImageDataModule`` whose every split also serves ``source``, computed from ``x`` by
    ``pairing`` (see the module's doc). Arguments as ``ImageDataModule``'s, plus:

    Args:
        source: Hub dataset name or local path of the images (e.g. MNIST's parquet files).
        pairing: ``edges`` (outlines -> images) or ``erode`` (thinned strokes -> images).
        image_size: Side of the square images served.
        channels: 1 (grayscale) or 3 (RGB).
        resize: Resize and center-crop to ``image_size``; when false, images must be square.
        image_column: Column of the images; ``auto``: the only image column.
        label_column: Column of integer class labels; ``None``: no labels.
        train_split: Name of the training split.
        val_split: Name of the validation split; ``None``: one if present, else carved out.
        test_split: Name of the split served by ``test_dataloader``, or ``None``.
        val_fraction: Share of train carved out for validation when there is no validation split.
        batch_size: Pairs per batch.
        num_workers: DataLoader worker processes.
        in_memory: Decode every image once at setup (see ``ImageDataModule``).
        seed: Seed of the validation carve-out.
    """

    def __init__(
        self,
        source: str,
        pairing: Pairing = "edges",
        image_size: int = 28,
        channels: Literal[1, 3] = 1,
        resize: bool = True,
        image_column: str = "auto",
        label_column: str | None = "auto",
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str | None = "test",
        val_fraction: float = 0.05,
        batch_size: int = 64,
        num_workers: int = 2,
        in_memory: bool = False,
        seed: int = 0,
    ) -> None:
        if pairing not in PAIRINGS:
            raise GenlabError(f"data.pairing must be one of {list(PAIRINGS)}, got {pairing!r}")
        super().__init__(
            source, image_size=image_size, channels=channels, resize=resize,
            image_column=image_column, label_column=label_column, train_split=train_split,
            val_split=val_split, test_split=test_split, val_fraction=val_fraction,
            batch_size=batch_size, num_workers=num_workers, in_memory=in_memory, seed=seed,
        )
        self.pairing = pairing

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition kinds the batches carry: ``source`` always, beside the parent's."""
        return ("source", *(k for k in super().conditions if k != "source"))

    def build_sets(self) -> dict[str, Dataset]:
        """Each split's images wrapped in a ``PairedDataset``."""
        return {name: PairedDataset(images, self.pairing)
                for name, images in super().build_sets().items()}
