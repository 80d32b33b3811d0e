"""``genlab fit|validate|test|predict``: LightningCLI with plugins loaded, one directory per run.

W&B falls back to offline, and user mistakes get one-line errors. Imported only for these
subcommands, because Lightning takes seconds to import (``genlab.cli`` dispatches).
"""

from __future__ import annotations

import json
import logging
import pydoc
import shutil
import sys
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.model_helpers import is_overridden
from rich.console import Console

from genlab.callbacks import (
    ChannelsLast,
    DivergenceGuard,
    FlushDenormals,
    Preemption,
    RNGState,
    SampleLogger,
    SampleMetrics,
    ScheduleCheck,
)
from genlab.callbacks.monitors import monitors
from genlab.callbacks.steps import count_iterations
from genlab.checkpoint import AtomicCheckpointIO, local_checkpoint, read_checkpoint
from genlab.errors import GenlabError, explain_parse_error, rejected_by_optimizer
from genlab.launch import check_cpu_processes, current_launch
from genlab.module import GenerativeModule, check_data_shape, check_model_and_data
from genlab.registry import DATA_GROUP, MODEL_GROUP, load_plugins, plugins
from genlab.run_dir import claim_run_dir, latest_checkpoint, newest_checkpoint, run_dir_of
from genlab.sharding import check_strategy
from genlab.tracking import offline_message, offline_reason, run_metadata

console = Console(stderr=True, highlight=False, soft_wrap=True)

DESCRIPTION = (
    "genlab: generative models on PyTorch Lightning. Models are plugins chosen by class name "
    "(`model: {class_path: GAN}`); `genlab list` shows the installed ones. "
    "`genlab sample --ckpt PATH` draws samples from a checkpoint, `genlab evaluate --ckpt PATH` "
    "scores it, `genlab classifier --source DATA` trains the offline FID extractor, "
    "`genlab new-plugin NAME` writes a model-plugin package to start from."
)


class SaveRunConfig(SaveConfigCallback):
    """Write ``config.yaml`` into the run directory and send the resolved config to the loggers.

    A fit writes it when training starts, after the checkpoint is restored, not at ``setup``: a
    resume refused while restoring leaves the run's own ``config.yaml`` as it was.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Other stages write now; a fit waits for ``on_train_start``."""
        if stage != "fit":
            super().setup(trainer, pl_module, stage)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the fit's config, the checkpoint (if any) restored."""
        super().setup(trainer, pl_module, "fit")

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Log the resolved config and the run's metadata (versions, commit, hardware)."""
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        metadata = run_metadata(pl_module)
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": resolved, "genlab": metadata})


def _class_name(logger_cfg: Any) -> str:
    return str(getattr(logger_cfg, "class_path", "")).rsplit(".", 1)[-1]


# What genlab sets on a W&B logger for this run only; config.yaml keeps what the user asked.
RUN_ONLY_KEYS = ("name", "id", "offline", "mode", "settings", "group", "job_type")


def _configure_logger(cfg: Namespace, run_dir: Path, run_name: str, resume_id: str | None,
                      group: dict[str, str] | None = None) -> Namespace:
    """Point a logger's files at the run directory; make a W&B logger go offline when it must.

    A W&B run gets ``group`` (``group``, ``job_type``) unless the config sets them: a fit's
    group is its run, which a validate or test of its checkpoint joins.
    """
    args = cfg.init_args
    kind = _class_name(cfg)
    if kind in ("CSVLogger", "TensorBoardLogger"):
        args.save_dir, args.name, args.version = str(run_dir), "", ""
    elif kind == "WandbLogger":
        args.save_dir = str(run_dir)
        if args.get("name") is None:
            args.name = f"{run_name}/{run_dir.name}"
        if args.get("id") is None and resume_id is not None:
            args.id = resume_id  # a resumed fit continues the checkpoint's W&B run
        for key, value in (group or {}).items():
            if args.get(key) is None:
                setattr(args, key, value)
        reason = "offline=true in the config" if args.get("offline") else offline_reason()
        if reason is not None:
            # wandb.init's own mode, not Lightning's offline flag: Lightning refuses log_model
            # offline, while wandb queues offline artifacts for `wandb sync`.
            args.offline, args.mode = False, "offline"
            if args.get("settings") is None:
                args.settings = {"silent": True}  # our one line replaces wandb's banner
            if current_launch().rank == 0:  # one line per launch, not one per rank
                console.print(offline_message(reason, str(run_dir)))
    return cfg


