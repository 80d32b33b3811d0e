"""genlab's adversarial diffusion distillation, registered under the ``genlab.models`` entry
point ``add``."""

from genlab_add.add import ADD

__all__ = ["ADD"]
