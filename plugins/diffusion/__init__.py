"""genlab's diffusion family, registered under the ``genlab.models`` entry point ``diffusion``."""

from genlab_diffusion.diffusion import Diffusion

__all__ = ["Diffusion"]
