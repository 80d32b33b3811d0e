"""``genlab evaluate``: score a checkpoint with the metrics that fit its modality and data.

Images: FID and KID (torchmetrics) and precision / recall, on an extractor's features, with the
real-train vs real-test FID as the floor; Stacked MNIST: modes and KL to uniform. Points: the data
module's own sample metrics (mode coverage). Models with a likelihood: NLL in nats and bits/dim,
or for tokens loss, perplexity and bits per token.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import PositiveInt
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model, read_checkpoint
from genlab.data.stacked_mnist import StackedMNISTDataModule
from genlab.errors import GenlabError, explain_parse_error
from genlab.metrics.classifier import ChannelFeatures
from genlab.metrics.extractors import build_extractor
from genlab.metrics.precision_recall import PrecisionRecall
from genlab.metrics.stacked import StackedModes
from genlab.module import GenerativeModule
from genlab.registry import load_plugins
from genlab.sampling import add_model_options, draw, family_options

DEFAULT_NUM = {"image": 10_000, "points": 2_500, "tokens": 64}


def build_parser() -> ArgumentParser:
    """The ``genlab evaluate`` argument parser."""
    parser = ArgumentParser(prog="genlab evaluate", exit_on_error=False,
                            description="Score a genlab checkpoint; prints and writes JSON.")
    parser.add_argument("--ckpt", type=str, required=True, help="Checkpoint (.ckpt) to score.")
    parser.add_argument("--config", type=str | None, default=None,
                        help="A `genlab fit` config whose data section gives the reference data "
                             "(default: the data the checkpoint was trained on).")
    parser.add_subclass_arguments(L.LightningDataModule, "data", required=False,
                                  help="The reference data, as in a fit config.")
    parser.add_argument("--split", type=str, default="test", help="Reference split: test or val.")
    parser.add_argument("--num", type=PositiveInt | None, default=None,
                        help="Generated samples (and at most as many real ones). Default: 10000 "
                             "images, 2500 points, 64 token sequences.")
    parser.add_argument("--extractor", type=str | None, default=None,
                        help="Image features for FID/KID/precision/recall: `inception`, or the "
                             "path of a `genlab classifier` file. Default: InceptionV3 when its "
                             "weights are cached or can be downloaded, else classifiers/mnist.pt.")
    parser.add_argument("--sample_metrics", type=bool, default=True,
                        help="Score generated samples; false: only the likelihood, if any.")
    parser.add_argument("--floor", type=bool, default=True,
                        help="Also report FID of real train vs real reference images.")
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
    add_model_options(parser)
    return parser


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


def parse_with_data(parser: ArgumentParser, argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """Parse ``argv``, its ``--data.*`` on top of the checkpoint's (or ``--config``'s) data.

    As ``genlab fit`` applies them on top of its config. Returns the arguments and the
    checkpoint's contents.
    """
    pre = argparse.ArgumentParser(add_help=False)
    for name in ("--ckpt", "--config", "--trust_checkpoint"):
        pre.add_argument(name)
    known = pre.parse_known_args(argv)[0]
    trust = str(known.trust_checkpoint).lower() in ("true", "yes", "1")
    ckpt = read_checkpoint(known.ckpt, trust) if known.ckpt and "--help" not in argv else {}
    try:
        data = _data_section(known.config, ckpt)
        if data is not None:
            parser.set_defaults(data=data)
        return parser.parse_args(argv), ckpt
    except ArgumentError as err:
        from genlab.lightning_cli import _installed_classes

        raise GenlabError(explain_parse_error(str(err), _installed_classes)) from None


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


def reference_batches(datamodule: L.LightningDataModule, split: str) -> Iterable[dict]:
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


def image_metrics(extractor: nn.Module, num: int) -> dict[str, Any]:
    """FID, KID and precision/recall sharing one extractor."""
    subset = max(2, min(1000, num // 2))
    return {
        "fid": FrechetInceptionDistance(feature=extractor),
        "kid": KernelInceptionDistance(feature=extractor, subset_size=subset, subsets=50),
        "pr": PrecisionRecall(extractor),
    }


def _flat(results: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in results.items():
        if isinstance(value, dict):
            out.update({k: float(v) for k, v in value.items()})
        elif isinstance(value, tuple):  # KID: (mean, std)
            out[f"{name}"], out[f"{name}_std"] = float(value[0]), float(value[1])
        else:
            out[name] = float(value)
    return out


@torch.no_grad()
def score_images(fake: Tensor, real: Iterable[Tensor], extractor: nn.Module,
                 device: torch.device, batch_size: int) -> dict[str, float]:
    """FID, KID, precision and recall of ``fake`` images against the ``real`` batches."""
    metrics = {k: m.to(device) for k, m in image_metrics(extractor, len(fake)).items()}
    for x in real:
        for m in metrics.values():
            m.update(x.to(device).float(), real=True)
    for x in fake.split(batch_size):
        for m in metrics.values():
            m.update(x.to(device).float(), real=False)
    return _flat({k: m.compute() for k, m in metrics.items()})


@torch.no_grad()
def likelihood(model: GenerativeModule, batches: Iterable[dict],
               max_batches: int | None) -> dict[str, float]:
    """NLL per example (nats, bits/dim) or, for tokens, per token (loss, perplexity, bits)."""
    nll, examples, units = 0.0, 0, 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(model.device) for k, v in batch.items()}
        nll -= float(model.log_likelihood(batch).double().sum())
        x = batch["x"]
        examples += len(x)
        units += len(x) * (x.shape[1] - 1 if model.modality == "tokens" else x[0].numel())
    if model.modality == "tokens":
        loss = nll / units
        return {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2)}
    return {"nll": nll / examples, "bits_per_dim": nll / units / math.log(2)}


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


@torch.no_grad()
def fid_between(a: Iterable[Tensor], b: Iterable[Tensor], extractor: nn.Module,
                device: torch.device) -> float:
    """FID of two sets of real images: the floor that generated images are compared with."""
    fid = FrechetInceptionDistance(feature=extractor).to(device)
    for x in a:
        fid.update(x.to(device).float(), real=True)
    for x in b:
        fid.update(x.to(device).float(), real=False)
    return float(fid.compute())


def _setup(datamodule: L.LightningDataModule, ckpt: dict[str, Any], split: str) -> None:
    state = ckpt.get(type(datamodule).__qualname__)
    if state is not None:  # e.g. a char vocabulary: encode the data as in training
        datamodule.load_state_dict(state)
    datamodule.prepare_data()
    datamodule.setup("validate" if split == "val" else "test")


def _image_scores(args: Any, model: GenerativeModule, datamodule: L.LightningDataModule,
                  fake: Tensor, results: dict[str, Any]) -> dict[str, float]:
    extractor, results["extractor"], why = build_extractor(args.extractor, fake.shape[1])
    results["extractor"]["why"] = why
    extractor = extractor.to(model.device)
    num, device = len(fake), model.device
    real = take(reference_batches(datamodule, args.split), num)
    scores = score_images(fake, real, extractor, device, args.batch_size)
    if args.floor and args.split != "train":
        train = take(reference_batches(datamodule, "train"), num)
        scores["fid_floor"] = fid_between(train, take(reference_batches(datamodule, args.split),
                                                      num), extractor, device)
    if isinstance(datamodule, StackedMNISTDataModule):
        if not isinstance(extractor, ChannelFeatures):
            raise GenlabError("Stacked MNIST modes need the digit classifier: pass "
                              "--extractor <classifier.pt> from `genlab classifier`")
        modes = StackedModes(extractor.classifier).to(device)
        for x in fake.split(args.batch_size):
            modes.update(x.to(device))
        scores.update(_flat(modes.compute()))
    return scores


def evaluate(args: Any, ckpt: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the checkpoint named in ``args`` (parsed by ``build_parser``); returns the report.

    ``ckpt``: the checkpoint's contents when already read (``parse_with_data``).
    """
    load_plugins()
    if args.split not in ("train", "val", "test"):
        raise GenlabError(f"--split must be train, val or test, got {args.split!r}")
    ckpt = ckpt or read_checkpoint(args.ckpt, args.trust_checkpoint)
    model = load_model(args.ckpt, trust=args.trust_checkpoint, device=args.device)
    datamodule = instantiate(L.LightningDataModule, _data_config(args, ckpt))
    _setup(datamodule, ckpt, args.split)
    num = args.num or DEFAULT_NUM[model.modality]
    metrics: dict[str, float] = {}
    results = {"checkpoint": str(args.ckpt), "model": type(model).__name__,
               "plugin": ckpt.get("genlab", {}).get("plugin"), "split": args.split,
               "num_samples": num, "metrics": metrics,
               "wandb_run": ckpt.get("genlab", {}).get("wandb")}
    if model.modality in ("image", "points") and args.sample_metrics:
        with fixed_seed(args.seed, model.device):
            fake = draw(model, num, args.batch_size, family_options(args))
        if model.modality == "image":
            metrics.update(_image_scores(args, model, datamodule, fake, results))
        sample_metrics = getattr(datamodule, "sample_metrics", None)
        for prefix, metric in (sample_metrics() if callable(sample_metrics) else {}).items():
            metric = metric.to(model.device)
            metric.update(fake)
            metrics.update({prefix + k: v for k, v in _flat(metric.compute()).items()})
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
    args, ckpt = parse_with_data(build_parser(), argv)
    results = evaluate(args, ckpt)
    out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(".eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    _report(results)
    print(f"wrote {out}")
    target = _wandb_target(args, results.pop("wandb_run", None))
    if target is not None:
        log_to_wandb(target, results)
