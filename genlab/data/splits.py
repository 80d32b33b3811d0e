"""``SplitDataModule``: the train / val / test loaders of a data module that serves named splits."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from genlab.data.resumable import ResumableSampler


class SplitDataModule(L.LightningDataModule):
    """A ``LightningDataModule`` whose three loaders differ only by split name.

    Subclasses implement ``loader(split, train)``; training batches are shuffled and the last
    incomplete one dropped, evaluation batches come in order. Training order comes from
    ``train_sampler``, positioned by the trainer's (checkpointed) progress, so a resumed run sees
    the same batches as an uninterrupted one.
    """

    def train_sampler(self, size: int, keyed: bool = False) -> ResumableSampler:
        """The training sampler over ``size`` examples, positioned by the trainer's progress.

        Args:
            size: Number of training examples.
            keyed: Yield ``epoch * size + index`` keys (see ``ResumableSampler``).
        """
        trainer = self.trainer
        share = {"num_replicas": trainer.world_size, "rank": trainer.global_rank} if trainer else {}
        return ResumableSampler(size, seed=int(self.hparams.get("seed", 0)),
                                position=self._position, keyed=keyed, **share)

    def _position(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None or not trainer.num_training_batches:
            return 0, 0
        done = trainer.fit_loop.epoch_loop.batch_progress.total.completed
        per_epoch = trainer.num_training_batches
        if per_epoch == float("inf"):
            return 0, 0
        epoch, batches = divmod(done, int(per_epoch))
        return epoch, batches * int(self.hparams.batch_size)

    def loader_rng(self) -> torch.Generator:
        """A DataLoader's own generator: starting an epoch then leaves the global RNG alone."""
        return torch.Generator().manual_seed(int(self.hparams.get("seed", 0)))

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
