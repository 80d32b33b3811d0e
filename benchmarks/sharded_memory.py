"""Bytes per process of each network and EMA copy under FSDP2 on 2 CPU processes, vs the full copy.

    python -m benchmarks.sharded_memory [--out benchmarks/results/sharded_memory.json]

Runs the conformance kit's ``check_sharded`` (2 gloo processes started by torchrun, sharded fit,
resume, one-process sampling, agreement with 1 process) on a DCGAN with a generator EMA (MNIST
size) and on a point diffusion model, and prints each top-level submodule's parameter and buffer
bytes held by rank 0 against its full size. Sharded networks should be about 1/2; buffers (e.g.
spectral-norm vectors, batch-norm statistics) and frozen parts stay whole.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from genlab.data.images import ImageDataModule
from genlab.data.tiny import write_parquet
from genlab.data.toy import ToyDataModule
from genlab.testing import check_sharded, resolve


def measure(root: Path) -> dict[str, dict[str, list[int]]]:
    """``{family: {submodule: [bytes on rank 0, full bytes]}}`` from 2-process sharded fits."""
    digits = write_parquet(root / "digits", {"train": 32, "test": 8}, size=(28, 28))
    images = ImageDataModule(str(digits), image_size=28, channels=1, batch_size=4, num_workers=0)
    gan = {"image_size": 28, "channels": 1, "latent_dim": 64, "width": 32, "ema_decay": 0.999}
    points = ToyDataModule(train_size=128, val_size=32, batch_size=16)
    diffusion = {"data_shape": [2], "hidden": [256, 256, 256], "num_timesteps": 50,
                 "sample_steps": 4, "trajectory_frames": 0}
    return {"gan (DCGAN 28x28, width 32, EMA)": check_sharded(
                resolve("gan"), gan, images, root / "gan", steps=2, tolerance=None),
            "diffusion (points, 3x256 MLP, EMA)": check_sharded(
                resolve("diffusion"), diffusion, points, root / "diffusion", steps=2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(Path(tmp))
    for family, sizes in figures.items():
        print(family)
        for name, (local, full) in sizes.items():
            print(f"  {name:<16} rank 0 holds {local:>10,} of {full:>10,} bytes "
                  f"({local / max(full, 1):.2f} of the full copy)")
    print(f"world size 2, CPU gloo, {time.time() - start:.0f} s")
    if args.out is not None:
        args.out.write_text(json.dumps({"world_size": 2, "bytes": figures}, indent=1))


if __name__ == "__main__":
    main()
