"""U-Net denoiser for images (Ho et al. 2020, appendix B; the layout of ``guided-diffusion``).

Residual blocks with group norm and a timestep embedding (a scale and shift after the norm),
self-attention at low resolutions, an optional class embedding with one extra "null" class for
classifier-free guidance, an optional text encoder (its vector added to the time embedding) and
an optional source-image encoder (its feature maps concatenated to the input). Called as
``unet(x_t, t, cond)`` like every genlab denoiser (see ``genlab.diffusion``): ``cond`` is class
ids, or a dict of conditions by kind (``genlab.conditions``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.conditions import Conditions
from genlab.nn.conditions import ImageEncoder, LabelEmbedding, TextEncoder


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer position encoding of (possibly fractional) timesteps ``t``: ``(B,) -> (B, dim)``.

    Half the channels are ``cos(t * f_k)``, half ``sin(t * f_k)``, with frequencies ``f_k``
    geometrically spaced from 1 down to ``1 / max_period`` (Vaswani et al. 2017, section 3.5).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))  # odd dim: one zero channel


class TimeEmbedding(nn.Module):
    """Sinusoidal timestep features through a two-layer MLP, plus an optional class embedding.

    Args:
        dim: Width of the sinusoidal features.
        out_dim: Width of the embedding.
        num_classes: Number of classes, or ``None`` for an unconditional network. Label
            ``num_classes`` is the null class (no label); ``labels=None`` means it for all.
    """

    def __init__(self, dim: int, out_dim: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.num_classes = num_classes
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        self.classes = None if num_classes is None else LabelEmbedding(num_classes, out_dim)

    def forward(self, t: Tensor, labels: Tensor | None = None) -> Tensor:  # (B,) -> (B, out_dim)
        """Embed timesteps ``t`` and, for a conditional network, ``labels``."""
        emb = self.mlp(sinusoidal_embedding(t, self.dim))
        if self.classes is not None:
            if labels is None:
                labels = torch.full_like(t, self.num_classes, dtype=torch.long)
            emb = emb + self.classes(labels)
        return emb


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding scaling and shifting in between, and a skip.

    The embedding (time and conditions) scales and shifts the features *after* the second group
    norm (FiLM; ``use_scale_shift_norm`` of Dhariwal & Nichol 2021). Added before the norm, as
    in Ho et al.'s U-Net, it is one constant per channel, which the norm subtracts again
    whenever a group holds a single channel (``_norm`` on a narrow network: 16 channels with 32
    groups): such a network never sees the timestep, the label or the prompt.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        emb_dim: Width of the time embedding.
        dropout: Dropout before the second convolution.
        groups: Groups of the group norms.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0,
                 groups: int = 32) -> None:
        super().__init__()
        self.block1 = nn.Sequential(_norm(in_ch, groups), nn.SiLU(),
                                    nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch))  # scale, shift
        self.norm2 = _norm(out_ch, groups)
        self.block2 = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                    nn.Conv2d(out_ch, out_ch, 3, padding=1))
        nn.init.zeros_(self.block2[-1].weight)  # each block starts as the identity
        nn.init.zeros_(self.block2[-1].bias)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # (B, in, H, W) -> (B, out, H, W)
        """Apply the block, conditioned on ``emb`` ``(B, emb_dim)``."""
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(self.block1(x)) * (1 + scale) + shift
        return self.skip(x) + self.block2(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection.

    Args:
        channels: Channels of the feature map (divisible by ``heads``).
        heads: Number of heads.
        groups: Groups of the group norm.
    """

    def __init__(self, channels: int, heads: int = 4, groups: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        """Attend every pixel to every other."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (B, nh, HW, hs) for scaled_dot_product_attention
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                             v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """A U-Net mapping ``(x_t, t, labels)`` to a prediction of ``x_t``'s shape.

    Level ``i`` works at resolution ``size / 2**i`` with ``channels * channel_mults[i]``
    channels; image sides must be divisible by ``2 ** (len(channel_mults) - 1)``.

    Args:
        in_channels: Channels of the images.
        channels: Base width.
        channel_mults: Width multiplier of each level, from full resolution down.
        num_res_blocks: Residual blocks per level on the way down (one more on the way up).
        attention_levels: Levels (0 = full resolution) whose blocks end with self-attention.
        dropout: Dropout inside residual blocks.
        num_classes: Number of classes for a class-conditional network, else ``None``; label
            ``num_classes`` is the null class used by classifier-free guidance.
        heads: Attention heads.
        groups: Groups of every group norm.
        text_encoder: Encodes ``cond["text"]`` to a ``(B, 4 * channels)`` vector added to the
            time embedding (e.g. ``TextEncoder(4 * channels)``), or ``None``.
        source_encoder: Turns ``cond["source"]`` into feature maps concatenated to the input
            (an ``ImageEncoder`` at the image's size), or ``None``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2,),
        dropout: float = 0.1,
        num_classes: int | None = None,
        heads: int = 4,
        groups: int = 32,
        text_encoder: TextEncoder | None = None,
        source_encoder: ImageEncoder | None = None,
    ) -> None:
        super().__init__()
        emb_dim = 4 * channels
        self.num_classes = num_classes
        self.embed = TimeEmbedding(channels, emb_dim, num_classes)
        self.text_encoder, self.source_encoder = text_encoder, source_encoder
        extra = 0 if source_encoder is None else source_encoder.out_channels
        self.conv_in = nn.Conv2d(in_channels + extra, channels, 3, padding=1)

        def block(c_in: int, c_out: int, level: int) -> nn.ModuleList:
            layers = [ResBlock(c_in, c_out, emb_dim, dropout, groups)]
            if level in attention_levels:
                layers.append(SelfAttention(c_out, heads, groups))
            return nn.ModuleList(layers)

        # Down path; `skips` records the channels of each feature map kept for the up path.
        self.down = nn.ModuleList()
        skips, ch = [channels], channels
        last = len(channel_mults) - 1
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(block(ch, channels * mult, level))
                ch = channels * mult
                skips.append(ch)
            if level != last:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout, groups),
                                  SelfAttention(ch, heads, groups),
                                  ResBlock(ch, ch, emb_dim, dropout, groups)])
        # Up path: every block eats one skip; each level but the first ends with an upsample.
        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(block(ch + skips.pop(), channels * channel_mults[level], level))
                ch = channels * channel_mults[level]
            if level != 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(ch, ch, 3, padding=1)]))
        self.out = nn.Sequential(_norm(ch, groups), nn.SiLU(), nn.Conv2d(ch, in_channels, 3,
                                                                        padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def _run(self, layers: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for layer in layers:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | Conditions | None = None) -> Tensor:
        """Predict from noisy images ``x`` ``(B, C, H, W)`` at timesteps ``t`` ``(B,)``.

        ``cond``: class ids ``(B,)``, or a dict with ``label``, ``text`` (strings), ``source``
        (images); a condition the network takes but is not given is the null one.
        """
        cond = {"label": cond} if isinstance(cond, Tensor) else (cond or {})
        emb = self.embed(t, cond.get("label"))  # (B, 4 * channels)
        if self.text_encoder is not None:
            emb = emb + self.text_encoder(cond.get("text") or [""] * len(x)).to(emb.dtype)
        if self.source_encoder is not None:
            source = cond.get("source")
            if source is None:  # the null source: a zero image
                source = x.new_zeros(len(x), self.source_encoder.in_channels, 1, 1)
            x = torch.cat([x, self.source_encoder(source.to(x.dtype))], dim=1)
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            h = self._run(layers, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(layers, h, emb)
        return self.out(h)
