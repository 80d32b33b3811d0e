"""Classifier-free guidance (Ho & Salimans 2022): mix conditional and unconditional predictions."""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.diffusion.samplers import Denoiser


def classifier_free_guidance(denoiser: Denoiser, scale: float, null_label: int) -> Denoiser:
    """A denoiser that returns ``uncond + scale * (cond - uncond)``.

    The unconditional prediction is the denoiser's with every label replaced by ``null_label``,
    the class that label dropout trained it on. ``scale = 1`` is the plain conditional prediction
    (and costs one call), ``scale = 0`` the unconditional one; both halves run as one batch.
    Mixing the raw outputs is the same as mixing epsilons, whatever the prediction kind: every
    conversion between eps, v and x0 is affine in the output at fixed ``x_t`` and ``t``.

    Args:
        denoiser: ``denoiser(x_t, t, labels) -> prediction`` trained with label dropout.
        scale: Guidance scale ``w`` (``1 + w`` in the paper's notation).
        null_label: Label index meaning "no class".
    """

    def guided(x_t: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
        if labels is None or scale == 1:
            return denoiser(x_t, t, labels)
        null = torch.full_like(labels, null_label)
        both = denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        return uncond + scale * (cond - uncond)

    return guided
