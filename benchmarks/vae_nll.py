"""Test NLL of VAEs on dynamically binarized MNIST (importance-sampled), with training time.

    python -m benchmarks.vae_nll --preset cpu        # small budget; about 6 minutes on 2 cores
    python -m benchmarks.vae_nll --preset gpu        # the targets' setting (k = 5000, all test)
    python -m benchmarks.vae_nll --preset gpu --device cpu --epochs 0.05 --test-examples 100 \\
        --k 100 --out /tmp/vae_gpu_small.json       # the GPU preset at reduced size, on a CPU

Trains one VAE per row of the preset (ELBO, then the IWAE bound with k samples), each from
scratch with the same seed, and estimates the test NLL with ``k`` importance samples
(``VAE.log_likelihood``) on the (dynamically binarized) test images. Prints the table and
writes it as JSON to benchmarks/results/vae_nll_<preset>.json (another file with ``--out``).
Targets (GPU preset): ELBO <= 86.0 nats, IWAE k=50 <= 84.5 nats at k = 5000.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import lightning as L
import torch
from genlab_vae import VAE

from benchmarks.common import DATA, RESULTS, load_span, stamp, write_result
from benchmarks.pictures import save_images
from genlab.data.images import ImageDataModule

DEFAULT_SOURCE = DATA / "mnist"
DIMS = 28 * 28

# Each preset: the networks, the budget and the rows (name -> k of the training bound).
PRESETS: dict[str, dict] = {
    "cpu": {"hidden": (200, 200), "act": "relu", "latent_dim": 50, "epochs": 5.0,
            "batch_size": 100,
            "lr": 1e-3, "lr_schedule": "cosine", "warmup_epochs": 0.5,
            "rows": {"VAE (ELBO)": 1, "IWAE (k=5)": 5}, "k": 500, "test_examples": 1000,
            "eval_chunk": 250, "device": "cpu", "workers": 0, "threads": 1},
    "gpu": {"hidden": (500, 500), "act": "tanh", "latent_dim": 50, "epochs": 1000.0,
            "batch_size": 100,
            "lr": 1e-3, "lr_schedule": "cosine", "warmup_epochs": 100.0,
            "rows": {"VAE (ELBO)": 1, "IWAE (k=50)": 50}, "k": 5000, "test_examples": 10_000,
            "eval_chunk": 1000, "device": "cuda", "workers": 8, "threads": 0},
}
TARGETS = {"VAE (ELBO)": 86.0, "IWAE (k=50)": 84.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="MNIST-like source")
    parser.add_argument("--epochs", type=float, help="training epochs per row (fractions ok)")
    parser.add_argument("--k", type=int, help="importance samples of the test NLL")
    parser.add_argument("--test-examples", type=int, help="test images scored")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--rows", nargs="+", help="only these rows of the preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file (default benchmarks/results/vae_nll_<preset>)")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict:
    """The preset with the command line's overrides; ``reduced`` when any was given."""
    cfg = dict(PRESETS[args.preset])
    overrides = {"epochs": args.epochs, "k": args.k, "test_examples": args.test_examples,
                 "device": args.device}
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if args.rows:
        cfg["rows"] = {name: k for name, k in cfg["rows"].items() if name in args.rows}
    cfg["reduced"] = any(v is not None for v in overrides.values()) or bool(args.rows)
    return cfg


def datamodule(args: argparse.Namespace, cfg: dict) -> ImageDataModule:
    # All 60,000 training images are trained on (no validation carve-out, no model selection):
    # the protocol of the published figures. val_split=test only keeps the module from carving.
    data = ImageDataModule(args.source, image_size=28, channels=1, resize=False, binarize=True,
                           label_column=None, val_split="test", batch_size=cfg["batch_size"],
                           num_workers=cfg["workers"])
    data.prepare_data()
    data.setup("fit")
    return data


