"""Self-conditioning labels: k-means clusters of the training images' pixels.

An unconditional model conditioned on clusters of its own data, with the cluster drawn from the
clusters' shares at sampling time, still models p(x) without a label in sight: a mixture of k
conditional generators. Its generator no longer has to stretch one connected latent space over
disconnected modes, which is where an unconditional GAN draws its in-between digits (Liu et al.
2020, "Diverse Image Generation via Self-Conditioned GANs", cluster discriminator features; the
pixels are the simplest features there are).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Lloyd's iterations: on MNIST's 60,000 digits the assignments settle well before this.
KMEANS_ITERATIONS = 30


def kmeans(points: Tensor, k: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS) -> Tensor:
    """The ``(k, D)`` centroids of Lloyd's k-means on ``points`` ``(N, D)``, seeded.

    Starts from k-means++ seeding (Arthur & Vassilvitskii 2007: each next centroid a point drawn
    with probability proportional to its squared distance to the nearest one so far, so two
    never start on one spot); a cluster left empty keeps its centroid. Deterministic for a
    given seed, so every DDP process and a resumed run find the same clusters.

    Args:
        points: The points, float.
        k: Number of clusters, at most ``N``.
        seed: Seed of the initial draw.
        iterations: Lloyd's iterations.
    """
    if not 0 < k <= len(points):
        raise ValueError(f"k-means needs 1 <= k <= {len(points)} points, got k = {k}")
    centroids = kmeans_plus_plus(points, k, torch.Generator().manual_seed(seed))
    for _ in range(iterations):
        ids = nearest(points, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, ids, points)
        counts = torch.bincount(ids, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


def nearest(points: Tensor, centroids: Tensor, chunk: int = 8192) -> Tensor:
    """The index of each point's nearest centroid, ``(N,)`` long; ``chunk`` points at a time."""
    return torch.cat([torch.cdist(part, centroids).argmin(1) for part in points.split(chunk)])


def kmeans_plus_plus(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``k`` starting centroids drawn from ``points`` by k-means++ seeding."""
    norms = points.square().sum(1)

    def dist2(i: int) -> Tensor:  # a matrix-vector product: cdist to one point is 3x slower
        d = norms - 2 * (points @ points[i]) + norms[i]
        return d.masked_fill_(d <= 1e-5 * (norms + norms[i]), 0)  # rounding: duplicates at 0

    chosen = [int(torch.randint(len(points), (1,), generator=generator))]
    nearest2 = dist2(chosen[0])
    for _ in range(k - 1):
        if not nearest2.gt(0).any():
            raise ValueError(f"k-means needs {k} distinct points, the data has fewer")
        chosen.append(int(torch.multinomial(nearest2, 1, generator=generator)))
        nearest2 = torch.minimum(nearest2, dist2(chosen[-1]))
    return points[chosen].clone()
