"""Super-resolution 14x14 -> 28x28 on MNIST with diffusion: PSNR against bicubic upsampling.

    python -m benchmarks.super_resolution --source ../shared/data/mnist --threads 1

Trains the CPU preset ``configs/diffusion/mnist_sr_cpu.yaml`` (a U-Net conditioned on the
digit downsampled to 14x14, ``batch["source"]``) with ``genlab fit``, then upsamples ``--num``
test digits (``--steps``-step DDIM, EMA weights) and reports the mean per-image PSNR of the
samples and of bicubic upsampling against the originals (pixels in [0, 1]; target: above
bicubic), with CPU seconds (``time.process_time``) and wall seconds.

``--reduced`` trains ``--reduced-steps`` steps and scores a few digits: it proves the script runs
end to end; its figures say nothing about quality. Results go to
``benchmarks/results/super_resolution_cpu[_reduced].json``, a strip (source, bicubic, diffusion,
original) to ``benchmarks/results/img/``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

from benchmarks.common import (
    DATA,
    RESULTS,
    ROOT,
    command,
    fit_config,
    load_span,
    stamp,
    write_result,
)
from benchmarks.pictures import picture_path
from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.data.images import ImageDataModule
from genlab.visualize import image_grid

CONFIG = ROOT / "configs" / "diffusion" / "mnist_sr_cpu.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DATA / "mnist"))
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--ckpt", default=None, help="skip training: score this checkpoint")
    parser.add_argument("--num", type=int, default=1000, help="test digits upsampled")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reduced", action="store_true", help="a few steps: proves it runs")
    parser.add_argument("--reduced-steps", type=int, default=30)
    parser.add_argument("--root", default="runs/bench_super_resolution")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> tuple[Path, dict[str, float]]:
    """``genlab fit`` of the config in this process; the checkpoint and the time it took."""
    steps = str(args.reduced_steps)
    extra = ["--trainer.max_steps", steps, "--trainer.val_check_interval", steps]
    ckpt, seconds = fit_config(args.config, args.source, args.root, extra if args.reduced else ())
    return ckpt, {"train_cpu_seconds": seconds["cpu"], "train_wall_seconds": seconds["wall"]}


def psnr(x: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (dB) of images in [-1, 1], measured on pixels in [0, 1]."""
    return peak_signal_noise_ratio((x.clamp(-1, 1) + 1) / 2, (target + 1) / 2, data_range=1.0,
                                   reduction="none", dim=(1, 2, 3))


@torch.no_grad()
def upsample(model: torch.nn.Module, args: argparse.Namespace,
             num: int) -> tuple[Tensor, Tensor, Tensor]:
    """``num`` test digits: their 14x14 sources, the model's upsamplings and the originals."""
    size = model.hparams.source_size
    data = ImageDataModule(args.source, image_size=28, channels=1, resize=False,
                           source_size=size, batch_size=args.batch_size, num_workers=0)
    data.setup("test")
    sources, made, real = [], [], []
    with fixed_seed(0, model.device):
        for batch in data.test_dataloader():
            left = num - sum(len(x) for x in real)
            if left <= 0:
                break
            source, x = batch["source"][:left], batch["x"][:left]
            made.append(model.sample_eval(len(x), source=source, steps=args.steps,
                                          sampler="ddim"))
            sources.append(source)
            real.append(x)
    return torch.cat(sources), torch.cat(made), torch.cat(real)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    report = {"benchmark": "super-resolution 14 -> 28 on MNIST with diffusion: PSNR vs bicubic",
              "command": command("benchmarks.super_resolution", argv), **stamp("cpu"),
              "preset": "cpu-reduced (proves the script runs; not a quality figure)"
              if args.reduced else "cpu (configs/diffusion/mnist_sr_cpu.yaml)"}
    if args.ckpt:
        ckpt = Path(args.ckpt)
    else:
        ckpt, seconds = train(args)
        report.update(seconds)
    model = load_model(ckpt, device="cpu")
    num = 32 if args.reduced else args.num
    cpu, wall = time.process_time(), time.perf_counter()
    source, made, real = upsample(model, args, num)
    bicubic = F.interpolate(source, size=real.shape[-2:], mode="bicubic", align_corners=False)
    ours, theirs = float(psnr(made, real).mean()), float(psnr(bicubic, real).mean())
    report.update({
        "checkpoint": str(ckpt), "reduced": args.reduced,
        "train_steps": torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"],
        "digits": len(real), "ddim_steps": args.steps,
        "psnr_diffusion_db": round(ours, 3), "psnr_bicubic_db": round(theirs, 3),
        "met": ours > theirs and not args.reduced,
        "protocol": "mean per-image PSNR on pixels in [0, 1]; sources: MNIST test digits "
                    "downsampled to 14x14 (bilinear, antialiased), bicubic without antialias",
        "score_cpu_seconds": round(time.process_time() - cpu, 1),
        "score_wall_seconds": round(time.perf_counter() - wall, 1),
        "load_average": load_span(load_before)})
    print(f"PSNR diffusion {ours:.2f} dB, bicubic {theirs:.2f} dB, {len(real)} digits",
          flush=True)
    name = "super_resolution_cpu" + ("_reduced" if args.reduced else "")
    out = Path(args.out or RESULTS / f"{name}.json")
    path = picture_path(out, "strip")
    nearest = F.interpolate(source, size=real.shape[-2:], mode="nearest")
    rows = torch.cat([nearest[:8], bicubic[:8].clamp(-1, 1), made[:8], real[:8]])
    image_grid(rows, nrow=8).save(path, optimize=True)  # rows: source, bicubic, ours, original
    report["picture"] = str(path)
    write_result(report, out)
    return report


if __name__ == "__main__":
    main()
