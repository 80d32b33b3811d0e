"""VQ-GAN: a vector-quantized autoencoder with a patch discriminator; VQ-VAE without it.

van den Oord et al. 2017 (VQ-VAE) and Esser, Rombach and Ommer 2021, "Taming Transformers for
High-Resolution Image Synthesis" (VQ-GAN). The encoder maps an image to a grid of vectors
``z_e``, each replaced by its nearest code (``genlab.nn.VectorQuantizer``: EMA codebook,
first-batch initialisation, dead-code restarts, straight-through gradient), and the decoder maps
the grid back. The autoencoder's loss (Esser et al. eq. 5, with the perceptual term replaced by
a feature-space reconstruction in the discriminator, Larsen et al. 2016 eq. 6)::

    L = |x - x̂| + w_feat L_feat(x, x̂) + beta ||z_e - sg(e)||² + lambda L_GAN(x̂)
    lambda = disc_weight * ||grad_GL L_rec|| / (||grad_GL L_GAN|| + 1e-4)     (eq. 7)

with ``grad_GL`` the gradient at the decoder's last layer (the adaptive weight). The patch
discriminator and the feature term start after ``disc_start`` batches; with ``disc_weight`` and
``feature_weight`` both 0 there is no discriminator and the model is a VQ-VAE.

Manual optimization (an autoencoder step, then a discriminator step on the same reconstructions),
DDP-safe without ``find_unused_parameters``: each backward reaches the network it does not train
through an exact zero (``genlab.distributed.manual_step(reach=...)``). The codebook statistics
are all-reduced by the quantizer itself, so every process keeps the same codebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import torch
from PIL import Image
from torch import Tensor

from genlab import GenerativeModule
from genlab.distributed import all_mean, manual_step
from genlab.errors import raise_first
from genlab.losses.adversarial import ADVERSARIAL_LOSSES
from genlab.losses.likelihoods import feature_reconstruction
from genlab.module import ConformanceCase
from genlab.nn.conv import GridDecoder, GridEncoder, PatchDiscriminator, conv_layout
from genlab.nn.quantize import Quantized, VectorQuantizer, code_statistics
from genlab.pictures import reconstructions
from genlab.recipes import clip_gradients

Loss = Literal["hinge", "nonsaturating"]
RecLoss = Literal["l1", "l2"]


class VQGAN(GenerativeModule):
    """VQ-GAN (Esser et al. 2021) on images; ``disc_weight: 0`` and ``feature_weight: 0``
    make it a VQ-VAE (van den Oord et al. 2017).

    Args:
        image_size: Image height and width: 28 (a 7x7 code grid), 32 or 64 (4x4).
        channels: Image channels, 1 or 3.
        num_codes: Codebook size ``K``.
        code_dim: Size of a code vector.
        width: Base channel width of the encoder and decoder.
        beta: Weight of the commitment loss (0.25 in the VQ-VAE paper).
        codebook_decay: EMA decay of the codebook.
        dead_after: Training batches a code may go unused before it is restarted on an
            encoder output of the batch; 0 turns restarts off.
        rec_loss: Pixel reconstruction loss, ``l1`` (VQ-GAN's) or ``l2``.
        disc_weight: Weight of the adversarial term times the adaptive weight; 0: no GAN term.
        feature_weight: Weight of the reconstruction error in the discriminator's features (per
            feature); 0: none.
        disc_start: Batches of plain autoencoder training before the discriminator and the
            feature term start (VQ-GAN starts its discriminator late).
        disc_width: Base width of the patch discriminator; ``None``: ``width``.
        loss: Adversarial loss, ``hinge`` (VQ-GAN's) or ``nonsaturating``.
        lr: Adam learning rate of the encoder and decoder.
        lr_d: Adam learning rate of the discriminator; ``None``: ``lr``.
        betas: Adam betas (VQ-GAN: 0.5, 0.9).
        grad_clip: Clip each network's gradient norm to this value; ``None``: no clipping.
        pictures: Draw reconstructions with the samples (the ``pictures`` hook).
    """

    modality = "image"

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        num_codes: int = 256,
        code_dim: int = 16,
        width: int = 32,
        beta: float = 0.25,
        codebook_decay: float = 0.99,
        dead_after: int = 100,
        rec_loss: RecLoss = "l1",
        disc_weight: float = 0.0,
        feature_weight: float = 0.0,
        disc_start: int = 0,
        disc_width: int | None = None,
        loss: Loss = "hinge",
        lr: float = 2e-4,
        lr_d: float | None = None,
        betas: tuple[float, float] = (0.5, 0.9),
        grad_clip: float | None = None,
        pictures: bool = True,
    ) -> None:
        super().__init__()
        _check_hparams(image_size, channels, width, disc_weight, feature_weight, disc_start,
                       rec_loss, loss, grad_clip)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.data_shape = (channels, image_size, image_size)
        self.encoder = GridEncoder(channels, image_size, code_dim, width)
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta, codebook_decay,
                                         dead_after=dead_after)
        self.decoder = GridDecoder(code_dim, channels, image_size, width)
        self.discriminator = None
        if disc_weight > 0 or feature_weight > 0:
            self.discriminator = PatchDiscriminator(channels, image_size, disc_width or width)
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))  # trained so far

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """28x28 images, tiny nets, discriminator and feature term on; 2-process DDP, bf16.

        The non-saturating loss: at initialisation every hinge is active, so the gradient of
        the discriminator's biases is exactly zero up to rounding, which Adam normalises into
        steps that differ between 1 and 2 processes.
        """
        from genlab.data.images import ImageDataModule
        from genlab.data.tiny import write_parquet

        source = write_parquet(root / "digits", {"train": 32, "test": 8}, size=(28, 28))
        data = ImageDataModule(str(source), image_size=28, channels=1, batch_size=8,
                               num_workers=0)
        return ConformanceCase(data, {"num_codes": 8, "code_dim": 4, "width": 4,
                                      "dead_after": 2, "disc_weight": 0.5,
                                      "feature_weight": 0.1, "loss": "nonsaturating",
                                      "grad_clip": 1.0}, ddp=True)

    # ----------------------------------------------------------------------------- codes

    @property
    def num_codes(self) -> int:
        """Codebook size: the vocabulary of a prior over this model's codes."""
        return self.hparams.num_codes

    @property
    def code_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the code grid of one image (7x7 for 28x28 images)."""
        grid = conv_layout(self.hparams.image_size, self.hparams.channels)[0]
        return grid, grid

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(code_dim, h, w)``: the shape of ``encode_latent``'s continuous latents."""
        return (self.hparams.code_dim, *self.code_shape)

    def encode(self, x: Tensor) -> Tensor:
        """Integer codes ``(B, h, w)`` of images ``x`` ``(B, C, H, W)`` in [-1, 1]."""
        return self.quantizer.nearest_grid(self.encoder(x))

    def decode(self, codes: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` in [-1, 1] from integer codes ``(B, h, w)``."""
        return self.decoder(self.quantizer.embed(codes)).clamp(-1, 1)

    def encode_latent(self, x: Tensor) -> Tensor:
        """Continuous latents ``z_e`` ``(B, code_dim, h, w)`` before quantization."""
        return self.encoder(x)

    def decode_latent(self, z: Tensor) -> Tensor:
        """Images from continuous latents: quantized to the nearest codes, then decoded (the
        quantizer belongs to the decoder, as in latent diffusion's VQ-regularised autoencoders)."""
        return self.decode(self.quantizer.nearest_grid(z))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoded codes of ``x``: its reconstruction through the bottleneck."""
        return self.decode(self.encode(x))

    def sample(self, num: int) -> Tensor:
        """``num`` images decoded from codes drawn uniformly: VQ-VAE's prior during training
        (van den Oord et al. 2017, sec. 3.1). A learned prior over the codes is the
        ``twostage`` plugin's job.

        Args:
            num: Number of images.
        """
        codes = torch.randint(self.num_codes, (num, *self.code_shape), device=self.device)
        return self.decode(codes)

    # ----------------------------------------------------------------------------- losses

    def rec_loss(self, x: Tensor, x_rec: Tensor) -> Tensor:
        """Mean pixel reconstruction error (``l1`` or ``l2``)."""
        err = x_rec.float() - x.float()
        return err.abs().mean() if self.hparams.rec_loss == "l1" else err.square().mean()

    def adaptive_weight(self, rec: Tensor, gan: Tensor) -> Tensor:
        """``||grad_GL rec|| / (||grad_GL gan|| + 1e-4)`` at the decoder's last layer, clamped
        to [0, 1e4] and detached (Esser et al. 2021, eq. 7)."""
        last = self.decoder.last_layer
        g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
        g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0]
        # Under DDP, the gradients of the global batch's mean losses: every process then uses
        # the weight one process would on the whole batch.
        g_rec, g_gan = all_mean(g_rec), all_mean(g_gan)
        return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0, 1e4).detach()

    def autoencoder_loss(self, x: Tensor, adversarial: bool) -> tuple[Tensor, Tensor, dict]:
        """The autoencoder's loss, its reconstructions and logs (see the module docstring)."""
        h = self.hparams
        q: Quantized = self.quantizer(self.encoder(x))
        x_rec = self.decoder(q.z_q)
        rec = self.rec_loss(x, x_rec)
        logs = {"train/rec": rec.detach(), "train/commit": q.loss.detach(),
                "train/perplexity": q.perplexity, "train/usage": q.usage,
                "train/restarts": self.quantizer.restarts.float()}
        if adversarial:
            logits, features = self.discriminator(x_rec)
            if h.feature_weight > 0:
                with torch.no_grad():
                    real = self.discriminator(x)[1]
                feat = feature_reconstruction(real, features).mean() / features.shape[1]
                rec = rec + h.feature_weight * feat
                logs["train/feature_rec"] = feat.detach()
            if h.disc_weight > 0:
                gan = ADVERSARIAL_LOSSES[h.loss][1](logits.float())
                weight = h.disc_weight * self.adaptive_weight(rec, gan)
                logs.update({"train/loss_g": gan.detach(), "train/adaptive_weight": weight})
                rec = rec + weight * gan
        return rec + q.loss, x_rec, logs

    def discriminator_loss(self, x: Tensor, x_rec: Tensor) -> tuple[Tensor, dict]:
        """The discriminator's loss on every patch of real ``x`` against reconstructions."""
        logits, _ = self.discriminator(torch.cat([x, x_rec]))
        real, fake = logits.float().chunk(2)
        loss = ADVERSARIAL_LOSSES[self.hparams.loss][0](real, fake)
        return loss, {"train/loss_d": loss.detach()}

    # ----------------------------------------------------------------------------- training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        x = batch["x"]
        adversarial = self.discriminator is not None and self.batches >= self.hparams.disc_start
        loss, x_rec, logs = self.autoencoder_loss(x, adversarial)
        others = [self.discriminator] if self.discriminator is not None else []
        manual_step(self, opts[:1], loss, reach=others)
        if adversarial:
            d_loss, d_logs = self.discriminator_loss(x, x_rec.detach())
            manual_step(self, opts[1:], d_loss, reach=[self.encoder, self.decoder])
            logs.update(d_logs)
        self.batches += 1
        self.log_train(logs)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Log ``val/rec``, and the codebook's ``val/usage`` and ``val/perplexity``."""
        x = batch["x"]
        codes = self.encode(x)
        counts = torch.bincount(codes.flatten(), minlength=self.num_codes)
        perplexity, usage = code_statistics(counts)
        self.log_dict({"val/rec": self.rec_loss(x, self.decode(codes)),
                       "val/usage": usage, "val/perplexity": perplexity}, sync_dist=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_gradients(self, optimizer, self.hparams.grad_clip)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        h = self.hparams
        betas = tuple(h.betas)
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        opts = [torch.optim.Adam(autoencoder, lr=h.lr, betas=betas)]
        if self.discriminator is not None:
            opts.append(torch.optim.Adam(self.discriminator.parameters(),
                                         lr=h.lr if h.lr_d is None else h.lr_d, betas=betas))
        return opts

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """Reconstructions of the batch through the codes."""
        if not self.hparams.pictures:
            return {}
        return {"reconstructions": reconstructions(batch["x"], self.reconstruct)}


def _check_hparams(image_size: int, channels: int, width: int, disc_weight: float,
                   feature_weight: float, disc_start: int, rec_loss: str, loss: str,
                   grad_clip: float | None) -> None:
    """Raise ``GenlabError`` naming the first bad hyperparameter (the quantizer checks its own)."""
    conv_layout(image_size, channels)  # 28/32/64 pixels, 1 or 3 channels
    raise_first([
        (width < 1, f"model.width must be >= 1, got {width}"),
        (disc_weight < 0, f"model.disc_weight must be >= 0 (0: a VQ-VAE), got {disc_weight}"),
        (feature_weight < 0, f"model.feature_weight must be >= 0, got {feature_weight}"),
        (disc_start < 0, f"model.disc_start must be >= 0, got {disc_start}"),
        (rec_loss not in get_args(RecLoss),
         f"model.rec_loss must be one of {list(get_args(RecLoss))}, got {rec_loss!r}"),
        (loss not in get_args(Loss),
         f"model.loss must be one of {list(get_args(Loss))}, got {loss!r}"),
        (grad_clip is not None and grad_clip <= 0,
         f"model.grad_clip must be > 0 (or null for none), got {grad_clip}"),
    ])
