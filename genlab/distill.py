"""Few-step students of a diffusion teacher: the parts every distillation recipe shares.

A student (adversarial diffusion distillation, consistency distillation, or a third party's)
takes a trained diffusion checkpoint as a frozen teacher, starts from a copy of its EMA
denoiser, draws with a few steps picked from a short grid of timesteps, and saves a checkpoint
that samples without the teacher's file. This module holds those parts, so that each recipe
keeps only its loss.

The teacher is recognised by what it offers, not by its class (the core never names a plugin):
a ``GenerativeModule`` with an EMA denoiser ``ema.module`` (``denoiser(x_t, t, labels) ->
prediction``), a ``schedule`` (``genlab.diffusion.NoiseSchedule``), a ``data_shape`` and the
hyperparameters ``prediction`` and ``data_scale`` (``num_classes`` and ``clip_x0`` optional).
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.checkpoint import load_model
from genlab.diffusion import NoiseSchedule
from genlab.errors import GenlabError
from genlab.module import GenerativeModule
from genlab.registry import create_model, origin

TEACHER_API = ("ema", "schedule", "data_shape")  # attributes a diffusion teacher must have

# alpha_bar of the last timestep of Stable Diffusion / SDXL's schedule, where ADD-SDXL's student
# starts. An eps-predicting student starting much closer to pure noise would divide its output by
# sqrt(alpha_bar) ~ 1e-4 (cosine schedule, T = 1000) to get its clean estimate.
TERMINAL_ALPHA_BAR = 0.0047


@dataclass
class TeacherParts:
    """What a student uses of its diffusion teacher.

    Attributes:
        net: The teacher's EMA denoiser, frozen (``requires_grad`` off, eval mode).
        schedule: The teacher's noise schedule.
        prediction: What ``net`` predicts: ``eps``, ``v`` or ``x0``.
        data_shape: Shape of one example.
        data_scale: Data are divided by it before diffusion.
        num_classes: Classes of a conditional teacher, else ``None``.
        clip: Bound of clean estimates in the diffusion space (images), else ``None``.
        plugin: Registered name of the teacher's plugin.
        args: The teacher's hyperparameters: with ``plugin``, they rebuild its architecture.
    """

    net: nn.Module
    schedule: NoiseSchedule
    prediction: str
    data_shape: tuple[int, ...]
    data_scale: float
    num_classes: int | None
    clip: float | None
    plugin: str
    args: dict[str, Any]


class Student(GenerativeModule):
    """Base of a distilled student: its modality is its teacher's, read from ``data_shape``.

    A subclass saves ``teacher_plugin`` and ``teacher_args`` among its hyperparameters and calls
    ``adopt_teacher`` when it builds its networks.
    """

    modalities = ("points", "image")

    @property
    def modality(self) -> str:
        """The teacher's: ``points`` for data of shape ``[D]`` (or no teacher yet), else image."""
        return "points" if len(getattr(self, "data_shape", (0,))) == 1 else "image"

    def adopt_teacher(self, parts: TeacherParts) -> None:
        """Take the teacher's data shape, schedule, prediction, scale, classes and clip bound.

        Its plugin name and hyperparameters are saved in place of its path, so that the
        student's checkpoint rebuilds (and samples) without the teacher's file.
        """
        self.hparams.teacher_plugin, self.hparams.teacher_args = parts.plugin, parts.args
        self.data_shape, self.schedule = parts.data_shape, parts.schedule
        self.prediction, self.data_scale = parts.prediction, parts.data_scale
        self.num_classes, self.clip = parts.num_classes, parts.clip

    @torch.no_grad()
    def multistep_sample(self, num: int, grid: list[int], labels: Tensor | None,
                         clean: Callable[[nn.Module, Tensor, Tensor, Tensor | None], Tensor],
                         ) -> Tensor:
        """``num`` samples of the student's EMA (else the student), in data units.

        Multistep few-step sampling (ADD, and consistency models' Algorithm 1): noise mapped to
        a clean estimate ``clean(net, x_t, t, labels)`` at the grid's first timestep; for each
        further one, that estimate noised to it and mapped again. Images are clamped to
        ``[-1, 1]``.
        """
        ema = getattr(self, "student_ema", None)
        net = ema.module if ema is not None else self.student
        x = torch.randn(num, *self.data_shape, device=self.device)
        full = [torch.full((num,), t, device=self.device, dtype=torch.long) for t in grid]
        for i, t in enumerate(full):
            x0 = clean(net, x, t, labels)
            if i + 1 < len(full):
                x = self.schedule.q_sample(x0, full[i + 1], torch.randn_like(x0))
        x0 = x0 * self.data_scale
        return x0.clamp(-1, 1) if self.modality == "image" else x0


def tiny_teacher(root: Path, plugin: str, **args: Any) -> tuple[Any, str]:
    """Ring-8 data and a tiny point teacher of ``plugin`` trained on them for 2 steps.

    The teacher is saved as ``root/teacher.ckpt``: a student's conformance case starts there.
    Returns the data module and the checkpoint's path. ``args`` size the teacher (its data
    shape is ``[2]``).
    """
    import lightning as L

    from genlab.data.toy import ToyDataModule

    data = ToyDataModule(train_size=128, val_size=32, batch_size=32)
    L.seed_everything(0, verbose=False)
    teacher = create_model(plugin, data_shape=[2], **args)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root)
    trainer.fit(teacher, data)
    trainer.save_checkpoint(Path(root) / "teacher.ckpt")
    return data, str(Path(root) / "teacher.ckpt")


def frozen(module: nn.Module) -> nn.Module:
    """``module`` with gradients off and in eval mode (in place)."""
    return module.requires_grad_(False).eval()


