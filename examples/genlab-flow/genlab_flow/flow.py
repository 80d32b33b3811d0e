"""RealNVP (Dinh et al., 2017) on points: affine coupling layers, exact log-likelihood.

A family genlab does not ship, written as a third party would: a ``GenerativeModule`` built from
``genlab.nn`` parts, registered by an entry point in this package's pyproject.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab import ConformanceCase, GenerativeModule
from genlab.nn import MLP


class Coupling(nn.Module):
    """Affine coupling: the coordinates outside ``mask`` are scaled and shifted by a function of
    those inside it, so the Jacobian is triangular and its log-determinant the sum of log-scales."""

    def __init__(self, mask: Tensor, hidden: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        dim = len(mask)
        self.net = MLP(dim, 2 * dim, hidden, act="silu")
        nn.init.zeros_(self.net[-1].weight)  # start as the identity map
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self.net(x * self.mask).chunk(2, dim=1)
        free = 1 - self.mask
        return torch.tanh(log_scale) * free, shift * free  # tanh bounds the scales: stable

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data side -> latent side, and log|det J| per example."""
        log_scale, shift = self._scale_shift(x)
        return x * log_scale.exp() + shift, log_scale.sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        """Latent side -> data side."""
        log_scale, shift = self._scale_shift(z)  # the masked half is unchanged by forward
        return (z - shift) * (-log_scale).exp()


class RealNVP(GenerativeModule):
    """A stack of affine couplings with alternating masks over a standard normal base.

    Args:
        data_dim: Dimension of a data point.
        layers: Number of coupling layers.
        hidden: Hidden widths of each coupling's MLP.
        lr: Adam learning rate.
    """

    modality = "points"

    def __init__(self, data_dim: int = 2, layers: int = 8, hidden: Sequence[int] = (128, 128),
                 lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_shape = (data_dim,)
        parity = torch.arange(data_dim) % 2
        self.couplings = nn.ModuleList(
            Coupling((parity if i % 2 == 0 else 1 - parity).float(), hidden) for i in range(layers)
        )

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """The tiny case genlab's conformance kit runs on (``tests/test_plugins.py``)."""
        from genlab.data.toy import ToyDataModule

        return ConformanceCase(ToyDataModule(train_size=256, val_size=64, batch_size=32),
                               {"layers": 2, "hidden": [16]}, ddp=True)

    def to_latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``z = f(x)`` and ``log|det df/dx|`` per example."""
        log_det = torch.zeros(len(x), device=x.device)
        for coupling in self.couplings:
            x, ld = coupling(x)
            log_det = log_det + ld
        return x, log_det

    def log_likelihood(self, batch: dict[str, Tensor]) -> Tensor:
        z, log_det = self.to_latent(batch["x"])
        log_base = -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        return log_base + log_det

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = -self.log_likelihood(batch).mean()
        self.log_train({"train/nll": loss})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def sample(self, num: int, temperature: float = 1.0) -> Tensor:
        z = temperature * torch.randn(num, self.hparams.data_dim, device=self.device)
        for coupling in reversed(self.couplings):
            z = coupling.inverse(z)
        return z
