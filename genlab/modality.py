"""Modalities: what a plugin's samples are, and how the core shows, saves, logs and scores them.

A modality is a plugin like a model family: a ``Modality`` subclass registered under the entry-point
group ``genlab.modalities``. The core's own (``image``, ``points``, ``tokens``) register through
genlab's pyproject.toml exactly as a third party's would::

    [project.entry-points."genlab.modalities"]
    signal = "genlab_signal.modality:SignalModality"

A ``GenerativeModule`` names its modality (``modality = "signal"``); ``SampleLogger``,
``SampleMetrics``, ``genlab sample`` and ``genlab evaluate`` then go through that class.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from genlab.errors import GenlabError
from genlab.registry import MODALITY_GROUP, plugins
from genlab.visualize import save_rendered

Rendered = Image.Image | list[str]
Decode = Callable[[Tensor], list[str]]


@dataclass
class EvalContext:
    """What ``genlab evaluate`` hands a modality to score generated samples against.

    Attributes:
        datamodule: The reference data module, set up for ``split``.
        split: The reference split (``test``, ``val`` or ``train``).
        batch_size: Examples per metric update.
        device: Where metrics run.
        results: The report being built; a modality may add a record of its protocol
            (e.g. ``results["extractor"]``).
        draw: Draws from the model with the command's ``sample()`` options, keyword overrides
            on top (``draw(num, prompt="...")``), for a modality that draws its own samples.
        decode: The model's ``decode`` (token ids -> texts), if it has one.
        sample_options: The names of the model's ``sample()`` options.
    """

    datamodule: Any
    split: str
    batch_size: int
    device: torch.device
    results: dict[str, Any]
    draw: Callable[..., Tensor] | None = None
    decode: Decode | None = None
    sample_options: tuple[str, ...] = ()

    def real(self, num: int, split: str | None = None) -> Iterator[Tensor]:
        """At most ``num`` real examples (``batch["x"]``) of ``split`` (default: the reference)."""
        return take(reference_batches(self.datamodule, split or self.split), num)


def reference_batches(datamodule: Any, split: str) -> Iterable[dict]:
    """The batches of ``split`` (``train``, ``val`` or ``test``) of a set-up data module."""
    loader = getattr(datamodule, f"{split}_dataloader", None)
    if split not in ("train", "val", "test") or loader is None:
        raise GenlabError(f"--split must be train, val or test, got {split!r}")
    try:
        return loader()
    except GenlabError:
        raise
    except Exception as err:
        raise GenlabError(f"the data has no {split} split ({err}); pass --split val") from None


def take(batches: Iterable[dict], num: int) -> Iterator[Tensor]:
    """The ``x`` of ``batches``, ``num`` examples in all at most."""
    left = num
    for batch in batches:
        if left <= 0:
            return
        x = batch["x"][:left]
        left -= len(x)
        yield x


def data_sample_metrics(datamodule: Any) -> dict[str, Any]:
    """The data module's own ``sample_metrics()`` (e.g. mode coverage on toy data), if any."""
    factory = getattr(datamodule, "sample_metrics", None)
    return factory() if callable(factory) else {}


