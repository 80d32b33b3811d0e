"""Diffusion parts shared by plugins: schedules, targets, samplers, guidance, RePaint.

The denoiser interface is ``denoiser(x_t, t, labels) -> prediction`` (see
``genlab.diffusion.samplers``); ``NoiseSchedule`` holds ``alphas_cumprod`` and converts between the
``eps`` / ``v`` / ``x0`` targets.
"""

from genlab.diffusion.guidance import autoguidance, classifier_free_guidance
from genlab.diffusion.inpaint import jump_schedule, repaint_sample
from genlab.diffusion.samplers import (
    SAMPLERS,
    Denoiser,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    heun_sample,
    heun_step,
    karras_timesteps,
    posterior_step,
    sample,
    timesteps,
)
from genlab.diffusion.schedule import PREDICTIONS, SCHEDULES, NoiseSchedule

__all__ = [
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULES",
    "Denoiser",
    "NoiseSchedule",
    "autoguidance",
    "classifier_free_guidance",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "posterior_step",
    "heun_sample",
    "heun_step",
    "jump_schedule",
    "karras_timesteps",
    "repaint_sample",
    "sample",
    "timesteps",
]
