"""Divergence guard: a NaN or Inf in a loss, a gradient or a parameter never trains on silently."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from torch.nn.utils import get_total_norm
from torch.optim import Optimizer

from genlab.errors import GenlabError

OnDivergence = Literal["stop", "skip"]


def _nonfinite_metrics(trainer: L.Trainer, pl_module: L.LightningModule) -> list[str]:
    # This step's values: families log only on logging steps, so callback_metrics can be stale.
    metrics = {**trainer.callback_metrics, **getattr(pl_module, "last_train_metrics", {})}
    bad = []
    for name, value in metrics.items():
        if name.startswith("train") and not math.isfinite(float(value)):
            bad.append(name)
    return sorted(bad)


class DivergenceGuard(L.Callback):
    """Stop (or skip the step) when training produces NaN or Inf.

    ``stop``: raise a one-line error naming the step, the logged loss terms that are not finite
    and the last good checkpoint. ``skip``: drop the update whose gradients are not finite (the
    optimizer sees no gradient, so neither weights nor moments move), count it in
    ``train/skipped_steps``, and stop after ``max_skips`` consecutive skips.

    Args:
        on_divergence: ``stop`` or ``skip``.
        max_skips: Consecutive skipped updates tolerated before stopping.
        check_every_n_steps: How often the parameters themselves are checked.
    """

    def __init__(self, on_divergence: OnDivergence = "stop", max_skips: int = 10,
                 check_every_n_steps: int = 50) -> None:
        if on_divergence not in ("stop", "skip"):
            raise GenlabError(f"divergence.on_divergence must be stop or skip, got "
                              f"{on_divergence!r}")
        self.on_divergence = on_divergence
        self.max_skips = max_skips
        self.check_every_n_steps = check_every_n_steps
        self.skipped = 0
        self._consecutive = 0

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        callback = trainer.checkpoint_callback
        last = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
        terms = ", ".join(_nonfinite_metrics(trainer, pl_module)) or "none of the logged terms"
        raise GenlabError(
            f"training diverged at step {trainer.global_step}: {what} (non-finite: {terms}); "
            f"last good checkpoint: {last or 'none yet'}. Lower the learning rate, clip "
            f"gradients (--trainer.gradient_clip_val), or set divergence.on_divergence skip"
        )

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: Optimizer) -> None:
        """Look at the gradients about to be applied."""
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return  # fp16's GradScaler skips non-finite steps itself and lowers its scale
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        # One fused norm (foreach) and one host sync per step, not one per tensor; NaN and Inf
        # propagate into it (a norm past float range, ~1e19 per element, counts as divergence).
        if not grads or torch.isfinite(get_total_norm(grads)):
            self._consecutive = 0
            return
        if self.on_divergence == "stop":
            self._stop(trainer, pl_module, "a gradient is NaN or Inf")
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None  # Adam & co. skip parameters without a gradient
        self.skipped += 1
        self._consecutive += 1
        pl_module.log("train/skipped_steps", float(self.skipped))
        if self._consecutive > self.max_skips:
            self._stop(trainer, pl_module,
                       f"{self._consecutive} updates in a row had NaN/Inf gradients")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Check the loss returned and, every few steps, the parameters."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss).all():
            if self.on_divergence == "stop":
                self._stop(trainer, pl_module, "the loss is NaN or Inf")
        if trainer.global_step % max(1, self.check_every_n_steps) == 0:
            # One fused norm and one host sync, not one per parameter (as for the gradients).
            params = [p.detach() for p in pl_module.parameters()]
            if params and not torch.isfinite(get_total_norm(params)):
                self._stop(trainer, pl_module, "a parameter is NaN or Inf")

    def state_dict(self) -> dict[str, Any]:
        """The count of skipped updates, kept across resumes."""
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the count of skipped updates."""
        self.skipped = int(state_dict.get("skipped", 0))
