"""Drawing helpers the modalities share: image grids, scatter plots, text, saving a rendering."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

Decode = Callable[[Tensor], list[str]]


def image_grid(images: Tensor, nrow: int | None = None) -> Image.Image:
    """A PIL grid of images given in [-1, 1] as ``(B, C, H, W)``."""
    nrow = nrow or max(1, int(math.sqrt(len(images))))
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, normalize=True,
                     value_range=(-1, 1), pad_value=1.0)
    array = grid.mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def scatter_plot(generated: Tensor, real: Tensor | None = None, title: str = "") -> Image.Image:
    """A PIL scatter plot of 2-D points, real (grey) under generated (blue)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if real is not None:
        r = real.detach().float().cpu()[:, :2]
        ax.scatter(r[:, 0], r[:, 1], s=4, c="0.7", label="real")
    g = generated.detach().float().cpu()[:, :2]
    ax.scatter(g[:, 0], g[:, 1], s=4, c="tab:blue", label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=3)
    ax.set_title(title)
    return figure_image(fig)


def figure_image(fig: Any) -> Image.Image:
    """A matplotlib figure as a PIL RGB image; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return image


def decode_tokens(tokens: Tensor, decode: Decode | None = None) -> list[str]:
    """Text for each row of token ids, through ``decode`` when given, else the ids themselves."""
    if decode is not None:
        return decode(tokens)
    return [" ".join(str(t) for t in row.tolist()) for row in tokens]


def save_rendered(rendered: Image.Image | list[str], path: Path) -> Path:
    """Write a rendered picture as PNG or texts as a text file; returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(rendered, Image.Image):
        path = path.with_suffix(".png")
        rendered.save(path)
    else:
        path = path.with_suffix(".txt")
        path.write_text("\n\n---\n\n".join(rendered) + "\n", encoding="utf-8")
    return path

