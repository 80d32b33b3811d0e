"""How a classifier labels generated images: the share it labels confidently, and the classes."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric


class ClassShares(Metric):
    """Share of samples labelled with confidence >= ``threshold``, and each class's share.

    A generator that draws blurry in-between digits scores a low confident share; one that
    drops or over-draws a class shows it in the histogram (MNIST's classes are about 10% each).

    Args:
        classifier: Maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits.
        num_classes: Number of classes.
        threshold: The softmax probability of the top class that counts as confident.
    """

    full_state_update = False

    def __init__(self, classifier: nn.Module, num_classes: int = 10,
                 threshold: float = 0.9) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.threshold = threshold
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("confident", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, x: Tensor) -> None:
        """Classify a batch of images and count their top classes."""
        top = self.classifier(x.float()).softmax(1).max(1)
        self.counts += torch.bincount(top.indices, minlength=len(self.counts))
        self.confident += int((top.values >= self.threshold).sum())

    def compute(self) -> dict[str, Tensor]:
        """``confident_share``, ``class_share_min`` / ``_max`` and ``class_share_<k>`` per class."""
        shares = self.counts.double() / self.counts.sum().clamp(min=1)
        out = {"confident_share": self.confident.double() / self.counts.sum().clamp(min=1),
               "class_share_min": shares.min(), "class_share_max": shares.max()}
        out.update({f"class_share_{k}": s for k, s in enumerate(shares)})
        return {k: v.float() for k, v in out.items()}
