"""Samplers: plain functions that take a denoiser callable and a ``NoiseSchedule``.

A denoiser is any callable ``denoiser(x_t, t, labels) -> prediction``: ``x_t`` the noisy batch
``(B, ...)``, ``t`` integer timesteps ``(B,)`` in ``0 … T-1``, ``labels`` class ids ``(B,)``, a
dict of conditions by kind (``genlab.conditions``: ``text``, ``source``...) or ``None``, and the
output of kind ``prediction`` (``eps``, ``v`` or ``x0``), shaped like ``x_t``.
Nothing here knows about Lightning or a plugin, so another plugin (adversarial distillation) can
sample any diffusion network with them (cf. EDM's ``edm_sampler``).

Each sampler visits ``steps`` timesteps evenly spaced from ``T-1`` down to ``0`` and ends on the
clean estimate. Randomness (the ancestral noise of DDPM, DDIM with ``eta > 0``) comes from the
global RNG unless a ``generator`` is given; the starting noise is always an argument.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from genlab.diffusion.schedule import NoiseSchedule, Prediction
from genlab.errors import GenlabError

Denoiser = Callable[[Tensor, Tensor, Tensor | None], Tensor]

SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "heun")
HEUN_SIGMA_MAX = 80.0  # Heun corrects only steps starting at or below this noise level


def timesteps(schedule: NoiseSchedule, steps: int | None = None) -> list[int]:
    """``steps`` integer timesteps from ``T-1`` down to ``0``, evenly spaced (``None``: all)."""
    total = schedule.num_timesteps
    steps = total if steps is None else steps
    if not 1 <= steps <= total:
        raise GenlabError(f"steps must be between 1 and {total} (the schedule's timesteps), "
                          f"got {steps}")
    grid = torch.linspace(total - 1, 0, steps, dtype=torch.float64).round().long()
    return grid.tolist()


def karras_timesteps(schedule: NoiseSchedule, top: int, intervals: int, rho: float = 7.0,
                     sigma_max: float = HEUN_SIGMA_MAX,
                     sigma_min: float | None = None) -> list[int]:
    """Timesteps from ``top`` down to ``0`` whose noise levels follow Karras et al.'s ramp.

    ``sigma_i = (sigma_a^(1/rho) + i / n (sigma_b^(1/rho) - sigma_a^(1/rho)))^rho`` (EDM, eq. 5)
    from ``sigma_a = min(sigma_top, sigma_max)`` to ``sigma_b = max(sigma_min, sigma_0)``
    (``sigma_0``: timestep 0's), each rounded to the timestep nearest in log sigma; when
    ``sigma_top > sigma_max``, ``top`` itself comes first and the ramp follows, and when the ramp
    ends above timestep 0, one last step from its end to 0 follows. Even timesteps leave the
    low-noise end, where the ODE's slope changes fastest, to one long step (cosine, 18 steps:
    sigma 0.1 to 0.006, 16 times smaller), which Heun's trapezoid overshoots (its end slope
    is near 0 there); the ramp makes those steps short. ``intervals`` steps, fewer where adjacent
    levels round to the same timestep.
    """
    if not 1 <= intervals <= top < schedule.num_timesteps:
        raise GenlabError(f"need 1 <= intervals <= top < {schedule.num_timesteps} (the "
                          f"schedule's timesteps), got intervals={intervals}, top={top}")
    a = schedule.alphas_cumprod[: top + 1].double()
    log_sigma = ((1 - a) / a).sqrt().log()
    head = [top] if float(log_sigma[top].exp()) > sigma_max else []
    tail = 1 if sigma_min is not None and sigma_min > float(log_sigma[0].exp()) else 0
    hi = min(float(log_sigma[top].exp()), sigma_max) ** (1 / rho)
    lo = max(float(log_sigma[0].exp()), sigma_min or 0.0) ** (1 / rho)
    ramp = torch.linspace(hi, lo, max(intervals + 1 - len(head) - tail, 1),
                          dtype=torch.float64) ** rho
    nearest = (log_sigma[None] - ramp.log()[:, None]).abs().argmin(1).tolist()
    grid = [top] + [t for t in head + nearest if t < top]
    grid = [t for i, t in enumerate(grid) if i == 0 or t < grid[i - 1]]
    return grid if grid[-1] == 0 else [*grid, 0]


def _noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _predict(denoiser: Denoiser, schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor,
             labels: Tensor | None, prediction: Prediction,
             clip: float | None) -> tuple[Tensor, Tensor]:
    """``(x0, eps)`` estimates of the denoiser at timestep ``t`` (an int, or one per example)."""
    out = denoiser(x_t, _batch(t, x_t), labels)
    return schedule.to_x0_eps(out, x_t, _batch(t, x_t), prediction, clip)


def _batch(t: int | Tensor, x: Tensor) -> Tensor:
    """Timesteps ``(B,)`` for the batch ``x``: ``t`` repeated, or ``t`` itself if a tensor."""
    if isinstance(t, Tensor):
        return t.to(device=x.device, dtype=torch.long)
    return torch.full((len(x),), t, device=x.device, dtype=torch.long)


def _alpha_bar(schedule: NoiseSchedule, t: int | Tensor, like: Tensor | None = None) -> Tensor:
    """``alpha_bar_t``: a scalar for an int ``t``; for a tensor, shaped to broadcast on ``like``."""
    if not isinstance(t, Tensor):
        return schedule.alpha_bar(torch.tensor(t, device=schedule.alphas_cumprod.device))
    a = schedule.alpha_bar(t.to(schedule.alphas_cumprod.device))
    return a.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def ddim_step(denoiser: Denoiser, schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor,
              s: int | Tensor, prediction: Prediction = "eps", labels: Tensor | None = None,
              clip: float | None = None, eta: float = 0.0,
              generator: torch.Generator | None = None) -> Tensor:
    """One DDIM step (Song et al. 2021, eq. 12) from timestep ``t`` to ``s < t``.

    ``t`` and ``s`` are ints or tensors ``(B,)`` (a timestep per example; ``s = -1``: clean
    data). With ``eta = 0`` it is the Euler step of the probability-flow ODE (see
    ``heun_sample``), the step consistency distillation takes with its teacher.
    """
    x0, eps = _predict(denoiser, schedule, x_t, t, labels, prediction, clip)
    a_t, a_s = _alpha_bar(schedule, t, x_t), _alpha_bar(schedule, s, x_t)
    sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
    x = a_s.sqrt() * x0 + (1 - a_s - sigma**2).clamp(min=0).sqrt() * eps
    noised = (_batch(s, x_t) >= 0).reshape(-1, *([1] * (x.dim() - 1)))  # no noise onto clean
    if eta > 0 and bool(noised.any()):
        x = x + torch.where(noised, sigma, 0.0) * _noise(x, generator)
    return x


def heun_step(denoiser: Denoiser, schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor,
              s: int | Tensor, prediction: Prediction = "eps", labels: Tensor | None = None,
              clip: float | None = None) -> Tensor:
    """One step of Heun's method on the probability-flow ODE from ``t`` to ``s < t``.

    In ``y = x / sqrt(alpha_bar)``, ``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` the ODE is
    ``dy/dsigma = eps`` (Karras et al. 2022, Alg. 1). The Euler step is corrected with the slope
    at its end, except on steps to clean data (``s = -1``) and from above ``HEUN_SIGMA_MAX``
    (see ``heun_sample``). ``t`` and ``s``: ints or tensors ``(B,)``.
    """
    a_t, a_s = _alpha_bar(schedule, t, x_t), _alpha_bar(schedule, s, x_t)
    sigma_t, sigma_s = ((1 - a_t) / a_t).sqrt(), ((1 - a_s) / a_s).sqrt()
    _, eps = _predict(denoiser, schedule, x_t, t, labels, prediction, clip)
    y_next = x_t / a_t.sqrt() + (sigma_s - sigma_t) * eps  # Euler step in (y, sigma)
    correct = (_batch(s, x_t) >= 0).reshape(-1, *([1] * (x_t.dim() - 1))) & (
        sigma_t <= HEUN_SIGMA_MAX)
    if bool(correct.any()):
        s_safe = torch.where(_batch(s, x_t) >= 0, _batch(s, x_t), 0)
        _, eps_next = _predict(denoiser, schedule, y_next * a_s.sqrt(), s_safe, labels,
                               prediction, clip)
        y_heun = x_t / a_t.sqrt() + (sigma_s - sigma_t) * (eps + eps_next) / 2
        y_next = torch.where(correct, y_heun, y_next)
    return y_next * a_s.sqrt()


def ddpm_step(denoiser: Denoiser, schedule: NoiseSchedule, x_t: Tensor, t: int, s: int,
              prediction: Prediction = "eps", labels: Tensor | None = None,
              clip: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One ancestral step ``x_t -> x_s`` (``s < t``; ``s = -1``: to clean data, no noise added).

    Draws from the posterior ``q(x_s | x_t, x0_hat)`` (Ho et al. 2020, eq. 6-7) between the
    timesteps ``s < t``, with ``alpha_{t|s} = alpha_bar_t / alpha_bar_s``; arguments as
    ``ddpm_sample``.
    """
    x0, _ = _predict(denoiser, schedule, x_t, t, labels, prediction, clip)
    return posterior_step(schedule, x_t, x0, t, s, generator)


def posterior_step(schedule: NoiseSchedule, x_t: Tensor, x0: Tensor, t: int, s: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """A draw from ``q(x_s | x_t, x0)`` for a given clean estimate ``x0``.

    ``ddpm_step``'s step once the denoiser has spoken; ``s = -1``: its mean, no noise added.
    """
    a_t, a_s = _alpha_bar(schedule, t), _alpha_bar(schedule, s)
    beta = 1 - a_t / a_s  # beta of the (possibly respaced) step s -> t
    # Posterior mean of eq. 7 and variance beta_tilde, written with alpha_bar of t and s.
    x = (a_s.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_s) / (1 - a_t)) * x_t
    if s >= 0:
        var = beta * (1 - a_s) / (1 - a_t)
        x = x + var.sqrt() * _noise(x, generator)
    return x


@torch.no_grad()
def ddpm_sample(denoiser: Denoiser, schedule: NoiseSchedule, noise: Tensor,
                prediction: Prediction = "eps", steps: int | None = None,
                labels: Tensor | None = None, clip: float | None = None,
                generator: torch.Generator | None = None,
                trajectory: list[Tensor] | None = None) -> Tensor:
    """Ancestral sampling from the posterior ``q(x_s | x_t, x0_hat)`` (Ho et al. 2020, eq. 6-7).

    With fewer ``steps`` than ``T`` the posterior is taken between the visited timesteps
    ``s < t`` (``alpha_{t|s} = alpha_bar_t / alpha_bar_s``), as in improved DDPM's respacing.

    Args:
        denoiser: ``denoiser(x_t, t, labels) -> prediction``.
        schedule: The noise schedule the denoiser was trained with.
        noise: Starting noise ``x_T``, ``(B, ...)``.
        prediction: What the denoiser predicts: ``eps``, ``v`` or ``x0``.
        steps: Number of denoiser calls; ``None``: all ``T``.
        labels: Class ids ``(B,)`` passed to the denoiser, or ``None``.
        clip: Clamp the clean estimate to ``[-clip, clip]`` (images: 1), or ``None``.
        generator: RNG of the ancestral noise; ``None``: the global one.
        trajectory: A list to which ``x_t`` is appended before each step and the result at the end.
    """
    x = noise
    grid = timesteps(schedule, steps)
    for t, s in zip(grid, grid[1:] + [-1]):
        if trajectory is not None:
            trajectory.append(x)
        x = ddpm_step(denoiser, schedule, x, t, s, prediction, labels, clip, generator)
    if trajectory is not None:
        trajectory.append(x)
    return x


@torch.no_grad()
def ddim_sample(denoiser: Denoiser, schedule: NoiseSchedule, noise: Tensor,
                prediction: Prediction = "eps", steps: int | None = 50, eta: float = 0.0,
                labels: Tensor | None = None, clip: float | None = None,
                generator: torch.Generator | None = None,
                trajectory: list[Tensor] | None = None) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12): deterministic for ``eta = 0``, DDPM-like for ``eta = 1``.

    Arguments as ``ddpm_sample``, plus ``eta``, the scale of the fresh noise (eq. 16).
    """
    if eta < 0:
        raise GenlabError(f"eta must be >= 0, got {eta}")
    x = noise
    grid = timesteps(schedule, steps)
    for t, s in zip(grid, grid[1:] + [-1]):
        if trajectory is not None:
            trajectory.append(x)
        x = ddim_step(denoiser, schedule, x, t, s, prediction, labels, clip, eta, generator)
    if trajectory is not None:
        trajectory.append(x)
    return x


@torch.no_grad()
def heun_sample(denoiser: Denoiser, schedule: NoiseSchedule, noise: Tensor,
                prediction: Prediction = "eps", steps: int | None = 50,
                labels: Tensor | None = None, clip: float | None = None,
                generator: torch.Generator | None = None,
                trajectory: list[Tensor] | None = None) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1).

    In the variables ``y = x / sqrt(alpha_bar)`` and ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``
    the ODE is ``dy/dsigma = eps``; an Euler step of it is exactly DDIM with ``eta = 0``. Heun
    corrects each step with the slope at its end, except the last (to ``sigma = 0``) and steps
    from above ``HEUN_SIGMA_MAX``: the cosine schedule starts near ``sigma = 2e4``, where the
    trapezoid over one huge step is worse than Euler's (``eps`` barely changes while the noise
    dwarfs the data; EDM caps ``sigma_max`` at 80 for the same reason). At most
    ``2 * steps - 1`` denoiser calls. Arguments as ``ddpm_sample`` (``generator`` is unused:
    the sampler is deterministic).
    """
    x = noise
    grid = timesteps(schedule, steps)
    for t, s in zip(grid, grid[1:] + [-1]):
        if trajectory is not None:
            trajectory.append(x)
        x = heun_step(denoiser, schedule, x, t, s, prediction, labels, clip)
    if trajectory is not None:
        trajectory.append(x)
    return x


def sample(sampler: str, denoiser: Denoiser, schedule: NoiseSchedule, noise: Tensor,
           prediction: Prediction = "eps", steps: int | None = None, eta: float = 0.0,
           labels: Tensor | None = None, clip: float | None = None,
           generator: torch.Generator | None = None,
           trajectory: list[Tensor] | None = None) -> Tensor:
    """Run the sampler named ``sampler`` (``ddpm``, ``ddim`` or ``heun``); see each one's doc.

    ``eta`` is used by ``ddim`` only.
    """
    common = dict(prediction=prediction, steps=steps, labels=labels, clip=clip,
                  generator=generator, trajectory=trajectory)
    if sampler == "ddpm":
        return ddpm_sample(denoiser, schedule, noise, **common)
    if sampler == "ddim":
        return ddim_sample(denoiser, schedule, noise, eta=eta, **common)
    if sampler == "heun":
        return heun_sample(denoiser, schedule, noise, **common)
    raise GenlabError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
