"""Mode coverage on mixtures of Gaussians (the VEEGAN / PacGAN protocol)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ModeCoverage(Metric):
    """Modes covered and the fraction of high-quality samples for a mixture of isotropic Gaussians.

    A sample is *high quality* when it lies within ``3 * sigma`` of its nearest mode; a mode is
    *covered* when at least one high-quality sample is nearest to it (Srivastava et al. 2017,
    "VEEGAN", section 5.1; the standard protocol draws 2,500 samples).

    Args:
        modes: Mode centres, shape ``(K, D)``.
        sigma: Standard deviation of every component.
    """

    full_state_update = False

    def __init__(self, modes: Tensor, sigma: float) -> None:
        super().__init__()
        self.register_buffer("modes", torch.as_tensor(modes, dtype=torch.float32))
        self.sigma = float(sigma)
        k = len(self.modes)
        self.add_state("hq_per_mode", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:  # samples: (B, D)
        """Assign each sample to its nearest mode and count the high-quality ones."""
        dist = torch.cdist(samples.float(), self.modes)  # (B, K)
        nearest_dist, nearest = dist.min(dim=1)
        hq = nearest_dist <= 3 * self.sigma
        self.hq_per_mode += torch.bincount(nearest[hq], minlength=len(self.modes))
        self.total += len(samples)

    def compute(self) -> dict[str, Tensor]:
        """``modes_covered`` (a count) and ``high_quality`` (a fraction in [0, 1])."""
        return {
            "modes_covered": (self.hq_per_mode > 0).sum(),
            "high_quality": self.hq_per_mode.sum() / self.total.clamp(min=1),
        }
