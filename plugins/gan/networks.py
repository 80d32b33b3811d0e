"""The GAN's two networks, built from ``genlab.nn``: plain PyTorch, no Lightning.

Both take optional class labels. The generator concatenates a label embedding to its latent; the
discriminator is a projection discriminator (Miyato and Koyama 2018, "cGANs with Projection
Discriminator", eq. 3): ``D(x, y) = ψ(φ(x)) + <embed(y), φ(x)>``. A packing discriminator
(PacGAN, Lin et al. 2018) judges ``pack`` samples at once, stacked along channels (features).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.nn.conditions import ClassProjection, LabelConcat
from genlab.nn.conv import ConvDecoder, ConvEncoder
from genlab.nn.mlp import MLP, activation
from genlab.nn.spectral import RebuildOnPickle
from genlab.nn.spectral import spectral_norm as normalize_spectrally


class Generator(nn.Module):
    """``z`` (and a label) -> a point ``(B, D)`` or an image ``(B, C, H, W)`` in [-1, 1].

    Args:
        latent_dim: Size of ``z``.
        data_shape: ``(D,)`` for points (an MLP), ``(C, H, W)`` for images (a DCGAN decoder).
        hidden: Hidden widths of the MLP.
        width: Channels of the conv decoder's last hidden layer.
        num_classes: Classes of a conditional generator, or ``None``.
    """

    def __init__(self, latent_dim: int, data_shape: Sequence[int], hidden: Sequence[int],
                 width: int, num_classes: int | None) -> None:
        super().__init__()
        embed_dim = latent_dim if num_classes else 0
        self.embed = LabelConcat(num_classes, embed_dim) if num_classes else None
        if len(data_shape) == 1:
            self.net: nn.Module = MLP(latent_dim + embed_dim, data_shape[0], hidden, act="relu")
        else:
            channels, size, _ = data_shape
            self.net = ConvDecoder(latent_dim + embed_dim, channels, size, width, out_act="tanh")

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Map latents ``(B, latent_dim)`` (and labels ``(B,)``) to samples."""
        if self.embed is not None:
            z = self.embed(z, labels)  # (B, 2 * latent_dim)
        return self.net(z)


class Discriminator(RebuildOnPickle, nn.Module):
    """A sample (and its label) -> one logit per example, ``(B,)``.

    Args:
        data_shape: ``(D,)`` for points (an MLP), ``(C, H, W)`` for images (a DCGAN encoder).
        hidden: Hidden widths of the MLP.
        width: Channels of the conv encoder's first layer.
        num_classes: Classes of a projection discriminator, or ``None``.
        spectral_norm: Spectral normalization on every layer.
        pack: Samples judged together (PacGAN): ``B`` samples give ``B // pack`` logits, one per
            run of ``pack`` consecutive samples; a remainder of ``B % pack`` is left out.
    """

    def __init__(self, data_shape: Sequence[int], hidden: Sequence[int], width: int,
                 num_classes: int | None, spectral_norm: bool, pack: int = 1) -> None:
        super().__init__()
        self._args = (tuple(data_shape), tuple(hidden), width, num_classes, spectral_norm, pack)
        self.pack = pack
        if len(data_shape) == 1:
            # φ: the MLP up to its last hidden layer; ψ: a linear head, as in MLP(D, 1, hidden).
            body = MLP(pack * data_shape[0], hidden[-1], hidden[:-1], act="leaky_relu")
            self.phi = nn.Sequential(body, activation("leaky_relu"))
            self.psi = nn.Linear(hidden[-1], 1)
        else:
            channels, size, _ = data_shape
            encoder = ConvEncoder(channels, size, 1, width, pack=pack)
            self.phi, self.psi = encoder.net, encoder.head
        feature_dim = self.psi.in_features
        self.embed = ClassProjection(num_classes, feature_dim) if num_classes else None
        if spectral_norm:
            normalize_spectrally(self)  # pickles through RebuildOnPickle (DDP spawn pickles)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``(B // pack,)`` of samples ``x`` (and labels ``(B,)``, unpacked models only)."""
        if self.pack > 1:
            x = packed(x, self.pack)
        h = self.phi(x)  # (B, F)
        logits = self.psi(h).squeeze(1)
        if self.embed is not None:
            logits = logits + self.embed(h, labels)
        return logits


def packed(x: Tensor, pack: int) -> Tensor:
    """``(B, C, ...)`` -> ``(B // pack, pack * C, ...)``: each run of ``pack`` consecutive samples
    becomes one, stacked along dimension 1; a remainder of ``B % pack`` samples is dropped."""
    num = len(x) // pack
    if num == 0:
        raise GenlabError(f"a batch of {len(x)} samples cannot be packed {pack} at a time: "
                          f"set data.batch_size to a multiple of model.pack={pack}")
    return x[: num * pack].reshape(num, pack * x.shape[1], *x.shape[2:])
