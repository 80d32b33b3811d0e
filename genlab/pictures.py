"""Family pictures for a model's ``pictures`` hook: latent interpolations, reconstructions, strips.

A plugin's ``GenerativeModule.pictures(batch)`` returns ``{name: PIL image}``; the core's
``SampleLogger`` saves each under ``<run dir>/samples/`` and logs it next to the samples, on the
metrics' step axis. These helpers draw the classic ones from a plugin's own decode / reconstruct
functions, so every family with a latent space draws them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor

from genlab.visualize import figure_image, image_grid, scatter_plot


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` ``(B, Z)`` at fractions ``t``.

    ``t`` is ``(S,)``; the result is ``(B, S, Z)``. For Gaussian latents a straight line passes
    through the low-density centre; the great circle keeps typical norms (White 2016).
    """
    a, b, t = a[:, None], b[:, None], t.view(1, -1, 1)
    cos = (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True)
                                           * b.norm(dim=-1, keepdim=True)).clamp_min(1e-12)
    omega = cos.clamp(-1 + 1e-7, 1 - 1e-7).acos()
    return (((1 - t) * omega).sin() * a + (t * omega).sin() * b) / omega.sin()


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation between rows of ``a`` and ``b`` ``(B, Z)`` at ``t``: ``(B, S, Z)``."""
    t = t.view(1, -1, 1)
    return (1 - t) * a[:, None] + t * b[:, None]


def latent_interpolation(decode: Callable[[Tensor], Tensor], z_a: Tensor, z_b: Tensor,
                         steps: int = 8, spherical: bool = False,
                         ends: tuple[Tensor, Tensor] | None = None) -> Image.Image:
    """One row per pair: samples decoded from points on the path from ``z_a[i]`` to ``z_b[i]``.

    Args:
        decode: Latents ``(N, Z)`` -> samples ``(N, ...)``, images in [-1, 1] or points.
        z_a: Start latents ``(P, Z)``.
        z_b: End latents ``(P, Z)``.
        steps: Decoded points along each path.
        spherical: ``slerp`` (Gaussian prior latents) instead of ``lerp`` (posterior means).
        ends: The examples ``z_a`` and ``z_b`` were encoded from, ``(P, ...)`` each: drawn at
            both ends of each row, and the path's ends are then left out.
    """
    t = torch.linspace(0, 1, steps + 2 if ends else steps, device=z_a.device)
    t = t[1:-1] if ends else t
    z = (slerp if spherical else lerp)(z_a, z_b, t)  # (P, steps, Z)
    path = decode(z.flatten(0, 1))
    path = path.view(len(z_a), steps, *path.shape[1:])
    if ends is not None:
        path = torch.cat([ends[0][:, None], path, ends[1][:, None]], 1)
    if path.ndim == 3:  # points (P, S, D): each path as a line
        return paths_plot(path)
    return image_grid(path.flatten(0, 1).clamp(-1, 1), nrow=path.shape[1])


def paths_plot(paths: Tensor, title: str = "latent interpolations") -> Image.Image:
    """Each row of ``paths`` ``(P, S, D)`` drawn as a line through its first two coordinates."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for path in paths.detach().float().cpu():
        ax.plot(path[:, 0], path[:, 1], "-o", markersize=3)
    ax.set_aspect("equal")
    ax.set_title(title)
    return figure_image(fig)


def reconstructions(x: Tensor, *reconstruct: Callable[[Tensor], Tensor],
                    num: int = 32) -> Image.Image:
    """Rows of inputs ``x``, each followed by the rows of each model's reconstructions of them.

    ``reconstructions(x, f)`` shows one model; ``reconstructions(x, f, g)`` puts a second
    model's reconstructions under the first's (a side-by-side of two models). ``num`` inputs at
    most, a multiple of the row length (8) when there are that many.
    """
    cols = min(8, len(x))
    n = max(cols, min(num, len(x)) // cols * cols)
    x = x[:n]
    shape = (-1, cols, *x.shape[1:])
    rows = [x.view(shape)] + [f(x).clamp(-1, 1).view(shape) for f in reconstruct]
    return image_grid(torch.stack(rows, 1).flatten(0, 2), nrow=cols)


def labelled_scatter(points: Tensor, labels: Tensor, title: str = "") -> Image.Image:
    """2-D points (e.g. posterior means of a 2-D latent) coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = points.detach().float().cpu()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    dots = ax.scatter(points[:, 0], points[:, 1], c=labels.cpu(), cmap="tab10", s=4)
    ax.legend(*dots.legend_elements(), loc="upper right", fontsize="small", title="class")
    ax.set_title(title)
    return figure_image(fig)


def strip(frames: Sequence[Tensor], titles: Sequence[str] = ()) -> Image.Image:
    """Snapshots side by side, e.g. a denoising trajectory from noise to sample.

    Images ``(B, C, H, W)``: one row per image, one column per frame. Points ``(B, D)``: one
    scatter plot per frame.
    """
    if frames[0].ndim == 4:
        return image_grid(torch.stack(list(frames), 1).flatten(0, 1).clamp(-1, 1),
                          nrow=len(frames))
    plots = [scatter_plot(f, title=t) for f, t in zip(frames, list(titles) or [""] * len(frames))]
    out = Image.new("RGB", (sum(p.width for p in plots), plots[0].height), "white")
    for k, plot in enumerate(plots):
        out.paste(plot, (k * plots[0].width, 0))
    return out
