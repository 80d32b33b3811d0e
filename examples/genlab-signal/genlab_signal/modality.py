"""The ``signal`` modality: 1-D signals ``(B, length)`` as line plots, ``.npy`` + ``.wav``, spectra.

Registered under ``genlab.modalities`` in this package's pyproject.toml; genlab's core knows
nothing of it.
"""

from __future__ import annotations

import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from genlab.modality import EvalContext, Modality, compute_metrics, data_sample_metrics, take
from genlab.visualize import save_rendered
from genlab_signal.metric import SpectralDistance

REFERENCE = 1000  # real signals the spectral metric compares with during training


def write_wav(signals: Tensor, path: Path, sample_rate: int) -> Path:
    """The signals one after another, each peak-normalized, as 16-bit mono PCM."""
    x = signals.detach().float().cpu().numpy()
    x = x / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-8)
    pcm = (np.clip(x.reshape(-1), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    return path


def line_plots(samples: Tensor, real: Tensor | None = None, title: str = "") -> Image.Image:
    """A grid of line plots, a real signal (grey) behind each generated one (blue)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    x = samples.detach().float().cpu()[:16]
    cols = min(4, len(x))
    rows = -(-len(x) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 1.6 * rows), dpi=80,
                             squeeze=False, sharey=True)
    for i, ax in enumerate(axes.flat):
        if real is not None and i < len(real):
            ax.plot(real[i].float().cpu(), c="0.75", lw=1)
        if i < len(x):
            ax.plot(x[i], c="tab:blue", lw=1)
        ax.set_xticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return image


class SignalModality(Modality):
    """1-D signals: line plots, ``.npy`` and ``.wav`` files, W&B audio, spectral distances.

    Attributes:
        sample_rate: Rate (Hz) the ``.wav`` files are written at.
    """

    picture_num = 16
    eval_num = 1000
    sample_rate = 8000

    def render(self, samples: Tensor, real: Tensor | None = None, decode: Any = None,
               title: str = "") -> Image.Image:
        """Line plots of the first 16 signals."""
        return line_plots(samples, real, title)

    def save(self, samples: Tensor, out: Path, decode: Any = None) -> list[Path]:
        """The plots (``.png``), the signals (``.npy``) and their sound (``.wav``)."""
        written = [save_rendered(self.render(samples), out)]
        np.save(out.with_suffix(".npy"), samples.detach().float().cpu().numpy())
        written += [out.with_suffix(".npy"),
                    write_wav(samples, out.with_suffix(".wav"), self.sample_rate)]
        return written

    def log(self, logger: Any, rendered: Any, samples: Tensor, step: int, **context: Any) -> None:
        """The plots as an image, and to W&B the first signals as audio."""
        super().log(logger, rendered, samples, step, **context)
        from lightning.pytorch.loggers import WandbLogger

        if isinstance(logger, WandbLogger):
            import wandb

            with tempfile.TemporaryDirectory() as tmp:  # W&B copies the file when it logs
                path = write_wav(samples[:4], Path(tmp) / f"step_{step}.wav", self.sample_rate)
                logger.log_metrics({"samples_audio": wandb.Audio(str(path))}, step=step)

    def spectral(self, length: int, real: Any) -> SpectralDistance:
        """A ``SpectralDistance`` already holding the ``real`` signals (batches of ``x``)."""
        metric = SpectralDistance(length)
        for x in real:
            metric.update(x, real=True)
        return metric

    def sample_metrics(self, datamodule: Any) -> dict[str, Any]:
        """The data's own metrics and the spectral distances to its validation signals."""
        length = datamodule.data_shape[0]
        real = take(datamodule.val_dataloader(), REFERENCE)
        return {**data_sample_metrics(datamodule), "spectral_": self.spectral(length, real)}

    def score(self, fake: Tensor, context: EvalContext) -> dict[str, float]:
        """Spectral distances of ``fake`` to as many reference signals (and the data's metrics)."""
        metrics = {**data_sample_metrics(context.datamodule),
                   "spectral_": self.spectral(fake.shape[1], context.real(len(fake)))}
        return compute_metrics(metrics, fake, context)

    def check_samples(self, samples: Tensor, name: str,
                      data_shape: tuple[int, ...] | None = None) -> str | None:
        """Signals are finite floats ``(num, length)``."""
        if samples.ndim != 2 or not samples.is_floating_point():
            return f"{name} must return float signals (num, length), got {tuple(samples.shape)}"
        return super().check_samples(samples, name, data_shape)
