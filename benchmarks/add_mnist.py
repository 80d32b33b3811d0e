"""ADD and CD on MNIST: teacher (50-step DDIM) vs 1/2/4-step students, FID and sampling speed.

Students of one diffusion teacher, by adversarial diffusion distillation (ADD, Sauer et al.
2023) and consistency distillation (CD, Song et al. 2023), each scored at 1, 2 and 4 steps
beside the teacher's 50-step DDIM: FID on the reference classifier's features (the same
sample count for all), samples/s, training CPU and wall seconds.

CPU preset (``--cpu``: configs/{add,cd}/mnist_cpu.yaml students of the teacher of
configs/diffusion/mnist_cpu.yaml, 1 thread, 2,000-sample FIDs); both methods in one run:

    python -m benchmarks.add_mnist --cpu --methods cd,add --extractor classifiers/mnist.pt \
        --teacher path/to/diffusion_mnist_cpu_teacher.ckpt

or one method a run, combined into one file with ``--merge`` (the teacher's FID is computed
once and kept while the teacher and ``--fid-num`` stay the same):

    python -m benchmarks.add_mnist --cpu --methods cd --teacher T.ckpt --extractor ...
    python -m benchmarks.add_mnist --cpu --methods add --teacher T.ckpt --extractor ... --merge

Results go to benchmarks/results/distill_mnist_cpu.json. GPU preset (one H100; the teacher of
configs/diffusion/mnist.yaml, both students of configs/{add,cd}/mnist.yaml from it, written to
distill_mnist.json):

    python -m benchmarks.add_mnist --source ../shared/data/mnist --extractor classifiers/mnist.pt

Reduced size on a CPU (``--cpu-small``: proves the script runs; its figures say nothing):

    python -m benchmarks.add_mnist --source ../shared/data/mnist --cpu-small --method cd

Trains the teacher with ``genlab fit`` unless ``--teacher`` names a checkpoint, then each
student with ``genlab fit --config <student config> --model.teacher_ckpt <teacher>``, and scores
with ``genlab evaluate``. Targets: the better method's 1-step FID <= 1.5x the teacher's DDIM-50,
4-step <= 1.1x, 1 step >= 25x faster. A single method without ``--cpu`` writes
{method}_mnist[_cpu_small].json, both distill_mnist[_cpu_small].json; a 1-step sample grid of
each student goes beside the result.
"""

from __future__ import annotations

import argparse
import json
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

CONFIGS = ROOT / "configs"
TEACHER_CONFIGS = {"gpu": CONFIGS / "diffusion" / "mnist.yaml",
                   "cpu": CONFIGS / "diffusion" / "mnist_cpu.yaml"}
STUDENT_CONFIGS = {("gpu", "add"): CONFIGS / "add" / "mnist.yaml",
                   ("gpu", "cd"): CONFIGS / "cd" / "mnist.yaml",
                   ("cpu", "add"): CONFIGS / "add" / "mnist_cpu.yaml",
                   ("cpu", "cd"): CONFIGS / "cd" / "mnist_cpu.yaml"}
STUDENT_STEPS = (1, 2, 4)
TEACHER_STEPS = 50
TEACHER = f"teacher_ddim_{TEACHER_STEPS}"
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
    parser.add_argument("--methods", "--method", dest="methods", default=None,
                        help="students from the one teacher, in order: add, cd or add,cd "
                             "(default: cd,add; --cpu-small: add)")
    parser.add_argument("--teacher", default=None, help="skip the teacher's training")
    parser.add_argument("--student", default=None, help="one method: skip its training")
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--cpu", action="store_true",
                        help="CPU preset: the *_cpu.yaml students, 1 thread, 2,000-sample FIDs")
    preset.add_argument("--cpu-small", action="store_true", help="reduced size on a CPU")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="students' trainer.max_steps (default: the config's; fewer marks "
                             "the result reduced)")
    parser.add_argument("--extractor", default=None, help="genlab classifier file for FID")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples/s batch; default 256 (GPU), 64 (--cpu), 8")
    parser.add_argument("--fid-num", type=int, default=None,
                        help="samples per FID; default 10,000, 2,000 with --cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--root", default=None, help="run folder (default runs/bench_...)")
    parser.add_argument("--merge", action="store_true",
                        help="keep what --out holds for methods this run does not train")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    args.methods = (args.methods or ("add" if args.cpu_small else "cd,add")).split(",")
    unknown = [m for m in args.methods if ("gpu", m) not in STUDENT_CONFIGS]
    if unknown:
        parser.error(f"--methods takes add and/or cd, comma-separated, got {unknown}")
    if args.student and len(args.methods) != 1:
        parser.error("--student names one method's checkpoint: give one --methods")
    if args.cpu:
        args.threads = args.threads or 1
        args.batch_size = args.batch_size or 64
    args.fid_num = args.fid_num or (2_000 if args.cpu else 10_000)
    args.root = args.root or f"runs/bench_{'distill' if args.cpu else 'add'}_mnist"
    return args


