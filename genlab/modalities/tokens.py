"""Token ids ``(B, T)``: decoded text, per-token likelihood, continuation BLEU and ROUGE."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.text import BLEUScore, ROUGEScore

from genlab.modality import Decode, EvalContext, Modality, reference_batches
from genlab.visualize import decode_tokens, save_rendered


class TokensModality(Modality):
    """Sequences of integer token ids, shown and saved as text.

    Scored by likelihood (loss, perplexity) and, for a model that continues prompts
    (``sample(num, prompt=...)`` returning the prompt's ids then the continuation's), by BLEU
    and ROUGE of its continuations of held-out text against the text that really follows.
    """

    picture_num = 4
    eval_num = 64  # prompts continued for BLEU / ROUGE
    draws_own_samples = True

    def render(self, samples: Tensor, real: Tensor | None = None, decode: Decode | None = None,
               title: str = "") -> list[str]:
        """One text per sequence, through ``decode`` when the model or data has one."""
        return decode_tokens(samples, decode)

    def save(self, samples: Tensor, out: Path, decode: Decode | None = None) -> list[Path]:
        """A ``.txt`` file of the texts (``genlab sample`` prints text files it writes)."""
        return [save_rendered(self.render(samples, decode=decode), out)]

    def score(self, fake: Tensor | None, context: EvalContext, prompt_tokens: int = 64,
              continuation_tokens: int = 32) -> dict[str, Any]:
        """BLEU-4 and ROUGE-1/2/L F1 of prompt continuations (``{}`` without ``prompt``).

        Each of ``--num`` reference rows (the held-out split) is cut into a prompt (its first
        ``prompt_tokens`` tokens, decoded) and a reference continuation (the next
        ``continuation_tokens``); the model continues the prompt with the command's sampling
        options, and its first ``continuation_tokens`` new tokens are compared, as text split
        at whitespace, with the reference (torchmetrics ``BLEUScore`` smoothed, ``ROUGEScore``).

        Args:
            fake: Unused (the continuations are drawn here).
            context: The evaluation context (its ``draw`` and ``decode``).
            prompt_tokens: Tokens of held-out text given as the prompt.
            continuation_tokens: Tokens of continuation compared.
        """
        if (context.draw is None or context.decode is None
                or "prompt" not in context.sample_options):
            return {}
        pairs = continuations(context, context.results["num_samples"], prompt_tokens,
                              continuation_tokens)
        if not pairs:
            return {}
        made, refs = [m for m, _ in pairs], [r for _, r in pairs]
        rouge = ROUGEScore(rouge_keys=("rouge1", "rouge2", "rougeL"))(made, refs)
        context.results["continuations"] = {
            "prompts": len(pairs), "prompt_tokens": prompt_tokens,
            "continuation_tokens": continuation_tokens, "split": context.split,
            "example": {"made": made[0], "reference": refs[0]}}
        return {"bleu": float(BLEUScore(n_gram=4, smooth=True)(made, [[r] for r in refs])),
                **{f"{k.split('_')[0]}": float(rouge[k])
                   for k in ("rouge1_fmeasure", "rouge2_fmeasure", "rougeL_fmeasure")}}

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


@torch.no_grad()
def continuations(context: EvalContext, num: int, prompt_tokens: int,
                  continuation_tokens: int) -> list[tuple[str, str]]:
    """``(continuation, reference)`` texts for up to ``num`` held-out rows long enough to cut."""
    pairs: list[tuple[str, str]] = []
    need = prompt_tokens + continuation_tokens
    for batch in reference_batches(context.datamodule, context.split):
        for row in batch["x"]:
            if len(pairs) >= num:
                return pairs
            if len(row) < need:
                continue
            prompt = context.decode(row[None, :prompt_tokens])[0]
            reference = context.decode(row[None, prompt_tokens:need])[0]
            out = context.draw(1, prompt=prompt)[0]
            made = context.decode(out[prompt_tokens:need][None])[0]
            pairs.append((made, reference))
    return pairs
