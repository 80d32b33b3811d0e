"""The VAE-GAN's encoder and discriminator, built from ``genlab.nn``: plain PyTorch, no Lightning.

The decoder (the GAN's generator) is ``genlab.nn.conv.ConvDecoder`` as it is. The discriminator
also hands out its last hidden layer, ``Dis_l(x)`` in Larsen et al. 2016 (section 2.2), the
feature space in which reconstructions are measured.
"""

from __future__ import annotations

from torch import Tensor, nn

from genlab.nn.conv import ConvEncoder, Norm


class Encoder(nn.Module):
    """``x (B, C, H, W)`` -> ``(mu, logvar)`` of q(z | x), each ``(B, latent_dim)``."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, width: int) -> None:
        super().__init__()
        self.net = ConvEncoder(channels, image_size, 2 * latent_dim, width)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar


class Discriminator(nn.Module):
    """``x (B, C, H, W)`` -> ``(logits (B,), features (B, F))``: a DCGAN discriminator.

    ``features`` are the flattened maps of the last conv layer, after its activation: the
    hidden layer ``Dis_l`` of the learned similarity metric.
    """

    def __init__(self, channels: int, image_size: int, width: int, norm: Norm = "none") -> None:
        super().__init__()
        self.net = ConvEncoder(channels, image_size, 1, width, norm=norm)
        self.feature_dim = self.net.feature_dim

    def features(self, x: Tensor) -> Tensor:
        return self.net.features(x)  # (B, F)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.net.head(h).squeeze(1), h
