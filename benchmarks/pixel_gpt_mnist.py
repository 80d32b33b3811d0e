"""The pixel GPT against the two-stage GPT prior at the same CPU time: FID and sampling speed.

    python -m benchmarks.twostage_mnist --data.source ../shared/data/mnist   # first: the codes
    python -m benchmarks.pixel_gpt_mnist --data.source ../shared/data/mnist  # then: the pixels

Reads the two-stage result (``--match``, the CPU preset's by default) and trains a GPT on
MNIST's 784 binarized pixels (``configs/ar/mnist_pixels.yaml``'s data: dynamic binarization,
raster order after a start token) with the two-stage prior's own architecture and recipe, for
the CPU seconds the two-stage prior trained (its steps are calibrated on a few throwaway
batches so that the cosine schedule ends with the budget; a callback stops it at the budget in
any case). Then, as for the two-stage prior:

- FID of ``compare_num`` samples against as many of the first test images, on the reference
  classifier's features, beside the two-stage prior's FID at that count, and the floor of
  binarized test images (the best a model of binarized pixels can reach on grayscale test
  images);
- sampling time per image, 500 images a call: wall and CPU; the speed-up is the ratio of CPU
  milliseconds per image (robust to other processes' load), target >= 10x (49 tokens vs 784).

Writes benchmarks/results/pixel_gpt_mnist_<preset>.json (``..._reduced.json`` for a reduced
two-stage result or an overridden budget) and a picture of the samples beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import DATA, RESULTS, ROOT, command, load_span, stamp, write_result
from benchmarks.pictures import save_images
from benchmarks.twostage_mnist import fid_to_test, timed_samples
from genlab.data.images import ImageDataModule
from genlab.metrics.classifier import load_classifier
from genlab.modality import take
from genlab.registry import create_model

SPEEDUP_TARGET = 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", default=str(RESULTS / "twostage_mnist_cpu.json"),
                        help="the two-stage result whose prior's CPU time and recipe to match")
    parser.add_argument("--data.source", dest="source", default=str(DATA / "mnist"))
    parser.add_argument("--classifier", default=str(ROOT / "classifiers" / "mnist.pt"))
    parser.add_argument("--cpu-seconds", type=float, help="override the training budget")
    parser.add_argument("--num", type=int, help="override the samples of the FID")
    parser.add_argument("--seconds-per-batch", type=float,
                        help="CPU seconds a training batch takes (skips the calibration)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    return parser.parse_args(argv)


class CPUBudget(L.Callback):
    """Stops training once the process has spent ``seconds`` of CPU time in ``fit`` (of
    ``clock`` time: ``time.perf_counter`` makes it a wall-clock budget, for a GPU)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.process_time) -> None:
        self.seconds, self.clock, self.start = seconds, clock, 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.clock()

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.clock() - self.start >= self.seconds:
            trainer.should_stop = True


def pixel_gpt(prior: dict) -> L.LightningModule:
    """The two-stage prior's GPT, on 784 binarized pixel tokens."""
    return create_model("GPT", data_shape=[1, 28, 28], pixel_levels=2, vocab_size=None,
                        block_size=784, compile=False, **prior)


def two_stage_fid(two: dict, num: int) -> tuple[float | None, int | None]:
    """The two-stage prior's FID at ``num`` samples, else at the nearest count it has (the
    result then says so); ``(fid, samples)``."""
    counts = {int(k[4:]): v for k, v in two.items() if k.startswith("fid_") and k[4:].isdigit()}
    counts[two["num"]] = two["fid"]
    best = min(counts, key=lambda n: (abs(n - num), n))
    return counts[best], best


def trainer(steps: int, device: str, callbacks: list | None = None) -> L.Trainer:
    return L.Trainer(max_steps=steps, accelerator=device, devices=1, logger=False,
                     enable_checkpointing=False, enable_model_summary=False,
                     enable_progress_bar=False, limit_val_batches=0, callbacks=callbacks)


