"""RePaint on MNIST: half-masked test digits inpainted by an unconditional diffusion model.

    python -m benchmarks.reference_classifier          # once: writes classifiers/mnist.pt
    python -m benchmarks.inpaint_mnist --threads 1 [--ckpt <unconditional MNIST diffusion>]

Without ``--ckpt`` it trains configs/diffusion/mnist_cpu.yaml with ``genlab fit`` first. The
first ``--num`` test digits lose half their pixels (``--hole``: the bottom half by default) and
the model fills them in with ``Diffusion.sample(source=..., mask=...)`` (RePaint, Lugmayr et al.
2022: ancestral steps, the known half pasted in at every step, ``--resample`` passes over every
``--jump`` steps). Scores:

- recognised: how often the reference digit classifier gives an inpainted digit the original's
  label (target >= 90%);
- for scale, the classifier on the half digits with the hole left as background (what the
  known half alone tells it), on the originals (the ceiling), and on nearest-neighbour
  completions: the hole filled from the training digit whose known half is closest in pixels
  (what copying the training set does, without a model);
- known pixels: the largest change RePaint made to a known pixel (0: kept exactly).

Writes benchmarks/results/inpaint_mnist_cpu.json and a masked | inpainted | original strip
beside it (img/inpaint_mnist_cpu_strip.png).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.common import DATA, RESULTS, ROOT, command, load_average, stamp, write_result
from benchmarks.pictures import picture_path
from benchmarks.translation_mnist import recognised, train
from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.data.images import ImageDataModule
from genlab.metrics.classifier import load_classifier
from genlab.pictures import strip

CONFIG = ROOT / "configs" / "diffusion" / "mnist_cpu.yaml"
CLASSIFIER = ROOT / "classifiers" / "mnist.pt"
TARGET = 0.90
HOLES = ("top", "bottom", "left", "right")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DATA / "mnist"))
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--classifier", default=str(CLASSIFIER))
    parser.add_argument("--ckpt", default=None, help="skip training: inpaint with this model")
    parser.add_argument("--max-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--num", type=int, default=200, help="test digits inpainted")
    parser.add_argument("--hole", choices=HOLES, default="bottom", help="the half generated")
    parser.add_argument("--steps", type=int, default=50, help="reverse steps of the schedule")
    parser.add_argument("--resample", type=int, default=3, help="RePaint's r")
    parser.add_argument("--jump", type=int, default=5, help="RePaint's j")
    parser.add_argument("--reconstruction", type=float, default=0.0,
                        help="reconstruction-guidance weight (0: RePaint's paste alone)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reduced", default=None,
                        help="why this run is smaller than the canonical one (marks it reduced)")
    parser.add_argument("--root", default="runs/bench_inpaint_mnist")
    parser.add_argument("--out",
                        default=str(RESULTS / "inpaint_mnist_cpu.json"))
    return parser.parse_args(argv)


def half_mask(hole: str, size: int = 28) -> Tensor:
    """``(1, 1, size, size)``: 1 where pixels are kept, 0 on the ``hole`` half."""
    mask = torch.ones(1, 1, size, size)
    half = size // 2
    region = {"top": (slice(None, half), slice(None)), "bottom": (slice(half, None), slice(None)),
              "left": (slice(None), slice(None, half)), "right": (slice(None), slice(half, None))}
    mask[(0, 0, *region[hole])] = 0
    return mask


def test_digits(source: str, num: int) -> dict[str, Tensor]:
    """The first ``num`` MNIST test digits (``x`` in [-1, 1], ``label``), in one batch."""
    data = ImageDataModule(source, image_size=28, channels=1, resize=False, batch_size=num,
                           num_workers=0)
    data.setup("test")
    return data.sets["test"].__getitems__(list(range(num)))


def nearest_neighbour_fill(source: str, x: Tensor, mask: Tensor) -> Tensor:
    """``x`` with its hole copied from the training digit whose known pixels are nearest (L2)."""
    data = ImageDataModule(source, image_size=28, channels=1, resize=False, batch_size=100,
                           num_workers=0, val_split="test")
    data.setup("fit")
    train = data.sets["train"]
    known = (mask > 0).flatten()
    best = torch.full((len(x),), float("inf"))
    fill = torch.zeros_like(x)
    for start in range(0, len(train), 10_000):  # in chunks, to bound the memory it takes
        chunk = train.__getitems__(list(range(start, min(start + 10_000, len(train)))))["x"]
        dist, idx = torch.cdist(x.flatten(1)[:, known], chunk.flatten(1)[:, known]).min(1)
        closer = dist < best
        best = torch.where(closer, dist, best)
        fill[closer] = chunk[idx[closer]]
    return torch.where(mask > 0, x, fill)


def inpaint(model: torch.nn.Module, x: Tensor, mask: Tensor, args: argparse.Namespace) -> Tensor:
    """``x`` inpainted where ``mask`` is 0, in batches, from seed ``args.seed``."""
    out = []
    with fixed_seed(args.seed, model.device):
        for part in x.split(args.batch_size):
            out.append(model.sample_eval(len(part), source=part, mask=mask, steps=args.steps,
                                         resample=args.resample, jump=args.jump,
                                         reconstruction=args.reconstruction))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    before = load_average()
    classifier, info = load_classifier(args.classifier)
    report = {"benchmark": "RePaint inpainting of half-masked MNIST digits: recognised",
              "command": command("benchmarks.inpaint_mnist", argv), **stamp("cpu")}
    if args.ckpt:
        ckpt = Path(args.ckpt)
    else:
        ckpt, report["train_seconds"] = train(args)
    model = load_model(ckpt)
    digits, mask = test_digits(args.source, args.num), half_mask(args.hole)
    x, labels = digits["x"], digits["label"]
    wall, cpu = time.perf_counter(), time.process_time()
    filled = inpaint(model, x, mask, args)
    seconds = {"wall": round(time.perf_counter() - wall, 1),
               "cpu": round(time.process_time() - cpu, 1)}
    holed = torch.where(mask > 0, x, -torch.ones_like(x))  # the hole as background
    acc = recognised(classifier, filled, labels)
    report["results"] = {
        "recognised": round(acc, 4), "num": args.num,
        "classifier_on_half_digits": round(recognised(classifier, holed, labels), 4),
        "classifier_on_originals": round(recognised(classifier, x, labels), 4),
        "classifier_on_nearest_neighbour_fill": round(
            recognised(classifier, nearest_neighbour_fill(args.source, x, mask), labels), 4),
        "known_pixels_max_change": float((filled - x).abs()[(mask > 0).expand_as(x)].max()),
        "inpaint_seconds": seconds}
    if args.reduced:
        report["reduced"] = args.reduced
    report.update(target=TARGET, met=acc >= TARGET, checkpoint=str(ckpt),
                  model_steps=int(torch.load(ckpt, map_location="cpu", weights_only=True)
                                  ["global_step"]),
                  protocol={"hole": args.hole, "steps": args.steps, "resample": args.resample,
                            "jump": args.jump, "reconstruction": args.reconstruction,
                            "sampler": "RePaint (ancestral)", "seed": args.seed,
                            "classifier": info["path"], "classifier_hash": info["hash"],
                            "split": "test (first num digits)"},
                  load_average_span={"before": before, "after": load_average()})
    print(f"RePaint, {args.hole} half generated: {acc:.2%} recognised as the original digit "
          f"(target >= {TARGET:.0%}: {'MET' if acc >= TARGET else 'NOT MET'}) on {args.num} "
          f"test digits; half digits alone {report['results']['classifier_on_half_digits']:.2%}"
          f"; {seconds['cpu']} s CPU, {seconds['wall']} s wall")
    out = write_result(report, args.out)
    path = picture_path(out, "strip")
    shown = torch.where(mask > 0, x, torch.zeros_like(x))  # the hole in grey
    strip([shown[:8], filled[:8], x[:8]]).save(path, optimize=True)
    print(f"picture {path}")
    return report


if __name__ == "__main__":
    main()
