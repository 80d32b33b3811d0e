"""Regularizers of the discriminator, added to its adversarial loss."""

from __future__ import annotations

from collections.abc import Callable

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


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None,
                     weights: Tensor | None = None) -> Tensor:
    """WGAN-GP: ``E (||∇ D(x̂)|| - 1)²`` at random interpolates ``x̂`` of real and fake examples.

    Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", eq. 3 and algorithm 1; the
    paper weights it by ``lambda = 10``, which the caller applies.

    Args:
        critic: Maps a batch like ``real`` to one score per example (labels already bound).
        real: A real batch, ``(B, ...)``.
        fake: A generated batch of the same shape, detached from the generator.
        generator: Random-number generator of the interpolation weights; ``None``: torch's
            global one.
        weights: The interpolation weights, ``(B, 1, ...)`` in [0, 1], instead of drawing them
            (e.g. from ``genlab.noise.batch_rand``, the same on any number of processes).

    Returns:
        A scalar that keeps its graph, so backpropagating it trains the critic.
    """
    shape = (len(real), *([1] * (real.dim() - 1)))  # one weight per example
    eps = weights if weights is not None else torch.rand(
        shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
