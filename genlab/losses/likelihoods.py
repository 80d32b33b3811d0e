"""Likelihoods of data under a decoder's output, Gaussian KL terms and the IWAE log-mean-exp.

Every ``*_log_prob`` takes the data ``x`` and the decoder's output and returns the per-example
log-probability in nats, shape ``(B,)``: summed over all dimensions but the first. Images are
served in [-1, 1]; the 8-bit likelihoods treat them as 256 bins of width ``2 / 255``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SCALE = -7.0  # a floor on log-scales, so 8-bit bins stay resolvable (PixelCNN++)


def _per_example(log_p: Tensor) -> Tensor:
    return log_p.flatten(1).sum(1)  # (B, ...) -> (B,)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """``log p(x)`` of binary data under independent Bernoullis with the given logits.

    Args:
        x: Data in {0, 1} (floats), ``(B, ...)``.
        logits: Logits of ``p(x = 1)``, same shape.
    """
    return -_per_example(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))


def gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor | float) -> Tensor:
    """``log N(x; mean, scale^2)`` summed per example (a density, not a probability).

    Args:
        x: Data, ``(B, ...)``.
        mean: Means, same shape.
        log_scale: Log standard deviations: a tensor broadcastable to ``x`` (learned variance)
            or a float (fixed variance).
    """
    log_scale = torch.as_tensor(log_scale, dtype=mean.dtype, device=mean.device)
    z = (x - mean) * torch.exp(-log_scale)
    return _per_example(-0.5 * (z.square() + LOG_2PI) - log_scale.expand_as(z))


def _log_interval(a: Tensor, b: Tensor, log_cdf: Callable[[Tensor], Tensor]) -> Tensor:
    """``log(F(a) - F(b))`` for ``a > b`` and a CDF ``F`` symmetric about 0, stably.

    Both tails are computed where they are precise: right of the centre ``F(a) - F(b)`` equals
    ``F(-b) - F(-a)``, and ``log(F(a) - F(b)) = log F(a) + log(-expm1(log F(b) - log F(a)))``.
    """
    right = (a + b) > 0
    hi, lo = torch.where(right, -b, a), torch.where(right, -a, b)
    log_hi, log_lo = log_cdf(hi), log_cdf(lo)
    return log_hi + torch.log(-torch.expm1((log_lo - log_hi).clamp(max=-1e-12)))


def _discretized_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor | float, bits: int,
                          log_cdf: Callable[[Tensor], Tensor]) -> Tensor:
    log_scale = torch.as_tensor(log_scale, dtype=mean.dtype, device=mean.device)
    inv_scale = torch.exp(-log_scale.clamp(min=MIN_LOG_SCALE))
    half_bin = 1.0 / (2**bits - 1)  # [-1, 1] holds 2**bits levels, 2 / (2**bits - 1) apart
    centered = x - mean
    upper = (centered + half_bin) * inv_scale  # standardized edges of x's bin
    lower = (centered - half_bin) * inv_scale
    # The end bins take the tails: (-inf, -1 + half_bin] and [1 - half_bin, inf).
    log_p = torch.where(
        x < -1 + half_bin, log_cdf(upper),
        torch.where(x > 1 - half_bin, log_cdf(-lower), _log_interval(upper, lower, log_cdf)),
    )
    return _per_example(log_p)


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor | float,
                                  bits: int = 8) -> Tensor:
    """``log P(x)`` of ``bits``-bit images under a logistic discretized to the pixel bins.

    The probability of a pixel value is the logistic's mass over its bin, the end bins taking
    the tails (Salimans et al. 2017, PixelCNN++ eq. 2, one mixture component), so it sums to 1
    over the ``2**bits`` values and ``-log P / (D ln 2)`` is in bits/dim.

    Args:
        x: Images in [-1, 1] on the grid ``-1 + 2 k / (2**bits - 1)``, ``(B, C, H, W)``.
        mean: Location of each pixel's logistic, same shape.
        log_scale: Log scale, a tensor broadcastable to ``x`` or a float.
        bits: Bits per pixel value.
    """
    return _discretized_log_prob(x, mean, log_scale, bits, F.logsigmoid)


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor | float,
                                  bits: int = 8) -> Tensor:
    """``log P(x)`` of ``bits``-bit images under a Gaussian discretized to the pixel bins.

    As ``discretized_logistic_log_prob`` with the Gaussian CDF (Ho et al. 2020, eq. 13).

    Args:
        x: Images in [-1, 1] on the grid ``-1 + 2 k / (2**bits - 1)``, ``(B, C, H, W)``.
        mean: Mean of each pixel's Gaussian, same shape.
        log_scale: Log standard deviation, a tensor broadcastable to ``x`` or a float.
        bits: Bits per pixel value.
    """
    return _discretized_log_prob(x, mean, log_scale, bits, torch.special.log_ndtr)


def kl_std_normal_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, 1))`` of each latent dimension, shape of ``mu``.

    Closed form for diagonal Gaussians (Kingma & Welling 2014, appendix B).

    Args:
        mu: Posterior means, ``(B, Z)``.
        logvar: Posterior log-variances, ``(B, Z)``.
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def kl_std_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per example, shape ``(B,)``.

    Args:
        mu: Posterior means, ``(B, Z)``.
        logvar: Posterior log-variances, ``(B, Z)``.
    """
    return kl_std_normal_per_dim(mu, logvar).sum(-1)


def diag_gaussian_log_density(z: Tensor, mu: Tensor | float = 0.0,
                              logvar: Tensor | float = 0.0) -> Tensor:
    """``log N(z; mu, diag(exp(logvar)))`` summed over the last dimension.

    With the defaults it is the standard normal prior ``log p(z)``.

    Args:
        z: Points, ``(..., Z)``.
        mu: Means, broadcastable to ``z``.
        logvar: Log-variances, broadcastable to ``z``.
    """
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return (-0.5 * (LOG_2PI + logvar + (z - mu).square() * torch.exp(-logvar))).sum(-1)


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """``log(mean(exp(x)))`` along ``dim``, stably: the IWAE bound from ``k`` log-weights.

    ``log (1/k) sum_i p(x, z_i) / q(z_i | x)`` (Burda et al. 2016, eq. 8).

    Args:
        x: Log-weights, e.g. ``(k, B)``.
        dim: The dimension of the ``k`` samples.
    """
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def feature_reconstruction(real: Tensor, fake: Tensor) -> Tensor:
    """``-log N(real; fake, I)`` less its constant: ``1/2 ||real - fake||²`` per example ``(B,)``.

    Larsen et al. 2016, eq. 6: reconstructions measured in a discriminator's feature space
    ``Dis_l`` (features ``(B, F)``) rather than in pixels. VAE-GAN and VQ-GAN use it.
    """
    return 0.5 * (fake - real).square().flatten(1).sum(1)
