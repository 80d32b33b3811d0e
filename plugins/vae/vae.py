"""Variational autoencoder: β-VAE with KL warm-up and free bits, IWAE bound, conditional VAE.

Objective (Kingma & Welling 2014; Higgins et al. 2017 for β):
    ELBO = E_q[log p(x | z)] - β_t KL(q(z | x) || N(0, I)),  β_t = β min(1, step / warmup)
With ``train_samples = k > 1`` the IWAE bound (Burda et al. 2016, eq. 8) is trained instead:
    L_k = E[log 1/k Σ_i p(x | z_i) p(z_i) / q(z_i | x)],  z_i ~ q(z | x)
``log_likelihood`` is L_k with many samples: the importance-sampled estimate of log p(x).
``estimator = "dreg"`` trains L_k with the doubly reparameterized gradient (Tucker et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from genlab_vae.networks import ConvVAEDecoder, ConvVAEEncoder, MLPDecoder, MLPEncoder
from PIL import Image
from torch import Tensor

from genlab import GenerativeModule
from genlab.errors import raise_first
from genlab.losses.likelihoods import (
    diag_gaussian_log_density,
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
    gaussian_log_prob,
    kl_std_normal_per_dim,
    log_mean_exp,
)
from genlab.module import ConformanceCase
from genlab.nn.mlp import Activation
from genlab.noise import batch_randn
from genlab.pictures import labelled_scatter, latent_interpolation, reconstructions
from genlab.recipes import (
    LRSchedule,
    batch_labels,
    lr_horizon,
    num_classes_problem,
    sample_labels,
    warmup_cosine,
)

Likelihood = Literal["bernoulli", "gaussian", "discretized_logistic", "discretized_gaussian"]
Network = Literal["mlp", "conv"]
Estimator = Literal["iwae", "dreg"]

_LOG_PROBS = {
    "gaussian": gaussian_log_prob,
    "discretized_logistic": discretized_logistic_log_prob,
    "discretized_gaussian": discretized_gaussian_log_prob,
}


def kl_weight(step: int, beta: float, warmup_steps: int) -> float:
    """β_t: the KL weight at ``step``, rising linearly from 0 to ``beta`` over ``warmup_steps``."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


