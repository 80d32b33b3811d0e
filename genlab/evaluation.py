"""``genlab evaluate``: score a checkpoint with the metrics that fit its modality and data.

The model's modality scores generated samples (``Modality.score``: FID / KID / precision-recall
for images, the data module's metrics such as mode coverage for points, ...) and reports the
likelihood of models that have one (NLL and bits/dim; for tokens loss, perplexity and bits per
token). Options come from the checkpoint's model (``sample()``'s) and its modality (``score()``'s),
parsed in two steps as in ``genlab sample``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import PositiveInt
from rich.console import Console
from rich.table import Table

from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import local_checkpoint, read_checkpoint
from genlab.errors import GenlabError
from genlab.modality import EvalContext, Modality, modality_of, reference_batches
from genlab.module import GenerativeModule
from genlab.registry import load_plugins
from genlab.sampling import add_signature_options, draw, model_from_argv, option_names, parse

SCORE_SKIP = {"fake", "context"}  # score()'s own arguments, not options


def build_parser(model: GenerativeModule | None = None) -> ArgumentParser:
    """The ``genlab evaluate`` parser, with the options of ``model`` and its modality if given."""
    parser = ArgumentParser(prog="genlab evaluate", exit_on_error=False,
                            description="Score a genlab checkpoint; prints and writes JSON. The "
                                        "options of the model's sample() and of its modality's "
                                        "score() are listed by `genlab evaluate --ckpt <file> "
                                        "--help`.")
    parser.add_argument("--ckpt", type=str, required=True,
                        help="Checkpoint to score: a .ckpt, or a W&B artifact "
                             "wandb:entity/project/name:alias.")
    parser.add_argument("--config", type=str | None, default=None,
                        help="A `genlab fit` config whose data section gives the reference data "
                             "(default: the data the checkpoint was trained on).")
    parser.add_subclass_arguments(L.LightningDataModule, "data", required=False,
                                  help="The reference data, as in a fit config.")
    parser.add_argument("--split", type=str, default="test", help="Reference split: test or val.")
    parser.add_argument("--num", type=PositiveInt | None, default=None,
                        help="Generated samples (and at most as many real ones). Default: the "
                             "modality's (10000 images, 2500 points).")
    parser.add_argument("--sample_metrics", type=bool, default=True,
                        help="Score generated samples; false: only the likelihood, if any.")
    parser.add_argument("--max_batches", type=PositiveInt | None, default=None,
                        help="Reference batches used for likelihoods (default: all).")
    parser.add_argument("--batch_size", type=PositiveInt, default=256, help="Samples per call.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generated samples.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", type=str | None, default=None,
                        help="JSON file to write (default: <ckpt>.eval.json).")
    parser.add_argument("--wandb_run", type=str | None, default=None,
                        help="Log to this W&B run, [entity/]project/run_id (default: the run "
                             "that wrote the checkpoint, when it had one).")
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Allow full unpickling (only for files you trust).")
    if model is not None:
        cls, method, skip = model.sample_options()
        add_signature_options(parser, cls, method, skip=skip)
        add_signature_options(parser, type(modality_of(model)), "score", skip=SCORE_SKIP)
    return parser


def option_owners(model: GenerativeModule) -> dict[str, list[str]]:
    """The options of ``model.sample`` and of its modality's ``score``, by owner."""
    modality = type(modality_of(model))
    return {f"{type(model).__name__}.sample": option_names(*model.sample_options()),
            f"{modality.__name__}.score": option_names(modality, "score", SCORE_SKIP)}


def _data_section(config: str | None, ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The data section ``--data.*`` options override: ``--config``'s, else the checkpoint's.

    ``None`` when neither names one.
    """
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise GenlabError(f"config {path} does not exist")
        data = (yaml.safe_load(path.read_text()) or {}).get("data")
        if data is None:
            raise GenlabError(f"{path} has no data section; pass --data.class_path and its args")
        return data
    return ckpt.get("genlab", {}).get("data")


def _data_config(args: Any, ckpt: dict[str, Any]) -> dict[str, Any]:
    if args.data is not None:
        return {"class_path": args.data.class_path, "init_args": dict(args.data.init_args)}
    data = _data_section(args.config, ckpt)
    if data is None:
        raise GenlabError("the checkpoint does not record its data; pass --config <fit config> "
                          "or --data.class_path ... to name the reference data")
    return data


def data_defaults(parser: ArgumentParser, argv: list[str]) -> None:
    """Make the checkpoint's (or ``--config``'s) data section the parser's ``--data`` default.

    So ``--data.*`` options apply on top of it, as ``genlab fit`` applies them on its config.
    """
    pre = argparse.ArgumentParser(add_help=False)
    for name in ("--ckpt", "--config", "--trust_checkpoint"):
        pre.add_argument(name)
    known = pre.parse_known_args(argv)[0]
    trust = str(known.trust_checkpoint).lower() in ("true", "yes", "1")
    ckpt = read_checkpoint(known.ckpt, trust) if known.ckpt and "--help" not in argv else {}
    data = _data_section(known.config, ckpt)
    if data is not None:
        parser.set_defaults(data=data)


def instantiate(base: type, config: dict[str, Any]) -> Any:
    """Build a ``base`` subclass from a ``{"class_path", "init_args"}`` config (as in YAML).

    Short class names work for installed plugins, as in ``genlab fit`` configs.
    """
    load_plugins()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, "section")
    try:
        cfg = parser.parse_object({"section": config})
    except ArgumentError as err:
        raise GenlabError(f"bad {base.__name__} config: {' '.join(str(err).split())}") from None
    return parser.instantiate_classes(cfg).section


@torch.no_grad()
def likelihood(model: GenerativeModule, batches: Iterable[dict],
               max_batches: int | None) -> dict[str, float]:
    """NLL per example (nats, bits/dim), or the modality's own figures (tokens: per token)."""
    modality = modality_of(model)
    nll, examples, units = 0.0, 0, 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                 for k, v in batch.items()}
        nll -= float(model.log_likelihood(batch).double().sum())
        examples += len(batch["x"])
        units += len(batch["x"]) * modality.likelihood_units(batch["x"])
    return modality.likelihood_report(nll, examples, units)


