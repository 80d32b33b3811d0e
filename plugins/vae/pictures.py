"""``VAEPictures``: what a VAE has learned, drawn at every validation.

Reconstructions next to their inputs, prior samples (one column per class for a conditional
VAE), latent interpolations between pairs of validation images, and for a 2-D latent a scatter
of the posterior means coloured by class. Written to ``<run dir>/samples/`` and logged to W&B
and TensorBoard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image
from torch import Tensor

from genlab.callbacks.samples import fixed_seed
from genlab.visualize import image_grid, save_rendered


class VAEPictures(L.Callback):
    """Draw reconstructions, prior samples, interpolations and a latent scatter at validation.

    Args:
        num: Validation images reconstructed (rounded down to a multiple of 8).
        pairs: Pairs of validation images interpolated between.
        steps: Images along each interpolation, ends excluded.
        scatter_num: Validation images placed in the latent scatter (2-D latent only).
        seed: Seed of the prior samples' fixed noise.
    """

    def __init__(self, num: int = 32, pairs: int = 4, steps: int = 8, scatter_num: int = 2000,
                 seed: int = 0) -> None:
        self.num, self.pairs, self.steps = num, pairs, steps
        self.scatter_num, self.seed = scatter_num, seed
        self._batch: dict[str, Tensor] | None = None
        self._means: list[tuple[Tensor, Tensor]] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._batch, self._means = None, []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any,
                                batch: dict[str, Tensor], batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        """Keep the first images; encode labelled images for the scatter of a 2-D latent."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        keep = max(self.num, 2 * self.pairs)
        if self._batch is None:
            self._batch = {k: v[:keep] for k, v in batch.items()}
        elif len(self._batch["x"]) < keep:  # small batches: gather from the next ones
            self._batch = {k: torch.cat([v, batch[k]])[:keep] for k, v in self._batch.items()}
        kept = sum(len(m) for m, _ in self._means)
        if pl_module.hparams.latent_dim == 2 and "label" in batch and kept < self.scatter_num:
            mu, _ = pl_module.encode(batch["x"], pl_module.labels_of(batch))
            self._means.append((mu.cpu(), batch["label"].cpu()))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self._batch is None:
            return
        self.log_pictures(trainer, pl_module)

    @torch.no_grad()
    def pictures(self, pl_module: Any) -> dict[str, Image.Image]:
        """Every picture by name, from the kept validation batch."""
        x = self._batch["x"]
        labels = pl_module.labels_of(self._batch)
        out = {"reconstructions": self.reconstructions(pl_module, x, labels),
               "prior_samples": self.prior_samples(pl_module)}
        if len(x) >= 2:
            out["interpolations"] = self.interpolations(pl_module, x, labels)
        if self._means:
            mu, y = (torch.cat(t)[: self.scatter_num] for t in zip(*self._means))
            out["latent_scatter"] = latent_scatter(mu, y)
        return out

    def reconstructions(self, pl_module: Any, x: Tensor, labels: Tensor | None) -> Image.Image:
        """Rows of inputs, each followed by the row of their reconstructions (posterior mean)."""
        cols = min(8, len(x))
        n = max(cols, min(self.num, len(x)) // cols * cols)
        x = x[:n]
        rec = pl_module.decode_mean(pl_module.encode(x, _head(labels, n))[0], _head(labels, n))
        rows = torch.stack([x.view(-1, cols, *x.shape[1:]), rec.view(-1, cols, *x.shape[1:])], 1)
        return image_grid(rows.flatten(0, 2), nrow=cols)

    def prior_samples(self, pl_module: Any) -> Image.Image:
        """64 samples from fixed noise; for a conditional VAE, column ``c`` is class ``c``."""
        classes = pl_module.hparams.num_classes
        num = classes * 8 if classes else 64
        with fixed_seed(self.seed, pl_module.device):
            samples = pl_module.sample(num)
        return image_grid(samples, nrow=classes or 8)

    def interpolations(self, pl_module: Any, x: Tensor, labels: Tensor | None) -> Image.Image:
        """Each row: image a, decoded points on the segment from z_a to z_b, image b."""
        pairs = min(self.pairs, len(x) // 2)
        a, b = x[0: 2 * pairs: 2], x[1: 2 * pairs: 2]
        la = None if labels is None else labels[0: 2 * pairs: 2]
        mu_a, mu_b = pl_module.encode(a, la)[0], pl_module.encode(b, _odd(labels, pairs))[0]
        t = torch.linspace(0, 1, self.steps + 2, device=x.device)[1:-1].view(1, -1, 1)
        z = (1 - t) * mu_a[:, None] + t * mu_b[:, None]  # (pairs, steps, Z)
        # A conditional row keeps image a's class all along: the latent carries the style.
        ys = None if la is None else la[:, None].expand(-1, self.steps).flatten()
        mid = pl_module.decode_mean(z.flatten(0, 1), ys).view(pairs, self.steps, *x.shape[1:])
        rows = torch.cat([a[:, None], mid, b[:, None]], 1)
        return image_grid(rows.flatten(0, 1), nrow=self.steps + 2)

    def log_pictures(self, trainer: L.Trainer, pl_module: Any) -> list[Path]:
        """Draw every picture, save it under ``samples/`` and log it; returns the files."""
        step, written = trainer.global_step, []
        for name, picture in self.pictures(pl_module).items():
            out = Path(trainer.default_root_dir) / "samples" / f"{name}_step_{step:07d}"
            written.append(save_rendered(picture, out))
            for logger in trainer.loggers:
                _log_image(logger, f"vae/{name}", picture, step)
        return written


def _head(labels: Tensor | None, n: int) -> Tensor | None:
    return None if labels is None else labels[:n]


def _odd(labels: Tensor | None, pairs: int) -> Tensor | None:
    return None if labels is None else labels[1: 2 * pairs: 2]


def latent_scatter(mu: Tensor, labels: Tensor) -> Image.Image:
    """A PIL scatter plot of 2-D posterior means, one colour per class."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    points = ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=4)
    ax.legend(*points.legend_elements(), loc="upper right", fontsize="small", title="class")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("posterior means by class")
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return image


def _log_image(logger: Any, key: str, picture: Image.Image, step: int) -> None:
    if isinstance(logger, WandbLogger):
        logger.log_image(key, [picture], step=step)
    elif isinstance(logger, TensorBoardLogger):
        array = torch.from_numpy(np.asarray(picture)).permute(2, 0, 1)
        logger.experiment.add_image(key, array, global_step=step)
