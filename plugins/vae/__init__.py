"""genlab's VAE family, registered under the ``genlab.models`` entry point ``vae``."""

from genlab_vae.vae import VAE, kl_weight

__all__ = ["VAE", "kl_weight"]
