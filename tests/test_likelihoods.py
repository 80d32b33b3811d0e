"""genlab.losses.likelihoods: against torch.distributions, normalization, closed-form KL."""

import math

import pytest
import torch
from torch import distributions as D

from genlab.losses.likelihoods import (
    bernoulli_log_prob,
    diag_gaussian_log_density,
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
    gaussian_log_prob,
    kl_std_normal,
    log_mean_exp,
)

LEVELS = torch.linspace(-1, 1, 256)  # the 8-bit grid in [-1, 1]


def test_bernoulli_matches_torch():
    torch.manual_seed(0)
    x, logits = torch.bernoulli(torch.full((4, 1, 3, 3), 0.4)), torch.randn(4, 1, 3, 3)
    want = D.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert bernoulli_log_prob(x, logits).shape == (4,)
    torch.testing.assert_close(bernoulli_log_prob(x, logits), want)


@pytest.mark.parametrize("log_scale", [torch.randn(3, 5), -0.7])
def test_gaussian_learned_and_fixed_variance(log_scale):
    torch.manual_seed(0)
    x, mean = torch.randn(3, 5), torch.randn(3, 5)
    scale = torch.as_tensor(log_scale).exp()
    want = D.Normal(mean, scale).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_scale), want)


@pytest.mark.parametrize("log_prob", [discretized_logistic_log_prob, discretized_gaussian_log_prob])
@pytest.mark.parametrize("mean,log_scale", [(0.0, -2.0), (0.93, -5.0), (-1.4, 0.5), (0.3, -7.5),
                                            (0.1, 3.0)])
def test_discretized_sums_to_one_over_256_values(log_prob, mean, log_scale):
    x = LEVELS.double().view(256, 1)  # one pixel, each of its 256 values
    means = torch.full_like(x, mean)
    p = log_prob(x, means, torch.full_like(x, log_scale)).exp()
    assert torch.all(p >= 0)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("log_prob", [discretized_logistic_log_prob, discretized_gaussian_log_prob])
def test_discretized_finite_in_float32_with_gradients(log_prob):
    x = LEVELS.view(1, 1, 16, 16)
    mean = (torch.randn(1, 1, 16, 16) * 3).requires_grad_()
    log_scale = torch.full((1, 1, 16, 16), -6.0, requires_grad=True)
    out = log_prob(x, mean, log_scale)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(mean.grad).all()
    assert torch.isfinite(log_scale.grad).all()


def test_discretized_gaussian_matches_cdf_differences():
    x = LEVELS[100:104].double().view(4, 1)
    mean, scale = torch.tensor(0.1, dtype=torch.float64), 0.05
    half = 1 / 255
    normal = D.Normal(mean, scale)
    want = (normal.cdf(x + half) - normal.cdf(x - half)).log().squeeze(1)
    got = discretized_gaussian_log_prob(x, mean.expand_as(x), math.log(scale))
    torch.testing.assert_close(got, want)


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4).double(), torch.randn(3, 4).double()
    z = mu + (0.5 * logvar).exp() * torch.randn(200_000, 3, 4, dtype=torch.float64)
    mc = (diag_gaussian_log_density(z, mu, logvar) - diag_gaussian_log_density(z)).mean(0)
    torch.testing.assert_close(kl_std_normal(mu, logvar), mc, atol=0.03, rtol=0.01)
    assert kl_std_normal(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0


def test_diag_gaussian_density_matches_torch():
    z, mu, logvar = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3)
    want = D.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(diag_gaussian_log_density(z, mu, logvar), want)


def test_log_mean_exp_is_stable():
    x = torch.tensor([[1000.0, -5.0], [1000.0, -7.0]])
    want = torch.tensor([1000.0, math.log((math.exp(-5) + math.exp(-7)) / 2)])
    torch.testing.assert_close(log_mean_exp(x, dim=0), want)
