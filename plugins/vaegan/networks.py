"""The VAE-GAN's three networks, built from ``genlab.nn``: plain PyTorch, no Lightning.

The decoder (the GAN's generator) is ``genlab.nn.conv.ConvDecoder``. The discriminator also hands
out its last hidden layer, ``Dis_l(x)`` in Larsen et al. 2016 (section 2.2), the feature space in
which reconstructions are measured. A class-conditional model (``num_classes``) feeds the decoder
a label embedding beside ``z`` and gives the discriminator a projection term (Miyato and Koyama
2018); the encoder stays q(z | x).
"""

from __future__ import annotations

from torch import Tensor, nn

from genlab.nn.conditions import ClassProjection, LabelConcat
from genlab.nn.conv import ConvDecoder, ConvEncoder, Norm


class Decoder(ConvDecoder):
    """``z (B, latent_dim)`` (and labels ``(B,)``) -> images ``(B, C, H, W)`` in [-1, 1].

    A conditional decoder embeds the label to ``latent_dim`` values concatenated to ``z``.
    """

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int,
                 norm: Norm = "batch", num_classes: int | None = None) -> None:
        embed_dim = latent_dim if num_classes else 0
        super().__init__(latent_dim + embed_dim, channels, image_size, width, norm=norm,
                         out_act="tanh")
        self.embed = LabelConcat(num_classes, embed_dim) if num_classes else None

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = self.embed(z, labels)
        return super().forward(z)


class Encoder(nn.Module):
    """``x (B, C, H, W)`` -> ``(mu, logvar)`` of q(z | x), each ``(B, latent_dim)``."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, width: int) -> None:
        super().__init__()
        self.net = ConvEncoder(channels, image_size, 2 * latent_dim, width)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar


class Discriminator(nn.Module):
    """``x (B, C, H, W)`` (and labels) -> ``(logits (B,), features (B, F))``: a DCGAN
    discriminator, with a projection term when conditional.

    ``features`` are the flattened maps of the last conv layer, after its activation: the
    hidden layer ``Dis_l`` of the learned similarity metric (the same for every label).
    """

    def __init__(self, channels: int, image_size: int, width: int, norm: Norm = "none",
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.net = ConvEncoder(channels, image_size, 1, width, norm=norm)
        self.feature_dim = self.net.feature_dim
        self.embed = ClassProjection(num_classes, self.feature_dim) if num_classes else None

    def features(self, x: Tensor) -> Tensor:
        return self.net.features(x)  # (B, F)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        logits = self.net.head(h).squeeze(1)
        if self.embed is not None:
            logits = logits + self.embed(h, labels)
        return logits, h
