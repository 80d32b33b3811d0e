"""Adversarial diffusion distillation (ADD; Sauer et al. 2023, the method behind SDXL-Turbo).

A student initialised from a trained diffusion model's EMA denoiser learns to generate in 1 to 4
steps. Each batch (section 3.2 of the paper):

- Student step: a real example is noised to one of the student's few timesteps ``s`` and the
  student denoises it in one call: ``x̂_θ = x0(student(x_s, s))``.
- Adversarial loss: a discriminator of small trainable heads on the features of a frozen network
  (by default the frozen teacher's own denoiser features, as latent ADD does) tells ``x̂_θ`` from
  real data; hinge loss, R1 on real data.
- Distillation loss: ``x̂_θ`` is re-noised to a random ``t``, the frozen teacher denoises it, and
  the student is pulled toward that (stop-gradient) prediction: ``c(t) ||x̂_θ - x̂_ψ||²``.

The teacher comes from a diffusion checkpoint and is handled by ``genlab.distill`` (the student
API ADD shares with consistency distillation): loaded with ``weights_only``, checked by what it
offers (an EMA denoiser, a ``NoiseSchedule``, a prediction type), frozen, and copied into the
student. The student's checkpoint keeps the teacher's architecture hyperparameters but not its
weights, so it samples on its own; training again needs the teacher.

Manual optimization with the GAN plugin's DDP design: both backward passes reach every trainable
parameter (the discriminator's through an exact zero), so DDP needs no unused-parameter flag.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import torch
from genlab_add.networks import DiscriminatorHeads, FeatureTaps, default_layers
from torch import Tensor, nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler
from torch.optim.swa_utils import AveragedModel

from genlab.diffusion import NoiseSchedule
from genlab.distill import (
    Student,
    clean_estimate,
    default_max_timestep,
    drop_frozen,
    even_timesteps,
    frozen,
    load_teacher,
    pick_steps,
    restore_frozen,
    student_copy,
    teacher_parts,
    tiny_teacher,
)
from genlab.distributed import manual_step
from genlab.ema import ema_model
from genlab.errors import GenlabError, raise_first
from genlab.losses.adversarial import d_hinge, g_hinge
from genlab.losses.penalties import r1_penalty
from genlab.module import ConformanceCase
from genlab.noise import batch_randint, batch_randn
from genlab.recipes import LRSchedule, batch_labels, clip_gradients, lr_horizon, sample_labels
from genlab.sharding import refuse_double_backward, shard

Weighting = Literal["exponential", "sds", "none"]

# Frozen submodules: rebuilt from the teacher (and feature network) arguments, never saved.
FROZEN = ("teacher.", "features.")


class ADD(Student):
    """Adversarial diffusion distillation of a diffusion teacher into a 1–4 step student.

    Args:
        teacher_ckpt: Path of the trained diffusion checkpoint (``genlab fit`` of
            ``configs/diffusion/...``); the student starts from its EMA weights. Needed to train;
            not saved in the student's checkpoint (``teacher_plugin`` / ``teacher_args`` are).
        teacher_plugin: Registered name of the teacher's plugin; filled in from ``teacher_ckpt``.
        teacher_args: The teacher's hyperparameters (its architecture and schedule); filled in
            from ``teacher_ckpt``, so a student checkpoint rebuilds without the teacher file.
        student_steps: Number of student timesteps ``tau_1 > ... > tau_n``, evenly spaced from
            ``max_timestep`` (the paper's four: 999, 749, 499, 249); ``sample(steps)`` can use
            1 to this many of them.
        sample_steps: Default number of steps of ``sample()``.
        max_timestep: The student's first (noisiest) timestep and the top of the distillation
            timesteps; ``None``: ``T - 1``, or for an eps teacher the last timestep with
            ``alpha_bar >= 0.0047`` (SDXL's terminal value).
        distill_weight: ``lambda``, the distillation loss's weight against the adversarial
            loss (2.5 in the paper).
        distill_weighting: ``c(t)``: ``exponential`` (``c = alpha_t = sqrt(alpha_bar_t)``, the
            paper's choice), ``sds`` (score distillation sampling, ``c = alpha_t w(t) /
            (2 sigma_t)`` with DreamFusion's ``w(t) = sigma_t^2``) or ``none`` (``c = 1``).
        feature_network: The discriminator's frozen feature network: ``teacher`` (the teacher's
            denoiser features) or the import path of an ``nn.Module`` class, e.g. a pretrained
            backbone ``mypkg.features.DINO``, whose ``forward(x)`` takes data in [-1, 1]
            (divided by ``data_scale``) and returns a list of features ``(B, C, H, W)`` or
            ``(B, C)``; it loads its own weights.
        feature_network_args: Keyword arguments of the ``feature_network`` class.
        feature_layers: Teacher layers (``named_modules()`` names) whose outputs are the
            features; ``None``: the end of each U-Net level on the way down and the middle
            block, or every hidden activation of a point denoiser.
        feature_timestep: Timestep at which the teacher computes features.
        head_width: Hidden width of each discriminator head.
        spectral_norm: Spectral normalization in the discriminator heads.
        r1_gamma: Weight ``gamma`` of the R1 penalty ``gamma / 2 E ||grad D(x_real)||²`` on real
            data (Mescheder et al. 2018); 0 turns it off.
        lr: Adam learning rate of the student.
        lr_disc: Adam learning rate of the discriminator heads.
        betas: Adam betas of both optimizers.
        grad_clip: Clip each network's gradient norm to this value; ``None``: no clipping.
        ema_decay: Decay of the EMA of the student's weights, which ``sample`` uses; ``None``:
            sample the raw student.
        lr_schedule: ``constant``, or ``cosine``: both learning rates decay to zero over the run.
    """

    def __init__(
        self,
        teacher_ckpt: str | None = None,
        teacher_plugin: str | None = None,
        teacher_args: dict[str, Any] | None = None,
        student_steps: int = 4,
        sample_steps: int = 1,
        max_timestep: int | None = None,
        distill_weight: float = 2.5,
        distill_weighting: Weighting = "exponential",
        feature_network: str = "teacher",
        feature_network_args: dict[str, Any] | None = None,
        feature_layers: list[str] | None = None,
        feature_timestep: int = 0,
        head_width: int = 64,
        spectral_norm: bool = False,
        r1_gamma: float = 1e-4,
        lr: float = 1e-5,
        lr_disc: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.99),
        grad_clip: float | None = None,
        ema_decay: float | None = 0.999,
        lr_schedule: LRSchedule = "constant",
    ) -> None:
        super().__init__()
        _check_hparams(student_steps, sample_steps, distill_weight, head_width, r1_gamma, lr,
                       lr_disc, grad_clip, ema_decay)
        if teacher_ckpt is None and (teacher_plugin is None or teacher_args is None):
            raise GenlabError("model.teacher_ckpt is required: the path of a trained diffusion "
                              "checkpoint, e.g. runs/<name>/version_0/checkpoints/last.ckpt")
        # The path is not saved: the student's checkpoint rebuilds from teacher_args alone.
        self.save_hyperparameters(ignore=["teacher_ckpt"])
        self.automatic_optimization = False
        self.teacher_source = teacher_ckpt  # None: rebuilt from a student checkpoint
        self.networks_built = False
        # A config names a teacher that may not be trained yet: parsing it must not need the
        # file, so then the networks are built by configure_model() when fit starts.
        if teacher_ckpt is None or Path(teacher_ckpt).is_file():
            self.configure_model()

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """Ring-8 points, distilled from a tiny diffusion teacher trained here for 2 steps;
        2-process DDP."""
        data, teacher = tiny_teacher(root, "diffusion", hidden=[16], emb_dim=8,
                                     num_timesteps=50, sample_steps=4, trajectory_frames=0)
        return ConformanceCase(data, {"teacher_ckpt": teacher, "head_width": 8, "lr": 1e-3,
                                      "lr_disc": 1e-3, "r1_gamma": 0.1}, ddp=True)

    def configure_model(self) -> None:
        """Load the teacher and build the student and discriminator (once); shard them under
        ``--trainer.strategy fsdp2`` (the frozen teacher stays whole on every process).

        Called from ``__init__`` when the teacher can be had, else by Lightning at the start of
        fit (and by ``load_from_checkpoint``).
        """
        if not self.networks_built:
            self._build_networks()
        if self.hparams.r1_gamma > 0:
            refuse_double_backward(self, "model.r1_gamma (R1 on the heads)")
        if self.device_mesh is not None:  # sharded resume loads weights before on_load_checkpoint
            self.strict_loading = False   # can add the frozen keys, which checkpoints leave out
        shard(self, ["student", "heads", "student_ema"])

    def _build_networks(self) -> None:
        h = self.hparams
        parts = teacher_parts(load_teacher(self.teacher_source, h.teacher_plugin,
                                           h.teacher_args))
        self.adopt_teacher(parts)  # saves its plugin and args instead of the path
        self.max_timestep = _timesteps_checked(parts.schedule, parts.prediction, h)
        self.student_timesteps = even_timesteps(self.max_timestep, h.student_steps)
        self.teacher = parts.net
        self.student = student_copy(self.teacher)
        self.student_ema: AveragedModel | None = None
        if h.ema_decay is not None:
            self.student_ema = ema_model(self.student, h.ema_decay)
        self.features = self.build_features(h.feature_network, h.feature_network_args,
                                            h.feature_layers, h.feature_timestep)
        self.heads = DiscriminatorHeads(self.feature_shapes(), h.head_width, h.spectral_norm)
        self.networks_built = True

    # ----------------------------------------------------------------------------- networks

    def build_features(self, name: str, args: dict[str, Any] | None,
                       layers: list[str] | None, timestep: int) -> nn.Module:
        """The frozen feature network of the discriminator (see ``feature_network``)."""
        if name == "teacher":
            return FeatureTaps(self.teacher, layers or default_layers(self.teacher), timestep)
        module, _, cls_name = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError, ValueError) as err:
            raise GenlabError(f"model.feature_network {name!r} cannot be imported ({err}); use "
                              f"'teacher' or an importable class path like pkg.module.Backbone"
                              ) from None
        return frozen(cls(**(args or {})))

    def feature_shapes(self) -> list[tuple[int, ...]]:
        """Shape (without the batch) of each feature the heads will see."""
        with torch.no_grad():
            features = self.features(torch.zeros(2, *self.data_shape))
        shapes = [tuple(f.shape[1:]) for f in features]
        if not shapes or any(len(s) not in (1, 3) for s in shapes):
            raise GenlabError(f"the feature network must return a list of (B, C) or "
                              f"(B, C, H, W) features, got shapes {shapes}")
        return shapes

    def train(self, mode: bool = True) -> ADD:
        """Switch the student and heads; the frozen teacher and features stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        self.features.eval()
        return self

    def x0(self, net: nn.Module, x_t: Tensor, t: Tensor, labels: Tensor | None,
           clip: float | None = None) -> Tensor:
        """A denoiser's clean estimate of ``x_t`` at timesteps ``t`` (the teacher's prediction
        kind, converted by the schedule)."""
        return clean_estimate(net, self.schedule, self.prediction, x_t, t, labels, clip)

    def discriminate(self, x: Tensor) -> list[Tensor]:
        """Logits ``(B, N_k)`` of each discriminator head for examples ``x`` (diffusion space)."""
        return self.heads(self.features(x))

    # ----------------------------------------------------------------------------- sampling

    def sampling_timesteps(self, steps: int) -> list[int]:
        """``steps`` of the student's timesteps, evenly picked from its training grid."""
        return pick_steps(self.student_timesteps, steps)

    @torch.no_grad()
    def sample(self, num: int, steps: int | None = None,
               labels: Tensor | None = None) -> Tensor:
        """``num`` samples of the EMA student, ``(num, *data_shape)``.

        Each step denoises in one call; between steps the clean estimate is noised again to the
        next timestep with fresh noise (the paper's multi-step sampling).

        Args:
            num: Number of samples.
            steps: Student steps, 1 to ``student_steps``; ``None``: ``model.sample_steps``.
            labels: Class ids ``(num,)`` for a conditional teacher; ``None`` cycles through
                the classes.
        """
        steps = self.hparams.sample_steps if steps is None else steps
        if not 1 <= steps <= self.hparams.student_steps:
            raise GenlabError(f"steps must be between 1 and {self.hparams.student_steps} "
                              f"(model.student_steps), got {steps}")
        return self.multistep_sample(
            num, self.sampling_timesteps(steps), self.sample_labels(num, labels),
            lambda net, x_t, t, c: self.x0(net, x_t, t, c, self.clip))

    def sample_labels(self, num: int, labels: Tensor | None) -> Tensor | None:
        """Labels checked against the teacher's classes; for a conditional model ``None``
        cycles through them."""
        return sample_labels(num, labels, self.num_classes, self.device, prior=self.label_prior)

    # ----------------------------------------------------------------------------- training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if self.teacher_source is None:
            raise GenlabError("this ADD model was rebuilt from a student checkpoint without its "
                              "teacher; set model.teacher_ckpt to train it")
        opt_student, opt_disc = self.optimizers()
        real = batch["x"].float() / self.data_scale
        labels = self.batch_labels(batch)
        fake = self.student_forward(real, labels)  # (B, ...) with the student's graph
        logs = self.discriminator_step(real, fake.detach(), opt_disc)
        logs.update(self.student_step(fake, labels, opt_student))
        for scheduler in self.lr_schedulers() or []:  # manual optimization: ours to step
            scheduler.step()
        self.log_train(logs)

    def batch_labels(self, batch: dict[str, Tensor]) -> Tensor | None:
        return batch_labels(batch, self.num_classes, owner="the teacher")

    def student_forward(self, real: Tensor, labels: Tensor | None) -> Tensor:
        """``x̂_θ``: real examples noised to random student timesteps, denoised in one call."""
        grid = torch.tensor(self.student_timesteps, device=self.device)
        s = grid[batch_randint(self, 0, len(grid), (len(real),))]
        x_s = self.schedule.q_sample(real, s, batch_randn(self, real.shape, dtype=real.dtype))
        return self.x0(self.student, x_s, s, labels)

    def discriminator_step(self, real: Tensor, fake: Tensor,
                           opt: torch.optim.Optimizer) -> dict[str, Tensor]:
        """One step of the heads; the backward also reaches the student, through an exact 0."""
        loss, logs = self.discriminator_loss(real, fake)
        manual_step(self, [opt], loss, reach=[self.student])
        return logs

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Hinge loss on the heads' logits (summed over heads), plus R1 on real data."""
        gamma = self.hparams.r1_gamma
        real = real.detach().requires_grad_(gamma > 0)  # R1 differentiates D with respect to it
        real_logits, fake_logits = self.discriminate(real), self.discriminate(fake.detach())
        loss = sum(d_hinge(r, f) for r, f in zip(real_logits, fake_logits))
        logs = {"train/loss_d": loss.detach()}
        if gamma > 0:
            r1 = r1_penalty(torch.cat(real_logits, dim=1), real)
            loss = loss + gamma / 2 * r1
            logs["train/r1"] = r1.detach()
        return loss, logs

    def student_step(self, fake: Tensor, labels: Tensor | None,
                     opt: torch.optim.Optimizer) -> dict[str, Tensor]:
        """Adversarial (hinge generator) loss plus ``lambda`` times the distillation loss."""
        adversarial = sum(g_hinge(f) for f in self.discriminate(fake))
        distill = self.distillation_loss(fake, labels)
        manual_step(self, [opt], adversarial + self.hparams.distill_weight * distill,
                    reach=[self.heads])
        if self.student_ema is not None:
            self.student_ema.update_parameters(self.student)
        return {"train/loss_adv": adversarial.detach(), "train/loss_distill": distill.detach()}

    def distillation_loss(self, x0: Tensor, labels: Tensor | None) -> Tensor:
        """``E_t c(t) ||x̂_θ - sg(x̂_ψ(x̂_θ,t, t))||²`` over ``t`` uniform in
        ``0 … max_timestep`` (squared error averaged over the example's entries)."""
        t = batch_randint(self, 0, self.max_timestep + 1, (len(x0),))
        target = self.distillation_target(x0, t, batch_randn(self, x0.shape, dtype=x0.dtype),
                                          labels)
        err = (x0 - target).pow(2).flatten(1).mean(1)  # (B,)
        return (self.distillation_weight(t) * err).mean()

    @torch.no_grad()
    def distillation_target(self, x0: Tensor, t: Tensor, noise: Tensor,
                            labels: Tensor | None) -> Tensor:
        """``x̂_ψ``: the frozen teacher's clean estimate of ``x0`` noised to ``t`` with ``noise``
        (no gradient: the paper's stop-gradient)."""
        x_t = self.schedule.q_sample(x0.detach(), t, noise)
        return self.x0(self.teacher, x_t, t, labels, self.clip)

    def distillation_weight(self, t: Tensor) -> Tensor:
        """``c(t)`` of ``distill_weighting``, shape ``(B,)``.

        ``sds``: with ``x_t = alpha x̂_θ + sigma eps``, ``eps_ψ - eps = alpha / sigma (x̂_θ -
        x̂_ψ)``, so the score-distillation gradient ``w(t) (eps_ψ - eps)`` is the gradient of
        ``c(t) ||x̂_θ - x̂_ψ||²`` with ``c = alpha w / (2 sigma)``; ``w = sigma²``.
        """
        a = self.schedule.alpha_bar(t)
        kind = self.hparams.distill_weighting
        if kind == "exponential":
            return a.sqrt()
        if kind == "sds":
            return a.sqrt() * (1 - a).sqrt() / 2
        return torch.ones_like(a)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_gradients(self, optimizer, self.hparams.grad_clip)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[LRScheduler]]:
        h = self.hparams
        opts = [torch.optim.Adam(self.student.parameters(), lr=h.lr, betas=tuple(h.betas)),
                torch.optim.Adam(self.heads.parameters(), lr=h.lr_disc, betas=tuple(h.betas))]
        if h.lr_schedule == "constant":
            return opts, []
        # Returned (not kept privately) so that checkpoints save and resume them.
        return opts, [CosineAnnealingLR(opt, T_max=self.num_batches()) for opt in opts]

    def num_batches(self) -> int:
        """Batches the trainer will train on: the horizon of the cosine schedule."""
        return lr_horizon(self.trainer, steps_per_batch=2)  # a student and a heads step each

    # ----------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        drop_frozen(checkpoint["state_dict"], FROZEN)  # the teacher's belong to its own file
        checkpoint["add"] = {"teacher_ckpt": self.teacher_source}  # provenance only

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # The frozen parts come from the live teacher (or are unused when sampling alone).
        # A sharded resume has loaded the weights already and popped them from the checkpoint.
        state = checkpoint.get("state_dict", {})
        restore_frozen(state, self.state_dict(), FROZEN)
        # Heads saved with torch's older spectral-norm hook: its keys, in the parametrization's.
        old = {"weight_orig": "original", "weight_u": "_u", "weight_v": "_v"}
        for key in [k for k in state if k.startswith("heads.") and k.rpartition(".")[2] in old]:
            stem, _, name = key.rpartition(".")
            state[f"{stem}.parametrizations.weight.{old[name]}"] = state.pop(key)


def _timesteps_checked(schedule: NoiseSchedule, prediction: str, h: Any) -> int:
    """``max_timestep`` resolved for the teacher's schedule; ``GenlabError`` if out of range."""
    T = schedule.num_timesteps
    top = default_max_timestep(schedule, prediction) if h.max_timestep is None else h.max_timestep
    raise_first([
        (not h.student_steps - 1 <= top < T, f"model.max_timestep must be "
         f"{h.student_steps - 1} to {T - 1} (the teacher's last timestep), got {top}"),
        (not 0 <= h.feature_timestep < T,
         f"model.feature_timestep must be 0 to {T - 1}, got {h.feature_timestep}"),
    ])
    return top


def _check_hparams(student_steps: int, sample_steps: int, distill_weight: float,
                   head_width: int, r1_gamma: float, lr: float, lr_disc: float,
                   grad_clip: float | None, ema_decay: float | None) -> None:
    """Raise ``GenlabError`` naming the first bad hyperparameter."""
    raise_first([
        (not 1 <= student_steps <= 16, f"model.student_steps must be 1 to 16, got "
                                       f"{student_steps}"),
        (not 1 <= sample_steps <= student_steps,
         f"model.sample_steps must be 1 to model.student_steps ({student_steps}), got "
         f"{sample_steps}"),
        (distill_weight < 0, f"model.distill_weight must be >= 0, got {distill_weight}"),
        (head_width < 1, f"model.head_width must be >= 1, got {head_width}"),
        (r1_gamma < 0, f"model.r1_gamma must be >= 0, got {r1_gamma}"),
        (lr <= 0 or lr_disc <= 0, f"model.lr and model.lr_disc must be > 0, got {lr}, "
                                  f"{lr_disc}"),
        (grad_clip is not None and grad_clip <= 0,
         f"model.grad_clip must be > 0 (or null for none), got {grad_clip}"),
        (ema_decay is not None and not 0 < ema_decay < 1,
         f"model.ema_decay must be in (0, 1) (or null for no EMA), got {ema_decay}"),
    ])
