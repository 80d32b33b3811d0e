"""ADD or CD on MNIST: teacher (50-step DDIM) vs 1/2/4-step student, FID and sampling speed.

``--method cd`` distils the same teacher by consistency distillation (configs/cd/mnist.yaml)
instead of ADD (configs/add/mnist.yaml); results go to cd_mnist[_cpu_small].json.

GPU preset (one H100; configs/diffusion/mnist.yaml then configs/add/mnist.yaml as shipped):

    python -m benchmarks.add_mnist --source ../shared/data/mnist --extractor classifiers/mnist.pt
    python -m benchmarks.add_mnist --teacher runs/mnist/version_0/checkpoints/last.ckpt ...

Reduced size on a CPU (proves the script runs; its figures say nothing about quality):

    python -m benchmarks.add_mnist --source ../shared/data/mnist --cpu-small

Trains the teacher with ``genlab fit`` (unless ``--teacher`` names a checkpoint), then the student
with ``genlab fit --config configs/add/mnist.yaml --model.teacher_ckpt <teacher>``. Prints samples
per second of the teacher's 50-step DDIM and of the student at 1, 2 and 4 steps (EMA weights,
batch ``--batch-size``) and the 1-step speed-up. With ``--extractor`` (a ``genlab classifier``
file) it runs ``genlab evaluate`` on both checkpoints and prints the FIDs and their ratios to the
teacher's. Targets: 1-step FID <= 1.5x the teacher's, 4-step <= 1.1x, >= 25x faster.
Results go to benchmarks/results/add_mnist[_cpu_small].json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import DATA, evaluated_fid, mnist_preset, write_result
from benchmarks.pictures import save_checkpoint_grid
from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.cli import main as genlab_main

ROOT = Path(__file__).resolve().parent.parent
TEACHER_CONFIG = ROOT / "configs" / "diffusion" / "mnist.yaml"
STUDENT_CONFIGS = {"add": ROOT / "configs" / "add" / "mnist.yaml",
                   "cd": ROOT / "configs" / "cd" / "mnist.yaml"}
STUDENT_STEPS = (1, 2, 4)
TEACHER_STEPS = 50
TARGETS = {"fid_ratio_1_step": 1.5, "fid_ratio_4_step": 1.1, "speedup_1_step": 25.0}
# Reduced size for a CPU: tiny networks, a few training steps, a few samples.
CPU_COMMON = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
              "--trainer.max_steps", "8", "--trainer.val_check_interval", "4",
              "--trainer.limit_val_batches", "2", "--samples.every_n_steps", "0",
              "--data.batch_size", "16", "--data.num_workers", "0"]
CPU_TEACHER = ["--model.channels", "8", "--model.sample_steps", "4"]
CPU_STUDENT = {"add": ["--model.head_width", "8"], "cd": ["--model.num_intervals", "4"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DATA / "mnist"))
    parser.add_argument("--method", choices=("add", "cd"), default="add",
                        help="distillation: adversarial (ADD) or consistency (CD)")
    parser.add_argument("--teacher", default=None, help="skip the teacher's training")
    parser.add_argument("--student", default=None, help="skip the student's training")
    parser.add_argument("--cpu-small", action="store_true", help="reduced size on a CPU")
    parser.add_argument("--extractor", default=None, help="genlab classifier file for FID")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (GPU), 8")
    parser.add_argument("--fid-num", type=int, default=10_000, help="samples per FID")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--root", default="runs/bench_add_mnist")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def fit(config: Path, root: Path, extra: list[str]) -> tuple[Path, float]:
    """``genlab fit`` of ``config`` under ``root``; the newest ``last.ckpt`` and the seconds."""
    start = time.perf_counter()
    genlab_main(["fit", "--config", str(config), "--run.root", str(root),
                 "--trainer.logger", "false", *extra])
    seconds = time.perf_counter() - start
    return max(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime), seconds


def samples_per_second(ckpt: Path, device: str, batch: int, **options) -> float:
    model = load_model(ckpt, device=device)
    model.sample_eval(batch, **options)  # warm-up (kernels, allocator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with fixed_seed(0, model.device):
        model.sample_eval(batch, **options)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return round(batch / (time.perf_counter() - start), 2)


def fid(ckpt: Path, args: argparse.Namespace, device: str, name: str,
        options: list[str]) -> float | None:
    out = ckpt.with_name(f"eval_{name}.json")
    genlab_main(["evaluate", "--ckpt", str(ckpt), "--extractor", args.extractor, "--num",
                 str(args.fid_num), "--device", device, "--out", str(out), *options])
    return evaluated_fid(out)


def train(args: argparse.Namespace, report: dict) -> tuple[Path, Path]:
    root, data = Path(args.root), ["--data.source", args.source]
    small = CPU_COMMON if args.cpu_small else []
    if args.teacher:
        teacher = Path(args.teacher)
    else:
        teacher, seconds = fit(TEACHER_CONFIG, root / "teacher",
                               data + small + (CPU_TEACHER if args.cpu_small else []))
        report["teacher_train_seconds"] = round(seconds, 1)
    if args.student:
        return teacher, Path(args.student)
    student, seconds = fit(STUDENT_CONFIGS[args.method], root / f"student_{args.method}",
                           data + small + (CPU_STUDENT[args.method] if args.cpu_small else [])
                           + ["--model.teacher_ckpt", str(teacher)])
    report["student_train_seconds"] = round(seconds, 1)
    return teacher, student


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    title = f"{args.method.upper()} on MNIST: teacher 50-step DDIM vs 1/2/4-step student"
    device, batch, report = mnist_preset(args, title, "benchmarks.add_mnist")
    report["method"] = args.method
    teacher, student = train(args, report)
    report["checkpoints"] = {"teacher": str(teacher), "student": str(student)}
    rates = {f"teacher_ddim_{TEACHER_STEPS}": samples_per_second(
        teacher, device, batch, sampler="ddim", steps=TEACHER_STEPS)}
    for steps in STUDENT_STEPS:
        rates[f"student_{steps}_step"] = samples_per_second(student, device, batch, steps=steps)
    report["samples_per_second"] = rates
    speedup = rates["student_1_step"] / rates[f"teacher_ddim_{TEACHER_STEPS}"]
    report["speedup_1_step"] = round(speedup, 1)
    for name, rate in rates.items():
        print(f"{name:18s} {rate:10.2f} samples/s (batch {batch}, {device})")
    print(f"1-step student vs {TEACHER_STEPS}-step DDIM teacher: {speedup:.1f}x faster "
          f"(target >= {TARGETS['speedup_1_step']:.0f}x)")
    if args.extractor:
        fids = {f"teacher_ddim_{TEACHER_STEPS}": fid(
            teacher, args, device, "teacher_ddim50",
            ["--sampler", "ddim", "--steps", str(TEACHER_STEPS)])}
        for steps in STUDENT_STEPS:
            fids[f"student_{steps}_step"] = fid(student, args, device, f"student_{steps}",
                                                ["--steps", str(steps)])
        report["fid"] = fids
        base = fids[f"teacher_ddim_{TEACHER_STEPS}"]
        for name, value in fids.items():
            ratio = f"  ({value / base:.2f}x the teacher's)" if base and value else ""
            print(f"FID {name:18s} {value if value is not None else float('nan'):8.2f}{ratio}")
            if base and value and name.startswith("student"):
                report[f"fid_ratio_{name.removeprefix('student_')}"] = round(value / base, 3)
    report["targets"] = TARGETS
    suffix = "_cpu_small" if args.cpu_small else ""
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"{args.method}_mnist{suffix}.json")
    write_result(report, out)
    save_checkpoint_grid(student, out, "student_1_step_samples", device, steps=1)


if __name__ == "__main__":
    main()
