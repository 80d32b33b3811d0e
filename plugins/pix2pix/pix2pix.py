"""pix2pix: paired image-to-image translation with a conditional GAN (Isola et al. 2017).

The generator ``G(source)`` is a U-Net, the discriminator ``D(source, image)`` a patch
discriminator on pairs (``genlab.nn.image2image``); the objective is eq. 4 of the paper,
``G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G)``, with ``lambda = 100``. Batches carry the
source image under ``source`` beside the target ``x`` (e.g. ``genlab.data.paired``).

Manual optimization as in genlab's GAN: each batch makes one D step and one G step, and every
backward also reaches the network it does not train through an exact zero
(``genlab.distributed.manual_step``), so DDP needs no ``find_unused_parameters``. The networks
use group norm and no dropout by default, so a translation is deterministic and a resumed or
2-process run is exact.

Without ``--source``, ``sample`` translates the training sources the checkpoint keeps (the
first ``keep_sources`` of training), so the core's sample grids and ``genlab sample`` work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor

from genlab import GenerativeModule
from genlab.distributed import manual_step
from genlab.errors import GenlabError, raise_first
from genlab.losses.adversarial import ADVERSARIAL_LOSSES
from genlab.modalities.image import as_images
from genlab.module import ConformanceCase
from genlab.nn.image2image import Norm, PairDiscriminator, UNetGenerator
from genlab.pictures import strip
from genlab.recipes import clip_gradients

Loss = Literal["nonsaturating", "hinge"]
KEPT = "pix2pix_sources"  # checkpoint key of the kept training sources


class Pix2Pix(GenerativeModule):
    """Paired image-to-image translation: a U-Net generator trained with L1 and a patch GAN.

    Args:
        image_size: Side of the square images (divisible by ``2 ** depth``).
        channels: Channels of the generated (target) images.
        source_channels: Channels of the source images; ``None``: ``channels``.
        width: Channels of the generator's first layer.
        depth: Halvings in the generator's U-Net (28 -> 14 -> 7 for 2).
        dropout: Dropout in the generator's decoder (pix2pix's noise; 0: deterministic).
        d_width: Channels of the discriminator's first layer.
        d_down: Halvings in the patch discriminator (2: 7x7 patch logits for 28x28 images).
        spectral_norm: Spectral normalization in the discriminator.
        norm: ``group`` norm in both networks, or ``none``.
        loss: Adversarial loss: ``nonsaturating`` (the paper's) or ``hinge``.
        l1_lambda: Weight of the L1 term (``lambda``, 100 in the paper).
        lr_g: Adam learning rate of the generator.
        lr_d: Adam learning rate of the discriminator.
        betas: Adam betas of both (the paper's 0.5, 0.999).
        grad_clip: Clip each network's gradient norm to this value; ``None``: no clipping.
        keep_sources: Training sources kept in checkpoints for ``sample`` without ``source``.
    """

    modality = "image"

    conditions = ("source",)

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        source_channels: int | None = None,
        width: int = 32,
        depth: int = 2,
        dropout: float = 0.0,
        d_width: int = 32,
        d_down: int = 2,
        spectral_norm: bool = False,
        norm: Norm = "group",
        loss: Loss = "nonsaturating",
        l1_lambda: float = 100.0,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        grad_clip: float | None = None,
        keep_sources: int = 64,
    ) -> None:
        super().__init__()
        raise_first([
            (image_size % 2**depth, f"model.image_size ({image_size}) must be divisible by "
                                    f"2 ** model.depth ({2**depth})"),
            (loss not in ("nonsaturating", "hinge"),
             f"model.loss must be nonsaturating or hinge, got {loss!r}"),
            (l1_lambda < 0, f"model.l1_lambda must be >= 0, got {l1_lambda}"),
            (not 0 <= dropout < 1, f"model.dropout must be in [0, 1), got {dropout}"),
            (grad_clip is not None and grad_clip <= 0,
             f"model.grad_clip must be > 0 (or null for none), got {grad_clip}"),
            (keep_sources < 1, f"model.keep_sources must be >= 1, got {keep_sources}"),
        ])
        self.save_hyperparameters()
        self.automatic_optimization = False
        c_src = channels if source_channels is None else source_channels
        self.data_shape = (channels, image_size, image_size)
        self.source_shape = (c_src, image_size, image_size)
        self.generator = UNetGenerator(c_src, channels, width, depth, dropout, norm)
        self.discriminator = PairDiscriminator(c_src + channels, d_width, d_down, spectral_norm,
                                                norm)
        self.kept: Tensor | None = None  # (K, C_src, S, S) on the CPU, saved in checkpoints

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """8x8 paired images (edges -> images), tiny networks; 2-process DDP and bf16.

        No norm layers here: the tiny images are flat squares, whose near-constant feature
        maps make group norm amplify rounding (1 / sqrt(var + eps)) past the DDP tolerance.
        """
        from genlab.data.paired import PairedImageDataModule
        from genlab.data.tiny import write_parquet

        source = write_parquet(root / "digits", {"train": 32, "test": 8}, size=(8, 8))
        data = PairedImageDataModule(str(source), image_size=8, batch_size=8, num_workers=0)
        return ConformanceCase(data, {"image_size": 8, "width": 4, "d_width": 4, "depth": 2,
                                      "d_down": 1, "keep_sources": 8,
                                      "norm": "none"}, ddp=True)

    # ----------------------------------------------------------------------------- sampling

    def sample(self, num: int, source: Tensor | None = None) -> Tensor:
        """Translations ``G(source)``, ``(num, C, H, W)`` in [-1, 1].

        Args:
            num: Number of translations.
            source: Source images ``(num, C, H, W)`` in [-1, 1], or one for all; on the
                command line an image file or a folder of them (``--source edges.png``).
                ``None``: the training sources kept in the checkpoint, in turn.
        """
        if source is None:
            if self.kept is None:
                raise GenlabError("Pix2Pix.sample needs --source (the images to translate): "
                                  "this model has kept no training sources")
            source = self.kept[torch.arange(num) % len(self.kept)]
        source = as_images(source, self.source_shape, "source")
        if len(source) not in (1, num):
            raise GenlabError(f"--source has {len(source)} images; give 1 (for all) or "
                              f"--num={num}")
        return self.generator(source.to(self.device).expand(num, *self.source_shape))

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """Rows of source | translation | target for a few training pairs."""
        source, target = self.pair(batch)
        source, target = source[:8], target[:8]
        shown = as_images(source, self.data_shape, "source")  # as many channels as the target
        return {"translations": strip([shown, self.generator(source), target])}

    # ----------------------------------------------------------------------------- training

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """Every batch needs its ``source`` image (``genlab.conditions``)."""
        return ("source",)

    def pair(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(source, target)`` of a batch, or a ``GenlabError`` saying what the data lacks."""
        if "source" not in batch:
            raise GenlabError("Pix2Pix trains on pairs: batches need a 'source' image beside "
                              "'x' (data: PairedImageDataModule, or a data module serving one)")
        return batch["source"], batch["x"]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        source, target = self.pair(batch)
        self.keep(source)
        logs = self.discriminator_step(source, target, opt_d)
        logs.update(self.generator_step(source, target, opt_g))
        self.log_train(logs)

    def discriminator_step(self, source: Tensor, target: Tensor,
                           opt_d: torch.optim.Optimizer) -> dict[str, Tensor]:
        """One D step on real pairs ``(source, target)`` and fake pairs ``(source, G(source))``."""
        d_loss, _ = ADVERSARIAL_LOSSES[self.hparams.loss]
        with torch.no_grad():
            fake = self.generator(source)
        loss = d_loss(self.discriminator(source, target), self.discriminator(source, fake))
        manual_step(self, [opt_d], loss, reach=[self.generator])
        return {"train/loss_d": loss.detach()}

    def generator_step(self, source: Tensor, target: Tensor,
                       opt_g: torch.optim.Optimizer) -> dict[str, Tensor]:
        """One G step on ``L_cGAN + lambda * L_L1`` (Isola et al. 2017, eq. 4)."""
        _, g_loss = ADVERSARIAL_LOSSES[self.hparams.loss]
        fake = self.generator(source)
        adversarial = g_loss(self.discriminator(source, fake))
        l1 = (fake - target).abs().mean()
        manual_step(self, [opt_g], adversarial + self.hparams.l1_lambda * l1,
                    reach=[self.discriminator])
        return {"train/loss_g": adversarial.detach(), "train/l1": l1.detach()}

    def keep(self, source: Tensor) -> None:
        """Keep the first ``keep_sources`` training sources for ``sample`` without a source."""
        limit = self.hparams.keep_sources
        if self.kept is None or len(self.kept) < limit:
            new = source.detach().float().cpu()
            self.kept = (new if self.kept is None else torch.cat([self.kept, new]))[:limit]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_gradients(self, optimizer, self.hparams.grad_clip)

    # ----------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.kept is not None:
            checkpoint[KEPT] = self.kept

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.kept = checkpoint.get(KEPT)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        h = self.hparams
        return [torch.optim.Adam(self.generator.parameters(), lr=h.lr_g, betas=tuple(h.betas)),
                torch.optim.Adam(self.discriminator.parameters(), lr=h.lr_d,
                                 betas=tuple(h.betas))]
