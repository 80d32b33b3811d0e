"""Train the reference digit classifier on MNIST and report its test accuracy (target >= 98%).

    python -m benchmarks.reference_classifier --source ../shared/data/mnist

Writes the classifier to classifiers/mnist.pt (the offline FID / KID extractor, named by its
SHA-256 in every report) and the figures to benchmarks/results/reference_classifier.json.
"""

from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import DATA, ROOT, command, stamp, write_result
from genlab.data.images import ImageDataModule
from genlab.metrics.classifier import ChannelFeatures, load_classifier
from genlab.modalities.image import fid_between
from genlab.modality import take
from genlab.train_classifier import fit_reference

DEFAULT_SOURCE = DATA / "mnist"
TARGET = 0.98


def floor(source: str, classifier: str, num: int) -> float:
    """FID of real train vs real test images on the classifier's features."""
    data = ImageDataModule(source, image_size=28, channels=1, batch_size=500, num_workers=2)
    data.setup("test")
    extractor = ChannelFeatures(load_classifier(classifier)[0], channels=1)
    return fid_between(take(data.loader("train"), num), take(data.loader("test"), num),
                       extractor, torch.device("cpu"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--out", default=str(ROOT / "classifiers" / "mnist.pt"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where to train: cpu, cuda")
    parser.add_argument("--floor-num", type=int, default=10_000,
                        help="images per side of the train-vs-test FID floor")
    parser.add_argument("--results",
                        default=str(ROOT / "benchmarks/results/reference_classifier.json"))
    a = parser.parse_args(argv)
    args = argparse.Namespace(source=a.source, out=a.out, epochs=a.epochs, batch_size=128,
                              num_workers=2, seed=a.seed, device=a.device)
    done = fit_reference(args)
    done["fid_floor"] = floor(a.source, a.out, a.floor_num)
    done["fid_floor_num"] = a.floor_num
    done.update(target=TARGET, met=done["accuracy"] >= TARGET, torch=torch.__version__,
                cores=os.cpu_count(), threads=torch.get_num_threads(),
                command=command("benchmarks.reference_classifier", argv), **stamp())
    print(f"reference classifier: {done['split']} accuracy {done['accuracy']:.4f} "
          f"(target >= {TARGET}) {'MET' if done['met'] else 'NOT MET'}; "
          f"trained {a.epochs} epochs in {done['train_seconds']:.0f} s on {done['cores']} cores; "
          f"sha256:{done['hash']}")
    print(f"FID floor on its features, real train vs real test, {a.floor_num} vs {a.floor_num} "
          f"images: {done['fid_floor']:.3f}")
    write_result(done, a.results)


if __name__ == "__main__":
    main()
