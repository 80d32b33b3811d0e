"""One FID for an MNIST image config, trained for a step budget: ``genlab fit`` then ``evaluate``.

    python -m benchmarks.mnist_fid --config configs/gan/mnist.yaml --max-steps 6000 \
        --extractor classifiers/mnist.pt --num 5000                  # one GPU
    python -m benchmarks.mnist_fid --config configs/diffusion/mnist.yaml --max-steps 3000 \
        --extractor classifiers/mnist.pt --num 5000 --steps 50       # DDIM-50 samples
    python -m benchmarks.mnist_fid --config configs/gan/mnist.yaml --cpu-small \
        --extractor runs/classifier.pt                               # toy size on a CPU

The config runs as shipped (bf16 mixed precision on a GPU) except for ``--max-steps`` (and
validation every ``--max-steps``, samples only at the end, no logger); ``genlab evaluate`` then
scores ``--num`` samples against the test split on the classifier's features (``genlab
classifier``, see ``reference_classifier.py``) and reports the real-data floor beside the FID.
It is the gpu-quick preset's image figure: steps are cut to fit minutes, so the FID is that of
a short run, not of the config's full schedule. Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.common import (
    DATA,
    RESULTS,
    command,
    evaluated_fid,
    fit_config,
    read_config,
    stamp,
    write_result,
)
from genlab.cli import main as genlab_main

# Toy size on a CPU: a tiny network, a few steps (proves the command line, not quality).
CPU_SMALL = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
             "--data.batch_size", "8", "--data.num_workers", "0"]
CPU_SMALL_MODEL = {"GAN": ["--model.width", "8"],
                   "Diffusion": ["--model.channels", "8", "--model.sample_steps", "4"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--source", default=str(DATA / "mnist"))
    parser.add_argument("--max-steps", type=int, required=True, help="optimizer steps")
    parser.add_argument("--extractor", required=True, help="a genlab classifier file")
    parser.add_argument("--num", type=int, default=5000, help="samples scored")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (diffusion)")
    parser.add_argument("--cpu-small", action="store_true", help="toy size on a CPU")
    parser.add_argument("--root", default="runs/benchmarks/mnist_fid")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def model_class(config: str) -> str:
    return str(read_config(config)["model"]["class_path"]).split(".")[-1]


def train(args: argparse.Namespace, name: str) -> tuple[Path, float]:
    """``genlab fit`` of the config for ``--max-steps``; the checkpoint and the seconds taken."""
    extra = ["--run.name", name, "--trainer.logger", "false",
             "--trainer.max_steps", str(args.max_steps),
             "--trainer.val_check_interval", str(args.max_steps),
             "--trainer.limit_val_batches", "2", "--samples.every_n_steps", "0"]
    if args.cpu_small:
        extra += CPU_SMALL + CPU_SMALL_MODEL.get(model_class(args.config), [])
    ckpt, seconds = fit_config(args.config, args.source, args.root, extra)
    return ckpt, seconds["wall"]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = "cpu" if args.cpu_small or not torch.cuda.is_available() else "cuda"
    name = Path(args.config).parent.name + "_" + Path(args.config).stem
    ckpt, seconds = train(args, name)
    print(f"trained {args.max_steps} steps in {seconds:.0f} s: {ckpt}", flush=True)
    out_eval = ckpt.with_name("eval_quick.json")
    options = ["--steps", str(args.steps)] if args.steps else []
    genlab_main(["evaluate", "--ckpt", str(ckpt), "--extractor", args.extractor, "--num",
                 str(args.num), "--device", device, "--out", str(out_eval), *options])
    evaluation = json.loads(out_eval.read_text())
    fid = evaluated_fid(out_eval)
    result = {"benchmark": f"MNIST FID after a short run of {args.config}",
              "config": args.config, "model": model_class(args.config),
              "max_steps": args.max_steps, "train_seconds": round(seconds, 1),
              "sampling_steps": args.steps, "num": args.num, "fid": fid,
              "evaluation": evaluation, "reduced": args.cpu_small, "device": device,
              "command": command("benchmarks.mnist_fid", argv), **stamp(device)}
    print(f"{result['model']}: FID {fid} after {args.max_steps} steps ({args.num} samples)")
    out = args.out or RESULTS / f"mnist_fid_{name}{'_cpu_small' if args.cpu_small else ''}.json"
    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
