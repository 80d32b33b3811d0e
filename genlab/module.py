"""``GenerativeModule``: the contract every model plugin implements."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from PIL import Image
from torch import Tensor

from genlab.callbacks.steps import iteration
from genlab.conditions import check_kinds, route
from genlab.distributed import destroy_process_group_at_exit
from genlab.errors import GenlabError
from genlab.modality import check_modality


@dataclass
class ConformanceCase:
    """A plugin's tiny case for the conformance kit: what ``genlab.testing.check_plugin`` takes.

    Args:
        datamodule: A tiny data module (made on the spot, e.g. with ``genlab.data.tiny``).
        init_args: The model's constructor arguments, as in a config's ``init_args``.
        ddp: Also run a 2-process CPU DDP fit.
        precisions: Lightning precisions a short CPU fit must run under.
        options: Any other ``check_plugin`` keyword (``steps``, ``num``, ``ddp_tolerance``...).
    """

    datamodule: L.LightningDataModule
    init_args: dict[str, Any] = field(default_factory=dict)
    ddp: bool = False
    precisions: tuple[str, ...] = ("bf16-mixed",)
    options: dict[str, Any] = field(default_factory=dict)


class GenerativeModule(L.LightningModule):
    """A LightningModule that can draw samples; the base class of every genlab model plugin.

    What a plugin owes the core:

    - ``modality``: a class attribute naming a registered modality (``"image"``, ``"points"``,
      ``"tokens"``, or one a package registers under ``genlab.modalities``), so the core knows
      how to show, save and measure samples; checked when the class is created. A family whose
      modality follows its data lists every one it can take in ``modalities`` and makes
      ``modality`` a read-only property of its hyperparameters (checked against that list).
    - ``sample(num, **options)``: ``num`` samples in the data's own space: images in [-1, 1] as
      ``(B, C, H, W)``, points as ``(B, D)``, token ids as ``(B, T)``. Its typed keyword
      arguments (with defaults and docstring) are the options of ``genlab sample`` and
      ``genlab evaluate``; a ``Tensor`` option is per sample (one entry for all, or one each).
    - ordinary Lightning: a typed ``__init__`` (jsonargparse builds it from YAML),
      ``training_step`` and ``configure_optimizers``. ``training_step`` logs its terms with
      ``log_train`` (only on the steps the loggers keep).
    - optionally ``log_likelihood(batch)``, per-example log-likelihood in nats, used for
      ``val/nll`` and by ``genlab evaluate``.
    - optionally ``pictures(batch)``, the family's own pictures (reconstructions, denoising
      trajectories, latent interpolations; helpers in ``genlab.pictures``), which the core's
      ``SampleLogger`` saves and logs with the samples.
    - optionally ``conformance_case(root)``, the tiny model + data that ``genlab.testing`` and
      genlab's own ``tests/test_plugins.py`` run the conformance kit on.

    Batches are dicts: ``batch["x"]`` holds the data, and conditions sit beside it under their
    kind's key (``genlab.conditions``): ``label`` class ids, ``text`` strings, a ``source``
    image, a ``mask``. A family lists the kinds it can take in the class attribute
    ``conditions``; ``condition_keys`` says which ones an instance needs (by default
    ``label`` when ``num_classes`` is set), and ``conditions_of(batch)`` routes them out of a
    batch with one-line errors. ``sample()`` takes the same conditions as keyword arguments
    (``labels``, ``prompt``, ``source``...), so ``genlab sample`` offers them as options.
    When the labels are clusters of the data (``data.clusters``), ``label_prior`` holds their
    shares; a family draws the labels it is not given with
    ``genlab.recipes.sample_labels(..., prior=self.label_prior)``.
    """

    modality: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]] = ()
    conditions: ClassVar[tuple[str, ...]] = ()
    # The share of each class when the labels are clusters of the data (``data.clusters``):
    # taken from the data module at fit, kept in the checkpoint; sampled labels follow it.
    label_prior: Tensor | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        modality = getattr(cls, "modality", None)
        if isinstance(modality, property):
            if not cls.modalities:
                raise TypeError(f"{cls.__name__}.modality is a property; list every modality it "
                                f"can take in the class attribute `modalities`")
            for name in cls.modalities:
                check_modality(f"{cls.__name__}.modalities holds", name)
        elif modality is not None:
            check_modality(f"{cls.__name__}.modality is", modality)
        check_kinds(f"{cls.__name__}.conditions", cls.conditions)

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """The condition kinds this instance needs in every batch (a subset of ``conditions``).

        The default: ``("label",)`` when the family takes labels and ``num_classes`` is set.
        A family whose other conditions follow its hyperparameters overrides it.
        """
        takes_labels = "label" in self.conditions and _hparam(self, "num_classes")
        return ("label",) if takes_labels else ()

    def conditions_of(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The conditions of ``batch`` this model needs, by kind (``genlab.conditions.route``).

        A missing condition, or one the model does not take, is a one-line ``GenlabError``.
        """
        return route(batch, self.condition_keys, f"{type(self).__name__}")

    def validate_modality(self) -> None:
        """Raise ``TypeError`` unless this model's modality is one its class declares.

        A class that declares none is left to the conformance kit, which requires one.
        """
        declared = type(self).modalities or (getattr(type(self), "modality", None),)
        if declared != (None,):
            check_modality(f"{type(self).__name__}.modality is", self.modality, declared)

    def sample(self, num: int, **options: Any) -> Tensor:
        """Draw ``num`` samples in the data's own space; family options are keyword arguments."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample(num, **options)")

    def sample_options(self) -> tuple[type, str, set[str]]:
        """Where ``sample()``'s options are declared: ``(class, method, names left out)``.

        ``genlab sample`` / ``genlab evaluate`` build their options from that method's typed
        keyword arguments. The default is this class's own ``sample`` (less ``num``); a model
        that forwards its options to a part (a two-stage model to its prior) names the part's
        method and leaves out what it sets itself.
        """
        return type(self), "sample", {"num"}

    def log_likelihood(self, batch: dict[str, Tensor]) -> Tensor:
        """Per-example log-likelihood (or a bound) of ``batch["x"]`` in nats, shape ``(B,)``."""
        raise NotImplementedError(f"{type(self).__name__} has no log-likelihood")

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """The family's own pictures by name, e.g. ``{"reconstructions": <PIL image>}``.

        Called by ``genlab.callbacks.SampleLogger`` each time it logs samples, with the model in
        eval mode, without gradients and under its fixed seed; ``batch`` holds a few training
        examples (``"x"``, ``"label"``) on the model's device. Each picture is written to
        ``samples/<name>_step_<step>.png`` and logged as ``pictures/<name>`` at the step of the
        metrics. ``genlab.pictures`` draws the classic ones (latent interpolations,
        reconstructions, trajectory strips). The default draws none.
        """
        return {}

    def log_train(self, metrics: Mapping[str, Tensor | float]) -> None:
        """``self.log_dict(metrics, prog_bar=True)`` on the steps the loggers write, and the first.

        Lightning's loggers keep a ``training_step`` value once every
        ``trainer.log_every_n_steps``, but ``self.log`` costs about 0.4 ms a call on a CPU
        whether the value is kept or not: 2 ms a step for a family logging five terms, a sixth
        of a small MLP's step. Between those steps the progress bar and
        ``trainer.callback_metrics`` hold the values last logged. Every step is logged under
        ``fast_dev_run`` or with ``log_every_n_steps: 1``. Every step's values are kept in
        ``last_train_metrics`` (no tensor copy, no sync), where ``DivergenceGuard`` reads them.
        """
        self.last_train_metrics = dict(metrics)
        trainer = self._trainer
        if trainer is None or trainer.fast_dev_run or is_logging_step(trainer):
            self.log_dict(self.last_train_metrics, prog_bar=True)

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase | None:
        """A tiny case of this plugin for the conformance kit (``genlab.testing.check_case``).

        ``root`` is a scratch directory for files the case needs (tiny data, a teacher
        checkpoint). genlab's ``tests/test_plugins.py`` runs the kit on the case of every
        registered plugin, as a third party's own test can (``check_case``). ``None``: no case.
        """
        return None

    @property
    def has_log_likelihood(self) -> bool:
        """Whether this model overrides ``log_likelihood``."""
        return type(self).log_likelihood is not GenerativeModule.log_likelihood

    def setup(self, stage: str) -> None:
        """Check the modality, tear DDP down at exit, take the data's ``label_prior`` if any.

        Overrides call ``super()``.
        """
        destroy_process_group_at_exit()
        self.validate_modality()
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        prior = getattr(datamodule, "label_prior", None)
        if stage == "fit" and prior is not None:
            self.label_prior = prior.detach().cpu()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record which plugin wrote the checkpoint and on what data; overrides call ``super()``.

        The data module's class and hyperparameters let ``genlab evaluate`` find the reference
        data without a config.
        """
        from genlab.registry import origin
        from genlab.tracking import wandb_run

        cls = type(self)
        checkpoint["genlab"] = {**origin(cls), "class_path": f"{cls.__module__}.{cls.__qualname__}"}
        run = wandb_run(self._trainer.loggers) if self._trainer else None
        if run is not None:
            checkpoint["genlab"]["wandb"] = run  # a resumed fit continues this W&B run
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and datamodule.hparams:
            data_cls = type(datamodule)
            takes = inspect.signature(data_cls.__init__).parameters
            init_args = {k: v for k, v in datamodule.hparams.items() if k in takes}
            checkpoint["genlab"]["data"] = {
                "class_path": f"{data_cls.__module__}.{data_cls.__qualname__}",
                "init_args": init_args,
            }
        if self.label_prior is not None:
            checkpoint["genlab"]["label_prior"] = self.label_prior.tolist()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore ``label_prior``; overrides call ``super()``."""
        prior = checkpoint.get("genlab", {}).get("label_prior")
        if prior is not None:
            self.label_prior = torch.tensor(prior)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Log ``val/nll`` when the family has a likelihood.

        Defined even when it logs nothing so that the validation loop runs and sample-based
        metrics (``genlab.callbacks.SampleMetrics``) are computed at its end.
        """
        if self.has_log_likelihood:
            nll = -self.log_likelihood(batch).mean()
            self.log("val/nll", nll, prog_bar=True, sync_dist=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Log ``test/nll`` when the family has a likelihood."""
        if self.has_log_likelihood:
            self.log("test/nll", -self.log_likelihood(batch).mean(), sync_dist=True)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Draw as many samples as the batch holds examples."""
        x = batch["x"] if isinstance(batch, dict) else batch
        return self.sample(len(x))

    @torch.no_grad()
    def sample_eval(self, num: int, **options: Any) -> Tensor:
        """``sample`` in eval mode without gradients, restoring the previous mode afterwards."""
        was_training = self.training
        self.eval()
        try:
            return self.sample(num, **options)
        finally:
            self.train(was_training)


def check_data_shape(model: L.LightningModule, datamodule: L.LightningDataModule | None) -> None:
    """Raise ``GenlabError`` when the data's example shape is not the one the model was built for.

    Both sides opt in with a ``data_shape`` attribute (e.g. ``(C, H, W)`` or ``(D,)``); the check
    runs before training so a mismatch costs seconds, not a crashed run.
    """
    want = getattr(model, "data_shape", None)
    have = getattr(datamodule, "data_shape", None)
    if want is None or have is None or tuple(want) == tuple(have):
        return
    raise GenlabError(
        f"the data gives examples of shape {tuple(have)} but {type(model).__name__} expects "
        f"{tuple(want)}; make them agree (the data's image_size/channels or the model's shape)"
    )


def is_logging_step(trainer: L.Trainer) -> bool:
    """Whether ``GenerativeModule.log_train`` logs in this training batch.

    The batches whose values Lightning's loggers write (every ``log_every_n_steps``-th), and
    the first, so that the progress bar has values from the start.
    """
    return iteration(trainer) == 0 or trainer._logger_connector.should_update_logs


def _hparam(model: L.LightningModule, key: str) -> Any:
    return getattr(model, "hparams", {}).get(key)


def check_model_and_data(
    model: L.LightningModule, datamodule: L.LightningDataModule | None
) -> None:
    """Raise ``GenlabError`` when the model cannot train on the data, before training starts.

    Checks the example shape (``check_data_shape``), that a token model's ``vocab_size`` holds
    every token of the data, and that a conditional model (``num_classes`` set) gets labels of at
    most that many classes.
    """
    check_data_shape(model, datamodule)
    if datamodule is None:
        return
    check_conditions(model, datamodule)
    vocab, data_vocab = _hparam(model, "vocab_size"), getattr(datamodule, "vocab_size", None)
    if vocab is not None and data_vocab is not None and vocab < data_vocab:
        raise GenlabError(
            f"the data has {data_vocab} distinct tokens but model.vocab_size is {vocab}; "
            f"set model.vocab_size: {data_vocab} (or leave it null to take the data's)"
        )
    classes = _hparam(model, "num_classes")
    if classes is None or not hasattr(datamodule, "num_classes"):
        return
    data_classes = datamodule.num_classes
    if data_classes is None:
        raise GenlabError(
            f"{type(model).__name__} is conditional (model.num_classes: {classes}) but the data "
            f"has no labels; set data.label_column, or model.num_classes: null"
        )
    if data_classes > classes:
        raise GenlabError(
            f"the data has {data_classes} classes but model.num_classes is {classes}; "
            f"set model.num_classes: {data_classes}"
        )


def check_conditions(model: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """Raise ``GenlabError`` when the data does not serve a condition the model needs.

    Both sides opt in: the model with ``condition_keys``, the data module with ``conditions``
    (the kinds its batches carry).
    """
    # Labels keep their own check below (the number of classes too).
    needs = [k for k in getattr(model, "condition_keys", ()) if k != "label"]
    served = getattr(datamodule, "conditions", None)
    if served is None:
        return
    route(dict.fromkeys(served), needs, type(model).__name__)