def _configure_loggers(trainer_cfg: Namespace, run_dir: Path, run_name: str,
                       resume_id: str | None = None, group: dict[str, str] | None = None
                       ) -> list[tuple[Namespace, dict[str, Any]]]:
    """Configure every logger; returns each W&B logger's ``init_args`` and its asked values.

    ``group``: the W&B ``group`` (and ``job_type``) this run joins, by default its own.
    """
    logger = trainer_cfg.get("logger")
    if logger is False:
        return []
    if logger in (None, True):  # Lightning's default logger, but inside the run directory
        logger = Namespace(class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace())
    loggers = logger if isinstance(logger, list) else [logger]
    asked = [(lg.init_args, {k: lg.init_args.get(k) for k in RUN_ONLY_KEYS})
             for lg in loggers if _class_name(lg) == "WandbLogger"]
    group = group or {"group": f"{run_name}/{run_dir.name}"}
    configured = [_configure_logger(lg, run_dir, run_name, resume_id, group) for lg in loggers]
    trainer_cfg.logger = configured if isinstance(logger, list) else configured[0]
    return asked


def _auto_checkpoint(cfg: Namespace, run_name: str, stage: str) -> str | None:
    """``--ckpt_path auto``: the newest checkpoint of this launch's run, ``None`` for a fresh start.

    Under a scheduler's job id (SLURM) that is the job's own run directory, which a requeued job
    claims again; otherwise ``--run.version``'s, or the newest run of the config (as ``last``).
    """
    root = cfg.run.root
    if cfg.run.version is not None:
        found = newest_checkpoint(Path(root, run_name, cfg.run.version))
    elif current_launch().job_id is not None:
        found = newest_checkpoint(claim_run_dir(root, run_name, stage=stage))
    else:
        found = latest_checkpoint(root, run_name)
    return None if found is None else str(found)


def _resolve_checkpoint(cfg: Namespace, run_name: str, stage: str = "fit") -> dict[str, Any]:
    """Vet ``--ckpt_path`` before Lightning reads it.

    ``last`` is the config's newest checkpoint; ``auto`` the same or none (``_auto_checkpoint``).

    Returns the checkpoint's genlab record; a ``GenlabError`` for a missing, corrupt, untrusted or
    foreign checkpoint.
    """
    if cfg.ckpt_path == "auto":
        cfg.ckpt_path = _auto_checkpoint(cfg, run_name, stage)
        if cfg.ckpt_path is None:
            return {}  # nothing to resume yet: the first start of the job
    if cfg.ckpt_path == "last":
        found = latest_checkpoint(cfg.run.root, run_name)
        if found is None:
            raise GenlabError(f"--ckpt_path last: no run under {cfg.run.root}/{run_name}/ has "
                              f"checkpoints/last.ckpt; start one without --ckpt_path (or with "
                              f"--ckpt_path auto)")
        cfg.ckpt_path = str(found)
    cfg.ckpt_path = str(local_checkpoint(cfg.ckpt_path))  # a W&B artifact: its downloaded file
    saved = read_checkpoint(cfg.ckpt_path)
    record = saved.get("genlab", {})
    written_by = saved.get("hyper_parameters", {}).get("_class_path") or record.get("class_path")
    wanted = cfg.model.get("class_path") if cfg.get("model") else None
    if written_by and wanted and written_by != wanted:
        raise GenlabError(f"{cfg.ckpt_path} was written by {written_by.rsplit('.', 1)[-1]} but "
                          f"the config trains {wanted.rsplit('.', 1)[-1]}; resume with the "
                          f"config of the run that wrote it")
    return record


