"""The discriminator of adversarial diffusion distillation: trainable heads on frozen features.

Plain PyTorch, no Lightning. ``FeatureTaps`` reads intermediate activations of a frozen network
(by default the teacher's own denoiser, as latent ADD does; Sauer et al. 2024) and
``DiscriminatorHeads`` turns each one into logits (Sauer et al. 2023, section 3.2, following
Projected GAN and StyleGAN-T: small trainable heads on a frozen feature network).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.nn.point_denoiser import PointDenoiser
from genlab.nn.spectral import RebuildOnPickle
from genlab.nn.spectral import spectral_norm as normalize_spectrally
from genlab.nn.unet import UNet


def default_layers(net: nn.Module) -> list[str]:
    """Names of the layers tapped by default: the end of each U-Net level on the way down and
    the middle block, or every hidden activation of a point denoiser's MLP."""
    if isinstance(net, UNet):
        names = []
        for i, layers in enumerate(net.down):
            is_downsample = isinstance(layers[0], nn.Conv2d)
            next_is_downsample = i + 1 < len(net.down) and isinstance(net.down[i + 1][0],
                                                                       nn.Conv2d)
            if not is_downsample and (next_is_downsample or i + 1 == len(net.down)):
                names.append(f"down.{i}.{len(layers) - 1}")  # last block of a level
        return [*names, f"mid.{len(net.mid) - 1}"]
    if isinstance(net, PointDenoiser):
        return [f"mlp.{i}" for i, m in enumerate(net.mlp) if not isinstance(m, nn.Linear)]
    raise GenlabError(f"no default feature layers for a {type(net).__name__} teacher; set "
                      f"model.feature_layers to names from its named_modules()")


def _keep(store: dict[str, Tensor], name: str, module: nn.Module, args: tuple,
          output: Tensor) -> None:
    store[name] = output


class FeatureTaps(nn.Module):
    """Activations of ``layers`` of a frozen denoiser ``net(x_t, t, labels)`` at timestep ``t``.

    Hooks are registered for one call only, so the module stays picklable (DDP's spawn) and the
    network behaves normally everywhere else. Labels are left out: a conditional teacher then
    gives its unconditional (null-class) features.

    Args:
        net: The frozen network.
        layers: Names from ``net.named_modules()`` whose outputs are the features.
        timestep: Integer timestep at which the network is run.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str], timestep: int = 0) -> None:
        super().__init__()
        self.net = net
        self.layers = list(layers)
        self.timestep = timestep
        known = dict(net.named_modules())
        missing = [name for name in self.layers if name not in known]
        if missing or not self.layers:
            raise GenlabError(f"model.feature_layers {missing or '[]'} are not layers of the "
                              f"feature network; pick names from its named_modules(), e.g. "
                              f"{list(known)[1:5]}")

    def forward(self, x: Tensor) -> list[Tensor]:
        """The features of ``x`` ``(B, ...)``: one tensor per layer, batch first."""
        store: dict[str, Tensor] = {}
        modules = dict(self.net.named_modules())
        handles = [modules[name].register_forward_hook(partial(_keep, store, name))
                   for name in self.layers]
        try:
            t = torch.full((len(x),), self.timestep, device=x.device, dtype=torch.long)
            self.net(x, t, None)
        finally:
            for handle in handles:
                handle.remove()
        return [store[name] for name in self.layers]


class Head(nn.Module):
    """Logits from one feature: 1×1 convolutions on a map ``(B, C, H, W)`` (one logit per
    position, as a patch discriminator) or a two-layer MLP on a vector ``(B, C)``.

    Args:
        channels: Channels of the feature.
        width: Hidden width.
        spatial: Whether the feature is a map (else a vector).
        spectral_norm: Spectral normalization on both layers (Miyato et al. 2018).
    """

    def __init__(self, channels: int, width: int, spatial: bool, spectral_norm: bool) -> None:
        super().__init__()
        norm = normalize_spectrally if spectral_norm else (lambda layer: layer)
        if spatial:
            first, last = nn.Conv2d(channels, width, 1), nn.Conv2d(width, 1, 1)
        else:
            first, last = nn.Linear(channels, width), nn.Linear(width, 1)
        self.net = nn.Sequential(norm(first), nn.LeakyReLU(0.2), norm(last))

    def forward(self, feature: Tensor) -> Tensor:  # (B, C, ...) -> (B, N) logits
        """Logits of one feature, flattened per example."""
        return self.net(feature).flatten(1)


class DiscriminatorHeads(RebuildOnPickle, nn.Module):
    """One ``Head`` per feature; the discriminator's only trainable part.

    Args:
        shapes: Shape of each feature without the batch, ``(C, H, W)`` or ``(C,)``.
        width: Hidden width of every head.
        spectral_norm: Spectral normalization in the heads.
    """

    def __init__(self, shapes: Sequence[Sequence[int]], width: int = 64,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        self._args = (tuple(tuple(s) for s in shapes), width, spectral_norm)  # to pickle
        self.heads = nn.ModuleList(Head(s[0], width, len(s) == 3, spectral_norm) for s in shapes)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Logits ``(B, N_k)`` of each feature."""
        return [head(f) for head, f in zip(self.heads, features)]
