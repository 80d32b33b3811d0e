"""Time-conditioned MLP denoiser for low-dimensional points (2-D toy data)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.nn.mlp import MLP, Activation
from genlab.nn.unet import TimeEmbedding

FOURIER_SEED = 0  # the random frequencies depend on this alone, not on the global RNG


class PointDenoiser(nn.Module):
    """An MLP on ``[x_t, fourier(x_t), embedding(t, label)]``, predicting in ``x_t``'s shape.

    Called as ``net(x_t, t, labels)`` like every genlab denoiser (see ``genlab.diffusion``).

    Why Fourier features: near clean data the denoiser of tight modes (e.g. grid-25, sigma 0.05
    at spacing 2) is a sawtooth in ``x_t`` (pull to the nearest mode). A plain MLP on raw
    coordinates learns such high-frequency functions very slowly (spectral bias; Tancik et al.
    2020), so its samples land between modes; ``sin``/``cos`` of random projections of ``x_t``
    make them easy to fit.

    Args:
        dim: Dimension of a point.
        hidden: Hidden widths of the MLP.
        emb_dim: Width of the time (and class) embedding fed to the MLP.
        act: Activation of the MLP.
        num_classes: Number of classes for a class-conditional network, else ``None``; label
            ``num_classes`` is the null class used by classifier-free guidance.
        fourier_features: Number of random frequencies ``b ~ N(0, fourier_scale² I)``; the MLP
            also sees ``sin(2π b·x)`` and ``cos(2π b·x)``. 0: raw coordinates only.
        fourier_scale: Standard deviation of the frequencies, in cycles per unit of ``x_t``;
            about one over the mode spacing works (lower generalises better between modes).
    """

    fourier: Tensor | None

    def __init__(
        self,
        dim: int = 2,
        hidden: Sequence[int] = (256, 256, 256),
        emb_dim: int = 128,
        act: Activation = "silu",
        num_classes: int | None = None,
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if fourier_features < 0 or fourier_scale <= 0:
            raise GenlabError(f"fourier_features must be >= 0 and fourier_scale > 0, got "
                              f"{fourier_features} and {fourier_scale}")
        self.embed = TimeEmbedding(emb_dim, emb_dim, num_classes)
        if fourier_features:
            generator = torch.Generator().manual_seed(FOURIER_SEED)
            freqs = fourier_scale * torch.randn(dim, fourier_features, generator=generator)
            self.register_buffer("fourier", freqs)  # persistent: checkpoints hold it
        else:
            self.fourier = None
        self.mlp = MLP(dim + 2 * fourier_features + emb_dim, dim, hidden, act=act)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict from noisy points ``x`` ``(B, dim)`` at timesteps ``t`` ``(B,)``."""
        parts = [x]
        if self.fourier is not None:
            angles = 2 * math.pi * x @ self.fourier  # (B, fourier_features)
            parts += [angles.sin(), angles.cos()]
        return self.mlp(torch.cat([*parts, self.embed(t, labels)], dim=1))  # (B, dim)
