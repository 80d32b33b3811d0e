"""The VAE's encoder q(z | x, y) and decoder p(x | z, y): plain PyTorch, no Lightning.

Both wrap a network from ``genlab.nn``: an MLP or the DCGAN-style conv stacks. A conditional
model (``num_classes`` set) gives the encoder the label next to the image and the decoder its
one-hot next to ``z``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nn.conv import ConvDecoder, ConvEncoder
from genlab.nn.mlp import MLP, Activation


def one_hot(labels: Tensor | None, num_classes: int | None, dtype: torch.dtype) -> Tensor | None:
    """``(B, num_classes)`` one-hot rows, or ``None`` for an unconditional model."""
    if not num_classes:
        return None
    return F.one_hot(labels, num_classes).to(dtype)


class MLPEncoder(nn.Module):
    """``x (B, C, H, W)`` [+ label] -> ``(mu, logvar)``, each ``(B, latent_dim)``."""

    def __init__(self, data_shape: Sequence[int], latent_dim: int, hidden: Sequence[int],
                 act: Activation, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = MLP(math.prod(data_shape) + (num_classes or 0), 2 * latent_dim, hidden, act)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = x.flatten(1)
        y = one_hot(labels, self.num_classes, h.dtype)
        h = h if y is None else torch.cat([h, y], 1)
        mu, logvar = self.net(h).chunk(2, dim=1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """``z (B, latent_dim)`` [+ label] -> ``(B, params, C, H, W)`` likelihood parameters."""

    def __init__(self, data_shape: Sequence[int], latent_dim: int, hidden: Sequence[int],
                 act: Activation, params: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes, self.params = num_classes, params
        self.data_shape = tuple(data_shape)
        out = params * math.prod(data_shape)
        self.net = MLP(latent_dim + (num_classes or 0), out, tuple(reversed(hidden)), act)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        y = one_hot(labels, self.num_classes, z.dtype)
        h = z if y is None else torch.cat([z, y], 1)
        return self.net(h).view(len(z), self.params, *self.data_shape)


class ConvVAEEncoder(nn.Module):
    """DCGAN-style ``ConvEncoder`` -> ``(mu, logvar)``; a label adds a learned offset to both.

    A linear head on ``[features, one_hot(y)]`` is the head on the features plus a per-class
    vector, so the label's embedding is added to the output.
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int, width: int,
                 num_classes: int | None = None) -> None:
        super().__init__()
        channels, size = data_shape[0], data_shape[1]
        self.net = ConvEncoder(channels, size, 2 * latent_dim, width=width)
        self.label = nn.Embedding(num_classes, 2 * latent_dim) if num_classes else None

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.net(x)  # (B, 2 Z)
        h = h if self.label is None else h + self.label(labels)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar


class ConvVAEDecoder(nn.Module):
    """``z`` [+ label] -> DCGAN-style ``ConvDecoder`` -> ``(B, params, C, H, W)``.

    The first parameter (logits or means) comes from the network. A second one (log-scales of
    a learned-variance likelihood) is a learned per-pixel parameter, shared by all ``z``:
    ``ConvDecoder`` draws only 1 or 3 channels.
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int, width: int, params: int,
                 num_classes: int | None = None) -> None:
        super().__init__()
        channels, size = data_shape[0], data_shape[1]
        self.num_classes, self.params = num_classes, params
        self.net = ConvDecoder(latent_dim + (num_classes or 0), channels, size, width=width,
                               norm="none", out_act="none")
        self.log_scale = nn.Parameter(torch.zeros(1, 1, *data_shape)) if params == 2 else None

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        y = one_hot(labels, self.num_classes, z.dtype)
        out = self.net(z if y is None else torch.cat([z, y], 1))[:, None]  # (B, 1, C, H, W)
        if self.log_scale is None:
            return out
        return torch.cat([out, self.log_scale.expand_as(out)], 1)
