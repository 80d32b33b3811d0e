"""genlab-signal: 1-D signals as an external genlab plugin package (data, model and modality)."""

from genlab_signal.data import SinesDataModule
from genlab_signal.metric import SpectralDistance
from genlab_signal.modality import SignalModality
from genlab_signal.model import SignalVAE

__all__ = ["SignalModality", "SignalVAE", "SinesDataModule", "SpectralDistance"]
