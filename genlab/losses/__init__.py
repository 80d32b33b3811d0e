"""Losses shared by plugins: adversarial objectives and penalties."""

from genlab.losses.adversarial import d_nonsaturating, g_nonsaturating

__all__ = ["d_nonsaturating", "g_nonsaturating"]
