"""RePaint: inpainting with an unconditional diffusion model (Lugmayr et al. 2022).

The network never sees the mask. At every reverse step the known region is taken from the
source noised to that step's level and the unknown region from the model's ancestral step, and
the two are pasted together (Alg. 1, eq. 8). Pasting alone leaves seams: the generated part
follows the known part only through the noisy paste. Resampling fixes that: after going down
``jump`` steps the sampler noises the result back up ``jump`` steps and denoises it again,
``resample - 1`` more times, so the unknown region gets several chances to agree with the known
one (section 4.2, the "jumps" of the paper's schedule).

Reconstruction guidance (Ho et al. 2022, "Video Diffusion Models", eq. 7; as DPS, Chung et al.
2023, normalised) adds a second channel: every step also moves ``x_t`` down the gradient of how
far the model's clean estimate strays from the source on the known pixels, so the generated
part is steered by what the known part must look like once denoised, not only by its noisy paste.

The sampler is a plain function on a ``Denoiser`` and a ``NoiseSchedule``, like the others in
``genlab.diffusion.samplers``; ``steps`` respaces the timesteps as they do.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.diffusion.samplers import (
    Denoiser,
    _alpha_bar,
    _noise,
    _predict,
    ddpm_step,
    posterior_step,
    timesteps,
)
from genlab.diffusion.schedule import NoiseSchedule, Prediction
from genlab.errors import GenlabError


def jump_schedule(steps: int, jump: int = 1, resample: int = 1) -> list[int]:
    """The walk of RePaint's schedule over ``steps`` reverse steps, as steps-left counts.

    Starts at ``steps`` (pure noise) and ends at ``0`` (clean). Consecutive entries differ by
    one: down is a denoising step, up a forward noising step. On arriving at a multiple of
    ``jump`` (below ``steps - jump``), the walk goes back up ``jump`` steps, ``resample - 1``
    times in all at that point (the paper's ``get_schedule_jump``).

    Args:
        steps: Reverse steps of the plain schedule.
        jump: Steps of each jump back up (the paper's ``j``).
        resample: Passes over each stretch of ``jump`` steps (the paper's ``r``; 1: none).
    """
    if jump < 1 or resample < 1:
        raise GenlabError(f"jump and resample must be >= 1, got jump={jump}, "
                          f"resample={resample}")
    jumps_left = {r: resample - 1 for r in range(0, steps - jump, jump)}
    walk, left = [steps], steps
    while left > 0:
        left -= 1
        walk.append(left)
        if jumps_left.get(left, 0) > 0:
            jumps_left[left] -= 1
            walk.extend(left + i for i in range(1, jump + 1))
            left += jump
    return walk


def _renoise(x_s: Tensor, schedule: NoiseSchedule, s: int, t: int,
             generator: torch.Generator | None) -> Tensor:
    """``x_t ~ q(x_t | x_s)`` for ``s < t``: noise added from level ``s`` up to level ``t``."""
    a = _alpha_bar(schedule, t) / _alpha_bar(schedule, s)
    return a.sqrt() * x_s + (1 - a).sqrt() * _noise(x_s, generator)


@torch.no_grad()
def repaint_sample(denoiser: Denoiser, schedule: NoiseSchedule, noise: Tensor, source: Tensor,
                   known: Tensor, prediction: Prediction = "eps", steps: int | None = None,
                   jump: int = 1, resample: int = 1, labels: Tensor | None = None,
                   clip: float | None = None, generator: torch.Generator | None = None,
                   trajectory: list[Tensor] | None = None,
                   reconstruction: float = 0.0) -> Tensor:
    """Inpaint ``source`` where ``known`` is false (Lugmayr et al. 2022, Alg. 1 with jumps).

    At the end (``t = -1``, no noise) the known region is pasted from ``source`` as it is, so
    the result equals ``source`` exactly on every known pixel.

    Args:
        denoiser: ``denoiser(x_t, t, labels) -> prediction`` of an unconditional (or any) model.
        schedule: The noise schedule the denoiser was trained with.
        noise: Starting noise ``x_T``, ``(B, ...)``.
        source: Images whose known pixels are kept, ``(B, ...)`` in the diffusion's space.
        known: Boolean mask broadcastable to ``source``: true where a pixel is kept.
        prediction: What the denoiser predicts: ``eps``, ``v`` or ``x0``.
        steps: Reverse steps of the plain schedule; ``None``: all ``T``.
        jump: Steps of each jump back up (``j``).
        resample: Passes over each stretch of ``jump`` steps (``r``; 1: paste only).
        labels: Class ids ``(B,)`` passed to the denoiser, or ``None``.
        clip: Clamp the clean estimate to ``[-clip, clip]`` (images: 1), or ``None``.
        generator: RNG of all fresh noise; ``None``: the global one.
        trajectory: A list to which ``x_t`` is appended at every position of the walk.
        reconstruction: Weight of reconstruction guidance: each denoising step also subtracts
            this times the gradient, with respect to ``x_t``, of the distance between the clean
            estimate and ``source`` on the known pixels (an L2 norm per image, so the step does
            not shrink as the estimate improves); 0: RePaint's paste alone. Costs a backward
            pass through the denoiser a step.
    """
    if reconstruction < 0:
        raise GenlabError(f"reconstruction guidance must be >= 0, got {reconstruction}")
    grid = timesteps(schedule, steps) + [-1]  # level of each steps-left count, from the top
    level = {left: grid[len(grid) - 1 - left] for left in range(len(grid))}
    walk = jump_schedule(len(grid) - 1, jump, resample)
    known = known.to(torch.bool)
    x = noise
    for here, there in zip(walk, walk[1:]):
        if trajectory is not None:
            trajectory.append(x)
        t, s = level[here], level[there]
        if there > here:  # a jump back up: noise the current result to the higher level
            x = _renoise(x, schedule, t, s, generator)
            continue
        if reconstruction > 0:
            unknown = _guided_step(denoiser, schedule, x, t, s, prediction, labels, clip,
                                   generator, source, known, reconstruction)
        else:
            unknown = ddpm_step(denoiser, schedule, x, t, s, prediction, labels, clip, generator)
        # The known region at level s: the source through q(x_s | x_0) (eq. 8); at s = -1 the
        # source itself, since alpha_bar = 1 there.
        x_known = source if s < 0 else _renoise(source, schedule, -1, s, generator)
        x = torch.where(known, x_known, unknown)
    if trajectory is not None:
        trajectory.append(x)
    return x


def _guided_step(denoiser: Denoiser, schedule: NoiseSchedule, x: Tensor, t: int, s: int,
                 prediction: Prediction, labels: Tensor | None, clip: float | None,
                 generator: torch.Generator | None, source: Tensor, known: Tensor,
                 weight: float) -> Tensor:
    """``ddpm_step`` minus ``weight`` times a gradient with respect to ``x``.

    The gradient is that of the known pixels' distance between the clean estimate and ``source``.
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        x0, _ = _predict(denoiser, schedule, x_in, t, labels, prediction, clip)
        miss = torch.where(known, x0 - source, torch.zeros_like(x0)).flatten(1).norm(dim=1)
        (grad,) = torch.autograd.grad(miss.sum(), x_in)
    return posterior_step(schedule, x, x0.detach(), t, s, generator) - weight * grad
