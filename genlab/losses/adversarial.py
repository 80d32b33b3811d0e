"""Adversarial losses on discriminator logits.

Each loss is a pair: the discriminator's loss on real and fake logits, and the generator's loss
on fake logits. Both return scalars (means over the batch). ``ADVERSARIAL_LOSSES`` names the
pairs, for a plugin's ``loss`` hyperparameter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def d_nonsaturating(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator loss ``-log D(x) - log(1 - D(G(z)))`` (Goodfellow et al. 2014, eq. 1)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``-log D(G(z))`` (Goodfellow et al. 2014, section 3)."""
    return F.softplus(-fake_logits).mean()


def d_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge discriminator loss ``E relu(1 - D(x)) + E relu(1 + D(G(z)))``.

    Lim and Ye 2017 ("Geometric GAN"); the loss of SN-GAN (Miyato et al. 2018, eq. 17) and BigGAN.
    """
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_hinge(fake_logits: Tensor) -> Tensor:
    """Hinge generator loss ``-E D(G(z))`` (Miyato et al. 2018, eq. 18)."""
    return -fake_logits.mean()


def d_wasserstein(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Wasserstein critic loss ``E D(G(z)) - E D(x)`` (Arjovsky et al. 2017, eq. 3).

    Only a distance estimate when the critic is kept 1-Lipschitz: pair it with
    ``genlab.losses.penalties.gradient_penalty`` (WGAN-GP) or spectral normalization.
    """
    return fake_logits.mean() - real_logits.mean()


def g_wasserstein(fake_logits: Tensor) -> Tensor:
    """Wasserstein generator loss ``-E D(G(z))``."""
    return -fake_logits.mean()


AdversarialLoss = tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]

# loss name -> (discriminator loss on real and fake logits, generator loss on fake logits).
# "wgan-gp" is the Wasserstein pair; the gradient penalty is the recipe's to add.
ADVERSARIAL_LOSSES: dict[str, AdversarialLoss] = {
    "nonsaturating": (d_nonsaturating, g_nonsaturating),
    "hinge": (d_hinge, g_hinge),
    "wgan-gp": (d_wasserstein, g_wasserstein),
}
