"""DCGAN-style conv stacks: vector -> image (``ConvDecoder``), image -> vector (``ConvEncoder``).

Radford, Metz and Chintala 2016, "Unsupervised Representation Learning with Deep Convolutional
GANs": strided 4x4 convolutions instead of pooling, transposed convolutions to upsample, batch
norm in the generator, LeakyReLU(0.2) in the discriminator. Every upsampling or downsampling layer
doubles or halves the resolution, so each supported image size has a fixed base resolution:

============  ===============  =========================
image_size    base resolution  up/downsampling layers
============  ===============  =========================
28 (MNIST)    7 x 7            2
32 (CIFAR)    4 x 4            3
64            4 x 4            4
============  ===============  =========================

GANs, VAEs and hybrids share these; the model's recipe (losses, conditioning) lives in the plugin.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genlab.errors import GenlabError
from genlab.nn.mlp import Activation, activation

Norm = Literal["none", "batch"]
OutAct = Literal["tanh", "sigmoid", "none"]

# image_size -> (base resolution, number of stride-2 layers between it and the image)
_LAYOUT: dict[int, tuple[int, int]] = {28: (7, 2), 32: (4, 3), 64: (4, 4)}


def conv_layout(image_size: int, channels: int) -> tuple[int, int]:
    """``(base resolution, number of stride-2 layers)`` for an image size, or a ``GenlabError``."""
    if image_size not in _LAYOUT:
        raise GenlabError(
            f"DCGAN conv nets support image_size 28, 32 or 64, got {image_size}; resize the data "
            f"(data.image_size) to one of them"
        )
    if channels not in (1, 3):
        raise GenlabError(
            f"DCGAN conv nets support 1 (grayscale) or 3 (RGB) channels, got {channels}; "
            f"set the data's channels to 1 or 3"
        )
    return _LAYOUT[image_size]


def _norm2d(norm: Norm, num_channels: int) -> nn.Module:
    return nn.BatchNorm2d(num_channels) if norm == "batch" else nn.Identity()


def _down_stack(channels: int, n_down: int, width: int, sn: Any, norm: Norm,
                act: Activation) -> tuple[list[nn.Module], int]:
    """DCGAN's downsampling convs (widths doubling from ``width``) and their output width."""
    layers: list[nn.Module] = []
    c_in, c_out = channels, width
    for i in range(n_down):
        layers.append(sn(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)))
        if i > 0:
            layers.append(_norm2d(norm, c_out))
        layers.append(activation(act))
        c_in, c_out = c_out, c_out * 2
    return layers, c_in


def _up_stack(c0: int, n_up: int, channels: int, norm: Norm, out_act: OutAct) -> nn.Sequential:
    """DCGAN's upsampling transposed convs from ``c0`` maps (widths halving) to the image."""
    layers: list[nn.Module] = []
    c = c0
    for _ in range(n_up - 1):
        layers += [
            nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=norm == "none"),
            _norm2d(norm, c // 2),
            nn.ReLU(),
        ]
        c //= 2
    layers.append(nn.ConvTranspose2d(c, channels, 4, stride=2, padding=1))
    if out_act == "tanh":
        layers.append(nn.Tanh())
    elif out_act == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class ConvDecoder(nn.Module):
    """Vector -> image: a linear projection to ``base x base`` maps, then 4x4 transposed convs.

    Channel widths halve as the resolution doubles and end at ``width`` before the last layer
    (``width * 2**(n-1)`` at the base for ``n`` upsampling layers), as in DCGAN.

    Args:
        in_features: Size of the input vector (a GAN's latent, plus a label embedding if any).
        channels: Image channels, 1 or 3.
        image_size: Image height and width: 28, 32 or 64.
        width: Channels of the last hidden layer; the others are multiples of it.
        norm: ``batch`` (DCGAN's generator) or ``none``.
        out_act: ``tanh`` for images in [-1, 1] (a GAN), ``none`` for logits or means (a VAE),
            or ``sigmoid``.
    """

    def __init__(
        self,
        in_features: int,
        channels: int,
        image_size: int,
        width: int = 64,
        norm: Norm = "batch",
        out_act: OutAct = "tanh",
    ) -> None:
        super().__init__()
        base, n_up = conv_layout(image_size, channels)
        c0 = width * 2 ** (n_up - 1)
        self.base, self.c0 = base, c0
        # (B, in) -> (B, c0 * base * base): DCGAN's first 4x4 transposed conv on a 1x1 input
        self.project = nn.Linear(in_features, c0 * base * base, bias=norm == "none")
        self.project_act = nn.Sequential(_norm2d(norm, c0), nn.ReLU())
        self.net = _up_stack(c0, n_up, channels, norm, out_act)

    def forward(self, z: Tensor) -> Tensor:  # (B, in_features) -> (B, C, H, W)
        """Decode a batch of vectors into images."""
        h = self.project(z).view(len(z), self.c0, self.base, self.base)
        return self.net(self.project_act(h))


