"""Lightning callbacks shared by every plugin."""

from genlab.callbacks.samples import SampleLogger, SampleMetrics

__all__ = ["SampleLogger", "SampleMetrics"]
