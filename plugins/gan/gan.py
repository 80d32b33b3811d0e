"""GAN on low-dimensional points: MLP generator and discriminator, non-saturating loss.

Manual optimization: one discriminator step, then one generator step, per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from genlab import GenerativeModule
from genlab.losses import d_nonsaturating, g_nonsaturating
from genlab.nn import MLP


class GAN(GenerativeModule):
    """Generative adversarial network (Goodfellow et al. 2014) on points.

    Args:
        data_dim: Dimension of a data point.
        latent_dim: Dimension of the generator's Gaussian input ``z``.
        hidden: Hidden widths of both MLPs.
        lr_g: Adam learning rate of the generator.
        lr_d: Adam learning rate of the discriminator.
        betas: Adam betas of both optimizers.
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
    ) -> None:
        super().__init__()
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
        self.log_dict({"train/loss_d": loss_d, "train/loss_g": loss_g}, prog_bar=True)

    def discriminator_step(self, real: Tensor, opt_d: torch.optim.Optimizer) -> Tensor:
        self.toggle_optimizer(opt_d)
        fake = self.sample(len(real)).detach()
        loss = d_nonsaturating(self.discriminator(real), self.discriminator(fake))
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

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        h = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=h.lr_g, betas=h.betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=h.lr_d, betas=h.betas)
        return [opt_g, opt_d]
