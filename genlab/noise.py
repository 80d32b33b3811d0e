"""Training noise that is the same whether a batch runs on one process or is split over many.

Under DDP every process holds the same RNG state (Lightning seeds them alike), so noise drawn
naively is identical on every rank: each shard of the global batch gets the *same* noise. Inside
a fit these functions instead give every example of the global batch its own noise, a function
of a key and the example's place in the global batch: the key is drawn from the generator (the
same draw on every rank), and each process computes only its own rows, the rows
``rank, rank + world, ...`` that genlab's sampler deals to it (``ResumableSampler``). A run on N
processes then draws, example for example, the noise of a 1-process run with an N times larger
batch, and each process pays for its local batch only (time and memory), not the global one.

The per-element numbers come from a counter-based generator (SplitMix64 of key + counter) and
are turned into uniforms, integers and normals (Box-Muller) with integer arithmetic and float
``+ - * /`` and ``sqrt`` only (float64 for float64 noise, float32 otherwise): these are correctly
rounded on every device and code path, so an element's value does not depend on where it sits in
a tensor (vectorised body or scalar tail, thread split), which ``torch.log`` / ``torch.cos`` do
not promise. Outside a fit they are plain ``torch.randn`` / ``rand`` / ``randint``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor


def process_share(module: L.LightningModule) -> tuple[int, int]:
    """``(rank, world_size)`` of the process training ``module``; ``(0, 1)`` outside a fit."""
    trainer = module._trainer
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size


def _u64(x: int) -> int:
    """A 64-bit unsigned constant as the int64 holding the same bits."""
    return x - (1 << 64) if x >= 1 << 63 else x


_GAMMA, _MIX1, _MIX2 = _u64(0x9E3779B97F4A7C15), _u64(0xBF58476D1CE4E5B9), _u64(0x94D049BB133111EB)
_CHUNK = {"cpu": 1 << 16}  # elements per pass: a CPU chunk stays in cache; others: 1 << 20
_LN2 = 0.6931471805599453
_SQRT2 = 1.4142135623730951
_HALF_PI = 1.5707963267948966


def _series(float64: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Coefficients of 2 atanh(s) / s in s^2 and of cos(x) in x^2, to the working precision.

    |s| <= 0.1716 and x in [0, pi/2] below: 11 terms each leave < 1e-17 in float64,
    5 and 7 terms < 1e-8 in float32.
    """
    n_atanh, n_cos = (11, 11) if float64 else (5, 7)
    return (tuple(2.0 / (2 * n + 1) for n in range(n_atanh)),
            tuple((-1) ** n / math.factorial(2 * n) for n in range(n_cos)))


