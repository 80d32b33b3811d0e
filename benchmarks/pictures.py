"""Pictures a benchmark saves beside its JSON: samples (grid or scatter) and training curves.

A script whose result goes to ``<dir>/<name>.json`` writes its pictures to
``<dir>/img/<name>_<tag>.png``, so the committed results keep theirs under
``benchmarks/results/img/`` and ``python -m benchmarks table`` can show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch import Tensor

from genlab.visualize import image_grid, scatter_plot


def picture_path(out_json: str | Path, tag: str) -> Path:
    """Where the picture ``tag`` of the result ``out_json`` goes (its folder is created)."""
    out = Path(out_json)
    path = out.parent / "img" / f"{out.stem}_{tag}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_points(samples: Tensor, out_json: str | Path, tag: str = "samples",
                title: str = "") -> Path:
    """A scatter plot of 2-D samples (at most 2,500, as scored) beside ``out_json``."""
    path = picture_path(out_json, tag)
    image = scatter_plot(samples[:2500], title=title)
    image.resize((image.width * 3 // 5, image.height * 3 // 5)).save(path, optimize=True)
    print(f"picture {path}")
    return path


def save_images(images: Tensor, out_json: str | Path, tag: str = "samples",
                nrow: int = 8) -> Path:
    """A grid of images in [-1, 1] (the first ``nrow**2``) beside ``out_json``."""
    path = picture_path(out_json, tag)
    image_grid(images[: nrow * nrow], nrow=nrow).save(path, optimize=True)
    print(f"picture {path}")
    return path


class Curves(L.Callback):
    """Records the ``train/*`` scalars a model logs, every ``every`` training batches."""

    def __init__(self, every: int = 10) -> None:
        self.every = every
        self.steps: list[int] = []
        self.values: dict[str, list[float]] = {}

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if batch_idx % self.every:
            return
        scalars = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("train/") and v.numel() == 1}
        if not scalars:
            return
        self.steps.append(trainer.fit_loop.total_batch_idx)
        for key, value in scalars.items():
            self.values.setdefault(key, []).append(value)

    def save(self, out_json: str | Path, title: str = "", tag: str = "curves") -> Path | None:
        """A line chart of the recorded scalars beside ``out_json`` (none when nothing was)."""
        if not self.steps:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
        for key, values in sorted(self.values.items()):
            if len(values) == len(self.steps):
                ax.plot(self.steps, values, label=key, linewidth=1)
        ax.set_xlabel("training batch")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = picture_path(out_json, tag)
        fig.savefig(path)
        plt.close(fig)
        print(f"picture {path}")
        return path


def save_checkpoint_grid(ckpt: str | Path, out_json: str | Path, tag: str = "samples",
                         device: str = "cpu", **options: Any) -> Path:
    """A grid of 64 samples (seed 0) of an image checkpoint, with sampling ``options``."""
    from genlab.callbacks.samples import fixed_seed
    from genlab.checkpoint import load_model

    model = load_model(ckpt, device=device)
    with fixed_seed(0, model.device):
        images = model.sample_eval(64, **options)
    return save_images(images, out_json, tag)


def _steps(name: str) -> int:
    """Sampling steps of a result key: ``student_2_step`` -> 2, ``teacher_ddim_50`` -> 50."""
    return int(name.removesuffix("_step").rsplit("_", 1)[1])


def add_steps_chart(sources: list[Path], out: Path, num: int = 2500,
                    groups: tuple[str, ...] = ("student", "teacher"),
                    title: str = "ADD on ring-8: students (1-4 steps) and their diffusion "
                                 "teachers") -> Path:
    """Sampling steps against high-quality share and samples/s, per file and result group.

    ``groups``: prefixes of the result keys drawn as lines (``student_2_step``,
    ``teacher_ddim_50``; ``cd_1_step``, ``add_4_step`` in the distillation comparison).
    """
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (quality, speed) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    colors = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"])
    for source in sources:
        results = json.loads(Path(source).read_text())["results"]
        for who in groups:
            marker = "s--" if who == "teacher" else "o-"
            runs = sorted((_steps(k), v) for k, v in results.items()
                          if k.startswith(who + "_") and isinstance(v, dict))
            if not runs:
                continue
            color = next(colors)
            steps = [s for s, _ in runs]
            label = f"{who}, {Path(source).stem}"
            quality.plot(steps, [v["high_quality_pct"] for _, v in runs], marker, color=color,
                         label=label, linewidth=1)
            speed.plot(steps, [num / v["sample_seconds"] for _, v in runs], marker,
                       color=color, linewidth=1)
    for ax, name in ((quality, "high-quality samples %"), (speed, "samples/s (CPU)")):
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.set_ylabel(name)
    speed.set_yscale("log")
    quality.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
