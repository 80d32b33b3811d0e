"""Latent diffusion against pixel diffusion on MNIST at the same training time: FID and speed.

    python -m benchmarks.reference_classifier            # once: writes classifiers/mnist.pt
    python -m benchmarks.latent_diffusion_mnist --data.source ../shared/data/mnist  # CPU preset
    python -m benchmarks.latent_diffusion_mnist --data.source ../shared/data/mnist \\
        --vq-batches 30 --prior-batches 30 --num 100 --steps 5   # reduced: checks it runs
    python -m benchmarks.latent_diffusion_mnist --preset gpu --data.source path/to/mnist

Stage one trains the ``vqgan`` plugin as a VQ-VAE with ``benchmarks.twostage_mnist``'s recipe
(CPU: ``configs/vqgan/mnist_cpu.yaml``); stage two trains ``twostage`` with an *unconditional*
``Diffusion`` prior on its continuous 7x7 latents (CPU: the U-Net of
``configs/twostage/mnist_cond_cpu.yaml`` without the label, 32 channels wide). Then a pixel
``Diffusion`` with the recipe of ``configs/diffusion/mnist_cpu.yaml`` (GPU preset:
``configs/diffusion/mnist.yaml``) trains for the time the two stages took together: CPU
seconds (``time.process_time``) on a CPU, wall seconds on a GPU. Its step count, which is the
horizon of its cosine schedule, comes from a few throwaway batches; a callback stops it at the
budget in any case. Its EMA decay is the prior's (0.995), since the config's 0.999 is tuned
for 7,000 steps and would keep about half the random initial weights after ~700.

Both draw ``num`` samples with the same sampler (DDIM) and steps, 500 a call, and are scored
with FID against as many MNIST test images on the reference classifier's features; the
speed-up is the ratio of their CPU milliseconds per image (robust to other processes' load;
wall milliseconds on a GPU). Targets: latent FID <= pixel FID, speed-up >= 4.

Writes benchmarks/results/latent_diffusion_mnist_<preset>.json (``..._reduced.json`` when a
budget is overridden) and a picture beside it: latent samples above, pixel samples below.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import RESULTS, ROOT, command, load_span, read_config, stamp, write_result
from benchmarks.pictures import save_images
from benchmarks.pixel_gpt_mnist import CPUBudget, calibrate
from benchmarks.twostage_cond_mnist import PRIOR_CPU
from benchmarks.twostage_mnist import PRESETS as VQ_PRESETS
from benchmarks.twostage_mnist import (
    fid_to_test,
    fit,
    mnist,
    overridden,
    prepare,
    stage_options,
    timed_samples,
    tokenizer_scores,
)
from genlab.data.images import ImageDataModule
from genlab.registry import create_model

DEFAULT_CLASSIFIER = ROOT / "classifiers" / "mnist.pt"
SPEEDUP_TARGET = 4.0
CONDITIONING = ("num_classes", "label_dropout", "guidance")  # dropped: unconditional priors


def unconditional(args: dict) -> dict:
    """A diffusion recipe's init_args without its class conditioning."""
    return {k: v for k, v in args.items() if k not in CONDITIONING}


def config_args(path: str, *keys: str) -> dict:
    """``model.init_args`` (then ``keys`` inside it) of a YAML config under the repository."""
    args = read_config(ROOT / path)["model"]["init_args"]
    for key in keys:
        args = args[key]
    return dict(args)


