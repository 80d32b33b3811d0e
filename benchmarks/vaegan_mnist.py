"""VAE-GAN vs plain VAE on MNIST: sample FID and how recognisable the reconstructions are.

    python -m benchmarks.reference_classifier          # once: writes classifiers/mnist.pt
    python -m benchmarks.vaegan_mnist --preset cpu     # small budget: ~3 min (shared 2 cores)
    python -m benchmarks.vaegan_mnist --preset gpu     # the target comparison (one GPU)
    python -m benchmarks.vaegan_mnist --preset gpu --device cpu --batches 20 --num 500 \\
        --out /tmp/vaegan_gpu_small.json               # the GPU preset at reduced size, on a CPU

Trains a VAE-GAN (``genlab_vaegan.VAEGAN``) and the plain VAE plugin (built through the
registry, ``create_model("vae")``: DCGAN conv encoder/decoder of the same width, Bernoulli
likelihood on the grey levels) with the same latent size, batch size, number of batches and
seed. Then, on the MNIST test split:

- FID of ``num`` samples against ``num`` test images, on the reference digit classifier's
  features (``--classifier``; named by its SHA-256 in the JSON);
- reconstruction accuracy: how often the classifier gives a test image's reconstruction
  (decoder of the posterior mean) the image's label (target: >= 90% for the VAE-GAN);
- the classifier's accuracy on the test images themselves (the ceiling).

The target: VAE-GAN FID < VAE FID, with reconstruction accuracy >= 90%. Writes the
figures to benchmarks/results/vaegan_mnist_<preset>.json and a side-by-side picture (inputs,
VAE-GAN reconstructions, VAE reconstructions) plus both models' samples to ``--pictures``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from genlab_vaegan import VAEGAN
from torch import Tensor

from benchmarks.common import DATA, RESULTS, ROOT, load_span, stamp, write_result
from benchmarks.pictures import save_images
from genlab.callbacks.samples import fixed_seed
from genlab.data.images import ImageDataModule
from genlab.metrics.classifier import ChannelFeatures, load_classifier
from genlab.modalities.image import fid_between
from genlab.modality import take
from genlab.pictures import reconstructions
from genlab.registry import create_model
from genlab.visualize import image_grid

DEFAULT_SOURCE = DATA / "mnist"
DEFAULT_CLASSIFIER = ROOT / "classifiers" / "mnist.pt"

# Each preset: networks, budget (training batches, the same for both models), evaluation size.
PRESETS: dict[str, dict] = {
    "cpu": {"latent_dim": 32, "width": 16, "batch_size": 64, "batches": 800, "lr": 5e-4,
            "gamma": 0.1, "beta": 0.1, "ema_decay": 0.99, "num": 2000, "device": "cpu",
            "workers": 0, "threads": 1},
    "gpu": {"latent_dim": 32, "width": 64, "batch_size": 128, "batches": 20_000, "lr": 2e-4,
            "gamma": 0.1, "beta": 0.1, "ema_decay": 0.999, "num": 10_000, "device": "cuda",
            "workers": 8, "threads": 0},
}

RECON_TARGET = 0.90


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="MNIST-like source")
    parser.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER))
    parser.add_argument("--batches", type=int, help="training batches per model")
    parser.add_argument("--gamma", type=float, help="the VAE-GAN's γ")
    parser.add_argument("--beta", type=float, help="the VAE-GAN's KL weight β")
    parser.add_argument("--num", type=int, help="samples and test images of the FID")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file (default benchmarks/results/vaegan_mnist_"
                                      "<preset>.json)")
    parser.add_argument("--pictures", default=str(ROOT / "runs" / "benchmarks" / "vaegan"),
                        help="directory of the side-by-side and sample pictures")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict:
    """The preset with the command line's overrides; ``reduced`` when any was given."""
    cfg = dict(PRESETS[args.preset])
    overrides = {"batches": args.batches, "num": args.num, "device": args.device}
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg["reduced"] = any(v is not None for v in overrides.values())  # a smaller budget
    for key in ("gamma", "beta"):  # model choices, not a budget: recorded in the settings
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    return cfg


