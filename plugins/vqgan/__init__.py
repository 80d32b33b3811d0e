"""genlab's VQ-GAN family (VQ-VAE with the adversarial term off), entry point ``vqgan``."""

from genlab_vqgan.vqgan import VQGAN

__all__ = ["VQGAN"]
