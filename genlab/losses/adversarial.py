"""Adversarial losses on discriminator logits.

Each loss is a pair: the discriminator's loss on real and fake logits, and the generator's loss
on fake logits. Both return scalars (means over the batch).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def d_nonsaturating(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator loss ``-log D(x) - log(1 - D(G(z)))`` (Goodfellow et al. 2014, eq. 1)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``-log D(G(z))`` (Goodfellow et al. 2014, section 3)."""
    return F.softplus(-fake_logits).mean()