def _init_args(cfg: Namespace | None) -> dict[str, Any]:
    """The model's init args as plain values (tuples as lists), ``{}`` without a model."""
    args = cfg.get("model.init_args") if cfg is not None and cfg.get("model") else None
    if not isinstance(args, Namespace):
        return {}
    return {key: json.loads(json.dumps(value, default=str))
            for key, value in args.as_dict().items()}


def _say_overridden(asked: dict[str, Any], used: dict[str, Any], ckpt_path: str | None) -> None:
    """One line naming the config's model values that a checkpoint's hyperparameters replaced.

    LightningCLI builds a resumed model from the checkpoint's hyperparameters, so a changed
    ``--model.init_args.lr`` would otherwise be dropped without a word.
    """
    changed = [f"{key}={asked[key]!r} (checkpoint: {used[key]!r})"
               for key in asked if key in used and asked[key] != used[key]]
    if changed and current_launch().rank == 0:
        console.print(f"note: the model is built from {ckpt_path}'s hyperparameters; not used "
                      f"from the config: {', '.join(changed)}")


def _run_name(cfg: Namespace) -> str:
    if cfg.get("run") and cfg.run.get("name"):
        return cfg.run.name
    configs = cfg.get("config") or []
    if configs:
        return Path(str(configs[-1])).stem
    return _class_name(cfg.model).lower() or "run"


def _vocab_from_data(cfg: Namespace) -> None:
    """A model's ``vocab_size`` left null takes the data module's (e.g. a char vocabulary)."""
    init = cfg.model.get("init_args")
    if init is None or "vocab_size" not in init or init.vocab_size is not None:
        return
    data = cfg.get("data")
    if data is None or data.get("class_path") is None:
        return
    datamodule = pydoc.locate(data.class_path)(**data.init_args.as_dict())
    init.vocab_size = getattr(datamodule, "vocab_size", None)


