"""``genlab sample``: draw samples from a checkpoint and write them where the user asked.

The family's options are not listed here: they are the typed keyword arguments of the loaded
model's own ``sample()`` (defaults and docstring included), added by jsonargparse as LightningCLI
adds ``--model.*`` from ``__init__``. The model is known only once ``--ckpt`` is read, so the
command line is parsed in two steps: ``--ckpt`` first, then the parser built for that model.
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import PositiveInt, register_type
from torch import Tensor

from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.data.sources import IMAGE_SUFFIXES
from genlab.errors import GenlabError, explain_parse_error
from genlab.modalities.image import load_images
from genlab.modality import modality_of
from genlab.module import GenerativeModule


def read_tensor(path: str | Path) -> Tensor:
    """A Tensor option given as a file or folder.

    Images (a file or a folder of them) give ``(N, C, H, W)`` in [-1, 1]; a ``.pt`` file its
    tensor, loaded with ``weights_only=True``.
    """
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".pt":
        return torch.load(path, map_location="cpu", weights_only=True)
    return load_images(path)


def _names_file(value: str) -> bool:
    path = Path(value)
    return path.suffix.lower() in (*IMAGE_SUFFIXES, ".pt") or path.is_dir()


def _tensor(value: Any) -> Tensor:
    # A Tensor option on the command line: a number or a list, e.g. --labels 3, --labels [1,2],
    # or a file: --source digit.png, --mask masks/ (a folder of images), --source x.pt.
    if isinstance(value, str) and _names_file(value):
        return read_tensor(value)
    return torch.as_tensor(yaml.safe_load(value) if isinstance(value, str) else value)


register_type(Tensor, serializer=lambda t: t.tolist(), deserializer=_tensor)


def build_parser(model: GenerativeModule | None = None) -> ArgumentParser:
    """The ``genlab sample`` parser, with ``model``'s ``sample()`` options when given."""
    parser = ArgumentParser(prog="genlab sample", exit_on_error=False,
                            description="Draw samples from a genlab checkpoint. The model's own "
                                        "sample() options are listed by `genlab sample --ckpt "
                                        "<file> --help`.")
    parser.add_argument("--ckpt", type=str, required=True,
                        help="Checkpoint to sample: a .ckpt, or a W&B artifact "
                             "wandb:entity/project/name:alias.")
    parser.add_argument("--num", type=PositiveInt, default=64, help="Number of samples.")
    parser.add_argument("--out", type=str | None, default=None,
                        help="Output stem or folder; the modality decides the files (images: a "
                             ".png grid, or one file each in a folder; points: .pt + .png; "
                             "text: .txt). Default: samples.*")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the noise.")
    parser.add_argument("--batch_size", type=PositiveInt, default=256,
                        help="Samples drawn per call.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Allow full unpickling (only for files you trust).")
    if model is not None:
        cls, method, skip = model.sample_options()
        add_signature_options(parser, cls, method, skip=skip)
    return parser


def add_signature_options(parser: ArgumentParser, cls: type, method: str,
                          skip: set[str]) -> list[str]:
    """Add ``cls.method``'s typed keyword arguments as options; returns their names.

    A name the command already uses is refused with one line, rather than silently shadowed.
    """
    try:
        return parser.add_method_arguments(cls, method, skip=skip, fail_untyped=False)
    except (ArgumentError, ValueError) as err:
        raise GenlabError(f"{cls.__name__}.{method} has an argument that clashes with an option "
                          f"of {parser.prog} ({err}); rename it in {cls.__name__}") from None


