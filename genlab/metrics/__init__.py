"""Metrics for generated samples, built on torchmetrics."""

from genlab.metrics.modes import ModeCoverage

__all__ = ["ModeCoverage"]
