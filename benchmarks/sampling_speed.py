"""Samples per second of image models, drawn in batches as `genlab sample` does.

    python -m benchmarks.sampling_speed                       # every image config under configs/
    python -m benchmarks.sampling_speed --config configs/diffusion/mnist.yaml --steps 10 50 250

Models are built from their configs with fresh weights: speed does not depend on training.
Figures go to benchmarks/results/sampling_speed_<device>.json (another file with ``--out``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, command, read_config, stamp, write_result
from genlab.evaluation import instantiate
from genlab.module import GenerativeModule
from genlab.sampling import check_options, draw


def image_configs() -> list[Path]:
    found = []
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        model = read_config(path).get("model")
        if model and getattr(instantiate(GenerativeModule, model), "modality", "") == "image":
            found.append(path)
    return found


def samples_per_second(model: GenerativeModule, num: int, batch: int, options: dict) -> float:
    draw(model, min(batch, num), batch, options)  # warm-up: kernels, caches, allocator
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    draw(model, num, batch, options)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return num / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="fit config(s); default: all image")
    parser.add_argument("--num", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs="*", default=[],
                        help="sampling steps to try, for models whose sample() takes steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", help="JSON (default benchmarks/results/sampling_speed_<device>)")
    a = parser.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    configs = [Path(c) for c in a.config] if a.config else image_configs()
    rows = []
    for path in configs:
        cfg = read_config(path)["model"]
        model = instantiate(GenerativeModule, cfg).to(device).eval()
        variants = [{"steps": s} for s in a.steps] or [{}]
        if a.steps:
            try:
                check_options(model, variants[0])
            except Exception:  # a one-pass family: steps do not apply
                variants = [{}]
        for options in variants:
            with torch.no_grad():
                rate = samples_per_second(model, a.num, a.batch_size, options)
            rows.append({"config": str(path.relative_to(ROOT) if path.is_absolute() else path),
                         "model": type(model).__name__, **options,
                         "samples_per_second": round(rate, 1)})
            print(f"{rows[-1]['config']:40s} {rows[-1]['model']:12s} "
                  f"{str(options or ''):14s} {rate:10.1f} samples/s")
    out = a.out or ROOT / f"benchmarks/results/sampling_speed_{device.type}.json"
    write_result({"benchmark": "samples per second of image models (fresh weights)",
                  "device": device.type, "num": a.num, "batch_size": a.batch_size, "rows": rows,
                  "command": command("benchmarks.sampling_speed", argv), **stamp(device)}, out)


if __name__ == "__main__":
    main()