def _srl(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` copies the sign bit)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _bits(key: Tensor, counter: Tensor) -> Tensor:
    """64 random bits per counter: SplitMix64's output for state ``key + counter * gamma``.

    int64 products wrap modulo 2**64 as the unsigned ones do, so this is SplitMix64 exactly
    (Steele, Lea and Flood 2014; it passes BigCrush).
    """
    z = key + counter * _GAMMA
    z = (z ^ _srl(z, 30)) * _MIX1
    z = (z ^ _srl(z, 27)) * _MIX2
    return z ^ _srl(z, 31)


def _horner(x: Tensor, coefs: Sequence[float]) -> Tensor:
    out = x * coefs[-1] + coefs[-2]
    for c in reversed(coefs[:-2]):
        out = out * x + c
    return out


def _significant_bits(dtype: torch.dtype) -> int:
    """Bits of a float dtype's significand, the implicit one included (float32: 24)."""
    return 1 - round(math.log2(torch.finfo(dtype).eps))


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 output, float32 (24 significant bits) for anything narrower."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _split(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(m, e)`` with ``x = m 2^e`` and ``m`` in [1, 2), for positive float32 / float64 ``x``.

    Its exponent and significand bits, read directly: faster than ``torch.frexp``.
    """
    ints, mant = (torch.int64, 52) if x.dtype == torch.float64 else (torch.int32, 23)
    i = x.view(ints)
    bias = (1 << (x.element_size() * 8 - mant - 2)) - 1  # 1023 or 127
    one = bias << mant  # the bits of 1.0
    return ((i & ((1 << mant) - 1)) | one).view(x.dtype), (i >> mant) - bias


def _normal(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """Standard normals, one per 64 bits (Box-Muller's cosine half), for output ``dtype``.

    The high bits give the radius ``sqrt(-2 ln u)``, ``u`` in (0, 1]; the low bits a sign and
    an angle uniform in (0, pi/2), together the cosine of an angle uniform on the circle. Every
    integer converted holds at most the working float's significant bits, so converts exactly.
    """
    work = _work_dtype(dtype)
    p = _significant_bits(work)  # 53 or 24
    radius_bits, angle_bits = min(32, p), min(31, p - 1)
    atanh, cos = _series(work == torch.float64)
    u = (_srl(bits, 64 - radius_bits) + 1).to(work) * 2.0**-radius_bits
    m, e = _split(u)  # u = m 2^e, m in [1, 2); m / sqrt 2 in [1/sqrt 2, sqrt 2)
    m = m * (1 / _SQRT2)
    s = (m - 1) / (m + 1)  # ln(m / sqrt 2) = 2 atanh(s)
    log_u = s * _horner(s * s, atanh) + (e.to(work) + 0.5) * _LN2
    radius = (log_u * -2).clamp_min(0).sqrt()
    angle = ((bits & ((1 << angle_bits) - 1)).to(work) + 0.5) * (_HALF_PI / 2**angle_bits)
    sign = 1 - 2 * (_srl(bits, angle_bits) & 1).to(work)
    return (sign * radius * _horner(angle * angle, cos)).to(dtype)


def _uniform(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """Uniforms in [0, 1) with as many random bits as ``dtype``'s significand holds."""
    n = _significant_bits(dtype)
    return (_srl(bits, 64 - n).to(_work_dtype(dtype)) * 2.0**-n).to(dtype)


def _counters(shape: tuple[int, ...], dim: int, rank: int, world: int,
              device: torch.device) -> Tensor:
    """Per local row of ``shape`` viewed as ``(lead * rows, trail)``: its first counter.

    Element ``(a, j, t)`` (``a``: index over the dimensions before ``dim``, ``j``: the local
    row, ``t``: over those after) belongs to example ``j * world + rank`` of the global batch;
    its counter is that example's index times the elements per example plus ``a * trail + t``,
    the same number on any number of processes.
    """
    lead, rows, trail = math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])
    example = torch.arange(rows, device=device) * world + rank
    a = torch.arange(lead, device=device)[:, None]
    return (example * (lead * trail) + a * trail).flatten()


def _keyed(shape: Sequence[int], dim: int, rank: int, world: int,
           generator: torch.Generator | None, device: torch.device, out_dtype: torch.dtype,
           values: Callable[[Tensor], Tensor]) -> Tensor:
    """The rows of the global batch's noise that fall to process ``rank`` of ``world``.

    ``values(bits)`` per element, computed in chunks, so time and memory follow the local batch.
    """
    shape = tuple(shape)
    dim = dim % len(shape)
    trail = math.prod(shape[dim + 1:])
    firsts = _counters(shape, dim, rank, world, device)
    # One draw from the generator per call, whatever the batch: every rank draws the same key.
    key = torch.randint(2**62, (), generator=generator, device=device)
    out = torch.empty(shape, dtype=out_dtype, device=device)
    if out.numel() == 0:
        return out
    grid = out.view(-1, trail)  # (lead * rows, trail); contiguous, so a view
    chunk = _CHUNK.get(device.type, 1 << 20)
    if trail >= chunk:  # big examples: pieces of one row at a time
        for row, first in enumerate(firsts):
            for t in range(0, trail, chunk):
                t_end = min(t + chunk, trail)
                grid[row, t:t_end] = values(_bits(key, first + torch.arange(
                    t, t_end, device=device)))
    else:  # small examples: whole rows at a time
        step = max(1, chunk // max(trail, 1))
        t = torch.arange(trail, device=device)
        for r in range(0, len(firsts), step):
            grid[r:r + step] = values(_bits(key, firsts[r:r + step, None] + t))
    return out


def share_randn(shape: Sequence[int], rank: int = 0, world: int = 1, dim: int = 0,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> Tensor:
    """Standard normals for process ``rank`` of ``world``: its rows of the global batch's.

    The global batch's noise is a function of one draw from ``generator`` and each element's
    place in the global batch; the local ``shape`` holds rows ``rank, rank + world, ...`` of it
    along ``dim``. Time and memory follow the local ``shape``.

    Args:
        shape: The local shape; ``shape[dim]`` is the local batch size.
        rank: This process's rank.
        world: The number of processes sharing the global batch.
        dim: The batch dimension.
        generator: Random-number generator (one draw per call); ``None``: torch's global one.
        device: Where the noise is made (``generator``'s device).
        dtype: Floating dtype; ``None``: the default.
    """
    dtype = dtype or torch.get_default_dtype()
    return _keyed(shape, dim, rank, world, generator, torch.device(device), dtype,
                  lambda b: _normal(b, dtype))


def share_rand(shape: Sequence[int], rank: int = 0, world: int = 1, dim: int = 0,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None) -> Tensor:
    """Uniform ``[0, 1)`` noise for process ``rank`` of ``world`` (see ``share_randn``)."""
    dtype = dtype or torch.get_default_dtype()
    return _keyed(shape, dim, rank, world, generator, torch.device(device), dtype,
                  lambda b: _uniform(b, dtype))


def share_randint(low: int, high: int, shape: Sequence[int], rank: int = 0, world: int = 1,
                  dim: int = 0, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> Tensor:
    """Integers in ``[low, high)`` for process ``rank`` of ``world`` (see ``share_randn``)."""
    return _keyed(shape, dim, rank, world, generator, torch.device(device), torch.int64,
                  lambda b: low + _srl(b, 1) % (high - low))


def batch_randn(module: L.LightningModule, shape: Sequence[int], dim: int = 0,
                generator: torch.Generator | None = None,
                dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise of ``shape``, this process's share of the global batch's.

    In a fit, ``share_randn`` with the trainer's rank and world size; outside one, plain
    ``torch.randn``.

    Args:
        module: The module being trained (its device, rank and world size are used).
        shape: The local shape; ``shape[dim]`` is the local batch size.
        dim: The batch dimension.
        generator: Random-number generator; ``None``: torch's global one.
        dtype: Floating dtype; ``None``: the default.
    """
    if module._trainer is None:
        return torch.randn(tuple(shape), generator=generator, device=module.device, dtype=dtype)
    rank, world = process_share(module)
    return share_randn(shape, rank, world, dim, generator, module.device, dtype)


def batch_rand(module: L.LightningModule, shape: Sequence[int], dim: int = 0,
               generator: torch.Generator | None = None,
               dtype: torch.dtype | None = None) -> Tensor:
    """Uniform ``[0, 1)`` noise of ``shape``, this process's share (see ``batch_randn``)."""
    if module._trainer is None:
        return torch.rand(tuple(shape), generator=generator, device=module.device, dtype=dtype)
    rank, world = process_share(module)
    return share_rand(shape, rank, world, dim, generator, module.device, dtype)


def batch_randint(module: L.LightningModule, low: int, high: int, shape: Sequence[int],
                  dim: int = 0, generator: torch.Generator | None = None) -> Tensor:
    """Integers in ``[low, high)`` of ``shape``, this process's share (see ``batch_randn``)."""
    if module._trainer is None:
        return torch.randint(low, high, tuple(shape), generator=generator, device=module.device)
    rank, world = process_share(module)
    return share_randint(low, high, shape, rank, world, dim, generator, module.device)


class NoiseStream:
    """A plugin's own training-noise generator, saved in checkpoints and continued on resume.

    Seeded from torch's global RNG when first used (so ``seed_everything`` fixes it), on the
    module's device. Every rank draws the same stream; ``batch_randn`` and friends deal each
    process its share. A resumed fit draws the noise an uninterrupted one would have.

    Args:
        key: The checkpoint entry holding the generator's state, e.g. ``"gan_noise_state"``.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._generator: torch.Generator | None = None
        self._state: Tensor | None = None  # loaded from a checkpoint, not yet drawn from

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator on ``device``: continued from the checkpoint, else freshly seeded."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            if self._state is not None:
                self._generator.set_state(self._state)
            else:
                self._generator.manual_seed(int(torch.randint(2**62, ())))
        return self._generator

    def save(self, checkpoint: dict[str, Any]) -> None:
        """Add the generator's state to ``checkpoint`` (from ``on_save_checkpoint``)."""
        if self._generator is not None:
            checkpoint[self.key] = self._generator.get_state()

    def load(self, checkpoint: dict[str, Any]) -> None:
        """Continue from the state in ``checkpoint`` (from ``on_load_checkpoint``)."""
        self._state = checkpoint.get(self.key)
        self._generator = None
