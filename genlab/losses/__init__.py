"""Losses shared by plugins: adversarial objectives, penalties, likelihoods and KL terms."""

from genlab.losses.adversarial import (
    ADVERSARIAL_LOSSES,
    d_hinge,
    d_nonsaturating,
    d_wasserstein,
    g_hinge,
    g_nonsaturating,
    g_wasserstein,
)
from genlab.losses.likelihoods import (
    bernoulli_log_prob,
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
    feature_reconstruction,
    gaussian_log_prob,
    kl_std_normal,
    log_mean_exp,
)
from genlab.losses.penalties import gradient_penalty, r1_penalty

__all__ = [
    "ADVERSARIAL_LOSSES", "bernoulli_log_prob", "d_hinge", "d_nonsaturating", "d_wasserstein",
    "discretized_gaussian_log_prob", "discretized_logistic_log_prob", "feature_reconstruction",
    "g_hinge", "g_nonsaturating", "g_wasserstein", "gaussian_log_prob", "gradient_penalty",
    "kl_std_normal", "log_mean_exp", "r1_penalty",
]
