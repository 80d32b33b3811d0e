"""genlab's VAE-GAN family, registered under the ``genlab.models`` entry point ``vaegan``."""

from genlab_vaegan.vaegan import VAEGAN, feature_reconstruction, scale_grad

__all__ = ["VAEGAN", "feature_reconstruction", "scale_grad"]
