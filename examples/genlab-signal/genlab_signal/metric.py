"""How far generated signals' spectra are from real ones, as a torchmetrics ``Metric``."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def power_spectrum(x: Tensor) -> Tensor:
    """``(B, length // 2 + 1)`` power per FFT bin (mean removed: the DC bin holds the offset)."""
    return torch.fft.rfft(x.float() - x.float().mean(1, keepdim=True), dim=1).abs().pow(2)


class SpectralDistance(Metric):
    """Distances between the spectra of real and generated signals ``(B, length)``.

    ``update(x, real=True)`` adds reference signals, ``update(x)`` generated ones. ``compute``
    gives ``distance``: half the L1 distance between the two mean power spectra, each normalized
    to sum 1; and ``dominant_freq_tv``: the total variation between the histograms of each
    signal's dominant frequency. Both lie in [0, 1]; 0 is a match.

    Args:
        length: Samples per signal.
    """

    full_state_update = False

    def __init__(self, length: int) -> None:
        super().__init__()
        bins = length // 2 + 1
        for side in ("real", "fake"):
            self.add_state(f"{side}_power", torch.zeros(bins, dtype=torch.float64),
                           dist_reduce_fx="sum")
            self.add_state(f"{side}_dominant", torch.zeros(bins, dtype=torch.float64),
                           dist_reduce_fx="sum")

    def update(self, x: Tensor, real: bool = False) -> None:
        """Add a batch of real or generated signals."""
        power = power_spectrum(x).double()
        side = "real" if real else "fake"
        getattr(self, f"{side}_power").add_(power.sum(0))
        dominant = torch.bincount(power.argmax(1), minlength=power.shape[1]).double()
        getattr(self, f"{side}_dominant").add_(dominant)

    def compute(self) -> dict[str, Tensor]:
        """``distance`` and ``dominant_freq_tv``."""
        def tv(a: Tensor, b: Tensor) -> Tensor:
            return 0.5 * (a / a.sum().clamp_min(1e-12) - b / b.sum().clamp_min(1e-12)).abs().sum()

        return {"distance": tv(self.real_power, self.fake_power).float(),
                "dominant_freq_tv": tv(self.real_dominant, self.fake_dominant).float()}
