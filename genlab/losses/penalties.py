"""Regularizers of the discriminator, added to its adversarial loss."""

from __future__ import annotations

import torch
from torch import Tensor


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1: the squared norm of the discriminator's gradient on real data, ``E ||∇ₓ D(x)||²``.

    Mescheder, Geiger and Nowozin 2018, "Which Training Methods for GANs do actually Converge?",
    eq. 9: without it, non-saturating GAN training circles around the equilibrium instead of
    converging to it. The paper's regularizer is ``gamma / 2`` times this value; the caller scales.

    Args:
        real_logits: Discriminator logits of ``real``, any shape with the batch first.
        real: The real batch, which must have had ``requires_grad`` set before ``real_logits``
            were computed from it.

    Returns:
        A scalar: the squared gradient norm per example, averaged over the batch. It keeps its
        graph, so backpropagating it trains the discriminator.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
