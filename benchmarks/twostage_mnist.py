"""Two-stage MNIST: a VQ-VAE tokenizer, then a GPT prior over its 7x7 codes; FID and code usage.

    python -m benchmarks.reference_classifier            # once: writes classifiers/mnist.pt
    python -m benchmarks.twostage_mnist --data.source ../shared/data/mnist      # CPU preset
    python -m benchmarks.twostage_mnist --preset gpu --data.source path/to/mnist
    python -m benchmarks.twostage_mnist --data.source ../shared/data/mnist --vq-batches 30 \\
        --prior-batches 30 --num 500                     # a reduced run: checks it runs

Stage one trains the ``vqgan`` plugin as a VQ-VAE (``disc_weight: 0``); its checkpoint is written
and stage two trains ``twostage`` with a ``GPT`` prior on it, through the registry and the same
``Trainer`` as ``genlab fit``. On the MNIST test split:

- codebook usage: the fraction of the codes used by the test images' codes (target >= 95%);
- reconstruction accuracy: how often the reference classifier gives a test image's
  reconstruction (decoded codes) the image's label (target >= 97%; real images: the ceiling);
- FID of ``num`` prior samples against ``num`` test images on the reference classifier's
  features (10,000 in the presets), and the sampling time per image (49 tokens an image).

Writes benchmarks/results/twostage_mnist_<preset>.json (``..._reduced.json`` when a budget is
overridden) with the wall and CPU seconds of each stage, and pictures of reconstructions and
samples beside it.
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

from benchmarks.common import DATA, RESULTS, ROOT, load_span, stamp, write_result
from benchmarks.pictures import picture_path, save_images
from genlab.callbacks.samples import fixed_seed
from genlab.data.images import ImageDataModule
from genlab.metrics.classifier import ChannelFeatures, load_classifier
from genlab.modalities.image import fid_between
from genlab.modality import take
from genlab.nn.quantize import code_statistics
from genlab.pictures import reconstructions
from genlab.registry import create_model

DEFAULT_CLASSIFIER = ROOT / "classifiers" / "mnist.pt"
USAGE_TARGET, RECON_TARGET = 0.95, 0.97

PRESETS: dict[str, dict] = {
    "cpu": {"vq": {"num_codes": 128, "code_dim": 8, "width": 16, "codebook_decay": 0.95,
                   "dead_after": 20, "rec_loss": "l2", "lr": 1e-3, "betas": (0.9, 0.99)},
            "prior": {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "lr": 1e-3,
                      "min_lr": 1e-4, "warmup_steps": 100},
            "batch_size": 64, "vq_batches": 1200, "prior_batches": 400, "num": 10_000,
            "compare_num": 2000, "device": "cpu", "threads": 1},
    "gpu": {"vq": {"num_codes": 256, "code_dim": 16, "width": 64, "dead_after": 100},
            "prior": {"n_layer": 6, "n_head": 8, "n_embd": 256, "dropout": 0.1, "lr": 6e-4,
                      "min_lr": 6e-5, "warmup_steps": 200},
            "batch_size": 128, "vq_batches": 10_000, "prior_batches": 10_000, "num": 10_000,
            "compare_num": 10_000, "device": "cuda", "threads": 0},
}


def stage_options(description: str) -> argparse.ArgumentParser:
    """The options every two-stage MNIST benchmark takes: the data, the reference classifier,
    each stage's batches (overrides: a reduced run), the seed and the output file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data.source", dest="source", default=str(DATA / "mnist"))
    parser.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER))
    parser.add_argument("--vq-batches", type=int)
    parser.add_argument("--prior-batches", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    return parser


def overridden(preset: dict, overrides: dict) -> dict:
    """``preset`` with the options given on the command line; ``reduced`` when there were any."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return {**preset, **given, "reduced": bool(given)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_options(__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--num", type=int, help="samples and test images of the FID")
    parser.add_argument("--device")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict:
    return overridden(PRESETS[args.preset], {"vq_batches": args.vq_batches,
                                             "prior_batches": args.prior_batches,
                                             "num": args.num, "device": args.device})


def mnist(source: str, batch_size: int) -> ImageDataModule:
    """MNIST from ``source``, set up for fitting (train) and scoring (test as validation)."""
    data = ImageDataModule(source, image_size=28, channels=1, resize=False,
                           val_split="test", batch_size=batch_size, num_workers=0)
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    return data


def prepare(args: argparse.Namespace,
            cfg: dict) -> tuple[torch.device, torch.nn.Module, dict, ImageDataModule]:
    """A run's threads and device, the reference classifier (eval mode) on that device, its
    description, and MNIST set up with the run's batch size."""
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    classifier, info = load_classifier(args.classifier)
    return device, classifier.to(device).eval(), info, mnist(args.source, cfg["batch_size"])


def fit(model: L.LightningModule, data: ImageDataModule, batches: int, cfg: dict,
        ckpt: Path | None = None, callbacks: list[L.Callback] | None = None) -> dict:
    """Train for ``batches`` batches (saved to ``ckpt``); wall and CPU seconds."""
    trainer = L.Trainer(max_steps=batches, accelerator=cfg["device"], devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=False, limit_val_batches=0, callbacks=callbacks)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, data)
    took = {"train_seconds": round(time.perf_counter() - wall, 1),
            "train_cpu_seconds": round(time.process_time() - cpu, 1)}
    if ckpt is not None:
        trainer.save_checkpoint(ckpt)
    return took