def preset_of(args: argparse.Namespace) -> str:
    return "cpu" if args.cpu else "gpu"


def output_path(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    name = "distill_mnist" if args.cpu or len(args.methods) > 1 else f"{args.methods[0]}_mnist"
    suffix = "_cpu" if args.cpu else "_cpu_small" if args.cpu_small else ""
    return RESULTS / f"{name}{suffix}.json"


def fit(config: Path, args: argparse.Namespace, root: Path,
        extra: list[str]) -> tuple[Path, dict[str, float]]:
    """``genlab fit`` of ``config`` (logger off); the newest ``last.ckpt`` and its seconds."""
    return fit_config(config, args.source, root, ["--trainer.logger", "false", *extra])


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
        options: list[str], reuse: bool = False) -> float | None:
    """``genlab evaluate`` FID of ``ckpt`` on ``--fid-num`` samples (seed 0, no floor); with
    ``reuse``, an earlier evaluation of the same file and sample count in the run folder."""
    out = Path(args.root) / "evals" / f"{name}.json"
    if reuse and out.is_file() and _same_eval(json.loads(out.read_text()), ckpt, args.fid_num):
        print(f"{name}: FID from {out} (same checkpoint, same sample count)", flush=True)
        return evaluated_fid(out)
    genlab_main(["evaluate", "--ckpt", str(ckpt), "--extractor", args.extractor, "--num",
                 str(args.fid_num), "--device", device, "--floor", "false", "--out", str(out),
                 *options])
    return evaluated_fid(out)


def _same_eval(record: dict, ckpt: Path, num: int) -> bool:
    return (Path(record.get("checkpoint", "")).resolve() == ckpt.resolve()
            and record.get("num_samples") == num)


def teacher_checkpoint(args: argparse.Namespace, report: dict) -> Path:
    """``--teacher``, or the preset's teacher trained here; recorded in ``report``."""
    if args.teacher:
        teacher = Path(args.teacher)
    else:
        small = CPU_COMMON + CPU_TEACHER if args.cpu_small else []
        teacher, seconds = fit(TEACHER_CONFIGS[preset_of(args)], args, Path(args.root) /
                               "teacher", small)
        report["teacher_train_seconds"] = seconds
    steps = torch.load(teacher, map_location="cpu", weights_only=True)["global_step"]
    report["teacher"] = {"checkpoint": str(teacher), "train_steps": steps,
                         "config": str(TEACHER_CONFIGS[preset_of(args)].relative_to(ROOT))}
    return teacher


