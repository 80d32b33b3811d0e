"""Noise schedules of discrete-time Gaussian diffusion and the maps between prediction targets.

Notation of Ho et al. 2020 ("DDPM"): ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` and the forward
process ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` (eq. 4). Timesteps are integers
``0 … T-1``; ``t = -1`` stands for clean data (``alpha_bar = 1``), the end of every sampler.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError

ScheduleKind = Literal["linear", "cosine"]
Prediction = Literal["eps", "v", "x0"]
LossWeighting = Literal["none", "min_snr"]

SCHEDULES: tuple[str, ...] = ("linear", "cosine")
PREDICTIONS: tuple[str, ...] = ("eps", "v", "x0")


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's betas, linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020, section 4).

    Both ends are given for ``T = 1000`` and scaled by ``1000 / T`` (improved DDPM's rule), so a
    shorter schedule still ends near pure noise.
    """
    scale = 1000 / num_timesteps
    return torch.linspace(scale * beta_start, scale * beta_end, num_timesteps,
                          dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Betas of ``alpha_bar(t) = cos²((t/T + s) / (1 + s) · π/2)`` (Nichol & Dhariwal 2021, eq. 17).

    Betas are clipped at ``max_beta`` so the last step does not divide by zero.
    """
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """``values`` of shape ``(B,)`` reshaped to broadcast over ``like`` ``(B, ...)``."""
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class NoiseSchedule(nn.Module):
    """A discrete noise schedule: ``betas`` and ``alphas_cumprod`` over ``num_timesteps`` steps.

    An ``nn.Module`` only so that its tables follow the model across devices; the tables are
    non-persistent buffers, rebuilt from the constructor arguments, so checkpoints hold none of
    them and a plugin rebuilds the same schedule from a checkpoint's hyperparameters.

    Args:
        kind: ``linear`` (Ho et al. 2020) or ``cosine`` (Nichol & Dhariwal 2021).
        num_timesteps: Number of diffusion steps ``T``.
        beta_start: First beta of the linear schedule (for ``T = 1000``, scaled by ``1000 / T``).
        beta_end: Last beta of the linear schedule (likewise).
    """

    betas: Tensor
    alphas_cumprod: Tensor

    def __init__(self, kind: ScheduleKind = "cosine", num_timesteps: int = 1000,
                 beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__()
        if kind not in SCHEDULES:
            raise GenlabError(f"unknown noise schedule {kind!r}; choose one of {list(SCHEDULES)}")
        if num_timesteps < 2:
            raise GenlabError(f"num_timesteps must be at least 2, got {num_timesteps}")
        self.kind = kind
        self.num_timesteps = num_timesteps
        if kind == "linear":
            betas = linear_betas(num_timesteps, beta_start, beta_end)
        else:
            betas = cosine_betas(num_timesteps)
        # Products in float64, stored in float32: 1 - alpha_bar near t = 0 loses digits otherwise.
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0).float(),
                             persistent=False)

    def extra_repr(self) -> str:
        """Kind and length, shown in the module's repr."""
        return f"kind={self.kind!r}, num_timesteps={self.num_timesteps}"

    @property
    def alphas(self) -> Tensor:
        """``alpha_t = 1 - beta_t``, shape ``(T,)``."""
        return 1 - self.betas

    def alpha_bar(self, t: Tensor) -> Tensor:
        """``alpha_bar_t`` for integer timesteps ``t`` of any shape; ``t = -1`` gives 1."""
        t = t.long()
        table = self.alphas_cumprod
        return torch.where(t >= 0, table[t.clamp(min=0)], torch.ones((), device=table.device))

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` (Kingma et al. 2021)."""
        a = self.alpha_bar(t)
        return a / (1 - a)

    def sample_timesteps(self, num: int, device: torch.device | str | None = None) -> Tensor:
        """``num`` timesteps drawn uniformly from ``0 … T-1``, shape ``(num,)``."""
        return torch.randint(0, self.num_timesteps, (num,), device=device)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise`` (Ho et al. eq. 4)."""
        a = _expand(self.alpha_bar(t), x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    # Prediction targets. v = sqrt(a) eps - sqrt(1-a) x0 (Salimans & Ho 2022, section 4).

    def target(self, x0: Tensor, noise: Tensor, t: Tensor, prediction: Prediction) -> Tensor:
        """What a denoiser trained for ``prediction`` should output at ``x_t = q_sample(x0, t)``."""
        if prediction == "eps":
            return noise
        if prediction == "x0":
            return x0
        if prediction == "v":
            a = _expand(self.alpha_bar(t), x0)
            return a.sqrt() * noise - (1 - a).sqrt() * x0
        raise GenlabError(f"unknown prediction {prediction!r}; choose one of {list(PREDICTIONS)}")

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """Noise implied by a clean estimate: ``(x_t - sqrt(a) x0) / sqrt(1 - a)``."""
        a = _expand(self.alpha_bar(t), x_t)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Clean estimate implied by a noise estimate: ``(x_t - sqrt(1 - a) eps) / sqrt(a)``."""
        a = _expand(self.alpha_bar(t), x_t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """Clean estimate from a velocity: ``sqrt(a) x_t - sqrt(1 - a) v``."""
        a = _expand(self.alpha_bar(t), x_t)
        return a.sqrt() * x_t - (1 - a).sqrt() * v

    def eps_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """Noise from a velocity: ``sqrt(1 - a) x_t + sqrt(a) v``."""
        a = _expand(self.alpha_bar(t), x_t)
        return (1 - a).sqrt() * x_t + a.sqrt() * v

    def v_from_x0_eps(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """Velocity of a clean / noise pair: ``sqrt(a) eps - sqrt(1 - a) x0``."""
        return self.target(x0, eps, t, "v")

    def to_x0_eps(self, prediction_value: Tensor, x_t: Tensor, t: Tensor,
                  prediction: Prediction, clip: float | None = None) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` estimates from a denoiser's output of kind ``prediction``.

        With ``clip``, ``x0`` is clamped to ``[-clip, clip]`` and ``eps`` recomputed from it, the
        "clipped denoised" of Ho et al.'s code, which keeps image samples in range.
        """
        if prediction == "eps":
            eps, x0 = prediction_value, self.x0_from_eps(x_t, t, prediction_value)
        elif prediction == "x0":
            x0, eps = prediction_value, self.eps_from_x0(x_t, t, prediction_value)
        elif prediction == "v":
            x0, eps = self.x0_from_v(x_t, t, prediction_value), self.eps_from_v(
                x_t, t, prediction_value)
        else:
            raise GenlabError(f"unknown prediction {prediction!r}; choose one of "
                              f"{list(PREDICTIONS)}")
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = self.eps_from_x0(x_t, t, x0)
        return x0, eps

    def loss_weight(self, t: Tensor, prediction: Prediction, weighting: LossWeighting = "none",
                    gamma: float = 5.0) -> Tensor:
        """Per-example weight of the MSE on the ``prediction`` target, shape ``(B,)``.

        ``min_snr``: the Min-SNR-gamma weighting (Hang et al. 2023, eq. 8), which is
        ``min(snr, gamma)`` on the x0 loss, expressed for the target being trained.
        """
        if weighting == "none":
            return torch.ones_like(t, dtype=torch.float32)
        if weighting != "min_snr":
            raise GenlabError(f"unknown loss weighting {weighting!r}; choose none or min_snr")
        snr = self.snr(t)
        clipped = snr.clamp(max=gamma)
        # The x0 loss equals snr * (eps loss) and (snr + 1) * ... of the v loss.
        divisor = {"eps": snr, "v": snr + 1, "x0": torch.ones_like(snr)}[prediction]
        return clipped / divisor
