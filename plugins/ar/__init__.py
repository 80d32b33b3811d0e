"""genlab's autoregressive family, registered under the ``genlab.models`` entry point ``ar``."""

from genlab_ar.gpt import GPT

__all__ = ["GPT"]
