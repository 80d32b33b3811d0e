"""Condition encoders that plugins compose: class labels, text prompts, source images.

Each turns one kind of condition (``genlab.conditions``) into what a network can add or
concatenate, and each knows its kind's null condition (the extra class, the empty string, a
zero image), so condition dropout and classifier-free guidance work the same for every kind.
Plain PyTorch, nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.tokenizers import ByteTokenizer


class LabelEmbedding(nn.Embedding):
    """Class ids ``(B,)`` -> ``(B, dim)``, with one extra row for the null class ``num_classes``.

    Args:
        num_classes: Number of classes; label ``num_classes`` means "no class".
        dim: Width of the embedding.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__(num_classes + 1, dim)
        self.num_classes = num_classes

    def forward(self, labels: Tensor) -> Tensor:  # (B,) -> (B, dim)
        """Embed ``labels`` (``num_classes`` for none)."""
        return super().forward(labels.long())


class LabelConcat(nn.Embedding):
    """A conditional generator's input: ``z (B, Z)`` and labels ``(B,)`` -> ``(B, Z + dim)``.

    The label's embedding is concatenated to the latent (Mirza and Osindero 2014), so the
    network that follows reads both as one input of ``Z + dim`` values.

    Args:
        num_classes: Number of classes.
        dim: Width of the label's embedding.
    """

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:  # (B, Z), (B,) -> (B, Z + dim)
        """``z`` with the embedding of ``labels`` after it."""
        return torch.cat([z, super().forward(labels.long())], dim=1)


class ClassProjection(nn.Embedding):
    """The class term of a projection discriminator (Miyato and Koyama 2018, eq. 3).

    ``D(x, y) = ψ(φ(x)) + <embed(y), φ(x)>``: this module is ``<embed(y), φ(x)>``, features
    ``(B, F)`` and labels ``(B,)`` -> ``(B,)``, added to the unconditional logit.

    Args:
        num_classes: Number of classes.
        feature_dim: Width ``F`` of the discriminator's features ``φ(x)``.
    """

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__(num_classes, feature_dim)
        # Embedding's default N(0, 1) rows make the term ~ sqrt(F) (56 at MNIST's 3,136
        # features) against ψ's O(1): it swamped the rest and the generator collapsed to one
        # image a class. A linear layer's scale keeps it O(1).
        nn.init.xavier_uniform_(self.weight)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:  # (B, F), (B,) -> (B,)
        """``<embed(labels), features>`` per example."""
        return (super().forward(labels.long()) * features).sum(1)


class TextEncoder(nn.Module):
    """Prompts -> one vector each: a small character CNN over UTF-8 bytes, max over positions.

    Bytes (``genlab.data.tokenizers.ByteTokenizer``: no vocabulary to build or save, any text
    encodes) are embedded, go through residual 1-D convolutions, and are max-pooled over time
    (Kim 2014; Zhang, Zhao and LeCun 2015): a feature that spots "seven" fires wherever the word
    stands, which is what lets captions in unseen phrasings reach the right digit. The empty
    prompt (the null condition) maps to a learned vector of its own.

    Args:
        dim: Width of the output vector.
        width: Channels of the byte embedding and convolutions.
        max_len: Bytes kept of each prompt (longer ones are cut).
        layers: Residual convolution layers.
        kernel: Width of each convolution, in bytes.
    """

    PAD = 256  # one id past the bytes

    def __init__(self, dim: int, width: int = 64, max_len: int = 48, layers: int = 2,
                 kernel: int = 5) -> None:
        super().__init__()
        self.max_len = max_len
        self.tokenizer = ByteTokenizer()
        self.embed = nn.Embedding(self.PAD + 1, width, padding_idx=self.PAD)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, kernel, padding=kernel // 2)
                                   for _ in range(layers))
        self.proj = nn.Sequential(nn.Linear(width, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """``(B, max_len)`` byte ids of ``texts``, cut to ``max_len`` and padded with ``PAD``."""
        ids = torch.full((len(texts), self.max_len), self.PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            encoded = self.tokenizer.encode(text)[: self.max_len]
            ids[row, : len(encoded)] = encoded
        return ids.to(self.null.device)

    def forward(self, texts: Sequence[str]) -> Tensor:  # B strings -> (B, dim)
        """Encode ``texts``; empty strings give the null vector."""
        ids = self.tokenize(texts)
        pad = ids == self.PAD  # (B, L)
        h = self.embed(ids).transpose(1, 2)  # (B, width, L)
        for conv in self.convs:
            h = h + F.silu(conv(h))
        h = h.masked_fill(pad[:, None, :], float("-inf")).amax(-1)  # (B, width)
        empty = pad.all(-1)
        h = torch.where(empty[:, None], torch.zeros_like(h), h)  # no -inf into proj
        return torch.where(empty[:, None], self.null.to(h.dtype), self.proj(h))


class ImageEncoder(nn.Module):
    """A source image ``(B, C, h, w)`` -> feature maps at the target resolution.

    The source is upsampled (bilinear) to ``size`` and two 3x3 convolutions add ``width``
    learned channels beside it, so a network that concatenates the result to its input sees
    the source itself and features of it (super-resolution, SR3: Saharia et al. 2021). The
    null source is a zero image.

    Args:
        in_channels: Channels of the source image.
        size: Side of the target resolution.
        width: Learned channels added to the upsampled source.
    """

    def __init__(self, in_channels: int, size: int, width: int = 32) -> None:
        super().__init__()
        self.size, self.in_channels = size, in_channels
        self.out_channels = in_channels + width
        self.convs = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU(),
                                   nn.Conv2d(width, width, 3, padding=1))

    def forward(self, source: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C + width, S, S)
        """Upsample ``source`` to ``size`` and append its features."""
        up = F.interpolate(source.float(), size=(self.size, self.size), mode="bilinear",
                           align_corners=False).to(source.dtype)
        return torch.cat([up, self.convs(up)], dim=1)
