"""genlab's GAN family, registered under the ``genlab.models`` entry point ``gan``."""

from genlab_gan.gan import GAN

__all__ = ["GAN"]
