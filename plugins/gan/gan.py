"""GANs on points (MLPs) and images (DCGAN conv nets), unconditional or class-conditional.

One training batch makes one discriminator step, and every ``n_critic``-th batch also one
generator step. Manual optimization, so that precision, DDP, gradient clipping and checkpoints
stay Lightning's job:

- Under DDP, Lightning wraps the whole module (G and D together) in one
  ``DistributedDataParallel``. Its reducer is prepared before every ``manual_backward`` and then
  waits for a gradient of *every* parameter it wraps; a backward that leaves some out (the D step
  never reaches G: its fakes are drawn without a graph; ``toggle_optimizer`` switches the other
  network's ``requires_grad`` off) leaves a bucket unreduced, and the next step fails with
  "Expected to have finished reduction in the prior iteration" (Lightning: "parameters that were
  not used"). So every backward here also reaches the other network, through an exact zero
  (``genlab.distributed.manual_step`` adds ``zero_through``), instead of toggling it off: DDP's
  hooks fire for every parameter, each step all-reduces normally, and no
  ``find_unused_parameters`` search is needed.
- Gradient clipping runs in ``on_before_optimizer_step``, which Lightning calls after the AMP
  scaler has unscaled the gradients (clipping before ``opt.step()`` would clip scaled ones).
- The training noise comes from the module's own ``genlab.noise.NoiseStream``, saved in
  checkpoints, so a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import torch
from genlab_gan.networks import Discriminator, Generator
from PIL import Image
from torch import Tensor
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler
from torch.optim.swa_utils import AveragedModel

from genlab import GenerativeModule
from genlab.distributed import manual_step
from genlab.ema import ema_model
from genlab.errors import raise_first
from genlab.losses.adversarial import ADVERSARIAL_LOSSES
from genlab.losses.penalties import gradient_penalty, r1_penalty
from genlab.module import ConformanceCase
from genlab.noise import NoiseStream, batch_rand, batch_randn
from genlab.pictures import latent_interpolation
from genlab.recipes import (
    LRSchedule,
    clip_gradients,
    lr_horizon,
    num_classes_problem,
    sample_labels,
)
from genlab.sharding import refuse_double_backward, shard

Loss = Literal["nonsaturating", "hinge", "wgan-gp"]


class GAN(GenerativeModule):
    """Generative adversarial network (Goodfellow et al. 2014) on points or images.

    Args:
        data_dim: Dimension of a data point (when ``image_size`` is ``None``): MLP networks.
        image_size: Image height and width, 28, 32 or 64: DCGAN conv networks
            (``genlab.nn.conv``) for ``(channels, image_size, image_size)`` images in [-1, 1].
        channels: Image channels, 1 or 3.
        latent_dim: Dimension of the generator's Gaussian input ``z``.
        hidden: Hidden widths of both MLPs (points).
        width: Base channel width of both conv networks (images).
        num_classes: Classes of a class-conditional GAN (labels from the data's ``label``):
            a label embedding concatenated to ``z`` and a projection discriminator
            (Miyato & Koyama 2018); ``None``: unconditional.
        loss: ``nonsaturating`` (Goodfellow et al. 2014), ``hinge`` (Lim & Ye 2017; SN-GAN) or
            ``wgan-gp`` (Wasserstein with gradient penalty, Gulrajani et al. 2017).
        n_critic: Discriminator steps per generator step (5 in WGAN-GP).
        gp_lambda: Weight of the WGAN-GP gradient penalty (used with ``loss: wgan-gp``).
        r1_gamma: Weight ``gamma`` of the R1 penalty ``gamma / 2 * E ||∇ D(x_real)||²``
            (Mescheder et al. 2018); ``0`` turns it off.
        r1_interval: Lazy regularization (Karras et al. 2020, StyleGAN2): R1 only every this
            many discriminator steps, scaled up by the interval to keep its weight.
        spectral_norm: Spectral normalization on every discriminator layer (Miyato et al. 2018).
        lr_g: Adam learning rate of the generator.
        lr_d: Adam learning rate of the discriminator.
        betas: Adam betas of the generator (and of the discriminator unless ``betas_d``).
        betas_d: Adam betas of the discriminator; ``None``: ``betas``.
        grad_clip: Clip each network's gradient norm to this value; ``None``: no clipping.
        ema_decay: Decay of the exponential moving average of the generator's weights, which
            ``sample`` uses (Yazıcı et al. 2019), warmed up over the first steps; ``None``:
            sample the raw generator (what a run whose learning rates decay to zero needs).
        lr_schedule: ``constant``, or ``cosine``: both learning rates decay to zero over the run
            (Loshchilov & Hutter 2017, without restarts).
        pack: Samples the discriminator judges together (PacGAN, Lin et al. 2018): it sees
            ``pack`` real or ``pack`` fake samples stacked along channels, which penalises a
            generator whose samples lack variety, against mode collapse; 1: plain GAN.
            Unconditional models only.
    """

    modalities = ("points", "image")

    @property
    def modality(self) -> str:
        """``image`` when built for images (``image_size`` set), else ``points``."""
        return "points" if self.hparams.image_size is None else "image"

    def __init__(
        self,
        data_dim: int = 2,
        image_size: int | None = None,
        channels: int = 1,
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 256, 256),
        width: int = 64,
        num_classes: int | None = None,
        loss: Loss = "nonsaturating",
        n_critic: int = 1,
        gp_lambda: float = 10.0,
        r1_gamma: float = 0.0,
        r1_interval: int = 1,
        spectral_norm: bool = False,
        lr_g: float = 1e-4,
        lr_d: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        betas_d: tuple[float, float] | None = None,
        grad_clip: float | None = None,
        ema_decay: float | None = None,
        lr_schedule: LRSchedule = "constant",
        pack: int = 1,
    ) -> None:
        super().__init__()
        _check_hparams(loss, n_critic, gp_lambda, r1_gamma, r1_interval, grad_clip, ema_decay,
                       num_classes, hidden, pack)
        self.save_hyperparameters()
        self.automatic_optimization = False
        if image_size is not None:
            self.data_shape: tuple[int, ...] = (channels, image_size, image_size)
        else:
            self.data_shape = (data_dim,)
        self.generator = Generator(latent_dim, self.data_shape, hidden, width, num_classes)
        self.discriminator = Discriminator(self.data_shape, hidden, width, num_classes,
                                           spectral_norm, pack)
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            # Warmed up: a plain average keeps a share decay ** n of the random initial weights,
            # enough to miss modes of width 0.01.
            self.generator_ema = ema_model(self.generator, ema_decay, warmup=True)
        # Discriminator steps taken: decides when G steps and when lazy R1 runs; resumes with it.
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        self._noise = NoiseStream("gan_noise_state")

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """Ring-8 points, a tiny MLP GAN; 2-process DDP, bf16 and fp16 (its GradScaler)."""
        from genlab.data.toy import ToyDataModule

        return ConformanceCase(ToyDataModule(train_size=128, val_size=32, batch_size=32),
                               {"hidden": [16], "latent_dim": 2}, ddp=True,
                               precisions=("bf16-mixed", "16-mixed"))

    # ----------------------------------------------------------------------------- sampling

    def sample(self, num: int, labels: Tensor | None = None,
               temperature: float | None = None) -> Tensor:
        """``num`` samples from the EMA generator: points ``(num, D)`` or images ``(num, C, H, W)``.

        Args:
            num: Number of samples.
            labels: Class of each sample, ``(num,)`` (conditional models only); ``None``:
                classes drawn from ``label_prior`` when the model has one, else uniformly.
            temperature: Scale of the latent's standard deviation (default 1); below 1 trades
                variety for fidelity, like BigGAN's truncation trick.
        """
        labels = self._labels(num, labels)
        z = torch.randn(num, self.hparams.latent_dim, device=self.device) * (temperature or 1.0)
        net = self.generator_ema if self.generator_ema is not None else self.generator
        return net(z, labels)

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """Latent interpolations: samples along great circles between pairs of random ``z``
        (a conditional row keeps one class)."""
        pairs, steps = 4, 8
        z = torch.randn(2, pairs, self.hparams.latent_dim, device=self.device)
        labels = sample_labels(pairs, None, self.hparams.num_classes, self.device,
                               prior=self.label_prior)
        ys = None if labels is None else labels.repeat_interleave(steps)
        net = self.generator_ema if self.generator_ema is not None else self.generator
        return {"interpolations": latent_interpolation(lambda z: net(z, ys), z[0], z[1], steps,
                                                       spherical=True)}

    def _labels(self, num: int, labels: Tensor | None) -> Tensor | None:
        return sample_labels(num, labels, self.hparams.num_classes, self.device, "random",
                             self.label_prior)

    # ----------------------------------------------------------------------------- training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers() or (None, None)
        real = batch["x"]
        labels = batch["label"] if self.hparams.num_classes is not None else None
        logs = self.discriminator_step(real, labels, opt_d)
        if sched_d is not None:  # manual optimization: stepping schedulers is ours to do
            sched_d.step()
        if self.d_steps % self.hparams.n_critic == 0:
            logs["train/loss_g"] = self.generator_step(len(real), labels, opt_g)
            if sched_g is not None:
                sched_g.step()
        self.log_train(logs)

    def discriminator_step(self, real: Tensor, labels: Tensor | None,
                           opt_d: torch.optim.Optimizer) -> dict[str, Tensor]:
        h = self.hparams
        d_loss, _ = ADVERSARIAL_LOSSES[h.loss]
        with torch.no_grad():
            fake = self.generator(self._latents(len(real)), labels)
        lazy_r1 = h.r1_gamma > 0 and int(self.d_steps) % h.r1_interval == 0
        real = real.detach().requires_grad_(lazy_r1)  # R1 differentiates D with respect to it
        real_logits = self.discriminator(real, labels)
        loss = d_loss(real_logits, self.discriminator(fake, labels))
        logs = {"train/loss_d": loss.detach()}
        if h.loss == "wgan-gp":
            weights = batch_rand(self, (len(real),) + (1,) * (real.dim() - 1),
                                 generator=self._noise.generator(self.device),
                                 dtype=real.dtype)
            gp = gradient_penalty(lambda x: self.discriminator(x, labels), real, fake,
                                  weights=weights)
            loss = loss + h.gp_lambda * gp
            logs["train/gp"] = gp.detach()
        if lazy_r1:
            r1 = r1_penalty(real_logits, real)
            loss = loss + h.r1_gamma / 2 * h.r1_interval * r1
            logs["train/r1"] = r1.detach()
        manual_step(self, [opt_d], loss, reach=[self.generator])
        self.d_steps += 1
        return logs

    def generator_step(self, num: int, labels: Tensor | None,
                       opt_g: torch.optim.Optimizer) -> Tensor:
        _, g_loss = ADVERSARIAL_LOSSES[self.hparams.loss]
        fake = self.generator(self._latents(num), labels)
        loss = g_loss(self.discriminator(fake, labels))
        manual_step(self, [opt_g], loss, reach=[self.discriminator])
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
        return loss.detach()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_gradients(self, optimizer, self.hparams.grad_clip)

    def _latents(self, num: int) -> Tensor:
        """Training noise ``(num, latent_dim)`` from the module's own, checkpointed generator."""
        return batch_randn(self, (num, self.hparams.latent_dim),
                           generator=self._noise.generator(self.device))

    # ----------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        self._noise.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._noise.load(checkpoint)

    # ----------------------------------------------------------------------------- optimizers

    def configure_model(self) -> None:
        """Under ``--trainer.strategy fsdp2``: shard both networks and the generator's EMA."""
        if self.hparams.r1_gamma > 0 or self.hparams.loss == "wgan-gp":
            refuse_double_backward(self, "model.r1_gamma / loss wgan-gp (a gradient penalty)")
        shard(self, ["generator", "discriminator", "generator_ema"])

    def configure_optimizers(
        self,
    ) -> tuple[list[torch.optim.Optimizer], list[LRScheduler]]:
        h = self.hparams
        betas_d = h.betas if h.betas_d is None else h.betas_d
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=h.lr_g, betas=tuple(h.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=h.lr_d, betas=tuple(betas_d))
        if h.lr_schedule == "constant":
            return [opt_g, opt_d], []
        # Returned (not kept privately) so that checkpoints save and resume them.
        d_steps = self.num_batches()
        g_steps = max(d_steps // h.n_critic, 1)
        return [opt_g, opt_d], [CosineAnnealingLR(opt_g, T_max=g_steps),
                                CosineAnnealingLR(opt_d, T_max=d_steps)]

    def num_batches(self) -> int:
        """Batches the trainer will train on (one D step each): the learning-rate horizon."""
        n = self.hparams.n_critic  # max_steps counts optimizer steps: 1 + 1/n_critic a batch
        return lr_horizon(self.trainer, Fraction(n + 1, n))


def _check_hparams(loss: str, n_critic: int, gp_lambda: float, r1_gamma: float,
                   r1_interval: int, grad_clip: float | None, ema_decay: float | None,
                   num_classes: int | None, hidden: Sequence[int], pack: int) -> None:
    """Raise ``GenlabError`` naming the first bad hyperparameter."""
    raise_first([
        (loss not in ADVERSARIAL_LOSSES,
         f"model.loss must be one of {list(ADVERSARIAL_LOSSES)}, got {loss!r}"),
        (n_critic < 1, f"model.n_critic must be >= 1, got {n_critic}"),
        (gp_lambda < 0, f"model.gp_lambda must be >= 0, got {gp_lambda}"),
        (r1_gamma < 0, f"model.r1_gamma must be >= 0, got {r1_gamma}"),
        (r1_interval < 1, f"model.r1_interval must be >= 1, got {r1_interval}"),
        (grad_clip is not None and grad_clip <= 0,
         f"model.grad_clip must be > 0 (or null for none), got {grad_clip}"),
        (ema_decay is not None and not 0 < ema_decay < 1,
         f"model.ema_decay must be in (0, 1) (or null for no EMA), got {ema_decay}"),
        num_classes_problem(num_classes),
        (len(hidden) == 0, "model.hidden needs at least one width, e.g. [256, 256]"),
        (pack < 1, f"model.pack must be >= 1, got {pack}"),
        (pack > 1 and num_classes is not None,
         "model.pack > 1 packs samples of different classes: use it with num_classes: null"),
    ])
