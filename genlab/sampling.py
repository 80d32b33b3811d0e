"""``genlab sample``: draw samples from a checkpoint and write them where the user asked."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import PositiveInt
from torch import Tensor

from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.errors import GenlabError, explain_parse_error
from genlab.visualize import image_grid, render, save_rendered

# Options a family may accept in sample(); passed through only when the user gives them.
FAMILY_OPTIONS: dict[str, Any] = {
    "steps": int | None,
    "labels": list[int] | None,
    "temperature": float | None,
    "top_k": int | None,
    "top_p": float | None,
    "prompt": str | None,
    "max_new_tokens": int | None,
    "guidance": float | None,
    "sampler": str | None,
    "eta": float | None,
}


def build_parser() -> ArgumentParser:
    """The ``genlab sample`` argument parser."""
    parser = ArgumentParser(prog="genlab sample", exit_on_error=False,
                            description="Draw samples from a genlab checkpoint.")
    parser.add_argument("--ckpt", type=str, required=True, help="Checkpoint (.ckpt) to sample.")
    parser.add_argument("--num", type=PositiveInt, default=64, help="Number of samples.")
    parser.add_argument("--out", type=str | None, default=None,
                        help="Output: a .png grid or a directory of images (images); a file "
                             "stem for points (.pt + .png) or text (.txt). Default: samples.*")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the noise.")
    parser.add_argument("--batch_size", type=PositiveInt, default=256,
                        help="Samples drawn per call.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    add_model_options(parser)
    return parser


def add_model_options(parser: ArgumentParser) -> None:
    """``--trust_checkpoint`` and the family options of ``sample()`` (shared with evaluate)."""
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Allow full unpickling (only for files you trust).")
    for name, kind in FAMILY_OPTIONS.items():
        parser.add_argument(f"--{name}", type=kind, default=None,
                            help=f"Family option `{name}` passed to the model's sample().")


def family_options(args: Any) -> dict[str, Any]:
    """The family options the user gave (the others are left to the model's defaults)."""
    return {k: args[k] for k in FAMILY_OPTIONS if args[k] is not None}


def check_options(model: Any, options: dict[str, Any]) -> None:
    """Raise ``GenlabError`` naming the options that the model's ``sample`` does not take."""
    params = inspect.signature(model.sample).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        takes = [f"--{n}" for n in params if n in FAMILY_OPTIONS] or ["none"]
        raise GenlabError(f"{type(model).__name__}.sample does not take "
                          f"{', '.join('--' + n for n in unknown)}; it takes: {', '.join(takes)}")


def draw(model: Any, num: int, batch_size: int, options: dict[str, Any]) -> Tensor:
    """``num`` samples from ``model`` in batches of ``batch_size``, with the family ``options``.

    ``options["labels"]`` may hold one label (for all samples) or one per sample.
    """
    check_options(model, options)
    options = dict(options)
    labels = options.pop("labels", None)
    if labels is not None and len(labels) not in (1, num):
        raise GenlabError(f"--labels has {len(labels)} entries; give 1 (for all) or --num={num}")
    chunks = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        extra = dict(options)
        if labels is not None:
            wanted = labels * n if len(labels) == 1 else labels[start:start + n]
            extra["labels"] = torch.tensor(wanted, device=model.device)
        chunks.append(model.sample_eval(n, **extra))
    return torch.cat(chunks)


def write_samples(samples: Tensor, modality: str, out: Path, decode: Any = None) -> list[Path]:
    """Write samples in the form that suits their modality; returns the files written."""
    if modality == "image" and out.suffix == "":
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{i:06d}.png" for i in range(len(samples))]
        for image, path in zip(samples, paths):
            image_grid(image[None], nrow=1).save(path)
        return paths
    written = [save_rendered(render(samples, modality, decode=decode), out)]
    if modality == "points":
        torch.save(samples.cpu(), out.with_suffix(".pt"))
        written.append(out.with_suffix(".pt"))
    return written


def sample_main(argv: list[str]) -> None:
    """Run ``genlab sample`` with command-line arguments ``argv``."""
    try:
        args = build_parser().parse_args(argv)
    except ArgumentError as err:
        raise GenlabError(explain_parse_error(str(err), lambda section: [])) from None
    model = load_model(args.ckpt, trust=args.trust_checkpoint, device=args.device)
    options = family_options(args)
    with fixed_seed(args.seed, model.device):
        samples = draw(model, args.num, args.batch_size, options)
    out = Path(args.out or "samples")
    written = write_samples(samples, model.modality, out, decode=getattr(model, "decode", None))
    if model.modality == "tokens":
        print(written[0].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(map(str, written[:3]))}{' ...' if len(written) > 3 else ''}")
