"""Improved precision and recall of generative models (Kynkäänniemi et al., 2019)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat


def knn_radii(features: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance from each row of ``features`` to its ``k``-th nearest other row."""
    radii = []
    for start in range(0, len(features), chunk):
        dist = torch.cdist(features[start : start + chunk], features)
        radii.append(dist.kthvalue(k + 1, dim=1).values)  # the 1st nearest is the row itself
    return torch.cat(radii)


def coverage(queries: Tensor, support: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """Fraction of ``queries`` inside at least one ball ``(support[i], radii[i])``."""
    inside = []
    for start in range(0, len(queries), chunk):
        dist = torch.cdist(queries[start : start + chunk], support)
        inside.append((dist <= radii[None, :]).any(dim=1))
    return torch.cat(inside).float().mean()


class PrecisionRecall(Metric):
    """Precision (fake samples on the real manifold) and recall (real samples on the fake one).

    Each set's manifold is the union of balls around its feature vectors reaching their ``k``-th
    nearest neighbour. Feed features of real images with ``real=True`` and of generated ones with
    ``real=False``; the extractor is the caller's, as for FID.

    Args:
        feature: Module mapping images to ``(B, F)`` features, or ``None`` when ``update``
            receives features already.
        k: Neighbourhood size (3 in the paper).
    """

    full_state_update = False

    def __init__(self, feature: torch.nn.Module | None = None, k: int = 3) -> None:
        super().__init__()
        self.feature, self.k = feature, k
        self.add_state("real", default=[], dist_reduce_fx="cat")
        self.add_state("fake", default=[], dist_reduce_fx="cat")

    def update(self, x: Tensor, real: bool) -> None:
        """Add a batch of images (or features) to the real or the generated set."""
        feats = self.feature(x) if self.feature is not None else x
        (self.real if real else self.fake).append(feats.double().flatten(1))

    def compute(self) -> dict[str, Tensor]:
        """``precision`` and ``recall``, each in [0, 1]."""
        real, fake = dim_zero_cat(self.real), dim_zero_cat(self.fake)
        if min(len(real), len(fake)) <= self.k:
            raise ValueError(f"precision/recall needs more than k={self.k} samples of each set")
        precision = coverage(fake, real, knn_radii(real, self.k))
        recall = coverage(real, fake, knn_radii(fake, self.k))
        return {"precision": precision.float(), "recall": recall.float()}