# A 32-channel prior: at 64 (configs/twostage/mnist_cond_cpu.yaml's width) a quick check gave
# 19-23 CPU-ms an image against the pixel model's 75 (DDIM-25), short of 4x; at 32, 12 ms.
PRESETS: dict[str, dict] = {
    "cpu": {"vq": VQ_PRESETS["cpu"]["vq"], "prior": {**unconditional(PRIOR_CPU), "channels": 32},
            "pixel_config": "configs/diffusion/mnist_cpu.yaml", "pixel": {"ema_decay": 0.995},
            "vq_batches": 1200, "prior_batches": 1500, "num": 2000, "steps": 25,
            "batch_size": 64, "device": "cpu", "threads": 1},
    "gpu": {"vq": VQ_PRESETS["gpu"]["vq"],
            "prior": unconditional(config_args("configs/twostage/mnist_latent_diffusion.yaml",
                                               "prior_args")),
            "pixel_config": "configs/diffusion/mnist.yaml", "pixel": {},
            "vq_batches": 3000, "prior_batches": 5000, "num": 10_000, "steps": 50,
            "batch_size": 128, "device": "cuda", "threads": 0},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_options(__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--num", type=int, help="samples of each model and test images of the FID")
    parser.add_argument("--steps", type=int, help="DDIM steps of both models")
    parser.add_argument("--device")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict:
    return overridden(PRESETS[args.preset], {"vq_batches": args.vq_batches,
                                             "prior_batches": args.prior_batches,
                                             "num": args.num, "steps": args.steps,
                                             "device": args.device})


def pixel_args(cfg: dict) -> dict:
    """The pixel model's init_args: its config's, with the preset's overrides and steps."""
    return {**config_args(cfg["pixel_config"]), **cfg["pixel"], "sample_steps": cfg["steps"]}


def prior_args(cfg: dict) -> dict:
    """The latent prior's init_args: the preset's, sampling with the run's steps."""
    return {**cfg["prior"], "sample_steps": cfg["steps"]}


def budget_clock(device: str) -> tuple[str, Callable[[], float]]:
    """What the time budget counts: CPU seconds on a CPU (fair on a shared machine), wall
    seconds on a GPU (whose work the process's CPU time does not see)."""
    if torch.device(device).type == "cpu":
        return "train_cpu_seconds", time.process_time
    return "train_seconds", time.perf_counter


def two_stages(data: ImageDataModule, classifier: torch.nn.Module, cfg: dict, seed: int,
               work: Path) -> tuple[list[dict], L.LightningModule]:
    """Stage one (VQ-VAE) and two (unconditional latent diffusion); their rows and the model."""
    device = torch.device(cfg["device"])
    L.seed_everything(seed, verbose=False)
    vq = create_model("vqgan", image_size=28, channels=1, pictures=False, **cfg["vq"])
    vq_row = {"stage": "VQ-VAE", "train_batches": cfg["vq_batches"],
              **fit(vq, data, cfg["vq_batches"], cfg, work / "vq.ckpt")}
    vq_row.update(tokenizer_scores(vq.to(device).eval(), data, classifier, device))
    print(vq_row, flush=True)
    L.seed_everything(seed, verbose=False)
    two = create_model("twostage", autoencoder=str(work / "vq.ckpt"), prior="Diffusion",
                       prior_args=prior_args(cfg))
    prior_row = {"model": "latent diffusion: prior on 7x7 VQ-VAE latents",
                 "train_batches": cfg["prior_batches"],
                 **fit(two, data, cfg["prior_batches"], cfg)}
    prior_row["latent_scale"] = round(float(two.latent_scale), 4)
    return [vq_row, prior_row], two


def pixel_diffusion(source: str, cfg: dict, budget: float,
                    seed: int) -> tuple[dict, L.LightningModule]:
    """The pixel model trained for ``budget`` seconds of the budget clock; its row and it."""
    key, clock = budget_clock(cfg["device"])
    args = pixel_args(cfg)
    batch = read_config(ROOT / cfg["pixel_config"])["data"]["init_args"]
    data = mnist(source, batch["batch_size"])
    L.seed_everything(seed, verbose=False)
    per_batch = calibrate(lambda: create_model("Diffusion", **args), data, cfg["device"],
                          batches=5, clock=clock)
    steps = max(1, math.floor(budget / per_batch))
    L.seed_everything(seed, verbose=False)
    model = create_model("Diffusion", **args)
    took = fit(model, data, steps, cfg, callbacks=[CPUBudget(budget, clock)])
    return {"model": f"pixel diffusion ({cfg['pixel_config']}'s recipe)",
            "train_batches": int(model.global_step), "planned_batches": steps,
            "calibrated_seconds_per_batch": round(per_batch, 4), "budget_clock": key,
            "batch_size": batch["batch_size"], **took}, model


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = settings(args)
    device, classifier, info, data = prepare(args, cfg)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="latent_diffusion_"))
    (vq_row, prior_row), two = two_stages(data, classifier, cfg, args.seed, work)
    key, _ = budget_clock(cfg["device"])
    budget = round(vq_row[key] + prior_row[key], 1)
    pixel_row, pixel = pixel_diffusion(args.source, cfg, budget, args.seed)
    fakes = {}
    for row, model in ((prior_row, two), (pixel_row, pixel)):
        fakes[row["model"]], timing = timed_samples(model, cfg["num"], args.seed, device)
        row.update({"fid": fid_to_test(fakes[row["model"]], data, classifier, device), **timing})
        print(row, flush=True)
    speedup = {"cpu": round(pixel_row["cpu_ms_per_image"] / prior_row["cpu_ms_per_image"], 2),
               "wall": round(pixel_row["ms_per_image"] / prior_row["ms_per_image"], 2)}
    judged = speedup["cpu" if device.type == "cpu" else "wall"]
    name = f"latent_diffusion_mnist_{args.preset}{'_reduced' if cfg['reduced'] else ''}.json"
    out = Path(args.out or RESULTS / name)
    result = {
        "benchmark": "latent diffusion (VQ-VAE latents) vs pixel diffusion at the same training "
                     "time: FID, sampling speed",
        "preset": args.preset, "reduced": cfg["reduced"], "rows": [vq_row, prior_row, pixel_row],
        "budget_seconds": budget, "sampling_speedup_cpu": speedup["cpu"],
        "sampling_speedup_wall": speedup["wall"],
        "verdict": {"fid_at_most_pixel": prior_row["fid"] <= pixel_row["fid"],
                    "sampling_4x_faster": judged >= SPEEDUP_TARGET},
        "target": {"fid": "latent <= pixel at the same training time",
                   "sampling_speedup": f">= {SPEEDUP_TARGET} (CPU ms per image; wall on a GPU)"},
        "protocol": {"extractor": "digit-classifier", "extractor_hash": info["hash"],
                     "resize": "none (28x28)", "fid_samples": cfg["num"],
                     "fid_reference": f"first {cfg['num']} MNIST test images",
                     "sampler": f"ddim, {cfg['steps']} steps, EMA weights, 500 images a call",
                     "budget": f"{budget} {key[6:].replace('_', ' ')} of training, both "
                               f"stages together; the pixel model stops there",
                     "samples_note": f"{cfg['num']:,} samples a model, not 10,000: the CPU "
                                     f"benchmark's 20-minute budget" if cfg["num"] < 10_000
                                     else ""},
        "settings": {**cfg, "prior": prior_args(cfg), "pixel": pixel_args(cfg)},
        "command": command("benchmarks.latent_diffusion_mnist", argv),
        **stamp(cfg["device"]), "load_average_1_5_15_min": load_span(load_before),
    }
    write_result(result, out)
    both = torch.cat([fake[:32] for fake in fakes.values()])  # 4 rows each: latent, pixel
    save_images(both, out, "samples")
    return result


if __name__ == "__main__":
    main()
