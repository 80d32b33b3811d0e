"""The VAE's encoder q(z | x, y) and decoder p(x | z, y): plain PyTorch, no Lightning.

Both wrap a network from ``genlab.nn``. A conditional model (``num_classes`` set) gives the
encoder the one-hot label next to the image and the decoder next to ``z``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