def train_student(method: str, teacher: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """The ``method`` student of ``teacher`` (or ``--student``) and its training record."""
    config = STUDENT_CONFIGS[preset_of(args), method]
    record = {"config": str(config.relative_to(ROOT))}
    if args.student:
        return Path(args.student), record
    extra = ["--model.teacher_ckpt", str(teacher)]
    if args.cpu_small:
        extra = CPU_COMMON + CPU_STUDENT[method] + extra
    if args.max_steps:
        extra += ["--trainer.max_steps", str(args.max_steps)]
    student, seconds = fit(config, args, Path(args.root) / f"student_{method}", extra)
    steps = torch.load(student, map_location="cpu", weights_only=True)["global_step"]
    return student, {**record, "train_steps": steps, "train_cpu_seconds": seconds["cpu"],
                     "train_wall_seconds": seconds["wall"]}


def previous_report(args: argparse.Namespace, out: Path, report: dict) -> dict:
    """With ``--merge``, what ``out`` holds (measured with the same teacher); else nothing."""
    if not (args.merge and out.is_file()):
        return {}
    previous = json.loads(out.read_text())
    if previous.get("teacher", {}).get("train_steps") != report["teacher"]["train_steps"]:
        raise SystemExit(f"--merge: {out} was measured with another teacher; drop --merge or "
                         f"give --out another file")
    return previous


def score_teacher(teacher: Path, args: argparse.Namespace, device: str, batch: int,
                  previous: dict) -> dict:
    """The teacher's DDIM-50 samples/s and FID; both are kept from ``previous`` when measured
    on as many samples and the same batch (they are the costliest figures of the run)."""
    old = previous.get("results", {}).get(TEACHER, {})
    if (old.get("fid") is not None and previous.get("fid_num") == args.fid_num
            and previous.get("sample_batch") == batch):
        return old
    rate = samples_per_second(teacher, device, batch, sampler="ddim", steps=TEACHER_STEPS)
    value = (fid(teacher, args, device, TEACHER, ["--sampler", "ddim", "--steps",
                                                  str(TEACHER_STEPS)], reuse=True)
             if args.extractor else None)
    return {"fid": value, "samples_per_second": rate}


def score_student(student: Path, method: str, args: argparse.Namespace, device: str,
                  batch: int) -> dict:
    """``{method}_{k}_step``: samples/s and FID of the student at each of STUDENT_STEPS."""
    rows = {}
    for steps in STUDENT_STEPS:
        value = (fid(student, args, device, f"{method}_{steps}_step", ["--steps", str(steps)])
                 if args.extractor else None)
        rows[f"{method}_{steps}_step"] = {
            "fid": value, "samples_per_second": samples_per_second(student, device, batch,
                                                                   steps=steps)}
    return rows


def verdict(report: dict) -> None:
    """Ratios to the teacher, the better method at 1 step, and whether the targets are met."""
    results, methods = report["results"], report["training"]
    rate = results[TEACHER]["samples_per_second"]
    report["samples_per_second"] = {k: v["samples_per_second"] for k, v in results.items()}
    report["fid"] = {k: v["fid"] for k, v in results.items()}
    base = results[TEACHER]["fid"]
    ratios = {k: round(v["fid"] / base, 3) for k, v in results.items()
              if k != TEACHER and base and v["fid"] is not None}
    best = min(methods, key=lambda m: ratios.get(f"{m}_1_step", float("inf")))
    report["best_1_step"] = best
    report["fid_ratio"] = ratios
    report["speedup_1_step"] = round(results[f"{best}_1_step"]["samples_per_second"] / rate, 1)
    for steps in (1, 4):
        report[f"fid_ratio_{steps}_step"] = ratios.get(f"{best}_{steps}_step")
    report["targets"] = TARGETS
    one = report["fid_ratio_1_step"]
    report["target_met"] = None if one is None else one <= TARGETS["fid_ratio_1_step"]


def print_table(report: dict) -> None:
    for name, row in report["results"].items():
        value = row["fid"] if row["fid"] is not None else float("nan")
        ratio = report["fid_ratio"].get(name)
        print(f"{name:16s} FID {value:8.2f}{f' ({ratio:.2f}x)' if ratio else '':10s} "
              f"{row['samples_per_second']:10.2f} samples/s", flush=True)
    for method, t in report["training"].items():
        print(f"{method} training: {t.get('train_steps')} steps, {t.get('train_cpu_seconds')} "
              f"CPU s, {t.get('train_wall_seconds')} wall s")
    print(f"better at 1 step: {report['best_1_step']}; 1-step FID ratio "
          f"{report['fid_ratio_1_step']} (target <= {TARGETS['fid_ratio_1_step']}), "
          f"{report['speedup_1_step']}x faster than DDIM-{TEACHER_STEPS}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    title = (f"{' and '.join(m.upper() for m in args.methods)} on MNIST: teacher "
             f"{TEACHER_STEPS}-step DDIM vs 1/2/4-step students")
    device, batch, report = mnist_preset(args, title, "benchmarks.add_mnist")
    out = output_path(args)
    teacher = teacher_checkpoint(args, report)
    previous = previous_report(args, out, report)
    report.update(methods=args.methods, fid_num=args.fid_num, sample_batch=batch,
                  commands=previous.get("commands", []) + [report["command"]])
    kept = [m for m in previous.get("training", {}) if m not in args.methods]
    report["training"] = {m: previous["training"][m] for m in kept}
    report["results"] = {k: v for k, v in previous.get("results", {}).items()
                         if k.split("_")[0] in kept}
    students = {}
    for method in args.methods:  # one training at a time, each timed on its own
        students[method], report["training"][method] = train_student(method, teacher, args)
    report["results"][TEACHER] = score_teacher(teacher, args, device, batch, previous)
    for method, student in students.items():
        report["results"].update(score_student(student, method, args, device, batch))
    report["checkpoints"] = {"teacher": str(teacher),
                             **{m: str(s) for m, s in students.items()}}
    verdict(report)
    report["reduced"] = bool(args.cpu_small or args.max_steps)
    print_table(report)
    write_result(report, out)
    for method, student in students.items():
        tag = (f"{method}_1_step_samples" if args.cpu or len(args.methods) > 1
               else "student_1_step_samples")
        save_checkpoint_grid(student, out, tag, device, steps=1)


if __name__ == "__main__":
    main()