def flat_values(prefix: str, value: Any) -> dict[str, float]:
    """A metric's ``compute()`` (a tensor, a dict or a (mean, std) pair) as plain floats."""
    if isinstance(value, dict):
        return {prefix + k: float(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {prefix: float(value[0]), f"{prefix}_std": float(value[1])}
    return {prefix: float(value)}


def compute_metrics(metrics: dict[str, Any], fake: Tensor,
                    context: EvalContext) -> dict[str, float]:
    """Update each metric (keyed by the prefix of its names) with ``fake``; their values."""
    scores: dict[str, float] = {}
    for prefix, metric in metrics.items():
        metric = metric.to(context.device)
        for x in fake.split(context.batch_size):
            metric.update(x.to(context.device))
        scores.update(flat_values(prefix, metric.compute()))
    return scores


def log_rendered(logger: Any, rendered: Rendered, step: int, key: str = "samples") -> None:
    """Log a picture (PIL image) or texts under ``key`` to a W&B or TensorBoard logger.

    Other loggers are skipped. ``Modality.log`` and the model's own pictures go through here.
    """
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    is_picture = isinstance(rendered, Image.Image)
    if isinstance(logger, WandbLogger) and is_picture:
        logger.log_image(key, [rendered], step=step)
    elif isinstance(logger, WandbLogger):
        logger.log_text(key, columns=["step", "text"],
                        data=[[step, text] for text in rendered], step=step)
    elif isinstance(logger, TensorBoardLogger) and is_picture:
        array = torch.from_numpy(np.asarray(rendered)).permute(2, 0, 1)
        logger.experiment.add_image(key, array, global_step=step)
    elif isinstance(logger, TensorBoardLogger):
        logger.experiment.add_text(key, "\n\n---\n\n".join(rendered), global_step=step)


SAMPLE_COLUMNS = ["step", "seed", "label", "sample"]
# One samples table per W&B run (its logger), grown row by row: wandb logs only the new rows.
_sample_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def log_sample_table(logger: Any, rendered: Rendered, step: int, seed: int | None = None,
                     labels: Tensor | None = None, key: str = "samples") -> None:
    """Add samples to the run's one incremental W&B table ``key`` and log it at ``step``.

    Columns: ``step`` (the metrics' step axis), ``seed`` (of the noise), ``label`` (the classes
    the samples were drawn with, ``None`` for an unconditional model) and ``sample``: the picture
    (one row, its labels joined by commas) or one row per text.
    """
    import wandb

    table = _sample_tables.get(logger)
    if table is None:
        table = _sample_tables[logger] = wandb.Table(columns=SAMPLE_COLUMNS,
                                                     log_mode="INCREMENTAL")
    ids = None if labels is None else [int(y) for y in labels.reshape(-1).tolist()]
    if isinstance(rendered, Image.Image):
        table.add_data(step, seed, None if ids is None else ",".join(map(str, ids)),
                       wandb.Image(rendered))
    else:
        for i, text in enumerate(rendered):
            label = None if ids is None or i >= len(ids) else str(ids[i])
            table.add_data(step, seed, label, text)
    logger.log_metrics({key: table}, step=step)


class Modality:
    """How samples of one kind become a picture, files, logger media and scores.

    Subclass it, implement ``render`` (at least), and register the class under the entry-point
    group ``genlab.modalities``; models then name it in their ``modality`` attribute.
    Everything else has a default that works for any picture-like rendering.

    Attributes:
        picture_num: Samples ``SampleLogger`` draws for one picture.
        eval_num: Samples ``genlab evaluate`` draws by default (0: it scores none).
        draws_own_samples: ``score`` draws what it scores through ``context.draw`` (e.g.
            continuations of prompts); ``genlab evaluate`` then passes ``fake=None`` and
            ``eval_num`` is the number of draws it makes.
        pipeline_tag: The Hugging Face Hub task of such models, for ``genlab export``'s card.
    """

    picture_num: ClassVar[int] = 64
    eval_num: ClassVar[int] = 1000
    draws_own_samples: ClassVar[bool] = False
    pipeline_tag: ClassVar[str | None] = None

    def render(self, samples: Tensor, real: Tensor | None = None, decode: Decode | None = None,
               title: str = "") -> Rendered:
        """A PIL picture of ``samples`` (or a list of texts), over ``real`` examples if given.

        ``decode`` turns samples into text when the model or data has a decoder (tokens).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement render()")

    def save(self, samples: Tensor, out: Path, decode: Decode | None = None) -> list[Path]:
        """Write ``samples`` for ``genlab sample`` at ``out`` (a stem or a folder); the files."""
        return [save_rendered(self.render(samples, decode=decode), out)]

    def log(self, logger: Any, rendered: Rendered, samples: Tensor, step: int, *,
            seed: int | None = None, labels: Tensor | None = None) -> None:
        """Send a rendering to one Lightning logger (W&B and TensorBoard; others are skipped).

        W&B gets a row of the run's one ``samples`` table (``log_sample_table``), with the
        ``seed`` of the noise and the ``labels`` the samples were drawn with (``None``:
        unconditional); an override that adds media calls this one with the same arguments.
        """
        from lightning.pytorch.loggers import WandbLogger

        if isinstance(logger, WandbLogger):
            log_sample_table(logger, rendered, step, seed, labels)
        else:
            log_rendered(logger, rendered, step)

    def sample_metrics(self, datamodule: Any) -> dict[str, Any]:
        """The torchmetrics ``SampleMetrics`` updates with generated samples, by name prefix.

        Default: the data module's own ``sample_metrics()``.
        """
        return data_sample_metrics(datamodule)

    def score(self, fake: Tensor, context: EvalContext) -> dict[str, float]:
        """``genlab evaluate``'s scores of generated ``fake`` samples.

        Default: the ``sample_metrics`` updated with ``fake``. A subclass may take extra typed
        keyword arguments: they become ``genlab evaluate`` options, as ``sample()``'s do.
        """
        return compute_metrics(self.sample_metrics(context.datamodule), fake, context)

    def likelihood_units(self, x: Tensor) -> int:
        """Units one example's NLL is spread over (dimensions; tokens: predicted tokens)."""
        return x[0].numel()

    def likelihood_report(self, nll: float, examples: int, units: int) -> dict[str, float]:
        """NLL figures from the summed ``nll`` (nats) over ``examples`` and ``units``."""
        return {"nll": nll / examples, "bits_per_dim": nll / units / math.log(2)}

    def check_samples(self, samples: Tensor, name: str,
                      data_shape: tuple[int, ...] | None = None) -> str | None:
        """What is wrong with ``sample()`` output (``name``), or ``None`` (conformance kit).

        Default: finite values, and examples of the data's shape when it is known.
        """
        if not torch.isfinite(samples).all():
            return f"{name} returned NaN or Inf"
        if data_shape is not None and tuple(samples.shape[1:]) != tuple(data_shape):
            return (f"{name} returned examples of shape {tuple(samples.shape[1:])}; the data's "
                    f"are {tuple(data_shape)}")
        return None


def modality_names() -> list[str]:
    """Names registered under ``genlab.modalities`` (read without importing them)."""
    return [p.name for p in plugins(MODALITY_GROUP, load=False)]


@functools.cache
def get_modality(name: str) -> Modality:
    """The registered modality ``name``; a ``GenlabError`` lists the registered ones."""
    for plugin in plugins(MODALITY_GROUP):
        if plugin.name == name:
            if plugin.cls is None:
                raise GenlabError(f"modality {name!r} from package {plugin.package} failed to "
                                  f"load: {plugin.error}")
            if not (isinstance(plugin.cls, type) and issubclass(plugin.cls, Modality)):
                raise GenlabError(f"modality {name!r} ({plugin.target}) is not a "
                                  f"genlab.modality.Modality subclass")
            return plugin.cls()
    raise GenlabError(f"no modality named {name!r}; registered: {', '.join(modality_names())} "
                      f"(install the package that provides it)")


def modality_of(model: Any) -> Modality:
    """The ``Modality`` of a model (its ``modality`` name looked up in the registry)."""
    return get_modality(model.modality)


def check_modality(owner: str, name: Any, names: Iterable[str] | None = None) -> None:
    """Raise ``TypeError`` unless ``name`` is in ``names`` (default: the registered modalities).

    Read from entry-point metadata only, so checking at class creation imports nothing.
    """
    where = "declared by the class" if names is not None else f"registered in {MODALITY_GROUP!r}"
    names = list(modality_names() if names is None else names)
    if name not in names:
        raise TypeError(f"{owner} {name!r}; it must be one of the modalities {where}: "
                        f"{', '.join(names)}")
