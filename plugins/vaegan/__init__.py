"""genlab's VAE-GAN family, registered under the ``genlab.models`` entry point ``vaegan``."""

from genlab_vaegan.pictures import VAEGANPictures
from genlab_vaegan.vaegan import VAEGAN, feature_reconstruction, scale_grad

__all__ = ["VAEGAN", "VAEGANPictures", "feature_reconstruction", "scale_grad"]
