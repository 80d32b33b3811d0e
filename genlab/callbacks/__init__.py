"""Lightning callbacks shared by every plugin."""

from genlab.callbacks.channels_last import ChannelsLast
from genlab.callbacks.denormals import FlushDenormals
from genlab.callbacks.divergence import DivergenceGuard
from genlab.callbacks.posthoc_ema import PostHocEMA
from genlab.callbacks.preemption import Preemption
from genlab.callbacks.resume_check import ScheduleCheck
from genlab.callbacks.rng import RNGState
from genlab.callbacks.samples import SampleLogger, SampleMetrics

__all__ = ["ChannelsLast", "DivergenceGuard", "FlushDenormals", "PostHocEMA", "Preemption",
           "RNGState", "SampleLogger", "SampleMetrics", "ScheduleCheck"]
