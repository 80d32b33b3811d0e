"""GAN on low-dimensional points: MLP generator and discriminator, non-saturating loss.

Manual optimization: one discriminator step, then one generator step, per batch. Two optional
additions make small-data GANs converge: an R1 penalty on the discriminator and a cosine decay of
both learning rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from genlab import GenerativeModule
from genlab.errors import GenlabError
from genlab.losses import d_nonsaturating, g_nonsaturating, r1_penalty
from genlab.nn import MLP

LRSchedule = Literal["constant", "cosine"]


class GAN(GenerativeModule):
    """Generative adversarial network (Goodfellow et al. 2014) on points.

    Args:
        data_dim: Dimension of a data point.
        latent_dim: Dimension of the generator's Gaussian input ``z``.
        hidden: Hidden widths of both MLPs.
        lr_g: Adam learning rate of the generator.
        lr_d: Adam learning rate of the discriminator.
        betas: Adam betas of both optimizers.
        r1_gamma: Weight ``gamma`` of the R1 penalty ``gamma / 2 * E ||∇ D(x_real)||²`` on the
            discriminator (Mescheder et al. 2018); ``0`` turns it off.
        lr_schedule: ``constant``, or ``cosine``: both learning rates decay to zero over the run
            (Loshchilov & Hutter 2017, without restarts), so the generator settles on the modes
            instead of jittering around them.
    """

    modality = "points"

    def __init__(
        self,
        data_dim: int = 2,
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 256, 256),
        lr_g: float = 1e-4,
        lr_d: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        r1_gamma: float = 0.0,
        lr_schedule: LRSchedule = "constant",
    ) -> None:
        super().__init__()
        if r1_gamma < 0:
            raise GenlabError(f"model.r1_gamma must be >= 0, got {r1_gamma}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = MLP(latent_dim, data_dim, hidden, act="relu")
        self.discriminator = MLP(data_dim, 1, hidden, act="leaky_relu")

    def sample(self, num: int, **options: Any) -> Tensor:
        """``num`` generated points, ``(num, data_dim)``."""
        z = torch.randn(num, self.hparams.latent_dim, device=self.device)
        return self.generator(z)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        real = batch["x"]
        loss_d = self.discriminator_step(real, opt_d)
        loss_g = self.generator_step(len(real), opt_g)
        # Manual optimization: Lightning leaves stepping the schedulers to us, once per batch.
        for scheduler in self.lr_schedulers() or []:
            scheduler.step()
        self.log_dict({"train/loss_d": loss_d, "train/loss_g": loss_g}, prog_bar=True)

    def discriminator_step(self, real: Tensor, opt_d: torch.optim.Optimizer) -> Tensor:
        self.toggle_optimizer(opt_d)
        gamma = self.hparams.r1_gamma
        fake = self.sample(len(real)).detach()
        real = real.detach().requires_grad_(gamma > 0)  # R1 differentiates D with respect to it
        real_logits = self.discriminator(real)
        loss = d_nonsaturating(real_logits, self.discriminator(fake))
        if gamma > 0:
            loss = loss + gamma / 2 * r1_penalty(real_logits, real)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        return loss.detach()

    def generator_step(self, num: int, opt_g: torch.optim.Optimizer) -> Tensor:
        self.toggle_optimizer(opt_g)
        loss = g_nonsaturating(self.discriminator(self.sample(num)))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        return loss.detach()

    def configure_optimizers(
        self,
    ) -> tuple[list[torch.optim.Optimizer], list[LRScheduler]]:
        h = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=h.lr_g, betas=h.betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=h.lr_d, betas=h.betas)
        if h.lr_schedule == "constant":
            return [opt_g, opt_d], []
        # Returned (not kept privately) so that checkpoints save and resume them.
        iterations = self.num_iterations()
        return [opt_g, opt_d], [CosineAnnealingLR(opt, T_max=iterations) for opt in (opt_g, opt_d)]

    def num_iterations(self) -> int:
        """Batches the trainer will train on: the horizon of the learning-rate schedule."""
        trainer = self.trainer
        # Counts batches when the epoch limit binds, trainer.max_steps when that one does.
        iterations = trainer.estimated_stepping_batches
        if trainer.max_steps != -1:
            # max_steps counts optimizer steps, and every batch makes two (D, then G).
            iterations = min(iterations, trainer.max_steps // 2)
        if math.isinf(iterations):
            raise GenlabError(
                "model.lr_schedule 'cosine' needs a finite run: set trainer.max_steps or "
                "trainer.max_epochs"
            )
        return max(int(iterations), 1)
