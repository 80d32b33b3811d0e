"""``VAEGANPictures``: reconstructions, prior samples and interpolations at every validation.

Reconstructions sit in the row under their inputs; interpolations decode points on the segment
between two validation images' posterior means. Written to ``<run dir>/samples/`` and logged to
W&B and TensorBoard.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image
from torch import Tensor

from genlab.callbacks.samples import fixed_seed
from genlab.sharding import draws_here
from genlab.visualize import image_grid, save_rendered


class VAEGANPictures(L.Callback):
    """Draw reconstructions, prior samples and interpolations at the end of each validation.

    Args:
        num: Validation images reconstructed (rounded down to a multiple of 8).
        pairs: Pairs of validation images interpolated between.
        steps: Images along each interpolation, ends excluded.
        seed: Seed of the prior samples' fixed noise.
    """

    def __init__(self, num: int = 32, pairs: int = 4, steps: int = 8, seed: int = 0) -> None:
        self.num, self.pairs, self.steps, self.seed = num, pairs, steps, seed
        self._x: Tensor | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._x = None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any,
                                batch: dict[str, Tensor], batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        """Keep the first validation images (from several batches if they are small)."""
        if trainer.sanity_checking or not draws_here(trainer, pl_module):
            return
        keep = max(self.num, 2 * self.pairs)
        if self._x is None or len(self._x) < keep:
            x = batch["x"] if self._x is None else torch.cat([self._x, batch["x"]])
            self._x = x[:keep]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not draws_here(trainer, pl_module) or self._x is None:
            return
        self.log_pictures(trainer, pl_module)

    @torch.no_grad()
    def pictures(self, pl_module: Any, x: Tensor) -> dict[str, Image.Image]:
        """Every picture by name, from validation images ``x``."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            out = {"reconstructions": reconstructions(x, pl_module.reconstruct, num=self.num),
                   "prior_samples": self.prior_samples(pl_module)}
            if len(x) >= 2:
                out["interpolations"] = self.interpolations(pl_module, x)
            return out
        finally:
            pl_module.train(was_training)

    def prior_samples(self, pl_module: Any) -> Image.Image:
        """64 samples from fixed noise."""
        with fixed_seed(self.seed, pl_module.device):
            return image_grid(pl_module.sample(64), nrow=8)

    def interpolations(self, pl_module: Any, x: Tensor) -> Image.Image:
        """Each row: image a, decoded points on the segment from mu(a) to mu(b), image b."""
        pairs = min(self.pairs, len(x) // 2)
        a, b = x[0: 2 * pairs: 2], x[1: 2 * pairs: 2]
        mu_a, mu_b = pl_module.encode(a)[0], pl_module.encode(b)[0]
        t = torch.linspace(0, 1, self.steps + 2, device=x.device)[1:-1].view(1, -1, 1)
        z = (1 - t) * mu_a[:, None] + t * mu_b[:, None]  # (pairs, steps, Z)
        mid = pl_module.decode_latent(z.flatten(0, 1)).view(pairs, self.steps, *x.shape[1:])
        rows = torch.cat([a[:, None], mid, b[:, None]], 1)
        return image_grid(rows.flatten(0, 1), nrow=self.steps + 2)

    def log_pictures(self, trainer: L.Trainer, pl_module: Any) -> list[Path]:
        """Draw every picture, save it under ``samples/`` and log it; returns the files."""
        step, written = trainer.global_step, []
        x = self._x.to(pl_module.device)
        for name, picture in self.pictures(pl_module, x).items():
            if not trainer.is_global_zero:  # sharded: every rank drew, rank 0 keeps
                continue
            out = Path(trainer.default_root_dir) / "samples" / f"{name}_step_{step:07d}"
            written.append(save_rendered(picture, out))
            for logger in trainer.loggers:
                _log_image(logger, f"vaegan/{name}", picture, step)
        return written


def reconstructions(x: Tensor, *reconstruct: Callable[[Tensor], Tensor],
                    num: int = 32) -> Image.Image:
    """Rows of inputs ``x``, each followed by the rows of each model's reconstructions of them.

    ``reconstructions(x, f)`` shows one model; ``reconstructions(x, f, g)`` puts a second
    model's reconstructions under the first's (the benchmark's side-by-side with a plain VAE).
    """
    cols = min(8, len(x))
    n = max(cols, min(num, len(x)) // cols * cols)
    x = x[:n]
    shape = (-1, cols, *x.shape[1:])
    rows = [x.view(shape)] + [f(x).clamp(-1, 1).view(shape) for f in reconstruct]
    return image_grid(torch.stack(rows, 1).flatten(0, 2), nrow=cols)


def _log_image(logger: Any, key: str, picture: Image.Image, step: int) -> None:
    if isinstance(logger, WandbLogger):
        logger.log_image(key, [picture], step=step)
    elif isinstance(logger, TensorBoardLogger):
        array = torch.from_numpy(np.asarray(picture)).permute(2, 0, 1)
        logger.experiment.add_image(key, array, global_step=step)