def check_teacher(teacher: GenerativeModule, what: str = "model.teacher_ckpt") -> None:
    """Raise ``GenlabError`` (one line) unless ``teacher`` offers the diffusion teacher API."""
    missing = [a for a in TEACHER_API if not hasattr(teacher, a)]
    hparams = getattr(teacher, "hparams", {})
    missing += [k for k in ("prediction", "data_scale") if k not in hparams]
    if missing or not isinstance(teacher.schedule, NoiseSchedule):
        raise GenlabError(f"{what} must be a diffusion checkpoint (a model with an EMA "
                          f"denoiser, a noise schedule and a prediction type); "
                          f"{type(teacher).__name__} has none of {missing or ['schedule']}")


def load_teacher(path: str | None, plugin: str | None = None,
                 args: dict[str, Any] | None = None,
                 what: str = "model.teacher_ckpt") -> GenerativeModule:
    """The diffusion teacher of a student, checked (``GenlabError`` in one line otherwise).

    From its checkpoint (read with ``weights_only``), or, with no path (a student rebuilt from
    its own checkpoint), an untrained model of the same architecture built from its plugin name
    and hyperparameters.

    Runs in a fresh context: LightningCLI builds the student inside a context variable holding
    *its* init args, which the teacher's ``save_hyperparameters()`` would otherwise take.
    """
    return contextvars.Context().run(_load_teacher, path, plugin, args, what)


def _load_teacher(path: str | None, plugin: str | None, args: dict[str, Any] | None,
                  what: str) -> GenerativeModule:
    if path is None:
        if plugin is None or args is None:
            raise GenlabError(f"{what} is required: the path of a trained diffusion "
                              f"checkpoint, e.g. runs/<name>/version_0/checkpoints/last.ckpt")
        teacher = create_model(plugin, **args)
    elif not Path(path).is_file():
        raise GenlabError(f"{what} {path} does not exist; train the teacher first "
                          f"(genlab fit --config configs/diffusion/...) and point it there")
    else:
        teacher = load_model(path)
    check_teacher(teacher, what)
    return teacher


def teacher_parts(teacher: GenerativeModule, image: bool | None = None) -> TeacherParts:
    """The parts of a checked teacher a student uses; its EMA denoiser frozen.

    Args:
        teacher: A model that passed ``check_teacher``.
        image: Whether the data are images (clean estimates clipped unless the teacher's
            ``clip_x0`` says otherwise); ``None``: from the data shape (``[C, H, W]``).
    """
    h = teacher.hparams
    shape = tuple(teacher.data_shape)
    clip = h.get("clip_x0")
    clip = (len(shape) == 3 if image is None else image) if clip is None else clip
    return TeacherParts(
        net=frozen(teacher.ema.module), schedule=teacher.schedule, prediction=h.prediction,
        data_shape=shape, data_scale=h.data_scale, num_classes=h.get("num_classes"),
        clip=1.0 / h.data_scale if clip else None, plugin=origin(type(teacher))["plugin"],
        args={k: v for k, v in h.items() if not k.startswith("_")})


def student_copy(net: nn.Module) -> nn.Module:
    """A trainable copy of a (frozen) teacher network: the student's starting point."""
    return copy.deepcopy(net).requires_grad_(True).train()


def clean_estimate(net: nn.Module, schedule: NoiseSchedule, prediction: str, x_t: Tensor,
                   t: Tensor, labels: Tensor | None, clip: float | None = None) -> Tensor:
    """A denoiser's clean estimate ``x̂0`` of ``x_t`` at timesteps ``t`` ``(B,)``, in float32."""
    out = net(x_t, t, labels).float()
    return schedule.to_x0_eps(out, x_t.float(), t, prediction, clip)[0]


# Step schedules


def default_max_timestep(schedule: NoiseSchedule, prediction: str) -> int:
    """A student's first (noisiest) timestep: ``T - 1``, or for an eps network a later one.

    For eps: the last with ``alpha_bar >= TERMINAL_ALPHA_BAR``, since an eps network's clean
    estimate divides by ``sqrt(alpha_bar)``.
    """
    if prediction != "eps":
        return schedule.num_timesteps - 1
    return int((schedule.alphas_cumprod >= TERMINAL_ALPHA_BAR).nonzero().max())


def even_timesteps(top: int, n: int) -> list[int]:
    """``n`` timesteps from ``top`` evenly spaced down toward 0, not reaching it.

    ADD's ``tau_1 > ... > tau_n``: 999, 749, 499, 249 for ``top = 999, n = 4``.
    """
    return [top - round(i * (top + 1) / n) for i in range(n)]


def pick_steps(grid: list[int], steps: int) -> list[int]:
    """``steps`` timesteps evenly picked from a student's ``grid`` (noisiest first).

    Starts at the grid's first; ``GenlabError`` unless ``1 <= steps <= len(grid)``.
    """
    n = len(grid)
    if not 1 <= steps <= n:
        raise GenlabError(f"steps must be between 1 and {n} (model.student_steps), got {steps}")
    return [grid[round(i * n / steps)] for i in range(steps)]


# Self-contained checkpoints


def drop_frozen(state: dict[str, Tensor], prefixes: tuple[str, ...]) -> None:
    """Remove the keys of frozen parts (``teacher.``, ...) from a state dict about to be saved.

    They belong to the teacher's own file, and the student samples without them.
    """
    for key in [k for k in state if k.startswith(prefixes)]:
        del state[key]


def restore_frozen(state: dict[str, Tensor], live: dict[str, Tensor],
                   prefixes: tuple[str, ...]) -> None:
    """Fill a loaded state dict's frozen keys from the live model's, so loading stays strict.

    The live ones are the teacher loaded from its file, or an unused untrained one when the
    student only samples.
    """
    for key, value in live.items():
        if key.startswith(prefixes):
            state.setdefault(key, value)
