"""VAE-GAN: a VAE whose reconstructions are measured in a discriminator's feature space.

Larsen, Sønderby, Larochelle and Winther 2016, "Autoencoding beyond pixels using a learned
similarity metric". Encoder q(z | x), decoder (= generator) Dec and discriminator Dis; with
x̃ = Dec(z), z ~ q(z | x), and x_p = Dec(z_p), z_p ~ N(0, I):

    L_prior  = KL(q(z | x) || N(0, I))                                         (eq. 4)
    L_llike  = -log N(Dis_l(x); Dis_l(x̃), I) = 1/2 ||Dis_l(x) - Dis_l(x̃)||² + const   (eq. 6)
    L_GAN    = the adversarial loss of Dis on x (real) against x̃ and x_p (fake)          (eq. 9)

routed as in Algorithm 1: the encoder descends β L_prior + L_llike, the decoder
γ L_llike + (generator loss on x̃ and x_p), the discriminator its own loss on all three.

Class-conditional (``num_classes``; with ``data.clusters`` the classes are clusters of the
training images, a label-free model of p(x)): Dec(z, y) and Dis(x, y) take the label, x_p is
decoded with the batch's labels, and samples draw theirs from the data's shares
(``label_prior``). The encoder stays q(z | x): z holds what the label does not.

One training batch makes a discriminator step, then one encoder + decoder step. Manual
optimization with three optimizers; DDP-safe without ``find_unused_parameters``:

- Lightning wraps the whole module in one ``DistributedDataParallel``, whose reducer expects a
  gradient for every parameter at every ``manual_backward``. The discriminator step's fakes are
  drawn without a graph, so its loss adds an exact zero that reaches the encoder and decoder
  (``genlab.distributed.manual_step`` adds ``zero_through``); the autoencoder step reaches all
  three networks by itself (its losses go through the discriminator). Gradients a step leaves on
  another network's parameters are discarded by that network's own ``zero_grad`` before its next
  backward.
- The encoder and decoder weight L_llike differently (1 and γ) although it reaches both through
  the same decoder pass, and the GAN term must not reach the encoder. One backward does it:
  the decoder runs on ``[scale_grad(z, 1/γ), z.detach(), z_p]``. γ·L_llike on the first third
  gives the decoder γ∇ and the encoder γ·(1/γ)∇ = ∇; the GAN term on the other two reaches the
  decoder only. ``tests/test_vaegan.py`` checks each network's gradient against the plain terms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import torch
from genlab_vaegan.networks import Decoder, Discriminator, Encoder
from PIL import Image
from torch import Tensor, nn

from genlab import GenerativeModule
from genlab.distributed import manual_step
from genlab.ema import ema_model
from genlab.errors import GenlabError, raise_first
from genlab.losses.adversarial import ADVERSARIAL_LOSSES
from genlab.losses.likelihoods import feature_reconstruction, kl_std_normal
from genlab.losses.penalties import r1_penalty
from genlab.module import ConformanceCase
from genlab.nn.conv import Norm, conv_layout
from genlab.noise import NoiseStream, batch_randn
from genlab.pictures import latent_interpolation, reconstructions
from genlab.recipes import batch_labels, clip_gradients, num_classes_problem, sample_labels
from genlab.sharding import refuse_double_backward, shard

Loss = Literal["nonsaturating", "hinge"]

class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: Tensor, scale: float) -> Tensor:
    """``x`` unchanged, but the gradient flowing back through it is multiplied by ``scale``."""
    return _ScaleGrad.apply(x, scale)


class VAEGAN(GenerativeModule):
    """VAE-GAN (Larsen et al. 2016) on images: DCGAN conv nets from ``genlab.nn.conv``.

    Args:
        image_size: Image height and width: 28, 32 or 64.
        channels: Image channels, 1 or 3.
        latent_dim: Dimension of ``z``.
        width: Base channel width of the encoder, decoder and discriminator.
        decoder_norm: ``batch`` (DCGAN's generator) or ``none`` in the decoder.
        num_classes: Classes of a class-conditional model (labels from the data's ``label``,
            or its clusters with ``data.clusters``): a label embedding beside ``z`` in the
            decoder and a projection discriminator; ``None``: unconditional.
        gamma: Weight γ of the feature reconstruction term in the decoder's loss, against the
            GAN term (the paper's γ, section 2.3): larger favours faithful reconstructions,
            smaller sharper samples. Must be > 0.
        beta: Weight of the KL (prior) term in the encoder's loss (1 in the paper).
        loss: Adversarial loss: ``nonsaturating`` (the paper's) or ``hinge``.
        r1_gamma: Weight ``gamma`` of the R1 penalty ``gamma / 2 * E ||∇ Dis(x_real)||²``
            (Mescheder et al. 2018) in the discriminator's loss; 0: none.
        r1_interval: Lazy R1 (Karras et al. 2020): only every this many discriminator steps,
            scaled up by it.
        lr: Adam learning rate of the encoder and decoder.
        lr_d: Adam learning rate of the discriminator; ``None``: ``lr``.
        betas: Adam betas of all three optimizers.
        grad_clip: Clip each network's gradient norm to this value; ``None``: no clipping.
        ema_decay: Decay of the exponential moving average of the encoder's and decoder's
            weights, which ``sample`` and ``reconstruct`` use; ``None``: the raw networks.
        pictures: Draw reconstructions and latent interpolations with the samples (the
            ``pictures`` hook).
    """

    modality = "image"

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        latent_dim: int = 32,
        width: int = 64,
        decoder_norm: Norm = "batch",
        num_classes: int | None = None,
        gamma: float = 0.1,
        beta: float = 1.0,
        loss: Loss = "nonsaturating",
        r1_gamma: float = 0.0,
        r1_interval: int = 1,
        lr: float = 2e-4,
        lr_d: float | None = None,
        betas: tuple[float, float] = (0.5, 0.999),
        grad_clip: float | None = None,
        ema_decay: float | None = 0.999,
        pictures: bool = True,
    ) -> None:
        super().__init__()
        _check_hparams(image_size, channels, latent_dim, width, gamma, beta, loss, grad_clip,
                       ema_decay)
        raise_first([(r1_gamma < 0, f"model.r1_gamma must be >= 0, got {r1_gamma}"),
                     (r1_interval < 1, f"model.r1_interval must be >= 1, got {r1_interval}"),
                     num_classes_problem(num_classes)])
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.data_shape = (channels, image_size, image_size)
        self.encoder = Encoder(channels, image_size, latent_dim, width)
        self.decoder = Decoder(latent_dim, channels, image_size, width, decoder_norm, num_classes)
        self.discriminator = Discriminator(channels, image_size, width, num_classes=num_classes)
        self.encoder_ema = ema_model(self.encoder, ema_decay) if ema_decay is not None else None
        self.decoder_ema = ema_model(self.decoder, ema_decay) if ema_decay is not None else None
        self._noise_stream = NoiseStream("vaegan_noise_state")

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """28x28 images, tiny conv nets; 2-process DDP (no batch norm: its statistics are per
        process, so only then does 2-process DDP match 1 process)."""
        from genlab.data.images import ImageDataModule
        from genlab.data.tiny import write_parquet

        source = write_parquet(root / "digits", {"train": 32, "test": 8}, size=(28, 28))
        data = ImageDataModule(str(source), image_size=28, channels=1, batch_size=8,
                               num_workers=0)
        return ConformanceCase(data, {"image_size": 28, "channels": 1, "latent_dim": 4,
                                      "width": 4, "grad_clip": 1.0, "decoder_norm": "none"},
                               ddp=True)

    # ----------------------------------------------------------------------------- inference

    def _nets(self) -> tuple[nn.Module, nn.Module]:
        """The encoder and decoder to infer with: the EMA ones when kept."""
        if self.decoder_ema is None:
            return self.encoder, self.decoder
        return self.encoder_ema, self.decoder_ema

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | x), each ``(B, latent_dim)``."""
        return self._nets()[0](x)

    def decode_latent(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images in [-1, 1] ``(B, C, H, W)`` for latents ``(B, latent_dim)`` (and labels ``(B,)``,
        conditional models only).

        Not named ``decode``: the core takes a model's ``decode`` for tokens -> text.
        """
        return self._nets()[1](z, labels)

    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Dec(mu(x), y): the reconstruction of images ``x`` (of classes ``labels``) from their
        posterior means."""
        return self.decode_latent(self.encode(x)[0], labels)

    def sample(self, num: int, labels: Tensor | None = None,
               temperature: float | None = None) -> Tensor:
        """``num`` images Dec(z, y), z ~ N(0, temperature² I), ``(num, C, H, W)`` in [-1, 1].

        Args:
            num: Number of images.
            labels: Class of each image, ``(num,)`` (conditional models only); ``None``:
                drawn from ``label_prior`` when the model has one, else uniformly.
            temperature: Scale of the prior's standard deviation (default 1).
        """
        labels = sample_labels(num, labels, self.hparams.num_classes, self.device, "random",
                               self.label_prior)
        z = torch.randn(num, self.hparams.latent_dim, device=self.device)
        return self.decode_latent(z * (temperature or 1.0), labels)

    # ----------------------------------------------------------------------------- losses

    def feature_loss(self, x: Tensor, x_rec: Tensor, labels: Tensor | None = None) -> Tensor:
        """Batch-mean L_llike of reconstructions ``x_rec`` of ``x`` in Dis_l's feature space."""
        with torch.no_grad():  # through forward, which FSDP2 hooks (sharded training)
            real = self.discriminator(x, labels)[1]
        return feature_reconstruction(real, self.discriminator(x_rec, labels)[1]).mean()

    def discriminator_loss(self, x: Tensor, eps: Tensor, z_p: Tensor,
                           labels: Tensor | None = None) -> tuple[Tensor, dict]:
        """The discriminator's loss on real ``x`` against x̃ and x_p (drawn without a graph).

        ``eps`` ``(B, Z)`` is the reparameterization noise of z ~ q(z | x), ``z_p`` ``(B, Z)``
        the prior latents, ``labels`` ``(B,)`` the batch's classes (conditional models). The
        two kinds of fakes weigh equally.
        """
        h = self.hparams
        d_loss, _ = ADVERSARIAL_LOSSES[h.loss]
        with torch.no_grad():
            mu, logvar = self.encoder(x)
            fakes = self.decoder(torch.cat([mu + (0.5 * logvar).exp() * eps, z_p]),
                                 _repeat(labels, 2))
        # One batch is three optimizer steps (discriminator, encoder, decoder): the D step count.
        lazy_r1 = h.r1_gamma > 0 and (self.global_step // 3) % h.r1_interval == 0
        x = x.detach().requires_grad_(lazy_r1)
        logits, _ = self.discriminator(torch.cat([x, fakes]), _repeat(labels, 3))
        real, rec, prior = logits.split([len(x), len(eps), len(z_p)])
        loss = 0.5 * (d_loss(real, rec) + d_loss(real, prior))
        logs = {"train/loss_d": loss.detach()}
        if lazy_r1:
            r1 = r1_penalty(real, x)
            loss = loss + h.r1_gamma / 2 * h.r1_interval * r1
            logs["train/r1"] = r1.detach()
        return loss, logs

    def autoencoder_loss(self, x: Tensor, eps: Tensor, z_p: Tensor,
                         labels: Tensor | None = None) -> tuple[Tensor, dict]:
        """One loss whose gradient is β L_prior + L_llike for the encoder and γ L_llike + GAN
        for the decoder (see the module docstring); its discriminator gradient is not used.
        """
        h = self.hparams
        _, g_loss = ADVERSARIAL_LOSSES[h.loss]
        mu, logvar = self.encoder(x)
        z = mu + (0.5 * logvar).exp() * eps  # reparameterized, (B, Z)
        out = self.decoder(torch.cat([scale_grad(z, 1 / h.gamma), z.detach(), z_p]),
                           _repeat(labels, 3))
        x_rec, x_rec_gan, x_p = out.split([len(z), len(z), len(z_p)])
        llike = self.feature_loss(x, x_rec, labels)
        kl = kl_std_normal(mu, logvar).mean()
        logits, _ = self.discriminator(torch.cat([x_rec_gan, x_p]), _repeat(labels, 2))
        rec_logits, prior_logits = logits.split([len(z), len(z_p)])
        gan = 0.5 * (g_loss(rec_logits) + g_loss(prior_logits))
        loss = h.beta * kl + h.gamma * llike + gan
        return loss, {"train/kl": kl.detach(), "train/llike": llike.detach(),
                      "train/loss_g": gan.detach()}

    # ----------------------------------------------------------------------------- training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        opt_enc, opt_dec, opt_dis = self.optimizers()
        x, labels = batch["x"], batch_labels(batch, self.hparams.num_classes)
        loss, logs = self.discriminator_loss(x, *self._noise(len(x)), labels)
        manual_step(self, [opt_dis], loss, reach=[self.encoder, self.decoder])
        loss, ae_logs = self.autoencoder_loss(x, *self._noise(len(x)), labels)
        manual_step(self, [opt_enc, opt_dec], loss)  # reaches all three nets by itself
        if self.decoder_ema is not None:
            self.encoder_ema.update_parameters(self.encoder)
            self.decoder_ema.update_parameters(self.decoder)
        self.log_train({**logs, **ae_logs})

    def _noise(self, num: int) -> tuple[Tensor, Tensor]:
        """Reparameterization noise and prior latents, each ``(num, latent_dim)``.

        Drawn from the module's own generator, saved in checkpoints, so that a resumed run
        draws the noise an uninterrupted one would have.
        """
        z = batch_randn(self, (2, num, self.hparams.latent_dim), dim=1,
                        generator=self._noise_stream.generator(self.device))
        return z[0], z[1]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        self._noise_stream.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._noise_stream.load(checkpoint)

    def on_fit_start(self) -> None:
        # One backward feeds two optimizer steps (encoder, decoder); fp16's GradScaler may
        # change its scale between them and unscale the second with the wrong factor.
        if str(self.trainer.precision).startswith("16"):
            raise GenlabError("VAEGAN does not train in fp16 (trainer.precision "
                              f"{self.trainer.precision}); use bf16-mixed or 32-true")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_gradients(self, optimizer, self.hparams.grad_clip)

    def configure_model(self) -> None:
        """Under ``--trainer.strategy fsdp2``: shard the three networks and the EMA copies."""
        if self.hparams.r1_gamma > 0:
            refuse_double_backward(self, "model.r1_gamma (a gradient penalty)")
        shard(self, ["encoder", "decoder", "discriminator", "encoder_ema", "decoder_ema"])

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        h = self.hparams
        betas = tuple(h.betas)
        lr_d = h.lr if h.lr_d is None else h.lr_d
        return [torch.optim.Adam(self.encoder.parameters(), lr=h.lr, betas=betas),
                torch.optim.Adam(self.decoder.parameters(), lr=h.lr, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=lr_d, betas=betas)]

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """Reconstructions of the batch and latent interpolations between pairs of its images
        (a conditional row keeps its first image's class)."""
        if not self.hparams.pictures:
            return {}
        x, labels = batch["x"], batch_labels(batch, self.hparams.num_classes)
        out = {"reconstructions": reconstructions(x, lambda x: self.reconstruct(x, labels))}
        pairs, steps = min(4, len(x) // 2), 8
        if pairs:
            a, b = x[: 2 * pairs: 2], x[1: 2 * pairs: 2]
            ys = None if labels is None else labels[: 2 * pairs: 2].repeat_interleave(steps)
            out["interpolations"] = latent_interpolation(
                lambda z: self.decode_latent(z, ys), self.encode(a)[0], self.encode(b)[0], steps,
                ends=(a, b))
        return out


def _repeat(labels: Tensor | None, times: int) -> Tensor | None:
    """The batch's labels for ``times`` stacked batches of fakes (``None``: unconditional)."""
    return None if labels is None else labels.repeat(times)


def _check_hparams(image_size: int, channels: int, latent_dim: int, width: int, gamma: float,
                   beta: float, loss: str, grad_clip: float | None,
                   ema_decay: float | None) -> None:
    """Raise ``GenlabError`` naming the first bad hyperparameter."""
    conv_layout(image_size, channels)  # 28/32/64 pixels, 1 or 3 channels
    raise_first([
        (latent_dim < 1, f"model.latent_dim must be >= 1, got {latent_dim}"),
        (width < 1, f"model.width must be >= 1, got {width}"),
        (gamma <= 0, f"model.gamma must be > 0 (e.g. 0.1), got {gamma}"),
        (beta < 0, f"model.beta must be >= 0, got {beta}"),
        (loss not in get_args(Loss), f"model.loss must be one of {list(get_args(Loss))}, got "
                                     f"{loss!r}"),
        (grad_clip is not None and grad_clip <= 0,
         f"model.grad_clip must be > 0 (or null for none), got {grad_clip}"),
        (ema_decay is not None and not 0 < ema_decay < 1,
         f"model.ema_decay must be in (0, 1) (or null for no EMA), got {ema_decay}"),
    ])
