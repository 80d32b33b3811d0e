"""``genlab classifier``: train the reference digit classifier that offline FID / KID use."""

from __future__ import annotations

import time
from typing import Any

import torch
from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import PositiveInt

from genlab.data.images import ImageDataModule
from genlab.errors import GenlabError
from genlab.metrics.classifier import accuracy, save_classifier, train_classifier


def build_parser() -> ArgumentParser:
    """The ``genlab classifier`` argument parser."""
    parser = ArgumentParser(prog="genlab classifier", exit_on_error=False,
                            description="Train the reference digit classifier (fixed seed) and "
                                        "save it with its content hash.")
    parser.add_argument("--source", type=str, required=True,
                        help="MNIST-like data: hub name or local parquet / image folder.")
    parser.add_argument("--out", type=str, default="classifiers/mnist.pt", help="File to write.")
    parser.add_argument("--epochs", type=PositiveInt, default=2, help="Passes over train.")
    parser.add_argument("--batch_size", type=PositiveInt, default=128, help="Images per step.")
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and data order.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, ...")
    return parser


def fit_reference(args: Any) -> dict[str, Any]:
    """Train, measure test accuracy and save; returns what was done."""
    data = ImageDataModule(args.source, image_size=28, channels=1, batch_size=args.batch_size,
                           num_workers=args.num_workers, seed=args.seed)
    data.setup("fit")
    if data.num_classes is None:
        raise GenlabError(f"{args.source!r} has no labels; the classifier needs digit labels")
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = train_classifier(data.train_dataloader(), args.epochs, seed=args.seed,
                             device=args.device)
    seconds = time.perf_counter() - start
    split = "test" if "test" in data.sets else "val"
    acc = accuracy(model, data.loader(split), args.device)
    digest = save_classifier(model, args.out, source=args.source, epochs=args.epochs,
                             seed=args.seed, accuracy=acc, accuracy_split=split)
    return {"path": args.out, "hash": digest, "accuracy": acc, "split": split,
            "train_seconds": seconds}


def classifier_main(argv: list[str]) -> None:
    """Run ``genlab classifier`` with command-line arguments ``argv``."""
    try:
        args = build_parser().parse_args(argv)
    except ArgumentError as err:
        raise GenlabError(f"{str(err).splitlines()[0]} (see `genlab classifier --help`)") from None
    done = fit_reference(args)
    print(f"{done['split']} accuracy {done['accuracy']:.4f} after {done['train_seconds']:.0f} s; "
          f"wrote {done['path']} (sha256:{done['hash']}); use it as --extractor {done['path']}")
