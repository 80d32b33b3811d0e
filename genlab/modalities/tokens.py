"""Token ids ``(B, T)``: decoded text, per-token likelihood figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import Tensor

from genlab.modality import Decode, EvalContext, Modality
from genlab.visualize import decode_tokens, save_rendered


class TokensModality(Modality):
    """Sequences of integer token ids, shown and saved as text; scored by likelihood only."""

    picture_num = 4
    eval_num = 0  # no sample metric: evaluate reports the likelihood

    def render(self, samples: Tensor, real: Tensor | None = None, decode: Decode | None = None,
               title: str = "") -> list[str]:
        """One text per sequence, through ``decode`` when the model or data has one."""
        return decode_tokens(samples, decode)

    def save(self, samples: Tensor, out: Path, decode: Decode | None = None) -> list[Path]:
        """A ``.txt`` file of the texts (``genlab sample`` prints text files it writes)."""
        return [save_rendered(self.render(samples, decode=decode), out)]

    def score(self, fake: Tensor, context: EvalContext) -> dict[str, Any]:
        """No sample metric for tokens."""
        return {}

    def likelihood_units(self, x: Tensor) -> int:
        """Predicted tokens: all but the first of each sequence."""
        return x.shape[1] - 1

    def likelihood_report(self, nll: float, examples: int, units: int) -> dict[str, float]:
        """Loss per token (nats), perplexity and bits per token."""
        loss = nll / units
        return {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2)}

    def check_samples(self, samples: Tensor, name: str,
                      data_shape: tuple[int, ...] | None = None) -> str | None:
        """Token ids are integers ``(num, T)`` (of any length ``T``)."""
        if samples.ndim != 2 or samples.is_floating_point():
            return (f"{name} must return integer token ids (num, T), got {samples.dtype} "
                    f"{tuple(samples.shape)}")
        return None
