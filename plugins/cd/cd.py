"""Consistency distillation and consistency training (Song et al. 2023, "Consistency Models").

A consistency function maps any point of a probability-flow ODE trajectory to the trajectory's
clean end. Written in EDM's variables ``y = x_t / sqrt(alpha_bar_t)`` and ``sigma_t =
sqrt((1 - alpha_bar_t) / alpha_bar_t)`` (where ``y = x0 + sigma eps``), the paper's student is

    f(y, sigma) = c_skip(sigma) y + c_out(sigma) F(y, sigma)                      (paper, eq. 5)
    c_skip = sigma_d² / ((sigma - sigma_min)² + sigma_d²)
    c_out  = sigma_d (sigma - sigma_min) / sqrt(sigma² + sigma_d²)              (appendix C)

with ``F`` the *raw* output of an EDM network, whose denoiser is ``D = c_skip_edm y +
c_out_edm F`` (``c_skip_edm = sigma_d² / (sigma² + sigma_d²)``, ``c_out_edm = sigma sigma_d /
sqrt(sigma² + sigma_d²)``). A genlab teacher gives the clean estimate ``D`` itself, so ``F`` is
recovered from it, which leaves

    f = (c_skip - r c_skip_edm) y + r D,    r = c_out / c_out_edm = (sigma - sigma_min) / sigma

the identity at the smallest noise level ``sigma_min`` (the boundary condition) and, as in the
paper, the teacher's denoiser itself wherever ``sigma >> sigma_min``: the student starts as the
teacher. (Mixing ``D`` in with the paper's ``c_out`` as if it were ``F`` counts the skip twice:
at ``sigma ~ sigma_d`` the untrained student then returned about ``1.2 x0``.)

Each batch (Algorithm 2, distillation; Algorithm 3, training): a grid of ``N + 1`` timesteps
from ``max_timestep`` down to 0 (noise levels on EDM's rho = 7 ramp, as the paper's); an
adjacent pair ``t_{n+1} > t_n`` per example; a real example noised to ``t_{n+1}``; its
neighbour ``x̂_{t_n}`` one ODE-solver step of the frozen teacher away (DDIM = Euler, or Heun;
``genlab.diffusion``), or, for consistency training without a teacher, the same example with
the same noise at ``t_n``. The loss pulls ``f_θ(x_{t_{n+1}})`` toward ``f_θ⁻(x̂_{t_n})`` of
the target network ``θ⁻``, an EMA of the student.

Teacher handling, the student's start (a copy of the teacher's EMA denoiser), step schedules and
self-contained checkpoints are ``genlab.distill``'s, shared with ADD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler
from torch.optim.swa_utils import AveragedModel

from genlab.diffusion import ddim_step, heun_step, karras_timesteps
from genlab.distill import (
    Student,
    clean_estimate,
    default_max_timestep,
    drop_frozen,
    load_teacher,
    pick_steps,
    restore_frozen,
    student_copy,
    teacher_parts,
    tiny_teacher,
)
from genlab.ema import ema_model
from genlab.errors import GenlabError, raise_first
from genlab.module import ConformanceCase
from genlab.noise import batch_randint, batch_randn
from genlab.recipes import LRSchedule, batch_labels, clip_gradients, lr_horizon, sample_labels
from genlab.sharding import shard

Method = Literal["distillation", "training"]
Solver = Literal["ddim", "heun"]
Spacing = Literal["karras", "timestep"]
Distance = Literal["l2", "pseudo_huber"]
Weighting = Literal["uniform", "inverse_gap"]

FROZEN = ("teacher.",)  # rebuilt from the teacher's file, never saved


class CD(Student):
    """Consistency distillation of a diffusion teacher into a 1–4 step student, or consistency
    training of the same network without a teacher.

    Args:
        teacher_ckpt: Path of the trained diffusion checkpoint; the student starts from its EMA
            weights and (``method: distillation``) distils its ODE. Not saved in the student's
            checkpoint (``teacher_plugin`` / ``teacher_args`` are).
        teacher_plugin: Registered name of the teacher's plugin; filled in from ``teacher_ckpt``.
        teacher_args: The teacher's hyperparameters (architecture and schedule); filled in from
            ``teacher_ckpt``. With ``teacher_ckpt: null`` and ``method: training`` they name the
            untrained diffusion network that consistency training starts from.
        method: ``distillation`` (the teacher's ODE step gives the target) or ``training``
            (no teacher: the same noise at the neighbouring level, the paper's Algorithm 3).
        num_intervals: ``N``: adjacent noise levels of the distillation grid (18-40 in the
            paper's EDM settings; more: smaller solver errors, slower propagation).
        solver: The teacher's ODE solver between adjacent levels: ``ddim`` (Euler) or ``heun``.
        spacing: How the grid's levels are spaced: ``karras`` (the paper's: noise levels on
            EDM's rho = 7 ramp from ``min(sigma_top, 80)`` down, ``genlab.diffusion.
            karras_timesteps``) or ``timestep`` (evenly in timesteps, which leaves one long
            step at the low-noise end: Heun over 18 such levels misses an exact mixture's modes).
        ramp_sigma_min: ``karras`` only: the ramp's lowest noise level (EDM's sigma, of the
            data divided by ``data_scale``); one last step from there to timestep 0 follows.
            ``None``: timestep 0's. The step onto timestep 0 is always Euler (the teacher's clean
            estimate, EDM's last step): ending the ramp above the levels where a learned
            teacher's ODE is least accurate makes that step a denoising one.
        student_steps: Timesteps of the sampling grid, levels of the distillation grid evenly
            picked from ``max_timestep`` (the student is trained at those levels only);
            ``sample(steps)`` uses 1 to this many of them (Algorithm 1, multistep sampling).
        sample_steps: Default number of steps of ``sample()``.
        max_timestep: The noisiest timestep; ``None``: ``T - 1``, or for an eps teacher the last
            timestep with ``alpha_bar >= 0.0047`` (see ``genlab.distill``).
        sigma_data: ``sigma_d`` of ``c_skip`` / ``c_out``, the data's spread in the diffusion
            space (data divided by the teacher's ``data_scale``).
        distance: ``l2`` (squared error) or ``pseudo_huber`` (improved consistency training,
            ``sqrt(||a - b||² + c²) - c`` with ``c = 0.00054 sqrt(dim)``).
        weighting: ``lambda(sigma_n)`` of each pair's loss: ``uniform`` (the paper's), or
            ``inverse_gap``, ``1 / (sigma_{n+1} - sigma_n)`` (improved consistency training):
            the low-noise pairs, whose errors every longer jump inherits, weigh more.
        target_decay: ``mu``, the decay of the target network ``θ⁻`` (0: the stop-gradient
            student itself, as improved consistency training does).
        ema_decay: Decay of the EMA of the student's weights that ``sample`` uses; ``None``:
            sample the raw student.
        lr: Adam learning rate.
        betas: Adam betas.
        grad_clip: Clip the gradient norm to this value; ``None``: no clipping.
        lr_schedule: ``constant``, or ``cosine`` decay to zero over the run.
    """

    def __init__(
        self,
        teacher_ckpt: str | None = None,
        teacher_plugin: str | None = None,
        teacher_args: dict[str, Any] | None = None,
        method: Method = "distillation",
        num_intervals: int = 40,
        solver: Solver = "ddim",
        spacing: Spacing = "karras",
        ramp_sigma_min: float | None = None,
        student_steps: int = 4,
        sample_steps: int = 1,
        max_timestep: int | None = None,
        sigma_data: float = 0.5,
        distance: Distance = "l2",
        weighting: Weighting = "uniform",
        target_decay: float = 0.95,
        ema_decay: float | None = 0.999,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_clip: float | None = None,
        lr_schedule: LRSchedule = "constant",
    ) -> None:
        super().__init__()
        _check_hparams(method, weighting, num_intervals, student_steps, sample_steps,
                       sigma_data, target_decay, ema_decay, lr, grad_clip)
        _check_grid(spacing, ramp_sigma_min)
        if teacher_ckpt is None and (teacher_plugin is None or teacher_args is None):
            raise GenlabError("model.teacher_ckpt is required: the path of a trained diffusion "
                              "checkpoint (or, for method: training, model.teacher_plugin and "
                              "model.teacher_args naming an untrained one)")
        self.save_hyperparameters(ignore=["teacher_ckpt"])
        self.teacher_source = teacher_ckpt  # None: rebuilt from a checkpoint, or trained alone
        self.networks_built = False
        # A config may name a teacher not trained yet: then configure_model() builds at fit.
        if teacher_ckpt is None or Path(teacher_ckpt).is_file():
            self.configure_model()

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """Ring-8 points, distilled from a tiny diffusion teacher trained here for 2 steps;
        2-process DDP and bf16."""
        data, teacher = tiny_teacher(root, "diffusion", hidden=[16], emb_dim=8,
                                     num_timesteps=50, sample_steps=4, trajectory_frames=0)
        return ConformanceCase(data, {"teacher_ckpt": teacher, "num_intervals": 8, "lr": 1e-3},
                               ddp=True)

    def configure_model(self) -> None:
        """Load the teacher and build the student (once); shard it under ``fsdp2``."""
        if not self.networks_built:
            self._build_networks()
        if self.device_mesh is not None:  # sharded resume loads weights before on_load_checkpoint
            self.strict_loading = False
        shard(self, ["student", "target", "student_ema"])

    def _build_networks(self) -> None:
        h = self.hparams
        parts = teacher_parts(load_teacher(self.teacher_source, h.teacher_plugin,
                                           h.teacher_args))
        self.adopt_teacher(parts)
        top = _top_checked(parts.schedule, parts.prediction, h)
        # The distillation grid t_N > ... > t_0 = 0 and the sampling grid (its noisiest levels).
        self.grid = _grid(parts.schedule, top, h)
        # Sampling levels picked from the distillation grid: f is trained at those levels only.
        self.student_timesteps = pick_steps(self.grid[:-1], h.student_steps)
        self.student = student_copy(parts.net)
        if h.method == "distillation":
            self.teacher = parts.net  # frozen; consistency training has none
        self.target = ema_model(self.student, h.target_decay)  # θ⁻
        self.student_ema: AveragedModel | None = None
        if h.ema_decay is not None:
            self.student_ema = ema_model(self.student, h.ema_decay)
        self.networks_built = True

    def train(self, mode: bool = True) -> CD:
        """Switch the student; the frozen teacher stays in eval mode."""
        super().train(mode)
        if hasattr(self, "teacher"):
            self.teacher.eval()
        return self

    # ----------------------------------------------------------------------------- the function

    def sigma(self, t: Tensor) -> Tensor:
        """EDM noise level ``sqrt((1 - alpha_bar_t) / alpha_bar_t)`` of timesteps ``t``."""
        a = self.schedule.alpha_bar(t)
        return ((1 - a) / a).sqrt()

    def scalings(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, r)`` of ``f = a y + r D`` at timesteps ``t`` ``(B,)`` (``D`` the network's clean
        estimate); ``(1, 0)`` at the grid's last level, ``(~0, ~1)`` at large noise."""
        sigma, sigma_min = self.sigma(t), self.sigma(t.new_tensor(self.grid[-1]))
        sd2 = self.hparams.sigma_data ** 2
        c_skip = sd2 / ((sigma - sigma_min) ** 2 + sd2)  # the paper's, appendix C
        r = (sigma - sigma_min) / sigma  # its c_out over EDM's: F = (D - c_skip_edm y) / c_out_edm
        return c_skip - r * sd2 / (sigma**2 + sd2), r

    def consistency(self, net: nn.Module, x_t: Tensor, t: Tensor,
                    labels: Tensor | None) -> Tensor:
        """``f(x_t, t)``: the clean end of ``x_t``'s ODE trajectory, in the diffusion space.

        ``a y + r D`` (see ``scalings``) with ``y = x_t / sqrt(alpha_bar_t)`` and ``D`` the
        clean estimate of ``net``.
        """
        a, r = (c.reshape(-1, *([1] * (x_t.dim() - 1))) for c in self.scalings(t))
        y = x_t.float() / self.schedule.alpha_bar(t).sqrt().reshape(a.shape)
        D = clean_estimate(net, self.schedule, self.prediction, x_t, t, labels, self.clip)
        return a * y + r * D

    # ----------------------------------------------------------------------------- sampling

    def sampling_timesteps(self, steps: int) -> list[int]:
        """``steps`` of the student's timesteps, evenly picked from its sampling grid."""
        return pick_steps(self.student_timesteps, steps)

    @torch.no_grad()
    def sample(self, num: int, steps: int | None = None,
               labels: Tensor | None = None) -> Tensor:
        """``num`` samples of the EMA student, ``(num, *data_shape)``.

        Multistep consistency sampling (Algorithm 1): map noise to data in one call; for more
        steps, noise the result again to the next (lower) level and map it again.

        Args:
            num: Number of samples.
            steps: Student steps, 1 to ``student_steps``; ``None``: ``model.sample_steps``.
            labels: Class ids ``(num,)`` for a conditional teacher; ``None`` cycles through
                the classes.
        """
        grid = self.sampling_timesteps(self.hparams.sample_steps if steps is None else steps)
        labels = sample_labels(num, labels, self.num_classes, self.device)
        return self.multistep_sample(num, grid, labels, self.consistency)

    # ----------------------------------------------------------------------------- training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.hparams.method == "distillation" and self.teacher_source is None:
            raise GenlabError("this CD model was rebuilt from a student checkpoint without its "
                              "teacher; set model.teacher_ckpt to train it")
        x0 = batch["x"].float() / self.data_scale
        labels = batch_labels(batch, self.num_classes, owner="the teacher")
        grid = torch.tensor(self.grid, device=self.device)
        n = batch_randint(self, 0, len(self.grid) - 1, (len(x0),))
        t, s = grid[n], grid[n + 1]  # adjacent levels t_{n+1} > t_n
        noise = batch_randn(self, x0.shape, dtype=x0.dtype)
        x_t = self.schedule.q_sample(x0, t, noise)
        online = self.consistency(self.student, x_t, t, labels)
        with torch.no_grad():
            x_s = self.neighbour(x0, x_t, t, s, noise, labels)
            target = self.consistency(self.target.module, x_s, s, labels)
        loss = (self.weight(t, s) * self.distance(online, target)).mean()
        self.log_train({"train/loss": loss})
        return loss

    @torch.no_grad()
    def neighbour(self, x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor, noise: Tensor,
                  labels: Tensor | None) -> Tensor:
        """``x̂_s``: the teacher's ODE-solver step from ``x_t`` at ``t`` to ``s`` (distillation),
        or ``x0`` noised to ``s`` with the same ``noise`` (consistency training)."""
        if self.hparams.method == "training":
            return self.schedule.q_sample(x0, s, noise)
        # Onto the last level (timestep 0) an Euler step, as EDM's last step; Heun elsewhere.
        if self.hparams.solver == "heun":
            heun = s != self.grid[-1]
        else:
            heun = torch.zeros_like(t, dtype=torch.bool)
        x_s = torch.empty_like(x_t)
        for rows, step in ((heun, heun_step), (~heun, ddim_step)):
            if bool(rows.any()):
                x_s[rows] = step(self.teacher, self.schedule, x_t[rows], t[rows], s[rows],
                                 self.prediction, None if labels is None else labels[rows],
                                 self.clip)
        return x_s

    def weight(self, t: Tensor, s: Tensor) -> Tensor:
        """``lambda`` of each pair ``(t_{n+1}, t_n)``, ``(B,)`` (see ``weighting``)."""
        if self.hparams.weighting == "uniform":
            return torch.ones_like(t, dtype=torch.float32)
        return 1 / (self.sigma(t) - self.sigma(s))

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """``d(a, b)`` per example ``(B,)``: mean squared error, or the pseudo-Huber metric."""
        sq = (a - b).pow(2).flatten(1)
        if self.hparams.distance == "l2":
            return sq.mean(1)
        c = 0.00054 * sq.shape[1] ** 0.5
        return (sq.sum(1) + c**2).sqrt() - c

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the target network and the sampling EMA after each optimizer step."""
        self.target.update_parameters(self.student)
        if self.student_ema is not None:
            self.student_ema.update_parameters(self.student)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_gradients(self, optimizer, self.hparams.grad_clip)

    def configure_optimizers(self) -> Any:
        h = self.hparams
        opt = torch.optim.Adam(self.student.parameters(), lr=h.lr, betas=tuple(h.betas))
        if h.lr_schedule == "constant":
            return opt
        scheduler: LRScheduler = CosineAnnealingLR(opt, T_max=lr_horizon(self.trainer))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        drop_frozen(checkpoint["state_dict"], FROZEN)  # the teacher's belong to its own file
        checkpoint["cd"] = {"teacher_ckpt": self.teacher_source}  # provenance only

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_frozen(checkpoint.get("state_dict", {}), self.state_dict(), FROZEN)


def _top_checked(schedule: Any, prediction: str, h: Any) -> int:
    """``max_timestep`` resolved for the teacher's schedule; ``GenlabError`` if out of range."""
    T = schedule.num_timesteps
    top = default_max_timestep(schedule, prediction) if h.max_timestep is None else h.max_timestep
    raise_first([
        (not max(h.num_intervals, h.student_steps) <= top < T,
         f"model.max_timestep must be {max(h.num_intervals, h.student_steps)} to {T - 1} (at "
         f"least num_intervals and student_steps, at most the teacher's last), got {top}"),
    ])
    return top


def _grid(schedule: Any, top: int, h: Any) -> list[int]:
    """The distillation grid ``t_N > ... > t_0 = 0`` (see ``spacing``)."""
    if h.spacing == "karras":
        return karras_timesteps(schedule, top, h.num_intervals, sigma_min=h.ramp_sigma_min)
    return torch.linspace(top, 0, h.num_intervals + 1, dtype=torch.float64).round().long().tolist()


def _check_grid(spacing: str, ramp_sigma_min: float | None) -> None:
    """Raise ``GenlabError`` naming a bad grid option."""
    raise_first([
        (spacing not in ("karras", "timestep"),
         f"model.spacing must be karras or timestep, got {spacing!r}"),
        (ramp_sigma_min is not None and (spacing != "karras" or ramp_sigma_min <= 0),
         f"model.ramp_sigma_min must be > 0 with spacing: karras (or null), got "
         f"{ramp_sigma_min} with spacing: {spacing}"),
    ])


def _check_hparams(method: str, weighting: str, num_intervals: int,
                   student_steps: int, sample_steps: int, sigma_data: float, target_decay: float,
                   ema_decay: float | None, lr: float,
                   grad_clip: float | None) -> None:
    """Raise ``GenlabError`` naming the first bad hyperparameter."""
    raise_first([
        (method not in ("distillation", "training"),
         f"model.method must be distillation or training, got {method!r}"),
        (weighting not in ("uniform", "inverse_gap"),
         f"model.weighting must be uniform or inverse_gap, got {weighting!r}"),
        (num_intervals < 1, f"model.num_intervals must be >= 1, got {num_intervals}"),
        (not 1 <= student_steps <= 16, f"model.student_steps must be 1 to 16, got "
                                       f"{student_steps}"),
        (not 1 <= sample_steps <= student_steps,
         f"model.sample_steps must be 1 to model.student_steps ({student_steps}), got "
         f"{sample_steps}"),
        (sigma_data <= 0, f"model.sigma_data must be > 0, got {sigma_data}"),
        (not 0 <= target_decay < 1, f"model.target_decay must be in [0, 1), got {target_decay}"),
        (ema_decay is not None and not 0 < ema_decay < 1,
         f"model.ema_decay must be in (0, 1) (or null for no EMA), got {ema_decay}"),
        (lr <= 0, f"model.lr must be > 0, got {lr}"),
        (grad_clip is not None and grad_clip <= 0,
         f"model.grad_clip must be > 0 (or null for none), got {grad_clip}"),
    ])
