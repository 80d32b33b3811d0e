"""Vector quantization with an EMA codebook: the bottleneck of VQ-VAE and VQ-GAN.

van den Oord, Vinyals and Kavukcuoglu 2017, "Neural Discrete Representation Learning": each
encoder vector ``z_e`` is replaced by its nearest codebook entry ``e_k``; the decoder's gradient
is copied straight through to the encoder (``z_q = z_e + sg(e_k - z_e)``), and the encoder is
pulled toward its code by the commitment loss ``beta ||z_e - sg(e_k)||²`` (eq. 3).

The codebook is not trained by gradient but by exponential moving averages of the vectors
assigned to each code (the paper's appendix A.1; Razavi et al. 2019, eqs. 6-8)::

    N_k <- gamma N_k + (1 - gamma) n_k          n_k: vectors of the batch assigned to code k
    m_k <- gamma m_k + (1 - gamma) sum z_e      (over those vectors)
    e_k  = m_k / N_k'                           N_k' is N_k with Laplace smoothing

Two further rules keep the codebook from collapsing onto a few codes: the codebook starts as
vectors of the first training batch (data-dependent initialisation, so every code starts where
the encoder's outputs are), and a code unused for ``dead_after`` steps is moved onto a random
encoder output of the current batch (a "restart", as in Dhariwal et al. 2020, Jukebox, sec. 3.2).

Under ``torch.distributed`` the batch statistics (``n_k``, the sums, the usage) are summed over
processes, and the vectors of the initialisation and restarts are drawn from the gathered global
batch with a generator seeded by a counter kept in the buffers: every process holds the same
codebook, the one a single process would on the same global batch, and a resumed run draws what
an uninterrupted one would. Plain PyTorch: nothing here imports Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import raise_first


@dataclass
class Quantized:
    """What ``VectorQuantizer.forward`` returns.

    Attributes:
        z_q: Quantized vectors with the straight-through gradient, the input's shape.
        codes: Code index of every vector, the input's shape without the channel dim (long).
        loss: The commitment loss ``beta * mean ||z_e - sg(e)||²`` (a scalar).
        perplexity: ``exp(entropy)`` of the batch's code frequencies (all processes).
        usage: Fraction of the codebook used by the batch (all processes).
    """

    z_q: Tensor
    codes: Tensor
    loss: Tensor
    perplexity: Tensor
    usage: Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(x: Tensor) -> Tensor:
    """``x`` summed over processes (itself without ``torch.distributed``)."""
    if _distributed():
        dist.all_reduce(x)
    return x


def _global_rows(flat: Tensor, per_example: int) -> Tensor:
    """The rows ``flat`` ``(N, D)`` of every process, in the order of the global batch.

    genlab's samplers give process ``r`` of ``W`` the examples ``r, r + W, ...`` of the global
    batch, so interleaving the processes' examples rebuilds it: the random picks below are then
    the ones a single process would make on the whole batch.
    """
    if not _distributed():
        return flat
    world = dist.get_world_size()
    n = torch.tensor([len(flat) // per_example], device=flat.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    most = int(max(sizes))
    padded = flat.new_zeros(most * per_example, flat.shape[1])
    padded[: len(flat)] = flat
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    rows = torch.stack([p.view(most, per_example, -1) for p in parts], 1)  # (n, W, P, D)
    real = torch.arange(most, device=flat.device)[:, None] < torch.cat(sizes)[None, :]
    return rows[real].reshape(-1, flat.shape[1])


def code_statistics(counts: Tensor) -> tuple[Tensor, Tensor]:
    """``(perplexity, usage)`` of code counts ``(K,)``: ``exp(H(p))`` and the fraction used."""
    p = counts.float() / counts.sum().clamp(min=1)
    entropy = -(p * p.clamp(min=1e-10).log()).sum()
    return entropy.exp(), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantization onto ``num_codes`` vectors of size ``dim``, EMA-updated.

    The input's channel dimension is dim 1 (``(B, D, H, W)`` maps or ``(B, D)`` vectors). In
    training mode ``forward`` updates the codebook (EMA, first-batch initialisation, dead-code
    restarts); in eval mode it only quantizes.

    Args:
        num_codes: Codebook size ``K``.
        dim: Size ``D`` of a code vector.
        beta: Weight of the commitment loss (0.25 in van den Oord et al. 2017).
        decay: EMA decay ``gamma`` of the codebook statistics (0.99 in the paper).
        eps: Laplace smoothing of the code counts, so an unused code never divides by zero.
        dead_after: Training steps a code may go unused before it is restarted on a batch
            vector; 0 turns restarts off.
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, decay: float = 0.99,
                 eps: float = 1e-5, dead_after: int = 100) -> None:
        super().__init__()
        raise_first([
            (num_codes < 2, f"num_codes must be >= 2, got {num_codes}"),
            (dim < 1, f"the code dimension must be >= 1, got {dim}"),
            (beta < 0, f"the commitment weight beta must be >= 0, got {beta}"),
            (not 0 < decay < 1, f"the codebook decay must be in (0, 1), got {decay}"),
            (dead_after < 0, f"dead_after must be >= 0 (0: no restarts), got {dead_after}"),
        ])
        self.num_codes, self.dim = num_codes, dim
        self.beta, self.decay, self.eps, self.dead_after = beta, decay, eps, dead_after
        # Buffers, not parameters: no optimizer touches them, checkpoints keep them.
        self.register_buffer("codebook", torch.randn(num_codes, dim))
        self.register_buffer("cluster_size", torch.ones(num_codes))  # N_k
        self.register_buffer("embed_sum", self.codebook.clone())      # m_k
        self.register_buffer("unused_steps", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # total, for logs
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))  # seeds random picks

    # ----------------------------------------------------------------------------- lookup

    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code of each row of ``flat`` ``(N, D)``, ``(N,)`` long."""
        # ||z - e||² = ||z||² - 2 z·e + ||e||²; ||z||² is the same for every code.
        dist2 = self.codebook.square().sum(1) - 2 * flat @ self.codebook.t()  # (N, K)
        return dist2.argmin(1)

    def nearest_grid(self, z: Tensor) -> Tensor:
        """Codes of vectors ``z`` ``(B, D, ...)`` (channel dim 1): ``(B, ...)`` long; no update."""
        flat = z.float().movedim(1, -1).reshape(-1, self.dim)
        return self.nearest(flat).view(z.shape[0], *z.shape[2:])

    def embed(self, codes: Tensor) -> Tensor:
        """Code vectors of ``codes`` (any shape), channel dim 1: ``(B, D, ...)``."""
        z = F.embedding(codes, self.codebook)  # (B, ..., D)
        return z.movedim(-1, 1) if z.dim() > 2 else z

    # ----------------------------------------------------------------------------- forward

    def forward(self, z_e: Tensor) -> Quantized:
        """Quantize ``z_e`` ``(B, D, ...)``; in training mode, update the codebook first."""
        dtype = z_e.dtype
        with torch.autocast(z_e.device.type, enabled=False):  # distances in float32
            z = z_e.float()
            flat = z.movedim(1, -1).reshape(-1, self.dim)  # (N, D)
            if self.training:
                self.update(flat.detach(), per_example=flat.shape[0] // max(len(z), 1))
            codes = self.nearest(flat)
            counts = _all_reduce(torch.bincount(codes, minlength=self.num_codes).float())
            e = F.embedding(codes, self.codebook).view(*z.movedim(1, -1).shape).movedim(-1, 1)
            loss = self.beta * (z - e.detach()).square().mean()   # commitment, eq. 3
            z_q = z + (e - z).detach()  # straight-through: forward e, backward identity
        perplexity, usage = code_statistics(counts)
        codes = codes.view(z.shape[0], *z.shape[2:])
        return Quantized(z_q.to(dtype), codes, loss, perplexity, usage)

    # ----------------------------------------------------------------------------- updates

    @torch.no_grad()
    def update(self, flat: Tensor, per_example: int = 1) -> None:
        """One training step of the codebook on encoder vectors ``flat`` ``(N, D)``.

        ``per_example``: consecutive rows of ``flat`` that come from one example (``H * W`` for
        maps), so that under ``torch.distributed`` the global batch can be rebuilt.
        """
        if not bool(self.initialized):
            self.initialise(_global_rows(flat, per_example))
        codes = self.nearest(flat)
        onehot = F.one_hot(codes, self.num_codes).float()  # (N, K)
        counts = _all_reduce(onehot.sum(0))                 # n_k, all processes
        sums = _all_reduce(onehot.t() @ flat)               # sum of z_e per code, (K, D)
        self.ema_update(counts, sums)
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.dead_after:
            self.restart_dead(flat, per_example)

    @torch.no_grad()
    def ema_update(self, counts: Tensor, sums: Tensor) -> None:
        """The EMA step on the batch's code counts ``(K,)`` and vector sums ``(K, D)``."""
        g = self.decay
        self.cluster_size.mul_(g).add_(counts, alpha=1 - g)
        self.embed_sum.mul_(g).add_(sums, alpha=1 - g)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def initialise(self, flat: Tensor) -> None:
        """Codebook = ``num_codes`` random vectors of the (global) batch, counts = 1."""
        picks = self.random_rows(flat, self.num_codes)
        self.codebook.copy_(picks)
        self.embed_sum.copy_(picks)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def restart_dead(self, flat: Tensor, per_example: int = 1) -> None:
        """Move every code unused for ``dead_after`` steps onto a random (global) batch vector."""
        dead = self.unused_steps >= self.dead_after  # the same on every process (all-reduced)
        num = int(dead.sum())
        if num == 0:
            return
        picks = self.random_rows(_global_rows(flat, per_example), num)
        self.codebook[dead] = picks
        self.embed_sum[dead] = picks  # as if the code had been used once by that vector
        self.cluster_size[dead] = 1.0
        self.unused_steps[dead] = 0
        self.restarts.add_(num)

    def random_rows(self, flat: Tensor, num: int) -> Tensor:
        """``num`` rows of ``flat`` drawn at random (with replacement when it has fewer).

        The generator is seeded by the ``draws`` counter: the same picks on every process.
        """
        gen = torch.Generator(device=flat.device).manual_seed(int(self.draws))
        self.draws.add_(1)
        if len(flat) >= num:
            idx = torch.randperm(len(flat), device=flat.device, generator=gen)[:num]
        else:
            idx = torch.randint(len(flat), (num,), device=flat.device, generator=gen)
        return flat[idx].contiguous()
