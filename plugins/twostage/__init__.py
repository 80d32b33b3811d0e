"""Two-stage models (``twostage``): a prior over a frozen autoencoder's codes or latents."""

from genlab_twostage.twostage import TwoStage

__all__ = ["TwoStage"]
