"""Conditions: what a batch carries beside ``x`` to steer a model, and how they are routed.

A batch is a dict: ``x`` holds the data, and each condition sits under its kind's key:

- ``label``: class ids ``(B,)`` long;
- ``text``: captions or prompts, a list of ``B`` strings (a model tokenizes them itself, e.g.
  with ``genlab.nn.TextEncoder``);
- ``source``: a source image ``(B, C, h, w)`` in [-1, 1] (super-resolution, translation);
- ``mask``: ``(B, 1, H, W)``, 1 where a pixel is known (inpainting).

A family declares the kinds it can take (``GenerativeModule.conditions``) and an instance the
ones it needs (``GenerativeModule.condition_keys``, from its hyperparameters). ``route`` picks
those out of a batch and refuses, with one line, a batch missing one or carrying a condition
the model does not take. Labels are the exception on the extra side: a labelled data set serves
them whatever the model, and an unconditional model ignores them.

Every kind has a *null* value, the "no condition" that condition dropout trains on and that
classifier-free guidance contrasts with (``null``): the extra class ``num_classes`` for labels,
the empty string for text, zeros for images and masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from genlab.errors import GenlabError

CONDITION_KINDS: tuple[str, ...] = ("label", "text", "source", "mask")
IGNORABLE = ("label",)  # served by any labelled data set, whether the model uses it or not
PLURALS = {"label": "labels", "text": "texts", "source": "source images", "mask": "masks"}

Conditions = dict[str, Any]  # kind -> Tensor (label, source, mask) or list[str] (text)


def check_kinds(owner: str, kinds: Sequence[str]) -> None:
    """Raise ``TypeError`` unless every one of ``kinds`` is a known condition kind."""
    unknown = [k for k in kinds if k not in CONDITION_KINDS]
    if unknown:
        raise TypeError(f"{owner} names unknown condition kind(s) {unknown}; the kinds are "
                        f"{list(CONDITION_KINDS)}")


def route(batch: dict[str, Any], needs: Sequence[str], owner: str) -> Conditions:
    """The conditions ``needs`` of ``batch``, checked: one missing or one extra is one line.

    Args:
        batch: A batch (``{"x": ..., <kind>: ...}``).
        needs: The condition kinds the model uses (``model.condition_keys``).
        owner: Who needs them, for the error (``"Diffusion (model.text_condition: true)"``).
    """
    missing = [k for k in needs if k not in batch]
    if missing:
        raise GenlabError(f"{owner} needs the condition {missing[0]!r} but the batches have no "
                          f"{PLURALS[missing[0]]} (they carry {_carried(batch)}); have the data "
                          f"serve it ({_data_hint(missing[0])}) or make the model take none")
    extra = [k for k in CONDITION_KINDS if k in batch and k not in needs and k not in IGNORABLE]
    if extra:
        raise GenlabError(f"the batches carry the condition {extra[0]!r} but {owner} does not "
                          f"take it (it takes {list(needs) or 'none'}); turn it off in the "
                          f"data ({_data_hint(extra[0])}) or condition the model on it")
    return {k: batch[k] for k in needs}


def _carried(batch: dict[str, Any]) -> str:
    kinds = [k for k in CONDITION_KINDS if k in batch]
    return f"only {kinds}" if kinds else "no condition"


def _data_hint(kind: str) -> str:
    return {"label": "data.label_column", "text": "data.captions",
            "source": "data.source_size", "mask": "a data module that serves masks"}[kind]


def num_conditioned(conds: Conditions | Tensor | None) -> int | None:
    """The batch size of a condition dict (or label tensor); ``None`` when there is none."""
    if conds is None:
        return None
    if isinstance(conds, Tensor):
        return len(conds)
    return next((len(v) for v in conds.values()), None)


def null(conds: Conditions | Tensor, null_label: int | None = None) -> Conditions | Tensor:
    """The null condition of the same shape: ``null_label`` labels, empty texts, zero images.

    A label tensor alone (the older denoiser interface) gives a label tensor.
    """
    if isinstance(conds, Tensor):
        return torch.full_like(conds, _null_label(null_label))
    return {k: _null_value(k, v, null_label) for k, v in conds.items()}


def drop(conds: Conditions | Tensor, mask: Tensor,
         null_label: int | None = None) -> Conditions | Tensor:
    """``conds`` with the examples where ``mask`` ``(B,)`` is true replaced by the null condition.

    Condition dropout (Ho & Salimans 2022): one network learns conditional and unconditional
    predictions, which classifier-free guidance then mixes.
    """
    empty = null(conds, null_label)
    if isinstance(conds, Tensor):
        return torch.where(mask, empty, conds)
    out: Conditions = {}
    for kind, value in conds.items():
        if isinstance(value, Tensor):
            keep = mask.reshape(-1, *[1] * (value.ndim - 1))
            out[kind] = torch.where(keep, empty[kind], value)
        else:
            out[kind] = [e if m else v for v, e, m in zip(value, empty[kind], mask.tolist())]
    return out


def cat(a: Conditions | Tensor, b: Conditions | Tensor) -> Conditions | Tensor:
    """Two condition batches as one (both halves of classifier-free guidance in one call)."""
    if isinstance(a, Tensor):
        return torch.cat([a, b])
    return {k: torch.cat([v, b[k]]) if isinstance(v, Tensor) else [*v, *b[k]]
            for k, v in a.items()}


def _null_label(null_label: int | None) -> int:
    if null_label is None:
        raise ValueError("a null label needs null_label (the model's num_classes)")
    return null_label


def _null_value(kind: str, value: Any, null_label: int | None) -> Any:
    if kind == "label":
        return torch.full_like(value, _null_label(null_label))
    if kind == "text":
        return [""] * len(value)
    return torch.zeros_like(value)
