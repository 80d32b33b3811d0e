"""Lightning callbacks shared by every plugin."""

from genlab.callbacks.preemption import Preemption
from genlab.callbacks.samples import SampleLogger, SampleMetrics

__all__ = ["Preemption", "SampleLogger", "SampleMetrics"]
