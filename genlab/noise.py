"""A training-noise generator that a checkpoint can carry, so resumed runs draw the same noise."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor


def noise_generator(module: L.LightningModule, saved_state: Tensor | None) -> torch.Generator:
    """A generator on ``module``'s device for its training noise.

    Fresh: seeded from the global RNG (so ``seed_everything`` fixes it), different on every rank.
    Resuming (``saved_state`` from a checkpoint): continues rank 0's saved stream; the other ranks
    branch off it.

    Args:
        module: The model drawing the noise.
        saved_state: ``get_state()`` of the generator saved in the checkpoint, or ``None``.
    """
    gen = torch.Generator(device=module.device)
    rank = module.global_rank if module._trainer is not None else 0
    if saved_state is not None:
        gen.set_state(saved_state)
        if rank > 0:
            gen.manual_seed(int(torch.randint(2**62, (), generator=gen)) + rank)
    else:
        gen.manual_seed(int(torch.randint(2**62, ())) + rank)
    return gen
