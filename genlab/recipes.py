"""Recipe rules every model family needs, written once for every plugin.

Labels, the learning-rate horizon and schedules (``LRSchedule`` names them), gradient clipping
under manual optimization.

A plugin calls these instead of writing its own copy, so that every family checks labels the same
way, refuses an endless run for a decaying schedule with the same line, and clips gradients where
Lightning's mixed precision expects it. Hyperparameters are checked with
``genlab.errors.raise_first`` (a table of ``(bad, message)`` pairs); adversarial losses by name are
``genlab.losses.adversarial.ADVERSARIAL_LOSSES``; spectral normalization is
``genlab.nn.spectral_norm``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from genlab.errors import GenlabError

DefaultLabels = Literal["cycle", "random"]
# The learning-rate schedules a family offers; "cosine" decays over ``lr_horizon``.
LRSchedule = Literal["constant", "cosine"]


def num_classes_problem(num_classes: int | None) -> tuple[bool, str]:
    """The ``(bad, message)`` pair, for ``genlab.errors.raise_first``, on ``model.num_classes``."""
    return (num_classes is not None and num_classes < 1,
            f"model.num_classes must be >= 1 (or null for unconditional), got {num_classes}")


def batch_labels(batch: dict[str, Tensor], num_classes: int | None,
                 owner: str = "the model (model.num_classes is set)") -> Tensor | None:
    """The batch's class labels ``(B,)`` for a conditional model, ``None`` for an unconditional one.

    Args:
        batch: A training or validation batch (``{"x", "label"}``).
        num_classes: The model's classes; ``None`` (or 0): unconditional.
        owner: Who is conditional, for the error when the batches carry no labels.
    """
    if not num_classes:
        return None
    if "label" not in batch:
        raise GenlabError(f"{owner} is class-conditional but the batches have no labels; set "
                          f"data.label_column, or model.num_classes: null")
    return batch["label"].long()


def sample_labels(num: int, labels: Tensor | None, num_classes: int | None,
                  device: torch.device | str, default: DefaultLabels = "cycle",
                  prior: Tensor | None = None) -> Tensor | None:
    """Labels to condition ``num`` samples on, checked against ``num_classes``.

    Args:
        num: Number of samples.
        labels: The labels asked for (``sample(labels=...)``, ``genlab sample --labels``).
        num_classes: The model's classes; ``None``: unconditional, and then ``labels`` must be.
        device: Device of the returned labels.
        default: When ``labels`` is ``None``: ``cycle`` through the classes (``i % classes``,
            so a grid shows every class) or draw them uniformly at ``random``.
        prior: The share of each class (``GenerativeModule.label_prior``, set for a model
            conditioned on clusters of its data): when ``labels`` is ``None`` they are drawn
            from it (``draw_from_prior``), whatever ``default`` says, so that samples follow
            the data's marginal.
    """
    if num_classes is None:
        if labels is not None:
            raise GenlabError("labels given, but this model is unconditional "
                              "(model.num_classes is null); drop --labels")
        return None
    if labels is None:
        if prior is not None:
            return draw_from_prior(prior, num).to(device)
        if default == "random":
            return torch.randint(num_classes, (num,), device=device)
        return torch.arange(num, device=device) % num_classes
    labels = torch.as_tensor(labels, device=device).long().reshape(-1)
    if len(labels) != num or labels.min() < 0 or labels.max() >= num_classes:
        shown = f"{labels.tolist()[:8]}{'...' if len(labels) > 8 else ''}"
        raise GenlabError(f"labels must be {num} class ids in [0, {num_classes}), got {shown}")
    return labels


def draw_from_prior(prior: Tensor, num: int) -> Tensor:
    """``num`` labels, each distributed as ``prior``, every label's count within 1 of its share.

    Systematic sampling: ``num`` evenly spaced points behind one uniform offset, read through
    the prior's cumulative shares, then shuffled. Each label is still a draw from ``prior``, but
    the counts lose the multinomial's noise (0.3 point on a 10% class at 10,000 samples), which
    a class histogram of the samples would otherwise read as the model's own imbalance.

    Args:
        prior: Unnormalized shares of the labels ``(C,)``.
        num: Number of labels.
    """
    cdf = prior.detach().double().cpu().cumsum(0)
    points = (torch.arange(num, dtype=torch.float64) + torch.rand(())) / num * cdf[-1]
    labels = torch.searchsorted(cdf, points, right=True).clamp_max(len(cdf) - 1)
    return labels[torch.randperm(num)]


def lr_horizon(trainer: L.Trainer, steps_per_batch: int | Fraction = 1,
               fix: str = "trainer.max_steps or trainer.max_epochs") -> int:
    """Batches the trainer will train on: the horizon of a decaying learning-rate schedule.

    ``trainer.max_steps`` counts optimizer steps; a manual-optimization family that steps
    ``steps_per_batch`` optimizers a batch (``n`` critic steps per generator step:
    ``Fraction(n + 1, n)``) passes it, so that the horizon is in batches. A run with no end raises
    ``GenlabError`` naming ``fix``.
    """
    batches = trainer.estimated_stepping_batches
    if trainer.max_steps != -1 and steps_per_batch != 1:
        batches = min(batches, Fraction(trainer.max_steps) // Fraction(steps_per_batch))
    if math.isinf(batches):
        raise GenlabError(f"model.lr_schedule 'cosine' needs a finite run: set {fix}")
    return max(int(batches), 1)


def warmup_cosine(step: int, warmup_steps: int, total: int, floor: float = 0.0,
                  ramp: int | None = None) -> float:
    """Learning-rate factor at ``step``: linear warm-up, then cosine decay to ``floor``.

    For ``torch.optim.lr_scheduler.LambdaLR`` (Loshchilov & Hutter 2017, without restarts).

    Args:
        step: Optimizer steps taken.
        warmup_steps: Steps of warm-up; during them the factor is ``(step + 1) / ramp``.
        total: Step at which the cosine reaches ``floor``; 0: constant 1 after warm-up.
        floor: Factor at the end of the decay (``min_lr / lr``).
        ramp: Denominator of the warm-up ramp; ``None``: ``warmup_steps`` (the last warm-up step
            is at the peak); ``warmup_steps + 1`` starts the peak at the first step after it.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps if ramp is None else ramp)
    if total == 0:
        return 1.0
    progress = min((step - warmup_steps) / max(total - warmup_steps, 1), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def clip_gradients(module: L.LightningModule, optimizer: torch.optim.Optimizer,
                   max_norm: float | None) -> None:
    """Clip ``optimizer``'s gradient norm to ``max_norm`` (``None``: no clipping).

    Call it from ``on_before_optimizer_step``: under manual optimization Lightning's
    ``gradient_clip_val`` does not apply, and that hook runs after the mixed-precision scaler has
    unscaled the gradients (clipping before ``opt.step()`` would clip scaled ones).
    """
    if max_norm is not None:
        module.clip_gradients(optimizer, gradient_clip_val=max_norm,
                              gradient_clip_algorithm="norm")
