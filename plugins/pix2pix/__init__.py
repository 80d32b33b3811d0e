"""genlab's pix2pix family, registered under the ``genlab.models`` entry point ``pix2pix``."""

from genlab_pix2pix.pix2pix import Pix2Pix

__all__ = ["Pix2Pix"]
