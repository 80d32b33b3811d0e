"""pix2pix on MNIST edge maps -> digits: translations recognised as the source's digit, L1.

    python -m benchmarks.reference_classifier          # once: writes classifiers/mnist.pt
    python -m benchmarks.translation_mnist --threads 1

Trains configs/pix2pix/mnist_edges_cpu.yaml with ``genlab fit`` (or takes ``--ckpt``), translates
the first ``--num`` test edge maps (``genlab.data.paired``, pairing ``edges``) and scores:

- recognised: how often the reference digit classifier gives a translation the label of the
  digit its edge map came from (target >= 95%);
- L1: the mean absolute difference between translation and target digit, pixels in [0, 1];
- for scale, the classifier's accuracy on the edge maps themselves and on the target digits
  (the ceiling).

Writes benchmarks/results/translation_mnist_cpu.json and a source | translation | target strip
beside it (img/translation_mnist_cpu_strip.png).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from benchmarks.common import (
    DATA,
    RESULTS,
    ROOT,
    command,
    earlier_training,
    fit_config,
    load_average,
    stamp,
    write_result,
)
from benchmarks.pictures import picture_path
from genlab.checkpoint import load_model
from genlab.data.paired import PairedImageDataModule
from genlab.metrics.classifier import load_classifier
from genlab.pictures import strip

CONFIG = ROOT / "configs" / "pix2pix" / "mnist_edges_cpu.yaml"
CLASSIFIER = ROOT / "classifiers" / "mnist.pt"
TARGET = 0.95


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DATA / "mnist"))
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--classifier", default=str(CLASSIFIER))
    parser.add_argument("--ckpt", default=None, help="skip training: score this checkpoint")
    parser.add_argument("--max-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--num", type=int, default=2000, help="test pairs scored")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reduced", default=None,
                        help="why this run is smaller than the canonical one (marks it reduced)")
    parser.add_argument("--root", default="runs/bench_translation_mnist")
    parser.add_argument("--out",
                        default=str(RESULTS / "translation_mnist_cpu.json"))
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> tuple[Path, dict[str, float]]:
    """``genlab fit`` of the config; the checkpoint and the wall / CPU seconds it took."""
    extra = ["--trainer.max_steps", str(args.max_steps)] if args.max_steps else []
    return fit_config(args.config, args.source, args.root, extra)


def test_pairs(source: str, num: int, pairing: str = "edges") -> dict[str, Tensor]:
    """The first ``num`` test pairs: ``x``, ``source`` and ``label``, in one batch."""
    data = PairedImageDataModule(source, pairing=pairing, image_size=28, channels=1,
                                 resize=False, batch_size=num, num_workers=0)
    data.setup("test")
    return data.sets["test"].__getitems__(list(range(num)))


@torch.no_grad()
def recognised(classifier: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Share of ``images`` the classifier gives their ``labels``."""
    predicted = torch.cat([classifier(x).argmax(1) for x in images.split(500)])
    return float((predicted == labels).float().mean())


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    before = load_average()
    classifier, info = load_classifier(args.classifier)
    classifier.eval()
    report = {"benchmark": "pix2pix on MNIST edges -> digits: recognised translations, L1",
              "command": command("benchmarks.translation_mnist", argv), **stamp("cpu"),
              "config": str(Path(args.config).relative_to(ROOT))}
    if args.ckpt:
        ckpt = Path(args.ckpt)
        report.update(earlier_training(Path(args.out), ckpt))
    else:
        ckpt, report["train_seconds"] = train(args)
        report["max_steps"] = args.max_steps or "config's"
    model = load_model(ckpt)
    pairs = test_pairs(args.source, args.num)
    start = time.process_time()
    with torch.no_grad():
        fake = torch.cat([model.sample_eval(len(s), source=s) for s in pairs["source"].split(500)])
    acc = recognised(classifier, fake, pairs["label"])
    l1 = float((fake - pairs["x"]).abs().mean() / 2)  # pixels in [0, 1]
    report["results"] = {
        "recognised": round(acc, 4), "l1": round(l1, 4), "num": args.num,
        "classifier_on_sources": round(recognised(classifier, pairs["source"], pairs["label"]), 4),
        "classifier_on_targets": round(recognised(classifier, pairs["x"], pairs["label"]), 4),
        "translate_cpu_seconds": round(time.process_time() - start, 2)}
    if args.reduced:
        report["reduced"] = args.reduced
    report.update(target=TARGET, met=acc >= TARGET, checkpoint=str(ckpt),
                  protocol={"classifier": info["path"], "classifier_hash": info["hash"],
                            "split": "test", "pairing": "edges", "l1_units": "pixels in [0, 1]"},
                  load_average_span={"before": before, "after": load_average()})
    print(f"pix2pix edges -> digits: {acc:.2%} recognised as the source's digit (target >= "
          f"{TARGET:.0%}: {'MET' if acc >= TARGET else 'NOT MET'}), L1 {l1:.4f} on {args.num} "
          f"test pairs; classifier on edge maps {report['results']['classifier_on_sources']:.2%}")
    out = write_result(report, args.out)
    path = picture_path(out, "strip")
    strip([pairs["source"][:8], fake[:8], pairs["x"][:8]]).save(path, optimize=True)
    print(f"picture {path}")
    return report


if __name__ == "__main__":
    main()
