"""The random number generators' state in checkpoints, so a resumed run draws the same noise."""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch


class RNGState(L.Callback):
    """Save torch's (CPU and CUDA), NumPy's and Python's RNG state with every checkpoint.

    Lightning does not: a resumed GAN or diffusion model would otherwise draw other noise than
    the uninterrupted run. The state is put back just before the first batch after resuming,
    once the data loaders have been built (building them consumes random numbers).

    A fresh fit with a global seed (``seed_everything``) starts its noise from that seed:
    Lightning re-seeds DDP processes after the model was built, while a 1-process run would
    keep the state model initialisation left, so runs on different numbers of processes would
    draw different noise (``genlab.noise`` then deals each process its share of it).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The generators' current state."""
        _, keys, pos, has_gauss, cached = np.random.get_state()
        # Plain types and tensors only: checkpoints load with weights_only=True.
        numpy = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                 "has_gauss": int(has_gauss), "cached": float(cached)}
        state = {"torch": torch.get_rng_state(), "numpy": numpy, "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Seed the training noise from the run's seed, the same on any number of processes."""
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            seed = int(seed) + 1  # not the stream that initialised the weights
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the state until training resumes."""
        self._pending = state_dict or None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        """Restore the saved state at the first batch after a resume."""
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        numpy = state["numpy"]
        np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                             numpy["has_gauss"], numpy["cached"]))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
