"""Image-to-image networks: a U-Net generator and a patch discriminator (Isola et al. 2017).

"Image-to-Image Translation with Conditional Adversarial Networks" (pix2pix), section 3.2: the
generator is an encoder-decoder whose mirrored layers are joined by skip connections, so low-level
structure (edges, positions) passes straight from the source to the output; the discriminator
("PatchGAN") classifies each patch of a (source, image) pair as real or fake, which models
high-frequency detail while an L1 term takes care of the low frequencies.

Both follow the DCGAN conventions of ``genlab.nn.conv``: 4x4 stride-2 convolutions, LeakyReLU(0.2)
down, ReLU up. Group norm instead of pix2pix's batch norm: it behaves the same in training and
in evaluation and keeps no per-process statistics, so DDP and resumed runs stay exact.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genlab.errors import GenlabError

Norm = Literal["group", "none"]


def _norm(channels: int, norm: Norm = "group", groups: int = 8) -> nn.Module:
    return nn.GroupNorm(math.gcd(groups, channels), channels) if norm == "group" else nn.Identity()


class UNetGenerator(nn.Module):
    """Source image ``(B, C_in, H, W)`` -> image ``(B, C_out, H, W)`` in [-1, 1].

    ``depth`` stride-2 convolutions halve the resolution (widths ``width * 2**i``, capped at
    ``8 * width``), two 3x3 convolutions work at the bottom, and as many transposed convolutions
    come back up, each eating the mirrored encoder map (the U-Net skips of pix2pix). Sides must be
    divisible by ``2 ** depth`` (28 -> 14 -> 7 for MNIST with ``depth = 2``).

    Args:
        in_channels: Channels of the source images.
        out_channels: Channels of the generated images.
        width: Channels of the first encoder layer.
        depth: Number of halvings.
        dropout: Dropout in the decoder (pix2pix's noise; 0: a deterministic translation).
        norm: ``group`` (group norm after every conv but the first) or ``none``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32,
                 depth: int = 2, dropout: float = 0.0, norm: Norm = "group") -> None:
        super().__init__()
        if depth < 1:
            raise GenlabError(f"the U-Net generator needs depth >= 1, got {depth}")
        self.depth = depth
        widths = [min(width * 2**i, 8 * width) for i in range(depth)]
        self.down = nn.ModuleList()
        c_in = in_channels
        for i, c in enumerate(widths):  # (B, c_in, S, S) -> (B, c, S/2, S/2)
            layers = [nn.Conv2d(c_in, c, 4, stride=2, padding=1)]
            layers += [_norm(c, norm)] if i > 0 else []  # none on the first, as in pix2pix
            self.down.append(nn.Sequential(*layers, nn.LeakyReLU(0.2)))
            c_in = c
        self.bottom = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, padding=1), _norm(c_in, norm), nn.ReLU(),
            nn.Conv2d(c_in, c_in, 3, padding=1), _norm(c_in, norm), nn.ReLU())
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):  # eats the bottom (or previous) map and skip i
            c_out = widths[i - 1] if i > 0 else width
            self.up.append(nn.Sequential(
                nn.ConvTranspose2d(c_in + widths[i], c_out, 4, stride=2, padding=1),
                _norm(c_out, norm), nn.Dropout(dropout), nn.ReLU()))
            c_in = c_out
        self.out = nn.Sequential(nn.Conv2d(c_in + in_channels, out_channels, 3, padding=1),
                                 nn.Tanh())

    def forward(self, source: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        """Translate a batch of source images."""
        side = 2**self.depth
        if source.shape[-1] % side or source.shape[-2] % side:
            raise GenlabError(f"the U-Net generator halves images {self.depth} times; their "
                              f"sides must be divisible by {side}, got {tuple(source.shape[-2:])}")
        skips, h = [], source
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        h = self.bottom(h)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1))
        return self.out(torch.cat([h, source], dim=1))  # the source itself as the last skip


class PairDiscriminator(nn.Module):
    """A (source, image) pair -> one real/fake logit per patch, ``(B, 1, H / 2**n, W / 2**n)``.

    The conditional PatchGAN of pix2pix; ``genlab.nn.PatchDiscriminator`` is the unconditional
    one (VQ-GAN).

    ``n_down`` 4x4 stride-2 convolutions (widths doubling from ``width``), a 3x3 convolution and a
    3x3 one-channel head; the losses of ``genlab.losses.ADVERSARIAL_LOSSES`` average over patches
    as over examples. On 28x28 images with ``n_down = 2`` each logit sees a 22x22 patch.

    Args:
        in_channels: Channels of the source and the image together.
        width: Channels of the first layer.
        n_down: Number of halvings.
        spectral_norm: Spectral normalization on every layer (then no group norm).
        norm: ``group`` (group norm after every conv but the first and the head) or ``none``.
    """

    def __init__(self, in_channels: int = 2, width: int = 32, n_down: int = 2,
                 spectral_norm: bool = False, norm: Norm = "group") -> None:
        super().__init__()
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        norm = "none" if spectral_norm else norm
        layers: list[nn.Module] = []
        c_in, c = in_channels, width
        for i in range(n_down):
            layers.append(sn(nn.Conv2d(c_in, c, 4, stride=2, padding=1)))
            layers += [_norm(c, norm)] if i > 0 else []
            layers.append(nn.LeakyReLU(0.2))
            c_in, c = c, 2 * c
        layers += [sn(nn.Conv2d(c_in, c, 3, padding=1)), _norm(c, norm), nn.LeakyReLU(0.2),
                   sn(nn.Conv2d(c, 1, 3, padding=1))]
        self.net = nn.Sequential(*layers)

    def forward(self, source: Tensor, image: Tensor) -> Tensor:  # -> (B, 1, h, w) logits
        """Patch logits of ``image`` as a translation of ``source``."""
        return self.net(torch.cat([source, image], dim=1))