def train(cfg: dict, train_samples: int, data: ImageDataModule, seed: int) -> tuple[VAE, dict]:
    """One VAE trained with the ``train_samples``-sample bound; returns it and its timings."""
    L.seed_everything(seed, verbose=False)
    steps_per_epoch = len(data.sets["train"]) // cfg["batch_size"]
    steps = max(1, round(cfg["epochs"] * steps_per_epoch))
    model = VAE(data_shape=(1, 28, 28), latent_dim=cfg["latent_dim"], hidden=cfg["hidden"],
                act=cfg["act"], likelihood="bernoulli", train_samples=train_samples,
                kl_warmup_steps=round(cfg["warmup_epochs"] * steps_per_epoch),
                eval_chunk=cfg["eval_chunk"], lr=cfg["lr"], lr_schedule=cfg["lr_schedule"],
                pictures=False)
    trainer = L.Trainer(max_steps=steps, accelerator=cfg["device"], devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=False, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    return model, {"train_steps": steps, "train_seconds": round(seconds, 1),
                   "train_objective_last_batch": float(trainer.callback_metrics.get(
                       "train/iwae" if train_samples > 1 else "train/elbo", math.nan))}


@torch.no_grad()
def test_nll(model: VAE, data: ImageDataModule, cfg: dict, seed: int) -> dict:
    """Mean importance-sampled NLL (nats) over the first ``test_examples`` test images."""
    device = torch.device(cfg["device"])
    model = model.to(device).eval()
    torch.manual_seed(seed)  # the test images' binarization and the importance samples
    total, count, start = 0.0, 0, time.perf_counter()
    for batch in data.test_dataloader():
        x = batch["x"][: cfg["test_examples"] - count].to(device)
        total -= float(model.log_likelihood({"x": x}, k=cfg["k"]).double().sum())
        count += len(x)
        if count >= cfg["test_examples"]:
            break
    nll = total / count
    return {"test_nll": round(nll, 3), "bits_per_dim": round(nll / (DIMS * math.log(2)), 5),
            "test_examples": count, "eval_seconds": round(time.perf_counter() - start, 1)}


def report(rows: list[dict], cfg: dict, preset: str) -> None:
    print(f"\nTest NLL, dynamically binarized MNIST, k = {cfg['k']} importance samples, "
          f"{rows[0]['test_examples'] if rows else 0} test images, {cfg['device']}")
    print(f"{'model':<14}{'epochs':>8}{'train s':>10}{'NLL nats':>10}{'bits/dim':>10}"
          f"{'target':>8}")
    targets = TARGETS if preset == "gpu" and not cfg["reduced"] else {}  # targets: full GPU preset
    for row in rows:
        target = targets.get(row["model"])
        print(f"{row['model']:<14}{cfg['epochs']:>8g}{row['train_seconds']:>10.1f}"
              f"{row['test_nll']:>10.2f}{row['bits_per_dim']:>10.4f}"
              f"{'' if target is None else f'<={target}':>8}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = settings(args)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    data = datamodule(args, cfg)
    load_before, rows = os.getloadavg(), []
    out = args.out or RESULTS / f"vae_nll_{args.preset}.json"
    for name, train_samples in cfg["rows"].items():
        model, timing = train(cfg, train_samples, data, args.seed)
        if not rows:  # the first row's model (the ELBO VAE): its mean images, seed 0
            torch.manual_seed(0)
            save_images(model.sample_eval(64).to("cpu"), out, "samples")
        rows.append({"model": name, "train_samples": train_samples, **timing,
                     **test_nll(model, data, cfg, args.seed)})
        print(rows[-1], flush=True)
    report(rows, cfg, args.preset)
    result = {
        "benchmark": "VAE test NLL on dynamically binarized MNIST (importance sampled)",
        "preset": args.preset, "reduced": cfg["reduced"], "rows": rows,
        "protocol": {"importance_samples": cfg["k"], "test_binarization": "dynamic, seeded",
                     "train_images": len(data.sets["train"]), "validation": "none",
                     "likelihood": "bernoulli",
                     "encoder_decoder": f"MLP {cfg['act']} {cfg['hidden']}"},
        "settings": {k: v for k, v in cfg.items() if k != "rows"},
        "command": "python -m benchmarks.vae_nll " + " ".join(sys.argv[1:]),
        **stamp(cfg["device"]),
        "load_average_1_5_15_min": load_span(load_before),
    }
    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
