"""Post-hoc EMA: choose the EMA length after training.

Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", sec. 3.

During training, two power-function EMAs of a network (relative lengths ``sigma_rel`` 0.05 and
0.10 by default) are kept and snapshotted every ``every_n_steps`` into the run directory. Any
power-function EMA of another length is then a linear combination of the snapshots, found by least
squares on the averaging profiles (the paper's Algorithm 3); ``genlab ema`` writes it as a
checkpoint.

A power-function EMA with exponent ``gamma`` weighs the weights of step ``tau`` by ``tau^gamma``
over ``[0, t]``: after update ``t`` it is ``beta_t avg + (1 - beta_t) theta_t`` with ``beta_t = (1 -
1/t)^(gamma + 1)`` (the paper's eq. 3 in steps). Its relative length (standard deviation of the
profile over its length) is ``sigma_rel = sqrt((gamma + 1) / ((gamma + 2)² (gamma + 3)))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from genlab.errors import GenlabError, raise_first

SNAPSHOT_DIR = "posthoc_ema"
MAX_SIGMA_REL = 0.28  # gamma = 0 (a plain average over the run) has sigma_rel = 1/sqrt(12) = 0.289


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent ``gamma`` of a power-function EMA of relative length ``sigma_rel``.

    The largest real root of ``gamma³ + 7 gamma² + (16 - s⁻²) gamma + (12 - s⁻²)`` (the
    paper's Algorithm 2): 6.94 for 0.10, 16.97 for 0.05.
    """
    if not 0 < sigma_rel < MAX_SIGMA_REL:
        raise GenlabError(f"an EMA length (sigma_rel) must be in (0, {MAX_SIGMA_REL}), got "
                          f"{sigma_rel}")
    t = sigma_rel ** -2
    return float(np.roots([1, 7, 16 - t, 12 - t]).real.max())


def profile_products(t_a: Tensor, gamma_a: Tensor, t_b: Tensor, gamma_b: Tensor) -> Tensor:
    """Inner products of normalized power profiles (the paper's ``p_dot_p``), broadcast.

    A profile is ``(gamma + 1) tau^gamma / t^(gamma + 1)`` on ``[0, t]``; use float64.
    """
    ratio = t_a / t_b
    exponent = torch.where(t_a < t_b, gamma_b, -gamma_a)
    return ((gamma_a + 1) * (gamma_b + 1) * ratio ** exponent
            / ((gamma_a + gamma_b + 1) * torch.maximum(t_a, t_b)))


def solve_weights(t_i: Sequence[float], gamma_i: Sequence[float], t_r: float,
                  gamma_r: float) -> Tensor:
    """Coefficients ``x_i`` with ``sum_i x_i profile_i`` closest (L2) to the target profile.

    Least squares: ``A x = b`` with ``A_ij = <p_i, p_j>`` and ``b_i = <p_i, p_r>``.
    """
    t = torch.tensor(t_i, dtype=torch.float64)
    g = torch.tensor(gamma_i, dtype=torch.float64)
    A = profile_products(t[:, None], g[:, None], t[None, :], g[None, :])
    b = profile_products(t, g, torch.tensor(float(t_r), dtype=torch.float64),
                         torch.tensor(gamma_r, dtype=torch.float64))
    return torch.linalg.lstsq(A, b[:, None], driver="gelsd").solution[:, 0]


