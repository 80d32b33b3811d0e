"""Class-conditional two-stage MNIST: a diffusion prior on VQ-VAE latents; label agreement, FID.

    python -m benchmarks.reference_classifier            # once: writes classifiers/mnist.pt
    python -m benchmarks.twostage_cond_mnist --data.source ../shared/data/mnist   # CPU preset
    python -m benchmarks.twostage_cond_mnist --data.source ../shared/data/mnist \\
        --vq-batches 30 --prior-batches 30 --per-class 10 --steps 5   # reduced: checks it runs

Stage one trains the ``vqgan`` plugin as a VQ-VAE with ``benchmarks.twostage_mnist``'s CPU recipe
(``configs/vqgan/mnist_cpu.yaml``); stage two trains ``twostage`` with a class-conditional
``Diffusion`` prior (``num_classes: 10``, label dropout for classifier-free guidance) on its
continuous 7x7 latents, the recipe of ``configs/twostage/mnist_cond_cpu.yaml``. It then draws
``per_class`` samples of each digit with guidance and reports:

- label agreement: how often the reference classifier gives a sample the label it was drawn for
  (target >= 90%), overall and per class;
- FID of those samples against as many MNIST test images, on the classifier's features;
- training wall and CPU seconds of each stage and sampling time per image.

Writes benchmarks/results/twostage_cond_mnist_cpu.json (``..._reduced.json`` when a budget is
overridden) and a picture, one row per class, beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import RESULTS, ROOT, load_span, stamp, write_result
from benchmarks.pictures import save_images
from benchmarks.twostage_mnist import PRESETS as VQ_PRESETS
from benchmarks.twostage_mnist import (
    fid_to_test,
    fit,
    overridden,
    prepare,
    stage_options,
    tokenizer_scores,
)
from genlab.callbacks.samples import fixed_seed
from genlab.registry import create_model

DEFAULT_CLASSIFIER = ROOT / "classifiers" / "mnist.pt"
AGREEMENT_TARGET = 0.90
CLASSES = 10

# Must match configs/twostage/mnist_cond_cpu.yaml (the test of the config checks it).
PRIOR_CPU = {"num_classes": CLASSES, "label_dropout": 0.1, "channels": 64,
             "channel_mults": [1], "num_res_blocks": 1, "attention_levels": [], "dropout": 0.0,
             "schedule": "cosine", "num_timesteps": 1000, "prediction": "v", "lr": 1e-3,
             "warmup_steps": 100, "ema_decay": 0.995, "sampler": "ddim", "sample_steps": 25,
             "guidance": 2.0}
PRESET = {"prior": PRIOR_CPU, "vq_batches": 1200, "prior_batches": 1000, "per_class": 100,
          "steps": 25, "guidance": 2.0, "batch_size": 64, "device": "cpu", "threads": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_options(__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, help="samples drawn for each digit")
    parser.add_argument("--steps", type=int, help="sampler steps")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict:
    return overridden(PRESET, {"vq_batches": args.vq_batches, "prior_batches": args.prior_batches,
                               "per_class": args.per_class, "steps": args.steps,
                               "guidance": args.guidance})


@torch.no_grad()
def conditional_samples(model: L.LightningModule, cfg: dict, seed: int,
                        chunk: int = 250) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``per_class`` samples of each class (class-major order), their labels, and the time."""
    labels = torch.arange(CLASSES).repeat_interleave(cfg["per_class"])
    model = model.eval()
    wall, cpu = time.perf_counter(), time.process_time()
    with fixed_seed(seed, torch.device("cpu")):
        fake = torch.cat([model.sample(len(part), labels=part, guidance=cfg["guidance"],
                                       steps=cfg["steps"]) for part in labels.split(chunk)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(labels)
    return fake, labels, {"sample_seconds": round(wall, 1), "sample_cpu_seconds": round(cpu, 1),
                          "ms_per_image": round(1000 * wall / n, 2),
                          "cpu_ms_per_image": round(1000 * cpu / n, 2)}


@torch.no_grad()
def agreement(classifier: torch.nn.Module, fake: torch.Tensor, labels: torch.Tensor) -> dict:
    """The share of samples the classifier gives their requested label, overall and per class."""
    said = torch.cat([classifier(part).argmax(1) for part in fake.split(500)])
    right = said == labels
    per_class = [round(float(right[labels == c].float().mean()), 4) for c in range(CLASSES)]
    return {"label_agreement": round(float(right.float().mean()), 4),
            "agreement_per_class": per_class}


def class_rows(fake: torch.Tensor, per_class: int, nrow: int = 10) -> torch.Tensor:
    """The first ``nrow`` samples of each class, class after class: one grid row per class."""
    take = min(nrow, per_class)
    return torch.cat([fake[c * per_class: c * per_class + take] for c in range(CLASSES)])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = settings(args)
    device, classifier, info, data = prepare(args, cfg)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="twostage_cond_"))
    L.seed_everything(args.seed, verbose=False)
    vq = create_model("vqgan", image_size=28, channels=1, pictures=False,
                      **VQ_PRESETS["cpu"]["vq"])
    vq_row = {"stage": "VQ-VAE", "train_batches": cfg["vq_batches"],
              **fit(vq, data, cfg["vq_batches"], cfg, work / "vq.ckpt")}
    vq_row.update(tokenizer_scores(vq.eval(), data, classifier, device))
    print(vq_row, flush=True)
    L.seed_everything(args.seed, verbose=False)
    two = create_model("twostage", autoencoder=str(work / "vq.ckpt"), prior="Diffusion",
                       prior_args=cfg["prior"])
    prior_row = {"stage": "class-conditional diffusion prior on latents",
                 "train_batches": cfg["prior_batches"],
                 **fit(two, data, cfg["prior_batches"], cfg, work / "twostage.ckpt")}
    print(f"two-stage checkpoint {work / 'twostage.ckpt'}", flush=True)
    fake, labels, timing = conditional_samples(two, cfg, args.seed)
    prior_row.update(agreement(classifier, fake, labels))
    prior_row["fid"] = fid_to_test(fake, data, classifier, device)
    prior_row.update(timing)
    print(prior_row, flush=True)
    name = f"twostage_cond_mnist_cpu{'_reduced' if cfg['reduced'] else ''}.json"
    out = Path(args.out or RESULTS / name)
    result = {
        "benchmark": "two-stage MNIST, class-conditional diffusion prior on VQ-VAE latents: "
                     "label agreement, FID",
        "preset": "cpu", "reduced": cfg["reduced"], "rows": [vq_row, prior_row],
        "verdict": {"label_agreement": prior_row["label_agreement"] >= AGREEMENT_TARGET},
        "target": {"label_agreement": f">= {AGREEMENT_TARGET}"},
        "protocol": {"extractor": "digit-classifier", "extractor_hash": info["hash"],
                     "resize": "none (28x28)", "samples": len(fake),
                     "per_class": cfg["per_class"], "sampler": f"ddim, {cfg['steps']} steps",
                     "guidance": cfg["guidance"],
                     "fid_reference": f"first {len(fake)} MNIST test images",
                     "agreement": "argmax of the reference classifier == requested label"},
        "settings": cfg, "command": "python -m benchmarks.twostage_cond_mnist " + " ".join(
            sys.argv[1:] if argv is None else argv),
        **stamp(cfg["device"]), "load_average_1_5_15_min": load_span(load_before),
    }
    write_result(result, out)
    save_images(class_rows(fake, cfg["per_class"]), out, "samples", nrow=10)
    return result


if __name__ == "__main__":
    main()
