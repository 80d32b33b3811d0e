"""Points ``(B, D)``: scatter plots over real points, ``.pt`` files, the data's own metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from genlab.modality import Modality
from genlab.visualize import save_rendered, scatter_plot


class PointsModality(Modality):
    """Low-dimensional points, plotted (first two coordinates) and scored by the data module."""

    picture_num = 1000
    eval_num = 2500  # the mode-coverage protocol

    def render(self, samples: Tensor, real: Tensor | None = None, decode: Any = None,
               title: str = "") -> Image.Image:
        """A scatter plot of generated points (blue) over real ones (grey)."""
        return scatter_plot(samples, real, title)

    def save(self, samples: Tensor, out: Path, decode: Any = None) -> list[Path]:
        """The plot (``.png``) and the points themselves (``.pt``)."""
        written = [save_rendered(self.render(samples), out)]
        torch.save(samples.cpu(), out.with_suffix(".pt"))
        return [*written, out.with_suffix(".pt")]

    def check_samples(self, samples: Tensor, name: str,
                      data_shape: tuple[int, ...] | None = None) -> str | None:
        """Points are finite ``(num, D)``."""
        if samples.ndim != 2:
            return f"{name} must return points (num, D)"
        return super().check_samples(samples, name, data_shape)
