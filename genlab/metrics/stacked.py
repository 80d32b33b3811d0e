"""Modes of Stacked MNIST: which of the 1,000 digit triples generated images show."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from genlab.metrics.classifier import DigitClassifier


class StackedModes(Metric):
    """Modes covered out of 1,000 and KL(generated mode histogram || uniform).

    Each channel of a generated ``(B, 3, H, W)`` image is classified by the reference digit
    classifier; the mode is ``100 * red + 10 * green + blue`` (Srivastava et al. 2017; Lin et al.
    2018 report 26,000 samples).

    Args:
        classifier: The reference digit classifier, or ``None`` when ``update`` receives mode
            labels (0-999) directly.
    """

    full_state_update = False
    num_modes = 1000

    def __init__(self, classifier: DigitClassifier | None = None) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False) if classifier else None
        self.add_state("counts", torch.zeros(self.num_modes, dtype=torch.long),
                       dist_reduce_fx="sum")

    def modes(self, images: Tensor) -> Tensor:
        """Mode labels 0-999 of ``(B, 3, H, W)`` images."""
        digits = [self.classifier(images[:, c : c + 1]).argmax(1) for c in range(3)]
        return 100 * digits[0] + 10 * digits[1] + digits[2]

    def update(self, x: Tensor) -> None:
        """Count the modes of a batch of images (or of mode labels)."""
        labels = self.modes(x) if self.classifier is not None else x
        self.counts += torch.bincount(labels.long().flatten(), minlength=self.num_modes)

    def compute(self) -> dict[str, Tensor]:
        """``modes_covered`` (a count) and ``kl_to_uniform`` (nats)."""
        p = self.counts.double() / self.counts.sum().clamp(min=1)
        seen = p > 0
        kl = (p[seen] * (p[seen].log() + math.log(self.num_modes))).sum()
        return {"modes_covered": seen.sum(), "kl_to_uniform": kl.float()}
