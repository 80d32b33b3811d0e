"""A small MLP VAE (Kingma & Welling 2014) on 1-D signals, with a Gaussian decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from genlab import ConformanceCase, GenerativeModule
from genlab.errors import GenlabError
from genlab.nn import MLP
from genlab_signal.modality import line_plots


class SignalVAE(GenerativeModule):
    """Encoder and decoder MLPs around a standard normal latent; samples are decoder means.

    Args:
        length: Samples per signal.
        latent_dim: Size of the latent code.
        hidden: Hidden widths of the encoder (the decoder mirrors them).
        sigma: Standard deviation of the Gaussian decoder p(x | z).
        lr: Adam learning rate.
    """

    modality = "signal"

    def __init__(self, length: int = 64, latent_dim: int = 8, hidden: Sequence[int] = (128,),
                 sigma: float = 0.1, lr: float = 1e-3) -> None:
        super().__init__()
        if sigma <= 0 or latent_dim <= 0:
            raise GenlabError(f"model.sigma and model.latent_dim must be positive, got {sigma} "
                              f"and {latent_dim}")
        self.save_hyperparameters()
        self.data_shape = (length,)
        self.encoder = MLP(length, 2 * latent_dim, hidden, act="silu")
        self.decoder = MLP(latent_dim, length, tuple(reversed(hidden)), act="silu")

    def elbo(self, x: Tensor) -> Tensor:
        """Per-signal evidence lower bound (nats), one latent draw."""
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)  # (B, latent_dim)
        sigma = self.hparams.sigma
        rec = -0.5 * ((x - self.decoder(z)) / sigma).pow(2).sum(1)
        rec = rec - x.shape[1] * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return rec - kl

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Minimize the negative ELBO per signal."""
        loss = -self.elbo(batch["x"]).mean()
        self.log_train({"train/loss": loss})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over both networks."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def sample(self, num: int, temperature: float = 1.0, lowpass: int | None = None) -> Tensor:
        """``num`` signals ``(num, length)``: decoder means of z ~ N(0, temperature² I).

        Args:
            num: Number of signals.
            temperature: Scale of the prior's standard deviation.
            lowpass: Keep only frequencies up to this many cycles per signal (FFT low-pass);
                ``None``: all of them.
        """
        z = temperature * torch.randn(num, self.hparams.latent_dim, device=self.device)
        x = self.decoder(z)
        if lowpass is not None:
            spectrum = torch.fft.rfft(x, dim=1)
            spectrum[:, lowpass + 1:] = 0
            x = torch.fft.irfft(spectrum, n=x.shape[1], dim=1)
        return x

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """Reconstructions (blue: decoder mean of the posterior mean) of a few training signals
        (grey), logged by genlab's ``SampleLogger`` as ``pictures/reconstructions``."""
        x = batch["x"][:8]
        mu, _ = self.encoder(x).chunk(2, dim=1)
        return {"reconstructions": line_plots(self.decoder(mu), x, "reconstructions")}

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """The tiny case genlab's conformance kit runs on (genlab's ``tests/test_plugins.py``)."""
        from genlab_signal.data import SinesDataModule

        data = SinesDataModule(length=32, max_freq=4, train_size=256, val_size=64, batch_size=32)
        return ConformanceCase(data, {"length": 32, "latent_dim": 4, "hidden": [32]})

