"""Adversarial diffusion distillation on ring-8 (CPU preset): teacher vs 1/2/4-step student.

    python -m benchmarks.add_points                          # trains the teacher, then the student
    python -m benchmarks.add_points --teacher path/to/teacher.ckpt --max-steps 500

Trains the teacher with the model and data settings of ``configs/add/ring8_teacher.yaml`` (unless
``--teacher`` names a checkpoint), then the student with those of ``configs/add/ring8.yaml``, on
plain CPU Trainers (no logger). Draws 2,500 samples (the VEEGAN / PacGAN protocol) from the teacher
(its configured sampler, and 50-step DDIM) and from the student at 1, 2 and 4 steps, and scores
them with ``genlab.metrics.ModeCoverage``: modes covered and the share of high-quality samples
(within 3 sigma of a mode). Target: the 1-step student covers 8/8 modes with >= 90% high
quality. Results go to benchmarks/results/add_points.json.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import lightning as L
import torch
from genlab_add import ADD

from benchmarks.common import RESULTS, ROOT, cpu_model, point_options, read_config, write_result
from benchmarks.pictures import save_points
from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.data.toy import ToyDataModule
from genlab.metrics import ModeCoverage
from genlab.registry import get_model_class

DEFAULT_OUT = RESULTS / "add_points.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "add" / "ring8.yaml"),
                        help="the student's config")
    parser.add_argument("--teacher", default=None, help="teacher checkpoint; default: train one")
    parser.add_argument("--teacher-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--student", default=None,
                        help="score this student checkpoint instead of training one")
    parser.add_argument("--workdir", default="/tmp/add_points")
    point_options(parser, DEFAULT_OUT, steps_help="student steps; default: the config's")
    return parser.parse_args(argv)


def _fit(model: L.LightningModule, data: ToyDataModule, steps: int, root: Path) -> float:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=str(root))
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    trainer.save_checkpoint(root / "last.ckpt")
    return round(seconds, 1)


def train_teacher(steps: int | None, workdir: Path) -> tuple[Path, dict]:
    config = read_config(ROOT / "configs" / "add" / "ring8_teacher.yaml")
    L.seed_everything(config.get("seed_everything", 0), verbose=False)
    model = get_model_class("diffusion")(**config["model"]["init_args"])
    steps = steps or config["trainer"]["max_steps"]
    seconds = _fit(model, ToyDataModule(**config["data"]["init_args"]), steps,
                   workdir / "teacher")
    return workdir / "teacher" / "last.ckpt", {"train_steps": steps, "train_seconds": seconds,
                                               "model": config["model"]["init_args"]}


def train_student(config_path: str, teacher: Path, steps: int | None,
                  workdir: Path) -> tuple[ADD, dict]:
    config = read_config(config_path)
    L.seed_everything(config.get("seed_everything", 0), verbose=False)
    args = {**config["model"]["init_args"], "teacher_ckpt": str(teacher)}
    model = ADD(**args)
    steps = steps or config["trainer"]["max_steps"]
    seconds = _fit(model, ToyDataModule(**config["data"]["init_args"]), steps,
                   workdir / "student")
    return model, {"train_steps": steps, "train_seconds": seconds, "model": args}


def _describe(path: str) -> dict:
    """What a given checkpoint is: its path, optimizer steps and hyperparameters."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {"checkpoint": path, "optimizer_steps": ckpt["global_step"],
            "model": {k: v for k, v in ckpt["hyper_parameters"].items() if k != "teacher_args"}}


def score(name: str, draw, data: ToyDataModule, num: int, picture: str | None = None,
          seed: int = 1) -> dict:
    """Modes and high-quality share of ``draw(num)`` under ``seed``; ``picture``: save them
    beside this JSON."""
    metric = ModeCoverage(data.modes, data.sigma)
    start = time.perf_counter()
    with fixed_seed(seed, torch.device("cpu")), torch.no_grad():
        samples = draw(num)
    seconds = time.perf_counter() - start
    metric.update(samples)
    if picture:
        save_points(samples, picture, name.replace(" ", "_"), f"ADD ring8 {name}")
    values = metric.compute()
    result = {"modes_covered": int(values["modes_covered"]), "modes": len(data.modes),
              "high_quality_pct": round(100 * float(values["high_quality"]), 2),
              "sample_seconds": round(seconds, 3)}
    print(f"{name:18s} modes {result['modes_covered']}/{result['modes']}  "
          f"HQ {result['high_quality_pct']:5.1f}%  ({result['sample_seconds']} s for {num})")
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    report = {"benchmark": "ADD on ring-8: mode coverage of teacher and student (2,500 samples)",
              "command": "python -m benchmarks.add_points " + " ".join(sys.argv[1:]),
              "date": datetime.date.today().isoformat(),
              "hardware": {"cpu": cpu_model(), "threads": args.threads,
                           "note": "CPU shared with other processes during the run"},
              "torch": torch.__version__}
    if args.teacher is None:
        teacher_path, report["teacher"] = train_teacher(args.teacher_steps, workdir)
    else:
        teacher_path, report["teacher"] = Path(args.teacher), _describe(args.teacher)
    if args.student is None:
        student, report["student"] = train_student(args.config, teacher_path, args.max_steps,
                                                   workdir)
    else:
        student, report["student"] = load_model(args.student), _describe(args.student)
    teacher = load_model(teacher_path).eval()
    student.eval()
    data = ToyDataModule(**read_config(args.config)["data"]["init_args"])
    th = teacher.hparams
    results = {
        f"teacher_{th.sampler}_{th.sample_steps}": score(
            f"teacher {th.sampler} {th.sample_steps}", teacher.sample, data, args.num),
        "teacher_ddim_50": score("teacher ddim 50", lambda n: teacher.sample(
            n, sampler="ddim", steps=50), data, args.num)}
    for steps in [s for s in (1, 2, 4) if s <= student.hparams.student_steps]:
        results[f"student_{steps}_step"] = score(
            f"student {steps} step", lambda n, s=steps: student.sample(n, steps=s), data,
            args.num, args.out if steps == 1 else None)
    speedup = results["teacher_ddim_50"]["sample_seconds"] / \
        results["student_1_step"]["sample_seconds"]
    results["speedup_1_step_vs_ddim_50"] = round(speedup, 1)
    one = results["student_1_step"]
    results["target_met"] = one["modes_covered"] == 8 and one["high_quality_pct"] >= 90
    print(f"1-step student vs 50-step DDIM teacher: {speedup:.1f}x faster; target "
          f"(8/8 modes, >= 90% HQ) {'met' if results['target_met'] else 'NOT met'}")
    report["results"] = results
    write_result(report, args.out)


if __name__ == "__main__":
    main()
