"""Tokenizers for text data: characters (vocabulary from the training text) or raw UTF-8 bytes.

Both keep their whole state in plain Python types (``state_dict()``), so a checkpoint loaded with
``torch.load(weights_only=True)`` is enough to rebuild them without the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from genlab.errors import GenlabError

TokenizerKind = Literal["char", "byte"]


def _ids_list(ids: Tensor | Sequence[int] | np.ndarray) -> list[int]:
    if isinstance(ids, Tensor):
        return ids.detach().cpu().tolist()
    return [int(i) for i in ids]


class CharTokenizer:
    """One token per distinct character of the training text, in sorted order.

    Args:
        chars: The vocabulary: every character once, token id = position in this string.
    """

    kind = "char"

    def __init__(self, chars: str) -> None:
        if not chars or len(set(chars)) != len(chars):
            raise GenlabError("a character vocabulary needs at least one character, each once")
        self.chars = chars
        # Code point -> id lookup, vectorised with searchsorted in ``encode``.
        points = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
        self._order = np.argsort(points)
        self._points = points[self._order]

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Vocabulary of the distinct characters of ``text``.

        Args:
            text: The training text.
        """
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens."""
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        """Token ids of ``text`` as a 1-D ``int64`` tensor.

        Args:
            text: Text made only of characters in the vocabulary.
        """
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        pos = np.searchsorted(self._points, points).clip(max=len(self._points) - 1)
        unknown = self._points[pos] != points
        if unknown.any():
            missing = sorted({chr(p) for p in points[unknown]})
            shown = ", ".join(repr(c) for c in missing[:10])
            raise GenlabError(
                f"the text has {len(missing)} character(s) outside the {self.vocab_size}-character "
                f"vocabulary built from the training text ({shown}); use tokenizer: byte, "
                f"or put those characters in the training text"
            )
        return torch.from_numpy(self._order[pos].astype(np.int64))

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """Text of a sequence of token ids; ids outside the vocabulary show as U+FFFD.

        Args:
            ids: Token ids.
        """
        n = len(self.chars)
        return "".join(self.chars[i] if 0 <= i < n else "\ufffd" for i in _ids_list(ids))

    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state: ``{"kind": "char", "chars": ...}``."""
        return {"kind": self.kind, "chars": self.chars}


class ByteTokenizer:
    """The 256 byte values of the UTF-8 encoding: no vocabulary to build or save."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> Tensor:
        """UTF-8 bytes of ``text`` as a 1-D ``int64`` tensor.

        Args:
            text: Any text.
        """
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        return torch.from_numpy(data.astype(np.int64))

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """Text of a sequence of byte ids; invalid UTF-8 shows as U+FFFD.

        Args:
            ids: Byte values 0-255.
        """
        return bytes(i % 256 for i in _ids_list(ids)).decode("utf-8", errors="replace")

    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state: ``{"kind": "byte"}``."""
        return {"kind": self.kind}


Tokenizer = CharTokenizer | ByteTokenizer


def build_tokenizer(kind: TokenizerKind, text: str | None = None) -> Tokenizer:
    """A tokenizer of the given kind; ``char`` needs the training ``text``.

    Args:
        kind: ``"char"`` or ``"byte"``.
        text: Training text the character vocabulary is built from.
    """
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        if not text:
            raise GenlabError("a char tokenizer needs non-empty training text")
        return CharTokenizer.from_text(text)
    raise GenlabError(f"unknown tokenizer {kind!r}; choose 'char' or 'byte'")


def tokenizer_from_state(state: Mapping[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from its ``state_dict()``.

    Args:
        state: What ``CharTokenizer.state_dict()`` or ``ByteTokenizer.state_dict()`` returned.
    """
    kind = state.get("kind")
    if kind == "char":
        return CharTokenizer(state["chars"])
    if kind == "byte":
        return ByteTokenizer()
    raise GenlabError(f"unknown tokenizer state {dict(state)!r}")


def tokenizer_from_checkpoint(checkpoint: Mapping[str, Any]) -> Tokenizer | None:
    """The tokenizer a text data module saved in a Lightning checkpoint, or ``None``.

    Args:
        checkpoint: A checkpoint dict, e.g. ``torch.load(path, weights_only=True)``.
    """
    for value in checkpoint.values():
        if isinstance(value, Mapping) and isinstance(value.get("tokenizer"), Mapping):
            return tokenizer_from_state(value["tokenizer"])
    return None
