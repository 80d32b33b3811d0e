"""Losses shared by plugins: adversarial objectives and penalties."""

from genlab.losses.adversarial import d_nonsaturating, g_nonsaturating
from genlab.losses.penalties import r1_penalty

__all__ = ["d_nonsaturating", "g_nonsaturating", "r1_penalty"]