def _finish_wandb(ok: bool) -> None:
    """Close the W&B run of this process (rank 0 holds the only one), on success or failure."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=0 if ok else 1)


def _drop_adverts(record: logging.LogRecord) -> bool:
    """Lightning's tips about its cloud products are noise in every run's output."""
    return not str(record.msg).startswith("💡 Tip")


def _discard_if_empty(run_dir: Path) -> None:
    """Remove a run directory that holds no file (its sub-directories empty), after a failure.

    Rank 0 alone does it (every rank of a launch fails the same way, on the same directory).
    """
    if current_launch().rank != 0:
        return
    if run_dir.is_dir() and not any(p.is_file() for p in run_dir.rglob("*")):
        shutil.rmtree(run_dir)
        if all(p.name.startswith(".claim-") for p in run_dir.parent.iterdir()):
            shutil.rmtree(run_dir.parent)  # the run name's, if this was its only version


class GenlabCLI(LightningCLI):
    """LightningCLI over every registered ``GenerativeModule`` and ``LightningDataModule``.

    Adds ``run.name`` / ``run.root`` / ``run.version`` (a run gets ``<root>/<name>/version_<n>``),
    the ``samples`` (``SampleLogger``), ``sample_metrics`` (``SampleMetrics``), ``divergence``
    (``DivergenceGuard``) and ``channels_last`` (``ChannelsLast``) callbacks, and the resolved
    config in the loggers.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_drop_adverts)
        load_plugins()  # short class names resolve only for classes imported before parsing
        kwargs.setdefault("parser_kwargs", {"description": DESCRIPTION})
        super().__init__(
            GenerativeModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveRunConfig,
            save_config_kwargs={"overwrite": True},  # a resumed run rewrites its config.yaml
            args=args,
            run=run,
            **kwargs,
        )

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Parsers raise instead of exiting, so that ``main`` can print one line."""
        return super().init_parser(exit_on_error=False, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, turning jsonargparse's nested reports into a one-line ``GenlabError``."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise GenlabError(explain_parse_error(str(err), _installed_classes)) from None

    def _parse_ckpt_path(self) -> None:
        """Vet ``--ckpt_path`` first; LightningCLI then takes the model's hparams from it."""
        self._checkpoint_record: dict[str, Any] = {}
        subcommand = self.config.get("subcommand")
        cfg = self.config[subcommand] if subcommand else None
        if cfg is not None and cfg.get("ckpt_path"):
            self._checkpoint_record = _resolve_checkpoint(cfg, _run_name(cfg), subcommand)
        asked = _init_args(cfg)
        try:
            super()._parse_ckpt_path()
        except (ArgumentError, ValueError, TypeError) as err:
            raise GenlabError(f"the hyperparameters in {cfg.ckpt_path} do not fit the config: "
                              f"{str(err).splitlines()[0]}") from None
        if subcommand:
            _say_overridden(asked, _init_args(self.config[subcommand]), cfg.get("ckpt_path"))

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Run-directory options and the sample callbacks."""
        parser.add_argument("--run.name", type=str | None, default=None,
                            help="Run name; default: the config file's stem.")
        parser.add_argument("--run.root", type=str, default="runs",
                            help="Directory holding all runs.")
        parser.add_argument("--run.version", type=str | None, default=None,
                            help="Reuse this version directory instead of a fresh version_<n>.")
        parser.add_lightning_class_args(SampleLogger, "samples")
        parser.add_lightning_class_args(SampleMetrics, "sample_metrics")
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_lightning_class_args(ChannelsLast, "channels_last")

    def before_instantiate_classes(self) -> None:
        """Claim the run directory and point the trainer and its loggers at it."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        run_name = _run_name(cfg)
        resume_dir = run_dir_of(cfg.ckpt_path) if cfg.get("ckpt_path") else None
        resume_id = self._checkpoint_record.get("wandb", {}).get("id")
        check_cpu_processes(cfg.trainer)  # before Lightning starts any process
        if self.subcommand == "fit" and resume_dir is not None and cfg.run.version is None:
            self.run_dir = claim_run_dir(resume_dir.parent.parent, resume_dir.parent.name,
                                         resume_dir.name)
        else:
            self.run_dir = claim_run_dir(cfg.run.root, run_name, cfg.run.version, self.subcommand)
            resume_id = resume_id if self.subcommand == "fit" else None
        cfg.trainer.default_root_dir = str(self.run_dir)
        self._asked_loggers = _configure_loggers(cfg.trainer, self.run_dir, run_name, resume_id,
                                                 self._fit_group(resume_dir))
        _vocab_from_data(cfg)

    def _fit_group(self, fit_dir: Path | None) -> dict[str, str] | None:
        """The W&B group and job type of a validate / test of a fit's checkpoint (else ``None``)."""
        if self.subcommand == "fit" or (fit_dir is None and not self._checkpoint_record):
            return None
        group = self._checkpoint_record.get("wandb", {}).get("group") or None
        if group is None and fit_dir is not None:
            group = f"{fit_dir.parent.name}/{fit_dir.name}"  # the fit's default group
        return None if group is None else {"group": group, "job_type": self.subcommand}

    def instantiate_classes(self) -> None:
        """Build model, data and trainer, check they fit; a ``GenlabError`` surfaces unwrapped."""
        try:
            super().instantiate_classes()
            check_data_shape(self.model, self.datamodule)
        except Exception as err:
            _discard_if_empty(self.run_dir)
            if isinstance(err, MisconfigurationException):
                raise GenlabError(f"trainer: {str(err).splitlines()[0]} (check --trainer."
                                  f"accelerator / devices / strategy)") from None
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, GenlabError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """Refuse ``--optimizer`` / ``--lr_scheduler`` for a model with its own optimizers.

        LightningCLI would replace the model's ``configure_optimizers`` with one optimizer (a
        model with several networks then trains one) and drop a scheduler given alone.
        """
        given = [k for k in ("optimizer", "lr_scheduler") if self._get(self.config_init, k)]
        if given and is_overridden("configure_optimizers", self.model, L.LightningModule):
            raise GenlabError(f"--{given[0]} cannot replace {type(self.model).__name__}'s own "
                              f"optimizers (its configure_optimizers); drop it and set the "
                              f"model's options instead (`genlab fit --model.help "
                              f"{type(self.model).__name__}`)")
        super()._add_configure_optimizers_method_to_model(subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Refuse a strategy that this model or machine cannot use before the trainer starts."""
        trainer = self._get(self.config_init, "trainer", default={})
        check_strategy(trainer.get("strategy"), trainer.get("accelerator"), self.model)
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; a failure before anything was written (e.g. bad data) leaves no empty run.

        SIGTERM / SIGUSR1 end a fit with a checkpoint and one line saying how to resume; the
        W&B run is finished whatever happens, so no process hangs at exit on logging.
        """
        ok = False
        try:
            super()._run_subcommand(subcommand)
            ok = True
        except GenlabError:
            _discard_if_empty(self.run_dir)
            raise
        except ValueError as err:  # a value torch's optimizer refuses is the user's to fix
            user_error = rejected_by_optimizer(err)
            if user_error is None:
                raise
            _discard_if_empty(self.run_dir)
            raise user_error from err
        except SIGTERMException:
            saved = self.preemption.saved
            if current_launch().rank == 0:
                console.print(f"stopped by a signal at step {self.trainer.global_step}; "
                              f"{f'saved {saved}' if saved else 'no checkpoint written'}. "
                              f"Resume with the same command and --ckpt_path last (or auto)")
            ok = saved is not None
        finally:
            _finish_wandb(ok)

    def before_fit(self) -> None:
        """Check labels and vocabulary against the model (this reads the data, so not earlier)."""
        check_model_and_data(self.model, self.datamodule)

    before_validate = before_test = before_fit

    def after_instantiate_classes(self) -> None:
        """Checkpoints go to ``<run dir>/checkpoints``, with a ``last.ckpt``; add preemption.

        Switched-off callbacks (``channels_last.enabled false``, ``sample_metrics.num 0``) are
        left out.
        """
        super().after_instantiate_classes()
        for init_args, asked in getattr(self, "_asked_loggers", []):
            init_args.update(Namespace(asked))  # config.yaml: what was asked, not the fallback
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        self.preemption = Preemption(self.run_dir / "checkpoints" / "last.ckpt")
        # A callback with nothing to do still costs Lightning's dispatch at every batch hook.
        self.trainer.callbacks = [c for c in self.trainer.callbacks if not _idle(c)]
        self.trainer.callbacks += [self.preemption, RNGState(), ScheduleCheck(), FlushDenormals(),
                                   *monitors(self.trainer)]
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(self.run_dir / "checkpoints")
                if callback.save_last is None:
                    callback.save_last = True
        count_iterations(self.trainer)
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._wandb_init.get("anonymous") is None:
                # Lightning always passes anonymous=None, which wandb>=0.19 warns about.
                logger._wandb_init.pop("anonymous")

    def after_fit(self) -> None:
        """Make ``checkpoints/last.ckpt`` the final state, even when training stopped mid-epoch."""
        if self.trainer.state.status == "finished" and self.trainer.checkpoint_callbacks:
            self.trainer.save_checkpoint(self.run_dir / "checkpoints" / "last.ckpt",
                                         weights_only=False)


def _idle(callback: L.Callback) -> bool:
    """Whether a callback from the config is switched off (then it is not installed)."""
    if isinstance(callback, ChannelsLast):
        return not callback.enabled
    return isinstance(callback, SampleMetrics) and callback.num <= 0


def _installed_classes(section: str) -> list[str]:
    group = {"model": MODEL_GROUP, "data": DATA_GROUP}.get(section)
    if group is None:
        return []
    return [p.target.rsplit(":", 1)[-1] for p in plugins(group) if p.cls is not None]
