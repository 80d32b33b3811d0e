"""Speed options users expect, measured: bf16-mixed, torch.compile, channels-last, workers.

    python -m benchmarks.speed_options --preset cpu     # GAN (DCGAN, MNIST) and GPT, this CPU
    python -m benchmarks.speed_options --preset gpu     # the same rows on one GPU
    python -m benchmarks.speed_options --preset gpu --device cpu --tiny   # the GPU preset, toy

Each row trains the model of ``configs/gan/mnist.yaml`` or ``configs/ar/shakespeare_char_cpu.yaml``
through a Lightning Trainer (no callbacks, no logger) for ``warmup + steps`` batches and reports
steps (batches) per second after the warm-up (which absorbs ``torch.compile``'s compilation),
and its speed-up over the row's baseline (fp32, eager, contiguous, pre-read batches). Rows:

- ``bf16-mixed``: ``Trainer(precision="bf16-mixed")`` (a genlab fit option).
- ``compile``: GPT: its ``compile`` hyperparameter. GAN: the plugin has no compile option, so the
  benchmark compiles ``generator`` and ``discriminator`` itself (``nn.Module.compile``).
- ``channels-last`` (conv nets): ``--channels_last.enabled true``, genlab's ``ChannelsLast``
  callback (NHWC conv weights and image batches).
- ``workers N``: the real ``ImageDataModule`` loader with ``num_workers`` N instead of pre-read
  batches; pinned memory is on whenever CUDA is available (``ImageDataModule`` has no switch),
  so on a CPU it cannot be measured.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from benchmarks.common import DATA, RESULTS, command, stamp, write_result
from benchmarks.overhead import (
    Batches,
    gan_model,
    genlab_run,
    gpt_model,
    mnist_batches,
    text_batches,
)
from genlab.callbacks import ChannelsLast

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"device": "cpu", "steps": 15, "warmup": 4, "threads": 1, "workers": [0, 2]},
    "gpu": {"device": "cuda", "steps": 200, "warmup": 20, "threads": 0, "workers": [0, 4, 8]},
}


def gan_rows(cfg: dict[str, Any], device: torch.device, tiny: bool) -> list[dict[str, Any]]:
    """GAN rows: fp32 baseline, bf16-mixed, compile, channels-last, DataLoader workers."""
    base, targs = gan_model(tiny, device)
    batch_size = 8 if tiny else 64
    batches = mnist_batches(cfg["steps"] + cfg["warmup"], batch_size)
    keys = ("train/loss_d", "train/loss_g")

    def rate(model: L.LightningModule, data: Batches | DataLoader, precision: str = "32-true",
             extra: dict[str, Any] | None = None) -> tuple[float, float]:
        return genlab_run(model, data, cfg["warmup"], device, keys, 2, False,
                          {"log_every_n_steps": targs["log_every_n_steps"], **(extra or {})},
                          precision)[1]

    def compiled() -> L.LightningModule:
        model = copy.deepcopy(base)
        model.generator.compile()
        model.discriminator.compile()
        return model

    variants = {
        "fp32 (baseline)": lambda: rate(copy.deepcopy(base), batches),
        "bf16-mixed": lambda: rate(copy.deepcopy(base), batches, "bf16-mixed"),
        "compile (applied by the benchmark: no plugin option)":
            lambda: rate(compiled(), batches),
        "channels-last (--channels_last.enabled true)":
            lambda: rate(copy.deepcopy(base), batches,
                         extra={"callbacks": [ChannelsLast(enabled=True)]}),
    }
    for workers in cfg["workers"]:
        variants[f"ImageDataModule, {workers} workers"] = lambda w=workers: rate(
            copy.deepcopy(base), image_loader(batch_size, w),
            extra={"limit_train_batches": cfg["steps"] + cfg["warmup"]})
    return measure("GAN DCGAN MNIST", variants)


def image_loader(batch_size: int, workers: int) -> DataLoader:
    """The MNIST training loader as ``genlab fit`` builds it, with ``workers`` workers."""
    from genlab.data.images import ImageDataModule

    data = ImageDataModule(str(DATA / "mnist"), image_size=28, channels=1, resize=False,
                           batch_size=batch_size, num_workers=workers)
    data.prepare_data()
    data.setup("fit")
    return data.train_dataloader()


def gpt_rows(cfg: dict[str, Any], device: torch.device, tiny: bool) -> list[dict[str, Any]]:
    """GPT rows: fp32 baseline, bf16-mixed, compile (the plugin's option)."""
    base, targs = gpt_model(tiny, cfg["steps"])
    batches = text_batches(cfg["steps"] + cfg["warmup"], base.hparams.block_size,
                           4 if tiny else 12)
    extra = {"log_every_n_steps": targs["log_every_n_steps"],
             "gradient_clip_val": targs["gradient_clip_val"]}

    def rate(model: L.LightningModule, precision: str = "32-true") -> tuple[float, float]:
        return genlab_run(model, batches, cfg["warmup"], device, ("train/loss",), 1, False,
                          extra, precision)[1]

    def compiled() -> L.LightningModule:
        return type(base)(**{**base.hparams, "compile": True})  # model.compile: true

    return measure("GPT char Shakespeare", {
        "fp32 (baseline)": lambda: rate(copy.deepcopy(base)),
        "bf16-mixed": lambda: rate(copy.deepcopy(base), "bf16-mixed"),
        "compile (model.compile: true)": lambda: rate(compiled()),
    })


def measure(model: str, variants: dict[str, Any]) -> list[dict[str, Any]]:
    """Run each variant once; a failure becomes a row that says why."""
    rows, baseline = [], None
    for option, fn in variants.items():
        start = time.perf_counter()
        try:
            wall, cpu = fn()
            steps_per_s = round(wall, 3)
            row = {"model": model, "option": option, "steps_per_s": steps_per_s,
                   "steps_per_cpu_s": round(cpu, 3)}
            baseline = baseline or steps_per_s
            row["speedup"] = round(steps_per_s / baseline, 3)
        except Exception as err:  # e.g. no C++ compiler for inductor: report, go on
            row = {"model": model, "option": option,
                   "note": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
        row["wall_s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(f"{model:22s} {option:60s} "
              f"{row.get('steps_per_s', row.get('note'))!s:>10} steps/s"
              f"{'  x' + format(row['speedup'], '.2f') if 'speedup' in row else ''}",
              flush=True)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--device", help="default: the preset's")
    parser.add_argument("--steps", type=int, help="timed batches per row")
    parser.add_argument("--models", nargs="+", default=["gan", "gpt"], choices=["gan", "gpt"])
    parser.add_argument("--tiny", action="store_true", help="toy-size models (a quick check)")
    parser.add_argument("--out", help="JSON (default benchmarks/results/speed_options_<preset>)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = dict(PRESETS[args.preset])
    cfg.update({k: v for k, v in {"device": args.device, "steps": args.steps}.items() if v})
    if args.tiny:
        cfg.update(steps=args.steps or 3, warmup=1, workers=[0])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    L.seed_everything(0, verbose=False)
    rows = []
    if "gan" in args.models:
        rows += gan_rows(cfg, device, args.tiny)
    if "gpt" in args.models:
        rows += gpt_rows(cfg, device, args.tiny)
    if device.type == "cpu":
        rows.append({"model": "any", "option": "pinned memory",
                     "note": "not measurable without CUDA (ImageDataModule pins whenever CUDA "
                             "is available; there is no switch)"})
    result = {"benchmark": "speed options: steps/s of genlab Trainer runs",
              "preset": args.preset, "reduced": bool(args.tiny or args.steps), "settings": cfg,
              "rows": rows, "command": command("benchmarks.speed_options", argv),
              **stamp(device)}
    out = args.out or RESULTS / f"speed_options_{args.preset}{'_tiny' if args.tiny else ''}.json"
    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
