"""Guidance: extrapolate a denoiser's prediction away from a weaker one.

Classifier-free guidance (Ho & Salimans 2022) extrapolates away from the same network's
unconditional prediction; autoguidance (Karras et al. 2024) away from a smaller or shorter-trained
model of the same data, which works for unconditional models too.
"""

from __future__ import annotations

from torch import Tensor

from genlab import conditions
from genlab.conditions import Conditions
from genlab.diffusion.samplers import Denoiser


def classifier_free_guidance(denoiser: Denoiser, scale: float,
                             null_label: int | None = None) -> Denoiser:
    """A denoiser that returns ``uncond + scale * (cond - uncond)``, for any kind of condition.

    The unconditional prediction is the denoiser's on the null condition
    (``genlab.conditions.null``: labels replaced by ``null_label``, prompts by the empty string,
    source images by zeros), the one condition dropout trained it on. ``scale = 1`` is the plain
    conditional prediction (and costs one call), ``scale = 0`` the unconditional one; both halves
    run as one batch. Mixing the raw outputs is the same as mixing epsilons, whatever the
    prediction kind: every conversion between eps, v and x0 is affine in the output at fixed
    ``x_t`` and ``t``.

    Args:
        denoiser: ``denoiser(x_t, t, cond) -> prediction`` trained with condition dropout;
            ``cond`` class ids ``(B,)`` or a dict of conditions by kind.
        scale: Guidance scale ``w`` (``1 + w`` in the paper's notation).
        null_label: Label index meaning "no class" (needed when the condition has labels).
    """

    def guided(x_t: Tensor, t: Tensor, cond: Tensor | Conditions | None) -> Tensor:
        if cond is None or scale == 1:
            return denoiser(x_t, t, cond)
        both = conditions.cat(cond, conditions.null(cond, null_label))
        cond_out, uncond = denoiser(_twice(x_t), _twice(t), both).chunk(2)
        return uncond + scale * (cond_out - uncond)

    return guided


def autoguidance(denoiser: Denoiser, guide: Denoiser, scale: float) -> Denoiser:
    """A denoiser that returns ``guide + scale * (denoiser - guide)`` (Karras et al. 2024).

    ``guide`` is a weaker model of the same data, schedule and prediction kind (fewer training
    steps, fewer channels): where the two disagree the strong model is pushed further from the
    weak one's errors, which sharpens samples without the loss of variety that classifier-free
    guidance brings. ``scale = 1`` is the plain denoiser (one call); both see the same condition.

    Args:
        denoiser: The main ``denoiser(x_t, t, cond) -> prediction``.
        guide: The weaker one, same signature and output space.
        scale: Guidance scale ``w``; about 2 in the paper.
    """

    def guided(x_t: Tensor, t: Tensor, cond: Tensor | Conditions | None) -> Tensor:
        out = denoiser(x_t, t, cond)
        if scale == 1:
            return out
        weak = guide(x_t, t, cond)
        return weak + scale * (out - weak)

    return guided


def _twice(x: Tensor) -> Tensor:
    """``x`` twice along the batch (the conditional and unconditional halves)."""
    return x.repeat(2, *[1] * (x.ndim - 1))
