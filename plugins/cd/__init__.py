"""Consistency distillation / consistency training of a diffusion teacher (Song et al. 2023)."""

from genlab_cd.cd import CD

__all__ = ["CD"]
