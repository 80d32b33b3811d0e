"""``TextDataModule``: a text corpus served as fixed-length blocks of token ids."""

from __future__ import annotations

from typing import Any

import datasets
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from genlab.data.sources import (
    check_batch_size,
    check_source,
    get_split,
    load_source,
    require_column,
    val_split_name,
)
from genlab.data.splits import SplitDataModule
from genlab.data.tokenizers import Tokenizer, TokenizerKind, build_tokenizer, tokenizer_from_state
from genlab.errors import GenlabError


class TokenBlocks(Dataset):
    """Blocks of ``block_size + 1`` token ids starting every ``stride`` tokens.

    ``{"x": (block_size + 1,) long}``: a model takes ``x[:-1]`` as input and ``x[1:]`` as
    targets. Stride 1 with a shuffling sampler gives random blocks (training); stride
    ``block_size`` gives consecutive blocks (validation).

    Args:
        ids: The token ids of the whole split, 1-D.
        block_size: Tokens a model sees at once.
        stride: Distance between the starts of two consecutive blocks.
    """

    def __init__(self, ids: Tensor, block_size: int, stride: int) -> None:
        self.ids, self.block_size, self.stride = ids, block_size, stride

    def __len__(self) -> int:
        return max(0, (len(self.ids) - self.block_size - 1) // self.stride + 1)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        start = i * self.stride
        return {"x": self.ids[start : start + self.block_size + 1].long()}


def join_rows(rows: list[str]) -> str:
    """The rows of a text column as one text, a newline between rows that lack one.

    Args:
        rows: Documents or lines.
    """
    parts: list[str] = []
    for row in rows:
        if parts and not parts[-1].endswith("\n"):
            parts.append("\n")
        parts.append(row)
    return "".join(parts)


class TextDataModule(SplitDataModule):
    """A corpus as ``{"x": (B, block_size + 1) long}`` token batches.

    Training serves blocks at random offsets (one epoch visits every offset once: train by
    ``trainer.max_steps``); validation serves consecutive blocks. Without a validation split
    (a single .txt file), the first ``1 - val_fraction`` of the characters train and the rest
    validate. The char tokenizer's vocabulary is built from the training text and saved in
    checkpoints (``state_dict``), so ``decode`` works without the data.

    Args:
        source: Hub dataset name (a text corpus) or a local path or glob: .txt files (each file
            one document), or parquet / arrow files with a text column.
        subset: Configuration name of a hub dataset that has several (``wikitext-2-raw-v1``).
        tokenizer: ``char``: one token per distinct character of the training text; ``byte``:
            the 256 UTF-8 byte values, no vocabulary.
        block_size: Tokens a model sees at once; batches hold ``block_size + 1`` per row.
        batch_size: Blocks per batch.
        text_column: Column holding the text.
        train_split: Name of the training split.
        val_split: Name of the validation split; ``None``: validation / valid / val if present,
            else the last ``val_fraction`` of the training text.
        test_split: Name of the split served by ``test_dataloader``, or ``None``.
        val_fraction: Share of the training text (its end) kept for validation when there is no
            validation split.
        encoding: Encoding of local text files.
        num_workers: DataLoader worker processes (rarely needed: the text is in memory).
    """

    def __init__(
        self,
        source: str,
        subset: str | None = None,
        tokenizer: TokenizerKind = "char",
        block_size: int = 256,
        batch_size: int = 64,
        text_column: str = "text",
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str | None = "test",
        val_fraction: float = 0.1,
        encoding: str = "utf-8",
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("block_size", block_size), ("batch_size", batch_size)):
            if value <= 0:
                raise GenlabError(f"data.{key} must be positive, got {value}")
        if not 0 < val_fraction < 1:
            raise GenlabError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
        if tokenizer not in ("char", "byte"):
            raise GenlabError(f"data.tokenizer must be 'char' or 'byte', got {tokenizer!r}")
        check_source(source)
        self.save_hyperparameters(logger=False)  # the CLI logs the whole resolved config
        self.tokenizer: Tokenizer | None = build_tokenizer("byte") if tokenizer == "byte" else None
        self._texts: dict[str, str] | None = None
        self._ids: dict[str, Tensor] = {}

    @property
    def source(self) -> str:
        """The configured source."""
        return self.hparams.source

    def texts(self) -> dict[str, str]:
        """The text of each split (train, val and test when present), loaded once."""
        if self._texts is None:
            h = self.hparams
            splits = load_source(h.source, h.subset, sample_by="document", encoding=h.encoding)
            texts = {"train": self._split_text(splits, h.train_split, "data.train_split")}
            val_name = val_split_name(splits, h.val_split)
            if val_name is None:  # the convention for one file: the end of train validates
                cut = int(len(texts["train"]) * (1 - h.val_fraction))
                texts["train"], texts["val"] = texts["train"][:cut], texts["train"][cut:]
            else:
                texts["val"] = self._split_text(splits, val_name, "data.val_split")
            if h.test_split is not None and h.test_split in splits:
                texts["test"] = self._split_text(splits, h.test_split, "data.test_split")
            self._texts = texts
        return self._texts

    def _split_text(self, splits: datasets.DatasetDict, name: str, key: str) -> str:
        split = get_split(splits, name, self.source, key)
        column = require_column(split, self.hparams.text_column, "data.text_column")
        if split.features[column] not in (datasets.Value("string"), datasets.Value("large_string")):
            raise GenlabError(f"data.text_column {column!r} holds {split.features[column]}, "
                              f"not text; the columns are: {', '.join(split.column_names)}")
        text = join_rows(split[column])
        if not text:
            raise GenlabError(f"split {name!r} of {self.source!r} holds no text")
        return text

    def get_tokenizer(self) -> Tokenizer:
        """The tokenizer: restored from a checkpoint, or built from the training text."""
        if self.tokenizer is None:
            self.tokenizer = build_tokenizer(self.hparams.tokenizer, self.texts()["train"])
        return self.tokenizer

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens (for ``char``, reads the training text if not yet done)."""
        return self.get_tokenizer().vocab_size

    def ids(self, split: str) -> Tensor:
        """Token ids of a split's whole text, encoded once per tokenizer.

        Args:
            split: ``train``, ``val`` or ``test``.
        """
        if split not in self._ids:
            texts = self.texts()
            if split not in texts:
                raise GenlabError(f"{self.source!r} has no {split} split; set data.{split}_split")
            ids = self.get_tokenizer().encode(texts[split]).to(torch.int32)
            if len(ids) < self.hparams.block_size + 1:
                raise GenlabError(
                    f"the {split} text of {self.source!r} has {len(ids)} tokens, fewer than "
                    f"block_size + 1 = {self.hparams.block_size + 1}; lower data.block_size"
                )
            self._ids[split] = ids
        return self._ids[split]

    def setup(self, stage: str | None = None) -> None:
        """Load and encode the splits, so that bad text fails before training starts."""
        for split in self.texts():
            self.ids(split)
        if stage in (None, "fit"):
            block = self.hparams.block_size
            num_blocks = len(TokenBlocks(self.ids("train"), block, stride=1))
            check_batch_size(num_blocks, self.hparams.batch_size, f"blocks of {block + 1} tokens")

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """The DataLoader of ``split`` (see ``SplitDataModule``)."""
        block = self.hparams.block_size
        blocks = TokenBlocks(self.ids(split), block, stride=1 if train else block)
        return DataLoader(blocks, batch_size=self.hparams.batch_size, drop_last=train,
                          sampler=self.train_sampler(len(blocks)) if train else None,
                          num_workers=self.hparams.num_workers, generator=self.loader_rng())

    def decode(self, tokens: Tensor) -> list[str]:
        """Text of each row of token ids.

        Args:
            tokens: ``(B, T)`` or ``(T,)`` token ids.
        """
        rows = tokens.reshape(-1, tokens.shape[-1]) if tokens.ndim else tokens.reshape(1, 1)
        tokenizer = self.get_tokenizer()
        return [tokenizer.decode(row) for row in rows]

    def state_dict(self) -> dict[str, Any]:
        """The tokenizer's plain-typed state, saved in checkpoints."""
        return {"tokenizer": self.get_tokenizer().state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the tokenizer from a checkpoint; the text is re-encoded with it.

        Args:
            state_dict: What ``state_dict`` returned.
        """
        tokenizer = tokenizer_from_state(state_dict["tokenizer"])
        if tokenizer.kind != self.hparams.tokenizer:
            raise GenlabError(
                f"the checkpoint's tokenizer is {tokenizer.kind!r} but data.tokenizer is "
                f"{self.hparams.tokenizer!r}; set data.tokenizer: {tokenizer.kind}"
            )
        self.tokenizer = tokenizer
        self._ids = {}