def option_names(cls: type, method: str, skip: set[str]) -> list[str]:
    """The keyword arguments of ``cls.method`` that are options (not ``self``, not ``skip``)."""
    params = inspect.signature(getattr(cls, method)).parameters.values()
    return [p.name for p in params if p.name not in {"self", *skip}
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def model_from_argv(argv: list[str]) -> GenerativeModule | None:
    """Step one: the model of ``--ckpt`` (on the CPU), or ``None`` when no ``--ckpt`` is given."""
    first = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    first.add_argument("--ckpt")
    first.add_argument("--trust_checkpoint", default="false")
    try:
        known, _ = first.parse_known_args(argv)
    except argparse.ArgumentError:  # e.g. --ckpt without a value: step two says so
        return None
    if known.ckpt is None:
        return None
    return load_model(known.ckpt, trust=yaml.safe_load(known.trust_checkpoint) is True)


def parse(parser: ArgumentParser, argv: list[str], takes: dict[str, list[str]]) -> Any:
    """Step two: parse ``argv``; an unknown option is one line naming the options there are.

    ``takes`` maps what offers options (``"RealNVP.sample"``) to their names.
    """
    try:
        return parser.parse_args(argv)
    except ArgumentError as err:
        message = str(err).splitlines()[0]
        unknown = re.findall(r"--[\w.]+", message) if "unrecognized" in message else []
        if unknown and takes:
            offers = [f"{owner} takes: {', '.join('--' + n for n in names)}"
                      for owner, names in takes.items() if names] or ["it takes none"]
            if len(takes) == 1:
                offers = [offers[0].replace(f"{next(iter(takes))} takes", "it takes")]
            raise GenlabError(f"{' or '.join(takes)} does not take {', '.join(unknown)}; "
                              f"{'; '.join(offers)} (see `{parser.prog} --ckpt <file> --help`)"
                              ) from None
        from genlab.lightning_cli import _installed_classes

        explained = explain_parse_error(str(err), _installed_classes)
        raise GenlabError(explained.replace("genlab <command>", parser.prog)) from None


def check_options(model: Any, options: dict[str, Any]) -> None:
    """Raise ``GenlabError`` naming the options that the model's ``sample`` does not take."""
    params = inspect.signature(model.sample).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        takes = [f"--{n}" for n in option_names(*model.sample_options())] or ["none"]
        raise GenlabError(f"{type(model).__name__}.sample does not take "
                          f"{', '.join('--' + n for n in unknown)}; it takes: {', '.join(takes)}")


def _per_sample(name: str, value: Tensor, num: int) -> Tensor:
    """A Tensor option with one entry for every sample, from one entry or ``num``."""
    value = value[None] if value.ndim == 0 else value
    if len(value) == 1:
        return value.expand(num, *value.shape[1:])
    if len(value) != num:
        raise GenlabError(f"--{name} has {len(value)} entries; give 1 (for all) or --num={num}")
    return value


def _texts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def draw(model: Any, num: int, batch_size: int, options: dict[str, Any]) -> Tensor:
    """``num`` samples from ``model`` in batches of ``batch_size``, with the family ``options``.

    A ``Tensor`` option (e.g. class labels, a source image) or a list of strings (prompts) is
    per sample: one entry for all, or one per sample.
    """
    check_options(model, options)
    tensors = {k: _per_sample(k, torch.as_tensor(v), num) for k, v in options.items()
               if isinstance(v, Tensor | list) and not _texts(v)}
    texts = {k: v * num if len(v) == 1 else v for k, v in options.items() if _texts(v)}
    for name, value in texts.items():
        if len(value) != num:
            raise GenlabError(f"--{name} has {len(value)} entries; give 1 (for all) or "
                              f"--num={num}")
    chunks = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        extra = {**options, **{k: v[start:start + n].to(model.device) for k, v in tensors.items()},
                 **{k: v[start:start + n] for k, v in texts.items()}}
        chunks.append(model.sample_eval(n, **extra))
    return torch.cat(chunks)


def sample_main(argv: list[str]) -> None:
    """Run ``genlab sample`` with command-line arguments ``argv``."""
    model = model_from_argv(argv)
    parser = build_parser(model)
    takes = {} if model is None else {
        f"{type(model).__name__}.sample": option_names(*model.sample_options())}
    args = parse(parser, argv, takes)
    model = model.to(args.device)
    options = {k: args[k] for k in next(iter(takes.values()))}
    with fixed_seed(args.seed, model.device):
        samples = draw(model, args.num, args.batch_size, options)
    out = Path(args.out or "samples")
    written = modality_of(model).save(samples, out, decode=getattr(model, "decode", None))
    for path in written:
        if path.suffix == ".txt":  # text is read in the terminal
            print(path.read_text(encoding="utf-8"))
    print(f"wrote {', '.join(map(str, written[:3]))}{' ...' if len(written) > 3 else ''}")