class PowerFunctionEMA:
    """Power-function EMAs of a network's floating-point state, one per ``sigma_rel``.

    Plain torch (no Lightning): ``update(state)`` after each optimizer step. The averages are
    float32 copies; integer entries (batch-norm counters) are taken from the network as they are.

    Args:
        sigma_rels: Relative lengths of the tracked averages.
    """

    def __init__(self, sigma_rels: Sequence[float]) -> None:
        self.sigma_rels = [float(s) for s in sigma_rels]
        self.gammas = [sigma_rel_to_gamma(s) for s in self.sigma_rels]
        self.step = 0
        self.averages: list[dict[str, Tensor]] = []

    @torch.no_grad()
    def update(self, state: dict[str, Tensor]) -> None:
        """One update with the network's current ``state_dict()``."""
        self.step += 1
        floats = {k: v.detach().float() for k, v in state.items() if v.is_floating_point()}
        if not self.averages:  # beta_1 = 0: the first average is the weights themselves
            self.averages = [{k: v.clone() for k, v in floats.items()} for _ in self.gammas]
            return
        for gamma, average in zip(self.gammas, self.averages):
            beta = (1 - 1 / self.step) ** (gamma + 1)
            torch._foreach_lerp_(list(average.values()), [floats[k] for k in average], 1 - beta)

    def state_dict(self) -> dict[str, Any]:
        """Step count and averages (tensors and plain types: ``weights_only`` loads them)."""
        return {"step": self.step, "sigma_rels": self.sigma_rels, "averages": self.averages}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``."""
        if [float(s) for s in state["sigma_rels"]] != self.sigma_rels:
            raise GenlabError(f"the checkpoint's post-hoc EMA tracked sigma_rel "
                              f"{state['sigma_rels']}, this run {self.sigma_rels}; keep them")
        self.step = int(state["step"])
        self.averages = [{k: v.clone() for k, v in a.items()} for a in state["averages"]]


def _submodule(module: nn.Module, path: str, what: str) -> nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError:
        raise GenlabError(f"{what} {path!r} is not a submodule of {type(module).__name__}; name "
                          f"the attribute path of its network, e.g. denoiser or generator"
                          ) from None


class PostHocEMA(L.Callback):
    """Track power-function EMAs of a network and snapshot them for ``genlab ema``.

    Snapshots go to ``<run dir>/posthoc_ema/<step>.pt`` (written by global rank 0; every rank
    keeps the same averages, as DDP keeps the same weights). The averages are part of the
    callback's checkpoint state, so a resumed fit continues them exactly.

    Args:
        network: Attribute path of the trained network in the model (``denoiser``,
            ``generator``, ``student``).
        average: Attribute path where the model's ``sample()`` reads averaged weights of that
            network (``ema.module``, ``generator_ema.module``, ``student_ema.module``), which
            ``genlab ema`` replaces; ``None``: the network itself.
        sigma_rels: Relative lengths of the two (or more) tracked averages.
        every_n_steps: Snapshot interval in optimizer steps (batches for multi-optimizer
            families); the paper keeps about 100-200 snapshots per run.
    """

    def __init__(self, network: str, average: str | None = None,
                 sigma_rels: Sequence[float] = (0.05, 0.10), every_n_steps: int = 500) -> None:
        raise_first([
            (len(sigma_rels) < 1, "PostHocEMA.sigma_rels must name at least one length"),
            (every_n_steps < 1, f"PostHocEMA.every_n_steps must be >= 1, got {every_n_steps}"),
        ])
        self.network, self.average = network, average or network
        self.every_n_steps = every_n_steps
        self.ema = PowerFunctionEMA(sigma_rels)

    @property
    def state_key(self) -> str:
        """Unique per network and lengths, so several instances checkpoint side by side."""
        return self._generate_state_key(network=self.network, sigma_rels=self.ema.sigma_rels)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check that both attribute paths exist before training starts.

        Not in ``setup``: distillation students build their networks in ``configure_model``,
        which runs after it.
        """
        _submodule(pl_module, self.network, "PostHocEMA.network")
        _submodule(pl_module, self.average, "PostHocEMA.average")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the averages; snapshot them every ``every_n_steps`` updates."""
        self.ema.update(pl_module.get_submodule(self.network).state_dict())
        if self.ema.step % self.every_n_steps == 0 and trainer.is_global_zero:
            self.snapshot(Path(trainer.default_root_dir) / SNAPSHOT_DIR)

    def snapshot(self, folder: Path) -> Path:
        """Write the current averages (on the CPU) to ``folder/<step>.pt``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.ema.step:08d}.pt"
        torch.save({"step": self.ema.step, "sigma_rels": self.ema.sigma_rels,
                    "gammas": self.ema.gammas, "network": self.network, "average": self.average,
                    "averages": [{k: v.cpu() for k, v in a.items()} for a in self.ema.averages]},
                   path)
        return path

    def state_dict(self) -> dict[str, Any]:
        """The averages and their step: saved in the checkpoint, so a resume is exact."""
        return self.ema.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the averages of a checkpoint."""
        self.ema.load_state_dict(state_dict)