@torch.no_grad()
def tokenizer_scores(vq: L.LightningModule, data: ImageDataModule, classifier: torch.nn.Module,
                     device: torch.device) -> dict:
    """Codebook usage over the whole test split; reconstruction and real-image accuracy."""
    counts = torch.zeros(vq.num_codes, dtype=torch.long, device=device)
    right = real = total = 0
    for batch in data.test_dataloader():
        x, y = batch["x"].to(device), batch["label"].to(device)
        codes = vq.encode(x)
        counts += torch.bincount(codes.flatten(), minlength=vq.num_codes)
        right += int((classifier(vq.decode(codes)).argmax(1) == y).sum())
        real += int((classifier(x).argmax(1) == y).sum())
        total += len(x)
    perplexity, usage = code_statistics(counts)
    return {"codebook_usage": round(float(usage), 4), "perplexity": round(float(perplexity), 2),
            "recon_accuracy": round(right / total, 4), "real_accuracy": round(real / total, 4),
            "test_images": total}


@torch.no_grad()
def timed_samples(model: L.LightningModule, num: int, seed: int, device: torch.device,
                  chunk: int = 500) -> tuple[torch.Tensor, dict]:
    """``num`` samples drawn ``chunk`` at a time; wall and CPU time in all and per image."""
    model = model.to(device).eval()
    wall, cpu = time.perf_counter(), time.process_time()
    with fixed_seed(seed, device):  # .cpu() waits for a GPU's queue before the clocks stop
        fake = torch.cat([model.sample(min(chunk, num - i)) for i in range(0, num, chunk)]).cpu()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return fake, {"sample_seconds": round(wall, 1), "sample_cpu_seconds": round(cpu, 1),
                  "ms_per_image": round(1000 * wall / num, 2),
                  "cpu_ms_per_image": round(1000 * cpu / num, 2)}


def fid_to_test(fake: torch.Tensor, data: ImageDataModule, classifier: torch.nn.Module,
                device: torch.device) -> float:
    """FID of ``fake`` against as many of the first test images, on the classifier's
    features."""
    extractor = ChannelFeatures(classifier, channels=1).to(device)
    return round(fid_between(take(data.test_dataloader(), len(fake)), fake.split(500),
                             extractor, device), 3)


def prior_scores(model: L.LightningModule, data: ImageDataModule, classifier: torch.nn.Module,
                 cfg: dict, seed: int) -> tuple[dict, torch.Tensor]:
    """FID of ``num`` samples vs as many test images (and of the first ``compare_num``, the
    pixel GPT's sample count); sampling time per image."""
    device = torch.device(cfg["device"])
    fake, timing = timed_samples(model, cfg["num"], seed, device)
    scores = {"fid": fid_to_test(fake, data, classifier, device)}
    if cfg["compare_num"] < cfg["num"]:
        scores[f"fid_{cfg['compare_num']}"] = fid_to_test(fake[:cfg["compare_num"]], data,
                                                          classifier, device)
    return {**scores, **timing}, fake


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = settings(args)
    device, classifier, info, data = prepare(args, cfg)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="twostage_"))
    L.seed_everything(args.seed, verbose=False)
    vq = create_model("vqgan", image_size=28, channels=1, pictures=False, **cfg["vq"])
    vq_row = {"stage": "VQ-VAE", "train_batches": cfg["vq_batches"],
              **fit(vq, data, cfg["vq_batches"], cfg, work / "vq.ckpt")}
    vq_row.update(tokenizer_scores(vq.to(device).eval(), data, classifier, device))
    print(vq_row, flush=True)
    L.seed_everything(args.seed, verbose=False)
    two = create_model("twostage", autoencoder=str(work / "vq.ckpt"), prior="GPT",
                       prior_args=cfg["prior"])
    prior_row = {"stage": "GPT prior on codes", "train_batches": cfg["prior_batches"],
                 "tokens_per_image": two.prior.hparams.block_size,
                 **fit(two, data, cfg["prior_batches"], cfg)}
    scores, fake = prior_scores(two, data, classifier, cfg, args.seed)
    prior_row.update(scores)
    print(prior_row, flush=True)
    verdict = {"codebook_usage": vq_row["codebook_usage"] >= USAGE_TARGET,
               "recon_recognised": vq_row["recon_accuracy"] >= RECON_TARGET}
    name = f"twostage_mnist_{args.preset}{'_reduced' if cfg['reduced'] else ''}.json"
    out = Path(args.out or RESULTS / name)
    result = {
        "benchmark": "two-stage MNIST: VQ-VAE codes, GPT prior; usage, reconstructions, FID",
        "preset": args.preset, "reduced": cfg["reduced"], "rows": [vq_row, prior_row],
        "verdict": verdict,
        "target": {"codebook_usage": f">= {USAGE_TARGET}", "recon_accuracy": f">= {RECON_TARGET}",
                   "fid": "<= the pixel GPT's at the same CPU time (benchmarks.pixel_gpt_mnist)"},
        "protocol": {"extractor": "digit-classifier", "extractor_hash": info["hash"],
                     "resize": "none (28x28)", "fid_samples": cfg["num"],
                     "fid_reference": f"first {cfg['num']} MNIST test images",
                     "usage": "codes of all test images", "recon": "decode(encode(x)), argmax"},
        "settings": cfg, "command": "python -m benchmarks.twostage_mnist " + " ".join(
            sys.argv[1:] if argv is None else argv),
        **stamp(cfg["device"]), "load_average_1_5_15_min": load_span(load_before),
    }
    write_result(result, out)
    save_images(fake, out, "samples")
    x = next(iter(data.test_dataloader()))["x"][:32].to(device)
    with torch.no_grad():
        path = picture_path(out, "reconstructions")
        reconstructions(x, vq.reconstruct).save(path)
    print(f"picture {path}")
    return result


if __name__ == "__main__":
    main()