def _report(results: dict[str, Any]) -> None:
    table = Table(title=f"{results['model']}, {results['split']} split")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results["metrics"].items():
        table.add_row(name, f"{value:.0f}" if float(value).is_integer() else f"{value:.4f}")
    console = Console(highlight=False)
    console.print(table)
    if "extractor" in results:
        console.print(results["extractor"]["why"])  # which extractor scored, and why


def _setup(datamodule: L.LightningDataModule, ckpt: dict[str, Any], split: str) -> None:
    state = ckpt.get(type(datamodule).__qualname__)
    if state is not None:  # e.g. a char vocabulary: encode the data as in training
        datamodule.load_state_dict(state)
    datamodule.prepare_data()
    datamodule.setup("validate" if split == "val" else "test")


def _scores(args: Any, model: GenerativeModule, modality: Modality,
            datamodule: L.LightningDataModule, results: dict[str, Any]) -> dict[str, float]:
    """Draw ``results["num_samples"]`` samples and score them with the modality.

    A modality that ``draws_own_samples`` (prompt continuations) draws through
    ``context.draw`` instead, with the same options and seed.
    """
    options = {k: args[k] for k in option_names(*model.sample_options())}

    def draw_with(num: int, **overrides: Any) -> torch.Tensor:
        return draw(model, num, args.batch_size, {**options, **overrides})

    context = EvalContext(datamodule, args.split, args.batch_size, model.device, results,
                          draw=draw_with, decode=getattr(model, "decode", None),
                          sample_options=tuple(options))
    extra = {k: args[k] for k in option_names(type(modality), "score", SCORE_SKIP)}
    with fixed_seed(args.seed, model.device):
        start = time.perf_counter()
        fake = None if modality.draws_own_samples else draw_with(results["num_samples"])
        results["sample_seconds"] = round(time.perf_counter() - start, 2)  # drawing, not scoring
        return modality.score(fake, context, **extra)


def evaluate(args: Any, model: GenerativeModule) -> dict[str, Any]:
    """Score ``model`` (read from ``args.ckpt``) with the options in ``args``; the report."""
    load_plugins()
    if args.split not in ("train", "val", "test"):
        raise GenlabError(f"--split must be train, val or test, got {args.split!r}")
    ckpt = read_checkpoint(args.ckpt, args.trust_checkpoint)
    datamodule = instantiate(L.LightningDataModule, _data_config(args, ckpt))
    _setup(datamodule, ckpt, args.split)
    modality = modality_of(model)
    metrics: dict[str, float] = {}
    results = {"checkpoint": str(args.ckpt), "model": type(model).__name__,
               "plugin": ckpt.get("genlab", {}).get("plugin"), "split": args.split,
               "num_samples": args.num or modality.eval_num, "metrics": metrics,
               "wandb_run": ckpt.get("genlab", {}).get("wandb")}
    if args.sample_metrics and results["num_samples"] > 0:
        metrics.update(_scores(args, model, modality, datamodule, results))
    if model.has_log_likelihood:
        batches = reference_batches(datamodule, args.split)
        metrics.update(likelihood(model, batches, args.max_batches))
    return results


def log_to_wandb(target: dict[str, str], results: dict[str, Any]) -> None:
    """Add ``eval/<metric>`` (and the extractor) to a W&B run's summary, offline when it must be.

    Args:
        target: ``id`` and ``project`` (optionally ``entity``, ``save_dir``) of the run.
        results: What ``evaluate`` returned.
    """
    import wandb

    from genlab.tracking import offline_message, offline_reason

    reason = offline_reason()
    save_dir = target.get("save_dir") or "."
    summary = {f"eval/{k}": v for k, v in results["metrics"].items()}
    if "extractor" in results:
        summary["eval/extractor"] = results["extractor"]
    run = wandb.init(entity=target.get("entity"), project=target.get("project") or None,
                     id=target["id"], resume="allow", dir=save_dir,
                     mode="offline" if reason else "online", settings=wandb.Settings(silent=True))
    run.summary.update(summary)
    run.finish()
    if reason:
        Console(stderr=True, highlight=False).print(offline_message(reason, save_dir))


def _wandb_target(args: Any, ckpt_run: dict[str, str] | None) -> dict[str, str] | None:
    """The run named by ``--wandb_run``, else the one that wrote the checkpoint, if any."""
    if not args.wandb_run:
        return ckpt_run
    parts = args.wandb_run.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise GenlabError(f"--wandb_run must be [entity/]project/run_id, got {args.wandb_run!r}")
    entity, project, run_id = ([None] + parts)[-3:]
    return {"entity": entity, "project": project, "id": run_id}


def evaluate_main(argv: list[str]) -> None:
    """Run ``genlab evaluate`` with command-line arguments ``argv``."""
    load_plugins()  # short data class names resolve only for classes imported before parsing
    model = model_from_argv(argv)
    parser = build_parser(model)
    data_defaults(parser, argv)
    args = parse(parser, argv, {} if model is None else option_owners(model))
    results = evaluate(args, model.to(args.device))
    out = Path(args.out) if args.out else local_checkpoint(args.ckpt).with_suffix(".eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    _report(results)
    print(f"wrote {out}")
    target = _wandb_target(args, results.pop("wandb_run", None))
    if target is not None:
        log_to_wandb(target, results)