def models(cfg: dict) -> dict[str, tuple[L.LightningModule, int]]:
    """Name -> (untrained model, optimizer steps per batch), same latent size and widths."""
    vaegan = VAEGAN(image_size=28, channels=1, latent_dim=cfg["latent_dim"], width=cfg["width"],
                    gamma=cfg["gamma"], beta=cfg["beta"], lr=cfg["lr"], ema_decay=cfg["ema_decay"],
                    pictures=False)
    vae = create_model("vae", data_shape=(1, 28, 28), latent_dim=cfg["latent_dim"],
                       network="conv", conv_width=cfg["width"], likelihood="bernoulli",
                       lr=cfg["lr"], pictures=False)
    # VAE-GAN: a discriminator, an encoder and a decoder step per batch; the VAE: one step.
    return {"VAE-GAN": (vaegan, 3), "VAE": (vae, 1)}


def train(model: L.LightningModule, steps_per_batch: int, data: ImageDataModule, cfg: dict,
          seed: int) -> float:
    """Train on ``cfg["batches"]`` batches; returns the seconds it took."""
    L.seed_everything(seed, verbose=False)
    trainer = L.Trainer(max_steps=cfg["batches"] * steps_per_batch, accelerator=cfg["device"],
                        devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False,
                        limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, data)
    return time.perf_counter() - start


def functions(model: L.LightningModule) -> tuple[Callable, Callable]:
    """``(reconstruct, sample)`` of either model, images in [-1, 1]."""
    if isinstance(model, VAEGAN):
        return model.reconstruct, model.sample
    return (lambda x: model.decode_mean(model.encode(x)[0])), model.sample


@torch.no_grad()
def evaluate(model: L.LightningModule, data: ImageDataModule, classifier: torch.nn.Module,
             cfg: dict, seed: int) -> tuple[dict, Tensor]:
    """FID of samples vs test images, reconstruction accuracy; returns them and the samples."""
    device = torch.device(cfg["device"])
    model = model.to(device).eval()
    reconstruct, sample = functions(model)
    right = total = 0
    for batch in data.test_dataloader():
        x, y = batch["x"].to(device), batch["label"].to(device)
        right += int((classifier(reconstruct(x)).argmax(1) == y).sum())
        total += len(x)
        if total >= cfg["num"]:
            break
    with fixed_seed(seed, device):
        fake = torch.cat([sample(min(500, cfg["num"] - i)) for i in range(0, cfg["num"], 500)])
    extractor = ChannelFeatures(classifier, channels=1).to(device)
    fid = fid_between(take(data.test_dataloader(), cfg["num"]), fake.split(500), extractor,
                      device)
    return {"fid": round(fid, 3), "recon_accuracy": round(right / total, 4)}, fake.cpu()


@torch.no_grad()
def ceiling(data: ImageDataModule, classifier: torch.nn.Module, cfg: dict) -> float:
    """The classifier's accuracy on the test images scored above."""
    right = total = 0
    for batch in data.test_dataloader():
        right += int((classifier(batch["x"].to(cfg["device"])).argmax(1).cpu()
                      == batch["label"]).sum())
        total += len(batch["x"])
        if total >= cfg["num"]:
            break
    return right / total


