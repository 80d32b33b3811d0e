"""Text-to-image on MNIST: is the digit drawn the one prompted, in phrasings never trained on?

    python -m benchmarks.reference_classifier        # once: writes classifiers/mnist.pt
    python -m benchmarks.text_to_image --source ../shared/data/mnist --threads 1

Trains the CPU preset ``configs/diffusion/mnist_text_cpu.yaml`` (a U-Net conditioned on captions
the data module writes from the labels; target: under 20 minutes on a 2-core CPU) with
``genlab fit``, then draws ``--per-prompt`` samples for every held-out phrasing of every digit
(classifier-free guidance ``--guidance``, ``--steps``-step DDIM) and reports:

- agreement: how often the reference digit classifier gives the prompted digit (target >= 0.90);
- FID of those samples against as many test images, on the classifier's features;
- CPU seconds (this process's ``time.process_time``) and wall seconds, training and scoring.

``--reduced`` trains ``--reduced-steps`` steps and scores a few samples: it proves the script
runs end to end; its figures say nothing about quality. Results go to
``benchmarks/results/text_to_image_cpu[_reduced].json``, the prompt-to-digits grid to
``benchmarks/results/img/text_to_image_cpu[_reduced]_prompts.png``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from benchmarks.common import (
    DATA,
    RESULTS,
    ROOT,
    command,
    earlier_training,
    fit_config,
    load_span,
    stamp,
    write_result,
)
from benchmarks.pictures import picture_path
from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.data.captions import HELDOUT_PHRASINGS, Captioner
from genlab.data.images import ImageDataModule
from genlab.metrics.classifier import ChannelFeatures, load_classifier
from genlab.modalities.image import fid_between
from genlab.modality import take
from genlab.visualize import image_grid

CONFIG = ROOT / "configs" / "diffusion" / "mnist_text_cpu.yaml"
TARGET = 0.90


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DATA / "mnist"))
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--classifier", default=str(ROOT / "classifiers" / "mnist.pt"))
    parser.add_argument("--ckpt", default=None, help="skip training: score this checkpoint")
    parser.add_argument("--per-prompt", type=int, default=25,
                        help="samples per (held-out phrasing, digit)")
    parser.add_argument("--guidance", type=float, default=4.0, help="the config's")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reduced", action="store_true", help="a few steps: proves it runs")
    parser.add_argument("--reduced-steps", type=int, default=30)
    parser.add_argument("--root", default="runs/bench_text_to_image")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> tuple[Path, dict[str, float]]:
    """``genlab fit`` of the config in this process; the checkpoint and the time it took."""
    steps = str(args.reduced_steps)
    extra = ["--trainer.max_steps", steps, "--trainer.val_check_interval", steps]
    ckpt, seconds = fit_config(args.config, args.source, args.root, extra if args.reduced else ())
    return ckpt, {"train_cpu_seconds": seconds["cpu"], "train_wall_seconds": seconds["wall"]}


def prompts() -> list[tuple[str, int]]:
    """Every held-out phrasing of every digit, with the digit."""
    held = Captioner([str(d) for d in range(10)], train=False)
    return [(held.render(p, d), d) for p in HELDOUT_PHRASINGS for d in range(10)]


@torch.no_grad()
def draw(model: torch.nn.Module, args: argparse.Namespace,
         per_prompt: int) -> tuple[Tensor, Tensor, list[str]]:
    """``per_prompt`` samples of every held-out prompt: images, prompted digits, prompts."""
    texts, digits = [], []
    for text, digit in prompts():
        texts += [text] * per_prompt
        digits += [digit] * per_prompt
    chunks = []
    with fixed_seed(0, model.device):
        for start in range(0, len(texts), args.batch_size):
            batch = texts[start:start + args.batch_size]
            chunks.append(model.sample_eval(len(batch), prompt=batch, guidance=args.guidance,
                                            steps=args.steps, sampler="ddim"))
    return torch.cat(chunks), torch.tensor(digits), texts


def prompt_grid(images: Tensor, texts: list[str], per_prompt: int,
                per_row: int = 8) -> Image.Image:
    """One row per digit, each in another held-out phrasing (written on the left)."""
    rows = []
    for digit in range(10):
        phrasing = digit % len(HELDOUT_PHRASINGS)
        start = (phrasing * 10 + digit) * per_prompt  # draw() goes phrasing by phrasing
        rows.append((texts[start], images[start:start + min(per_row, per_prompt)]))
    strips = [image_grid(x, nrow=per_row).convert("RGB") for _, x in rows]
    label_w, h = 190, strips[0].height
    canvas = Image.new("RGB", (label_w + max(s.width for s in strips), h * 10), "white")
    pen = ImageDraw.Draw(canvas)
    for r, ((text, _), strip) in enumerate(zip(rows, strips)):
        canvas.paste(strip, (label_w, r * h))
        pen.text((4, r * h + h // 2 - 6), f'"{text}"', fill="black")
    return canvas


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    report = {"benchmark": "text-to-image on MNIST: reference-classifier agreement with the "
                           "prompted digit on held-out phrasings, FID",
              "command": command("benchmarks.text_to_image", argv), **stamp("cpu"),
              "preset": "cpu-reduced (proves the script runs; not a quality figure)"
              if args.reduced else "cpu (configs/diffusion/mnist_text_cpu.yaml)",
              "config": str(Path(args.config).relative_to(ROOT))
              if Path(args.config).resolve().is_relative_to(ROOT) else args.config}
    name = "text_to_image_cpu" + ("_reduced" if args.reduced else "")
    out = Path(args.out or RESULTS / f"{name}.json")
    if args.ckpt:
        ckpt = Path(args.ckpt)
        report.update(earlier_training(out, ckpt, ("train_cpu_seconds", "train_wall_seconds")))
    else:
        ckpt, seconds = train(args)
        report.update(seconds)
    model = load_model(ckpt, device="cpu")
    classifier, info = load_classifier(args.classifier)
    per_prompt = 2 if args.reduced else args.per_prompt
    cpu, wall = time.process_time(), time.perf_counter()
    images, digits, texts = draw(model, args, per_prompt)
    with torch.no_grad():
        agreement = float((classifier(images).argmax(1) == digits).float().mean())
        test = ImageDataModule(args.source, image_size=28, channels=1, resize=False,
                               batch_size=500, num_workers=0)
        test.setup("test")
        fid = fid_between(take(test.test_dataloader(), len(images)), images.split(500),
                          ChannelFeatures(classifier, channels=1), torch.device("cpu"))
    report.update({
        "checkpoint": str(ckpt), "reduced": args.reduced,
        "train_steps": torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"],
        "heldout_phrasings": list(HELDOUT_PHRASINGS),
        "samples": len(images), "guidance": args.guidance, "ddim_steps": args.steps,
        "agreement_heldout": round(agreement, 4), "target": TARGET,
        "met": agreement >= TARGET and not args.reduced, "fid": round(fid, 3),
        "protocol": {"extractor": "digit-classifier", "extractor_hash": info["hash"],
                     "fid_real": f"{len(images)} MNIST test images", "resize": "none"},
        "score_cpu_seconds": round(time.process_time() - cpu, 1),
        "score_wall_seconds": round(time.perf_counter() - wall, 1),
        "load_average": load_span(load_before)})
    print(f"agreement on held-out phrasings {agreement:.3f} (target {TARGET}), FID {fid:.2f}, "
          f"{len(images)} samples", flush=True)
    path = picture_path(out, "prompts")
    prompt_grid(images, texts, per_prompt).save(path, optimize=True)
    report["picture"] = str(path)
    write_result(report, out)
    return report


if __name__ == "__main__":
    main()