class ConvEncoder(nn.Module):
    """Image -> vector: 4x4 stride-2 convs down to the base resolution, then a linear head.

    Widths double as the resolution halves, starting at ``width`` (DCGAN's discriminator). A GAN
    discriminator is ``ConvEncoder(out_features=1)``; a projection discriminator uses
    ``features`` (the flattened maps, ``feature_dim`` wide) with its own heads.

    Args:
        channels: Image channels, 1 or 3.
        image_size: Image height and width: 28, 32 or 64.
        out_features: Size of the output vector (1 for a discriminator's logit, ``2 * latent``
            for a VAE encoder's mean and log-variance).
        width: Channels of the first conv; the others are multiples of it.
        spectral_norm: Wrap every conv and the head in spectral normalization (Miyato et al.
            2018), which bounds the discriminator's Lipschitz constant.
        norm: ``none`` (needed with per-example gradient penalties: R1, WGAN-GP) or ``batch``.
            The first conv never has one, as in DCGAN.
        act: Activation after every conv.
        pack: Images stacked along channels in one input, ``pack * channels`` channels in all
            (a PacGAN discriminator's packed samples).
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        out_features: int,
        width: int = 64,
        spectral_norm: bool = False,
        norm: Norm = "none",
        act: Activation = "leaky_relu",
        pack: int = 1,
    ) -> None:
        super().__init__()
        base, n_down = conv_layout(image_size, channels)
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        layers, c_in = _down_stack(pack * channels, n_down, width, sn, norm, act)
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = c_in * base * base
        self.head = sn(nn.Linear(self.feature_dim, out_features))

    def features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, feature_dim)
        """The flattened conv features before the head."""
        return self.net(x)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_features)
        """Encode a batch of images into vectors."""
        return self.head(self.features(x))


class GridEncoder(nn.Module):
    """Image -> latent maps ``(B, out_channels, base, base)``, e.g. 7x7 for MNIST.

    DCGAN's downsampling convs, then 3x3 and 1x1 convs to ``out_channels``; no flattening, since
    a VQ-VAE quantizes every position.

    Args:
        channels: Image channels, 1 or 3.
        image_size: 28 (7x7 latents), 32 (4x4) or 64 (4x4).
        out_channels: Channels of the latent maps (a VQ code's size).
        width: Channels of the first conv; the others are multiples of it.
        norm: ``none`` or ``batch`` after every conv but the first.
    """

    def __init__(self, channels: int, image_size: int, out_channels: int, width: int = 64,
                 norm: Norm = "none") -> None:
        super().__init__()
        base, n_down = conv_layout(image_size, channels)
        layers, c = _down_stack(channels, n_down, width, lambda m: m, norm, "leaky_relu")
        self.net = nn.Sequential(*layers, nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(c, out_channels, 1))
        self.grid = base

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_channels, base, base)
        """Encode images into latent maps."""
        return self.net(x)


class GridDecoder(nn.Module):
    """Latent maps ``(B, in_channels, base, base)`` -> image (the mirror of ``GridEncoder``).

    Two 3x3 convs to DCGAN widths, then DCGAN's transposed convs.

    Args:
        in_channels: Channels of the latent maps.
        channels: Image channels, 1 or 3.
        image_size: 28, 32 or 64.
        width: Channels of the last hidden layer; the others are multiples of it.
        norm: ``none`` or ``batch``.
        out_act: ``tanh`` for images in [-1, 1], ``sigmoid`` or ``none``.
    """

    def __init__(self, in_channels: int, channels: int, image_size: int, width: int = 64,
                 norm: Norm = "none", out_act: OutAct = "tanh") -> None:
        super().__init__()
        _, n_up = conv_layout(image_size, channels)
        c0 = width * 2 ** (n_up - 1)
        self.project = nn.Sequential(nn.Conv2d(in_channels, c0, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(c0, c0, 3, padding=1), _norm2d(norm, c0),
                                     nn.ReLU())
        self.net = _up_stack(c0, n_up, channels, norm, out_act)

    @property
    def last_layer(self) -> nn.Parameter:
        """Weight of the last conv: where VQ-GAN's adaptive weight compares gradients."""
        convs = [m for m in self.net if isinstance(m, nn.ConvTranspose2d)]
        return convs[-1].weight

    def forward(self, z: Tensor) -> Tensor:  # (B, in_channels, base, base) -> (B, C, H, W)
        """Decode latent maps into images."""
        return self.net(self.project(z))


class PatchDiscriminator(nn.Module):
    """Image -> a logit per patch ``(B, base * base)`` and features ``(B, F)`` (PatchGAN).

    Isola et al. 2017 (pix2pix, sec. 3.2.2): the discriminator judges each overlapping patch
    rather than the whole image, as VQ-GAN's does (Esser et al. 2021, sec. 3.1). The features
    are the flattened maps under the logit head: a learned feature space for reconstructions
    (Larsen et al. 2016), as the VAE-GAN's ``Dis_l``.

    Args:
        channels: Image channels, 1 or 3.
        image_size: 28 (7x7 patches), 32 or 64 (4x4).
        width: Channels of the first conv; the others are multiples of it.
        spectral_norm: Spectral normalization on every conv.
    """

    def __init__(self, channels: int, image_size: int, width: int = 64,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        _, n_down = conv_layout(image_size, channels)
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        layers, c = _down_stack(channels, n_down, width, sn, "none", "leaky_relu")
        self.net = nn.Sequential(*layers)
        self.head = sn(nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B, P), features (B, F))`` of images ``x``."""
        h = self.net(x)
        return self.head(h).flatten(1), h.flatten(1)