def pictures(trained: dict, samples: dict, data: ImageDataModule, out: Path) -> list[str]:
    """Side-by-side reconstructions (inputs / VAE-GAN / VAE) and each model's samples."""
    out.mkdir(parents=True, exist_ok=True)
    x = next(iter(data.test_dataloader()))["x"][:32].to(next(trained["VAE"].parameters()).device)
    with torch.no_grad():
        side = reconstructions(x, functions(trained["VAE-GAN"])[0], functions(trained["VAE"])[0])
    files = [out / "reconstructions_inputs_vaegan_vae.png"]
    side.save(files[0])
    for name, fake in samples.items():
        files.append(out / f"samples_{name.lower().replace('-', '')}.png")
        image_grid(fake[:64], nrow=8).save(files[-1])
    return [str(f) for f in files]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = settings(args)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    classifier, info = load_classifier(args.classifier)
    classifier = classifier.to(cfg["device"])
    data = ImageDataModule(args.source, image_size=28, channels=1, resize=False,
                           val_split="test", batch_size=cfg["batch_size"],
                           num_workers=cfg["workers"])
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    load_before, rows, trained, samples = os.getloadavg(), [], {}, {}
    L.seed_everything(args.seed, verbose=False)  # the initial weights of both models
    for name, (model, per_batch) in models(cfg).items():
        seconds = train(model, per_batch, data, cfg, args.seed)
        scores, samples[name] = evaluate(model, data, classifier, cfg, args.seed)
        trained[name] = model
        rows.append({"model": name, "train_batches": cfg["batches"],
                     "train_seconds": round(seconds, 1), **scores})
        print(rows[-1], flush=True)
    files = pictures(trained, samples, data, Path(args.pictures))
    by = {r["model"]: r for r in rows}
    verdict = {"fid_better": by["VAE-GAN"]["fid"] < by["VAE"]["fid"],
               "recon_recognisable": by["VAE-GAN"]["recon_accuracy"] >= RECON_TARGET}
    acc = ceiling(data, classifier, cfg)
    report(rows, verdict, cfg, acc, info, files)
    result = {
        "benchmark": "VAE-GAN vs VAE on MNIST: sample FID, reconstruction accuracy",
        "preset": args.preset, "reduced": cfg["reduced"], "rows": rows, "verdict": verdict,
        "target": {"fid": "VAE-GAN < VAE", "recon_accuracy": f">= {RECON_TARGET}"},
        "protocol": {"extractor": "digit-classifier", "extractor_hash": info["hash"],
                     "features": 128, "resize": "none (28x28)", "fid_samples": cfg["num"],
                     "fid_reference": f"first {cfg['num']} MNIST test images",
                     "recon": "decoder(posterior mean) of the same test images, argmax label",
                     "classifier_test_accuracy": round(acc, 4),
                     "vae": "genlab_vae VAE, conv, bernoulli likelihood on grey levels, "
                            "samples = mean images", "vaegan_samples": "EMA decoder"},
        "settings": cfg, "pictures": files,
        "command": "python -m benchmarks.vaegan_mnist " + " ".join(sys.argv[1:]),
        **stamp(cfg["device"]),
        "load_average_1_5_15_min": load_span(load_before),
    }
    out = args.out or RESULTS / f"vaegan_mnist_{args.preset}.json"
    write_result(result, out)
    save_images(samples["VAE-GAN"], out, "samples")
    return result


def report(rows: list[dict], verdict: dict, cfg: dict, acc: float, info: dict,
           files: list[str]) -> None:
    print(f"\nMNIST, {cfg['batches']} batches of {cfg['batch_size']}, latent {cfg['latent_dim']},"
          f" {cfg['device']}; FID on {cfg['num']} samples vs test images, digit-classifier "
          f"features sha256:{info['hash']}")
    print(f"{'model':<10}{'train s':>10}{'FID':>10}{'recon acc':>12}")
    for r in rows:
        print(f"{r['model']:<10}{r['train_seconds']:>10.1f}{r['fid']:>10.2f}"
              f"{r['recon_accuracy']:>12.4f}")
    print(f"classifier on the test images themselves: {acc:.4f}")
    if cfg["reduced"]:
        print("reduced budget (--batches/--num/--device): a check that the preset runs, "
              "not the target comparison")
    print(f"VAE-GAN FID better than VAE: {'MET' if verdict['fid_better'] else 'NOT MET'}; "
          f"VAE-GAN reconstructions >= {RECON_TARGET:.0%} recognised: "
          f"{'MET' if verdict['recon_recognisable'] else 'NOT MET'}")
    print("pictures: " + ", ".join(files))


if __name__ == "__main__":
    main()