class VAE(GenerativeModule):
    """Variational autoencoder on images (Kingma & Welling 2014), optionally conditional.

    Args:
        data_shape: ``(C, H, W)`` of the images.
        latent_dim: Dimension of ``z``.
        network: ``mlp`` (the classic 784-200-200-50) or ``conv`` (DCGAN-style stacks from
            ``genlab.nn.conv``, for 28, 32 or 64 pixel square images).
        hidden: Hidden widths of the MLP encoder; the decoder mirrors them (``mlp`` only).
        act: Activation of the MLPs (``tanh`` as in Burda et al. 2016; ``mlp`` only).
        conv_width: Channels of the conv nets' outermost layers (``conv`` only). Their
            learned-variance likelihoods learn one log-scale per pixel, not one per ``z``.
        likelihood: ``p(x | z)``: ``bernoulli`` for binarized images ({-1, +1} data, read as
            {0, 1}); ``gaussian`` (a density: not comparable across data); ``discretized_logistic``
            or ``discretized_gaussian`` for 8-bit images, so NLL and bits/dim are meaningful.
        fixed_std: Standard deviation of a Gaussian / discretized likelihood, fixed; ``None``:
            the decoder outputs a per-pixel log-scale (learned variance).
        beta: Weight β of the KL term (β-VAE; 1 is the ELBO).
        kl_warmup_steps: Steps over which the KL weight rises linearly from 0 to β.
        free_bits: Minimum nats per latent dimension below which its batch-mean KL is not
            pushed down (Kingma et al. 2016, eq. 15); 0 turns it off.
        train_samples: Importance samples ``k`` of the training bound: 1 trains the ELBO, more
            the IWAE bound.
        elbo_steps: Steps trained on the ELBO (``k = 1``) before the ``train_samples`` bound
            takes over: a VAE first, then the IWAE objective, as in Burda et al. 2016's IWAE
            initialized at a trained VAE; far cheaper per step while the model is far from its
            optimum. 0: the ``train_samples`` bound from the start.
        estimator: Gradient of the ``k > 1`` bound: ``iwae``, the plain reparameterized one,
            or ``dreg`` (Tucker et al. 2019), the same decoder gradient and an unbiased encoder
            gradient without the score-function term, whose signal-to-noise ratio does not
            fall as ``k`` grows (Rainforth et al. 2018 show that the plain one's does).
        val_samples: ``k`` of the importance-weighted NLL logged at validation (kept small).
        eval_samples: ``k`` of the NLL at test / ``genlab evaluate`` (5000 for reported figures).
        eval_chunk: Importance samples per forward pass when estimating the NLL (memory bound).
        num_classes: Number of classes of a conditional VAE (labels from the data); ``None``:
            unconditional.
        lr: Adam learning rate.
        lr_schedule: ``constant`` or ``cosine`` decay to zero over the run; with ``elbo_steps``,
            one cosine over the ELBO steps and another, from ``lr`` again, over the rest.
        pictures: Draw reconstructions, latent interpolations and (2-D latent) a latent scatter
            by class with the samples (the ``pictures`` hook).
    """

    modality = "image"

    def __init__(
        self,
        data_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 50,
        network: Network = "mlp",
        hidden: Sequence[int] = (200, 200),
        act: Activation = "tanh",
        conv_width: int = 64,
        likelihood: Likelihood = "bernoulli",
        fixed_std: float | None = None,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        free_bits: float = 0.0,
        train_samples: int = 1,
        elbo_steps: int = 0,
        estimator: Estimator = "iwae",
        val_samples: int = 16,
        eval_samples: int = 5000,
        eval_chunk: int = 500,
        num_classes: int | None = None,
        lr: float = 1e-3,
        lr_schedule: LRSchedule = "constant",
        pictures: bool = True,
    ) -> None:
        super().__init__()
        _check_hparams(data_shape, latent_dim, fixed_std, beta, kl_warmup_steps, free_bits,
                       elbo_steps, train_samples, val_samples, eval_samples, eval_chunk,
                       num_classes, conv_width)
        # logger=False: Lightning merges model and data hparams for the loggers and stops on a
        # key with two values (num_classes: 10 here, null = auto in the data); the CLI logs
        # the whole resolved config anyway.
        self.save_hyperparameters(logger=False)
        self.data_shape = tuple(data_shape)
        params = 1 if likelihood == "bernoulli" or fixed_std is not None else 2
        if network == "conv":
            self.encoder = ConvVAEEncoder(data_shape, latent_dim, conv_width, num_classes)
            self.decoder = ConvVAEDecoder(data_shape, latent_dim, conv_width, params, num_classes)
        else:
            self.encoder = MLPEncoder(data_shape, latent_dim, hidden, act, num_classes)
            self.decoder = MLPDecoder(data_shape, latent_dim, hidden, act, params, num_classes)

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """Binarized 8x8 images, a tiny MLP VAE; 2-process DDP, bf16 and fp16."""
        from genlab.data.images import ImageDataModule
        from genlab.data.tiny import write_parquet

        source = write_parquet(root / "digits", {"train": 32, "test": 8}, size=(8, 8))
        data = ImageDataModule(str(source), image_size=8, channels=1, binarize=True,
                               batch_size=8, num_workers=0)
        return ConformanceCase(data, {"data_shape": [1, 8, 8], "hidden": [16], "latent_dim": 2,
                                      "val_samples": 2, "eval_samples": 4, "eval_chunk": 4},
                               ddp=True, precisions=("bf16-mixed", "16-mixed"))

    # --- the model: q(z | x, y), p(x | z, y), p(z) = N(0, I) -----------------------------------

    def labels_of(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The batch's labels for a conditional model, ``None`` for an unconditional one."""
        return batch_labels(batch, self.hparams.num_classes)

    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | x, y), each ``(B, latent_dim)``."""
        return self.encoder(x, labels)

    def log_px(self, x: Tensor, out: Tensor) -> Tensor:
        """``log p(x | z)`` per example from the decoder's output ``out`` ``(B, P, C, H, W)``.

        ``out`` may also hold ``k`` draws of ``z`` per image, ``(k, B, P, C, H, W)``: the result
        is then ``(k, B)``.
        """
        h = self.hparams
        if h.likelihood == "bernoulli":
            # {-1, +1} pixels: log p(x | logits l) = log sigmoid(x l) = -softplus(-x l). x
            # broadcasts over the draws (no copy of it per draw), at half the cost of BCE.
            return -F.softplus(-x * out.select(-4, 0)).flatten(-3).sum(-1)
        if out.dim() == x.dim() + 2:  # (k, B, P, C, H, W): the per-example likelihoods want x
            k = len(out)              # beside each draw
            xs = x.expand(k, *x.shape).flatten(0, 1)
            return self.log_px(xs, out.flatten(0, 1)).view(k, -1)
        log_scale = out[:, 1] if h.fixed_std is None else math.log(h.fixed_std)
        return _LOG_PROBS[h.likelihood](x, out[:, 0], log_scale)

    def mean_image(self, out: Tensor) -> Tensor:
        """The mean of p(x | z) as an image in [-1, 1], from the decoder's output."""
        if self.hparams.likelihood == "bernoulli":
            return torch.sigmoid(out[:, 0]) * 2 - 1
        return out[:, 0].clamp(-1, 1)

    def decode_mean(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Mean images in [-1, 1] ``(B, C, H, W)`` of p(x | z, y).

        Not named ``decode``: the core takes a model's ``decode`` for tokens -> text.
        """
        return self.mean_image(self.decoder(z, labels))

    @property
    def latent_shape(self) -> tuple[int]:
        """``(latent_dim,)``: the shape of ``encode_latent``'s latents (a second stage's data)."""
        return (self.hparams.latent_dim,)

    def encode_latent(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The posterior mean of ``x``, ``(B, latent_dim)``: the latents a prior learns."""
        return self.encode(x, labels)[0]

    def decode_latent(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Mean images in [-1, 1] of latents ``z`` (``decode_mean``)."""
        return self.decode_mean(z, labels)

    def default_labels(self, num: int, labels: Tensor | None) -> Tensor | None:
        """Labels to condition ``num`` samples on: the given ones, else classes in turn."""
        return sample_labels(num, labels, self.hparams.num_classes, self.device)

    def sample(self, num: int, labels: Tensor | None = None,
               temperature: float | None = None) -> Tensor:
        """``num`` mean images of p(x | z, y), z ~ N(0, temperature² I), ``(num, C, H, W)``.

        Args:
            num: Number of images.
            labels: Class of each image (conditional VAE); default: classes in turn.
            temperature: Scale of the prior's standard deviation (default 1).
        """
        labels = self.default_labels(num, labels)
        z = torch.randn(num, self.hparams.latent_dim, device=self.device)
        return self.decode_mean(z * (temperature or 1.0), labels)

    # --- bounds -----------------------------------------------------------------------------

    def log_weights(self, x: Tensor, labels: Tensor | None, k: int,
                    kl_scale: float = 1.0, dreg: bool = False) -> Tensor:
        """``log p(x | z_i) + s (log p(z_i) - log q(z_i | x))`` for ``k`` draws, ``(k, B)``.

        ``s = kl_scale`` is 1 for the true importance weights, β_t during warm-up. ``dreg``:
        the same values, with the gradients of the doubly reparameterized estimator.
        """
        mu, logvar = self.encode(x, labels)
        eps = batch_randn(self, (k, *mu.shape), dim=1, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps  # (k, B, Z), reparameterized
        if not dreg:
            return self.log_weights_at(x, labels, z, mu, logvar, kl_scale)
        # q's parameters reach the weights only through z (no score-function term), and each
        # draw's path gradient is scaled once more by its normalised weight: the encoder then
        # gets sum_i w_i^2 d log w_i / dz_i dz_i / dphi, Tucker et al. 2019, eq. 7 (unbiased).
        log_w = self.log_weights_at(x, labels, z, mu.detach(), logvar.detach(), kl_scale)
        if z.requires_grad:
            weights = torch.softmax(log_w.detach(), dim=0).unsqueeze(-1)
            z.register_hook(lambda grad: grad * weights)
        return log_w

    def log_weights_at(self, x: Tensor, labels: Tensor | None, z: Tensor, mu: Tensor,
                       logvar: Tensor, kl_scale: float = 1.0) -> Tensor:
        """Log importance weights of the draws ``z`` ``(k, B, Z)`` from q = N(mu, exp(logvar))."""
        k, batch = z.shape[:2]
        ys = None if labels is None else labels.expand(k, batch).flatten()
        out = self.decoder(z.flatten(0, 1), ys)  # (k B, P, C, H, W)
        log_px = self.log_px(x, out.view(k, batch, *out.shape[1:]))  # (k, B)
        log_ratio = diag_gaussian_log_density(z) - diag_gaussian_log_density(z, mu, logvar)
        return log_px + kl_scale * log_ratio

    @torch.no_grad()
    def log_weights_chunked(self, x: Tensor, labels: Tensor | None, k: int) -> Tensor:
        """``log_weights`` with ``k`` draws made ``eval_chunk`` at a time, ``(k, B)``."""
        mu, logvar = self.encode(x, labels)
        std, chunk = (0.5 * logvar).exp(), self.hparams.eval_chunk
        chunks = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            z = mu + std * torch.randn(n, *mu.shape, device=mu.device, dtype=mu.dtype)
            chunks.append(self.log_weights_at(x, labels, z, mu, logvar))
        return torch.cat(chunks)

    def num_eval_samples(self) -> int:
        """``k`` for ``log_likelihood``: ``val_samples`` in fit/validate, else ``eval_samples``."""
        trainer = self._trainer
        if trainer is not None and not trainer.testing:
            return self.hparams.val_samples
        return self.hparams.eval_samples

    def log_likelihood(self, batch: dict[str, Tensor], k: int | None = None) -> Tensor:
        """Importance-weighted estimate of log p(x) in nats, ``(B,)`` (a lower bound on average).

        Args:
            batch: ``{"x", "label"}`` batch.
            k: Importance samples; default: ``val_samples`` during training and validation,
                ``eval_samples`` at test and in ``genlab evaluate``.
        """
        k = k or self.num_eval_samples()
        return log_mean_exp(self.log_weights_chunked(batch["x"], self.labels_of(batch), k))

    # --- training ---------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        h = self.hparams
        beta_t = kl_weight(self.global_step, h.beta, h.kl_warmup_steps)
        k = 1 if self.global_step < h.elbo_steps else h.train_samples
        loss, logs = self.objective(batch["x"], self.labels_of(batch), beta_t, k)
        self.log_train({**logs, "train/kl_weight": beta_t})
        return loss

    def objective(self, x: Tensor, labels: Tensor | None, beta_t: float,
                  k: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss (negated bound, KL weighted by ``beta_t``) and what to log.

        ``k``: importance samples of the bound (default ``train_samples``); 1 is the ELBO.
        """
        h = self.hparams
        k = k or h.train_samples
        if k > 1:
            log_w = self.log_weights(x, labels, k, beta_t, dreg=h.estimator == "dreg")
            bound = log_mean_exp(log_w).mean()
            return -bound, {"train/iwae": bound}
        mu, logvar = self.encode(x, labels)
        z = mu + (0.5 * logvar).exp() * batch_randn(self, mu.shape, dtype=mu.dtype)
        rec = self.log_px(x, self.decoder(z, labels)).mean()
        kl_dims = kl_std_normal_per_dim(mu, logvar).mean(0)  # (Z,) batch-mean KL per dimension
        kl = kl_dims.sum()
        # Free bits: dimensions under the floor get no gradient pushing their KL further down.
        kl_term = kl_dims.clamp(min=h.free_bits).sum() if h.free_bits > 0 else kl
        loss = -(rec - beta_t * kl_term)
        return loss, {"train/elbo": rec - kl, "train/rec": rec, "train/kl": kl}

    def _log_nll(self, split: str, batch: dict[str, Tensor]) -> None:
        log_w = self.log_weights_chunked(batch["x"], self.labels_of(batch),
                                         self.num_eval_samples())
        nll = -log_mean_exp(log_w).mean()
        dims = batch["x"][0].numel()
        self.log_dict({f"{split}/nll": nll, f"{split}/bits_per_dim": nll / (dims * math.log(2)),
                       f"{split}/elbo": log_w.mean()}, prog_bar=split == "val", sync_dist=True)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """``val/nll`` (importance-weighted, ``val_samples``), ``val/bits_per_dim``, ``val/elbo``.

        ``val/elbo`` averages the single-draw log-weights: a Monte Carlo ELBO.
        """
        self._log_nll("val", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """``test/nll`` with ``eval_samples`` draws, ``test/bits_per_dim``, ``test/elbo``."""
        self._log_nll("test", batch)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        if self.hparams.lr_schedule == "constant":
            return opt
        total, switch = lr_horizon(self.trainer), self.hparams.elbo_steps
        if 0 < switch < total:
            # The bound starts from the trained VAE at the full rate, as Burda et al. train an
            # IWAE from a VAE: one cosine over the run would leave it only a near-zero tail.
            schedule = torch.optim.lr_scheduler.LambdaLR(
                opt, partial(two_phase_cosine, switch=switch, total=total))
        else:
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """Reconstructions of the batch, latent interpolations between pairs of its examples
        (each row keeps its first image's class) and, for a 2-D latent, the posterior means by
        class."""
        if not self.hparams.pictures:
            return {}
        x, labels = batch["x"], self.labels_of(batch)
        out = {"reconstructions": reconstructions(
            x, lambda x: self.decode_mean(self.encode(x, _head(labels, len(x)))[0],
                                          _head(labels, len(x))))}
        pairs = min(4, len(x) // 2)
        if pairs:
            a, b = x[: 2 * pairs: 2], x[1: 2 * pairs: 2]
            la = None if labels is None else labels[: 2 * pairs: 2]
            lb = None if labels is None else labels[1: 2 * pairs: 2]
            ys = None if la is None else la.repeat_interleave(8)
            out["interpolations"] = latent_interpolation(
                lambda z: self.decode_mean(z, ys), self.encode(a, la)[0], self.encode(b, lb)[0],
                ends=(a, b))
        if self.hparams.latent_dim == 2 and labels is not None:
            out["latent_scatter"] = labelled_scatter(self.encode(x, labels)[0], labels,
                                                     "posterior means by class")
        return out


def _head(labels: Tensor | None, n: int) -> Tensor | None:
    return None if labels is None else labels[:n]


def two_phase_cosine(step: int, switch: int, total: int) -> float:
    """Learning-rate factor: a cosine to zero over steps ``[0, switch)``, another over
    ``[switch, total)``."""
    if step < switch:
        return warmup_cosine(step, 0, switch)
    return warmup_cosine(step - switch, 0, total - switch)


def _check_hparams(data_shape: Sequence[int], latent_dim: int, fixed_std: float | None,
                   beta: float, kl_warmup_steps: int, free_bits: float, elbo_steps: int,
                   train_samples: int,
                   val_samples: int, eval_samples: int, eval_chunk: int,
                   num_classes: int | None, conv_width: int) -> None:
    """Raise ``GenlabError`` naming the first bad hyperparameter."""
    positive = {"latent_dim": latent_dim, "train_samples": train_samples,
                "val_samples": val_samples, "eval_samples": eval_samples,
                "eval_chunk": eval_chunk, "conv_width": conv_width}
    raise_first([
        (len(data_shape) != 3 or min(data_shape) <= 0,
         f"model.data_shape must be [C, H, W], got {list(data_shape)}"),
        *((value < 1, f"model.{name} must be >= 1, got {value}")
          for name, value in positive.items()),
        num_classes_problem(num_classes),
        (fixed_std is not None and fixed_std <= 0,
         f"model.fixed_std must be > 0 (or null to learn it), got {fixed_std}"),
        *((value < 0, f"model.{name} must be >= 0, got {value}") for name, value in
          {"beta": beta, "kl_warmup_steps": kl_warmup_steps, "free_bits": free_bits,
     "elbo_steps": elbo_steps}.items()),
    ])
