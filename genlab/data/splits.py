"""``SplitDataModule``: the train / val / test loaders of a data module that serves named splits."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader


class SplitDataModule(L.LightningDataModule):
    """A ``LightningDataModule`` whose three loaders differ only by split name.

    Subclasses implement ``loader(split, train)``; training batches are shuffled and the last
    incomplete one dropped, evaluation batches come in order.
    """

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """The DataLoader of ``split``; ``train`` shuffles and drops the last incomplete batch.

        Args:
            split: ``train``, ``val`` or ``test``.
            train: Serve training batches.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement loader(split, train)")

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; the last incomplete batch is dropped."""
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in order."""
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches in order."""
        return self.loader("test")