def calibrate(build: Callable[[], L.LightningModule], data: ImageDataModule, device: str,
              batches: int = 4, clock: Callable[[], float] = time.process_time) -> float:
    """CPU (``clock``) seconds per training batch of a throwaway ``build()`` model, the first
    batch left out."""
    times = {}

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
            times[trainer.global_step] = clock()

    trainer(batches, device, [Clock()]).fit(build(), data)
    return (times[batches] - times[1]) / (batches - 1)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    match = json.loads(Path(args.match).read_text())
    cfg, two = match["settings"], match["rows"][1]
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    budget = args.cpu_seconds or two["train_cpu_seconds"]
    num = args.num or cfg.get("compare_num", cfg["num"])
    two_fid, two_num = two_stage_fid({**two, "num": cfg["num"]}, num)
    reduced = bool(match["reduced"] or args.cpu_seconds or args.num)
    device = torch.device(cfg["device"])
    classifier, info = load_classifier(args.classifier)
    classifier = classifier.to(device).eval()
    scored_with = match["protocol"].get("extractor_hash")
    if scored_with is not None and scored_with != info["hash"]:
        raise SystemExit(f"{Path(args.match).name} was scored with the classifier sha256:"
                         f"{scored_with}, {args.classifier} is sha256:{info['hash']}: FIDs on "
                         f"different features do not compare; rerun benchmarks.twostage_mnist "
                         f"with this classifier first")
    data = ImageDataModule(args.source, image_size=28, channels=1, resize=False, binarize=True,
                           label_column=None, batch_size=cfg["batch_size"], num_workers=0)
    data.setup("fit")
    test = ImageDataModule(args.source, image_size=28, channels=1, resize=False,
                           batch_size=500, num_workers=0)
    test.setup("test")
    load_before = os.getloadavg()
    L.seed_everything(args.seed, verbose=False)
    per_batch = args.seconds_per_batch or calibrate(
        lambda: pixel_gpt(cfg["prior"]), data, cfg["device"])
    steps = max(1, math.floor(budget / per_batch))
    # The same share of warm-up as the two-stage prior had (its steps are ~20x cheaper).
    prior = {**cfg["prior"], "warmup_steps": round(
        cfg["prior"].get("warmup_steps", 0) * steps / cfg["prior_batches"])}
    L.seed_everything(args.seed, verbose=False)
    model = pixel_gpt(prior)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer(steps, cfg["device"], [CPUBudget(budget)]).fit(model, data)
    row = {"model": "pixel GPT (784 binarized pixels)", "train_batches": int(model.global_step),
           "planned_batches": steps, "train_seconds": round(time.perf_counter() - wall, 1),
           "train_cpu_seconds": round(time.process_time() - cpu, 1), "tokens_per_image": 784}
    fake, timing = timed_samples(model, num, args.seed, device)
    row.update({"fid": fid_to_test(fake, test, classifier, device), **timing})
    row["binarized_test_floor"] = fid_to_test(binarized(take(test.test_dataloader(), num)),
                                              test, classifier, device)
    print(row, flush=True)
    two_row = {"model": "GPT prior on 7x7 VQ codes (two-stage)",
               "train_batches": two["train_batches"], "train_cpu_seconds":
               two["train_cpu_seconds"], "tokens_per_image": two["tokens_per_image"],
               "fid": two_fid, "fid_samples": two_num,
               "cpu_ms_per_image": two.get("cpu_ms_per_image"),
               "ms_per_image": two["ms_per_image"]}
    speedup = (row["cpu_ms_per_image"] / two_row["cpu_ms_per_image"]
               if two_row["cpu_ms_per_image"] else None)
    name = f"pixel_gpt_mnist_{match['preset']}{'_reduced' if reduced else ''}.json"
    out = Path(args.out or RESULTS / name)
    result = {
        "benchmark": "pixel GPT vs the two-stage GPT prior at the same training CPU time: FID, "
                     "sampling speed",
        "preset": match["preset"], "reduced": reduced, "rows": [row, two_row],
        "sampling_speedup_cpu": round(speedup, 1) if speedup else None,
        "verdict": {"fid_at_most_pixel_gpt": two_fid is not None and two_fid <= row["fid"],
                    "sampling_10x_faster": bool(speedup and speedup >= SPEEDUP_TARGET)},
        "target": {"fid": "two-stage <= pixel GPT", "sampling_speedup": f">= {SPEEDUP_TARGET}"},
        "protocol": {"extractor": "digit-classifier", "extractor_hash": info["hash"],
                     "resize": "none (28x28)", "fid_samples": num,
                     "fid_reference": f"first {num} MNIST test images",
                     "two_stage_fid_samples": two_num,
                     "sampling": "500 images a call, KV cache, temperature 1",
                     "budget": f"{budget} CPU seconds of training, the two-stage prior's",
                     "matched": str(Path(args.match).name)},
        "settings": {"prior": prior, "batch_size": cfg["batch_size"],
                     "cpu_seconds": budget, "calibrated_cpu_seconds_per_batch":
                     round(per_batch, 3), "num": num, "threads": cfg["threads"]},
        "command": command("benchmarks.pixel_gpt_mnist", argv),
        **stamp(cfg["device"]), "load_average_1_5_15_min": load_span(load_before),
    }
    write_result(result, out)
    save_images(fake, out, "samples")
    return result


def binarized(batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Test images binarized as the pixel GPT's data is (Bernoulli, p = intensity)."""
    gen = torch.Generator().manual_seed(0)
    return torch.cat([torch.bernoulli((x + 1) / 2, generator=gen) * 2 - 1 for x in batches])


if __name__ == "__main__":
    main()
