"""Time-conditioned MLP denoiser for low-dimensional points (2-D toy data)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genlab.nn.mlp import MLP, Activation
from genlab.nn.unet import TimeEmbedding


class PointDenoiser(nn.Module):
    """An MLP on ``[x_t, embedding(t, label)]`` that outputs a prediction of ``x_t``'s shape.

    Called as ``net(x_t, t, labels)`` like every genlab denoiser (see ``genlab.diffusion``).

    Args:
        dim: Dimension of a point.
        hidden: Hidden widths of the MLP.
        emb_dim: Width of the time (and class) embedding fed to the MLP.
        act: Activation of the MLP.
        num_classes: Number of classes for a class-conditional network, else ``None``; label
            ``num_classes`` is the null class used by classifier-free guidance.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: Sequence[int] = (256, 256, 256),
        emb_dim: int = 128,
        act: Activation = "silu",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.embed = TimeEmbedding(emb_dim, emb_dim, num_classes)
        self.mlp = MLP(dim + emb_dim, dim, hidden, act=act)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict from noisy points ``x`` ``(B, dim)`` at timesteps ``t`` ``(B,)``."""
        return self.mlp(torch.cat([x, self.embed(t, labels)], dim=1))  # (B, dim)
