"""MNIST diffusion: train the GPU preset, time sampling at 10 / 50 / 250 steps, score with FID.

GPU preset (one H100, configs/diffusion/mnist.yaml as shipped):

    python -m benchmarks.diffusion_mnist --source ../shared/data/mnist \
        --extractor classifiers/mnist.pt

Reduced size on a CPU (proves the script runs; its figures say nothing about quality):

    python -m benchmarks.diffusion_mnist --source ../shared/data/mnist --cpu-small

Trains with ``genlab fit`` (the config plus overrides), then loads the checkpoint and prints
samples per second of DDIM at 10, 50 and 250 steps (EMA weights, batch ``--batch-size``). With
``--extractor`` (a ``genlab classifier`` file) it runs ``genlab evaluate`` for 50- and 250-step
DDIM and prints the FIDs and their ratio (target: 50-step within 1.2x of 250-step).
Results go to benchmarks/results/diffusion_mnist[_cpu_small].json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import (
    DATA,
    RESULTS,
    ROOT,
    evaluated_fid,
    fit_config,
    mnist_preset,
    write_result,
)
from benchmarks.pictures import save_checkpoint_grid
from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.cli import main as genlab_main

CONFIG = ROOT / "configs" / "diffusion" / "mnist.yaml"
STEPS = (10, 50, 250)
# Reduced size for a CPU: a tiny U-Net, a few training steps, a few samples.
CPU_SMALL = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
             "--trainer.max_steps", "20", "--trainer.val_check_interval", "10",
             "--trainer.limit_val_batches", "2",
             "--model.channels", "8", "--model.sample_steps", "4", "--samples.every_n_steps", "0",
             "--data.batch_size", "16", "--data.num_workers", "0"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DATA / "mnist"))
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--cpu-small", action="store_true", help="reduced size on a CPU")
    parser.add_argument("--ckpt", default=None, help="skip training: time this checkpoint")
    parser.add_argument("--extractor", default=None, help="genlab classifier file for FID")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (GPU), 8")
    parser.add_argument("--fid-num", type=int, default=10_000, help="samples per FID")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--root", default="runs/bench_diffusion_mnist")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> tuple[Path, float]:
    """``genlab fit`` of the config; the checkpoint and the wall seconds it took."""
    extra = ["--trainer.logger", "false", *(CPU_SMALL if args.cpu_small else [])]
    ckpt, seconds = fit_config(args.config, args.source, args.root, extra)
    return ckpt, seconds["wall"]


def samples_per_second(ckpt: Path, device: str, batch: int) -> dict[str, float]:
    model = load_model(ckpt, device=device)
    rates = {}
    for steps in STEPS:
        model.sample_eval(batch, steps=min(steps, 2))  # warm-up (kernels, allocator)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with fixed_seed(0, model.device):
            model.sample_eval(batch, sampler="ddim", steps=steps)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rates[f"ddim_{steps}"] = round(batch / (time.perf_counter() - start), 2)
        print(f"DDIM {steps:3d} steps: {rates[f'ddim_{steps}']:.2f} samples/s "
              f"(batch {batch}, {device})")
    return rates


def fid(ckpt: Path, args: argparse.Namespace, steps: int, device: str) -> float | None:
    out = ckpt.with_name(f"eval_ddim{steps}.json")
    genlab_main(["evaluate", "--ckpt", str(ckpt), "--extractor", args.extractor, "--steps",
                 str(steps), "--sampler", "ddim", "--num", str(args.fid_num), "--device", device,
                 "--out", str(out)])
    return evaluated_fid(out)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    title = "diffusion on MNIST: DDIM samples/s at 10/50/250 steps, FID"
    device, batch, report = mnist_preset(args, title, "benchmarks.diffusion_mnist")
    if args.ckpt:
        ckpt = Path(args.ckpt)
    else:
        ckpt, seconds = train(args)
        report["train_seconds"] = round(seconds, 1)
        print(f"trained in {seconds:.0f} s: {ckpt}")
    report["checkpoint"] = str(ckpt)
    report["samples_per_second"] = samples_per_second(ckpt, device, batch)
    if args.extractor:
        fids = {f"ddim_{s}": fid(ckpt, args, s, device) for s in (50, 250)}
        report["fid"] = fids
        if fids["ddim_50"] and fids["ddim_250"]:
            ratio = fids["ddim_50"] / fids["ddim_250"]
            report["fid_ratio_50_over_250"] = round(ratio, 3)
            print(f"FID DDIM-50 {fids['ddim_50']:.2f}, DDIM-250 {fids['ddim_250']:.2f}, "
                  f"ratio {ratio:.2f} (target <= 1.2)")
    suffix = "_cpu_small" if args.cpu_small else ""
    out = Path(args.out or RESULTS / f"diffusion_mnist{suffix}.json")
    write_result(report, out)
    save_checkpoint_grid(ckpt, out, "ddim50_samples", device, sampler="ddim", steps=50)


if __name__ == "__main__":
    main()
