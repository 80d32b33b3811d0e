"""Few-step students from one diffusion teacher on ring-8 (CPU): ADD vs consistency distillation.

    python -m benchmarks.distill_compare --threads 1                 # trains the teacher too
    python -m benchmarks.distill_compare --teacher path/to/teacher.ckpt --cd-max-steps 600 \
        --add-max-steps 600 --ema --ema-max-steps 600
    python -m benchmarks.distill_compare --teacher T.ckpt --methods cd        # one part at a time:
    python -m benchmarks.distill_compare --teacher T.ckpt --methods add --merge
    python -m benchmarks.distill_compare --teacher T.ckpt --methods "" --ema --merge

Trains (unless ``--teacher`` names a checkpoint) the teacher of ``configs/add/ring8_teacher.yaml``,
then an ADD student (``configs/add/ring8.yaml``) and a CD student (``configs/cd/ring8.yaml``) from
that same checkpoint on plain CPU Trainers, and scores 2,500 samples of each at 1, 2 and 4 steps
(and the teacher's 50-step DDIM, and its own ODE solver chained over CD's distillation grid:
the map a perfect consistency student would learn) with ``genlab.metrics.ModeCoverage``: modes
covered, share of high-quality samples (within 3 sigma of a mode), samples/s, training wall and
CPU seconds; each student's 1-step share also over 10 seeds of 10,000 samples (its spread).
Target: CD 1-step 8/8 modes and >= 95% high quality within 15 minutes of the 2-core CPU.

``--ema``: the post-hoc EMA length sweep on the diffusion ring-8 model of
``configs/diffusion/ring8.yaml``: trained with ``genlab.callbacks.PostHocEMA``, then ``genlab
ema --sweep`` scores each length with ``genlab evaluate`` beside the config's fixed EMA; the
averages reconstructed for the tracked lengths (and one tracked directly beside them) are
compared with those tracked during the run (relative weight error, target <= 1e-3).
Results go to benchmarks/results/distill_compare.json; the chart to
benchmarks/results/img/distill_steps.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.add_points import score, train_teacher
from benchmarks.common import RESULTS, ROOT, read_config, stamp, write_result
from benchmarks.pictures import add_steps_chart
from genlab.callbacks import PostHocEMA
from genlab.callbacks.posthoc_ema import PowerFunctionEMA
from genlab.checkpoint import load_model
from genlab.cli import main as genlab_main
from genlab.data.toy import ToyDataModule
from genlab.posthoc import read_snapshots, reconstruct
from genlab.registry import get_model_class

CONFIGS = {"add": ROOT / "configs" / "add" / "ring8.yaml",
           "cd": ROOT / "configs" / "cd" / "ring8.yaml"}
DEFAULT_OUT = RESULTS / "distill_compare.json"
STEPS = (1, 2, 4)
UNTRACKED = (0.08,)  # a length between the tracked 0.05 and 0.10, tracked directly


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None, help="teacher checkpoint; default: train one")
    parser.add_argument("--teacher-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--add-max-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--cd-max-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--methods", default="cd,add",
                        help="students to train, in this order (empty: none)")
    parser.add_argument("--ema", action="store_true", help="also the post-hoc EMA sweep")
    parser.add_argument("--ema-max-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--ema-every", type=int, default=100, help="snapshot interval")
    parser.add_argument("--ema-lengths", default="0.03,0.05,0.08,0.1,0.15")
    parser.add_argument("--ema-sampler", default="ddim,50", help="sampler,steps of the sweep")
    parser.add_argument("--num", type=int, default=2500, help="samples scored")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/distill_compare")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--merge", action="store_true",
                        help="keep the sections of --out that this run does not measure (one "
                             "method or the EMA sweep at a time, from the same teacher)")
    return parser.parse_args(argv)


def _fit(model: L.LightningModule, data: ToyDataModule, steps: int, root: Path,
         callbacks: list | None = None) -> dict:
    """Fit on a plain CPU Trainer; save ``root/checkpoints/last.ckpt``; wall and CPU seconds."""
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=str(root), callbacks=callbacks or [])
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=data)
    timing = {"train_steps": steps, "train_seconds": round(time.perf_counter() - wall, 1),
              "train_cpu_seconds": round(time.process_time() - cpu, 1)}
    trainer.save_checkpoint(root / "checkpoints" / "last.ckpt", weights_only=False)
    return timing


def train_student(method: str, teacher: Path, steps: int | None, workdir: Path) -> tuple:
    config = read_config(CONFIGS[method])
    L.seed_everything(config.get("seed_everything", 0), verbose=False)
    args = {**config["model"]["init_args"], "teacher_ckpt": str(teacher)}
    model = get_model_class(method)(**args)
    steps = steps or config["trainer"]["max_steps"]
    info = _fit(model, ToyDataModule(**config["data"]["init_args"]), steps, workdir / method)
    print(f"{method}: {info}", flush=True)
    return model.eval(), {**info, "model": {k: v for k, v in args.items()
                                            if k != "teacher_ckpt"}}


def ema_sweep(args: argparse.Namespace, workdir: Path) -> dict:
    """Diffusion ring-8 with PostHocEMA; the config's fixed EMA and each length, scored alike."""
    config = read_config(ROOT / "configs" / "diffusion" / "ring8.yaml")
    L.seed_everything(config.get("seed_everything", 0), verbose=False)
    model = get_model_class("diffusion")(**config["model"]["init_args"])
    steps = args.ema_max_steps or config["trainer"]["max_steps"]
    run = workdir / "ema_run"
    callback = PostHocEMA("denoiser", "ema.module", every_n_steps=args.ema_every)
    direct = DirectEMA("denoiser", UNTRACKED)
    info = _fit(model, ToyDataModule(**config["data"]["init_args"]), steps, run,
                [callback, direct])
    errors = reconstruction_errors(run, callback, direct)
    sampler, sampler_steps = args.ema_sampler.split(",")
    options = ["--num", str(args.num), "--sampler", sampler, "--steps", sampler_steps]
    base = run / "checkpoints" / "last.ckpt"
    genlab_main(["evaluate", "--ckpt", str(base), "--out", str(run / "fixed.eval.json"),
                 *options])
    fixed = json.loads((run / "fixed.eval.json").read_text())["metrics"]
    start, cpu = time.perf_counter(), time.process_time()
    genlab_main(["ema", "--run", str(run), "--sweep", args.ema_lengths, "--out",
                 str(run / "sweep"), "--", *options])
    sweep = json.loads((run / "sweep" / "sweep.json").read_text())
    rows = {f"{r['length']:g}": _modes(r["metrics"]) for r in sweep["results"]}
    best = sweep["best"]
    return {**info, "snapshot_every": args.ema_every,
            "sampler": f"{sampler} {sampler_steps}",
            "fixed_ema": {"ema_decay": config["model"]["init_args"]["ema_decay"],
                          **_modes(fixed)},
            "posthoc": rows, "best_length": best["length"],
            "best": _modes(best["metrics"]),
            "sweep_seconds": round(time.perf_counter() - start, 1),
            "sweep_cpu_seconds": round(time.process_time() - cpu, 1),
            "beats_or_ties_fixed": best["metrics"]["high_quality"] >= fixed["high_quality"],
            "reconstruction": errors}


class DirectEMA(L.Callback):
    """A power-function EMA of lengths the snapshots do not track, kept every step: what a
    reconstruction of those lengths is compared with."""

    def __init__(self, network: str, sigma_rels: tuple[float, ...]) -> None:
        self.network, self.ema = network, PowerFunctionEMA(sigma_rels)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: object, batch: object, batch_idx: int) -> None:
        self.ema.update(pl_module.get_submodule(self.network).state_dict())


def relative_error(a: dict, b: dict) -> float:
    """``||a - b|| / ||b||`` over all the tensors of two state dicts."""
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in b)
    return (num / sum(float(b[k].double().pow(2).sum()) for k in b)) ** 0.5


def reconstruction_errors(run: Path, callback: PostHocEMA, direct: DirectEMA) -> dict:
    """Relative weight error of the average reconstructed from the run's snapshots against the
    one tracked during the run: the tracked lengths (target <= 1e-3), and untracked ones."""
    snapshots = read_snapshots(run)
    rows = {}
    for tracker, kind in ((callback.ema, "tracked"), (direct.ema, "untracked")):
        for length, average in zip(tracker.sigma_rels, tracker.averages):
            rows[f"{length:g}"] = {"kind": kind, "relative_weight_error": float(
                f"{relative_error(reconstruct(snapshots, length)[0], average):.3g}")}
    tracked = [r["relative_weight_error"] for r in rows.values() if r["kind"] == "tracked"]
    return {"snapshots": len(snapshots), "lengths": rows,
            "tracked_max_relative_error": max(tracked),
            "target_met": max(tracked) <= 1e-3}


def _reduced(args: argparse.Namespace, report: dict) -> bool:
    """Whether any run was shorter than its config's (then the file is a reduced-size run)."""
    full = {"teacher": read_config(ROOT / "configs" / "add" / "ring8_teacher.yaml"),
            "cd": read_config(CONFIGS["cd"]), "add": read_config(CONFIGS["add"]),
            "posthoc_ema": read_config(ROOT / "configs" / "diffusion" / "ring8.yaml")}
    return any(report[name]["train_steps"] < config["trainer"]["max_steps"]
               for name, config in full.items() if name in report)


def _modes(metrics: dict) -> dict:
    return {"modes_covered": int(metrics["modes_covered"]),
            "high_quality_pct": round(100 * float(metrics["high_quality"]), 2)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    command = "python -m benchmarks.distill_compare " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv)
    report = {"benchmark": "ADD vs consistency distillation from one ring-8 teacher "
                           f"({args.num} samples)",
              "commands": [command], **stamp("cpu"), "results": {}}
    if args.merge and Path(args.out).is_file():
        report = merged(json.loads(Path(args.out).read_text()), report)
    teacher_path = resolve_teacher(args, workdir, report)
    teacher = load_model(teacher_path)
    data = ToyDataModule(**read_config(CONFIGS["cd"])["data"]["init_args"])
    results = report["results"]
    results["teacher_ddim_50"] = score("teacher ddim 50", lambda n: teacher.sample(
        n, sampler="ddim", steps=50), data, args.num)
    grid = teacher_on_cd_grid(teacher_path)
    results[grid[0]] = score(grid[0].replace("_", " "), grid[1], data, args.num)
    for method in filter(None, args.methods.split(",")):
        student, report[method] = train_student(
            method, teacher_path, getattr(args, f"{method}_max_steps"), workdir)
        for steps in STEPS:
            results[f"{method}_{steps}_step"] = score(
                f"{method} {steps} step", lambda n, s=steps, m=student: m.sample(n, steps=s),
                data, args.num, args.out if steps == 1 else None)
        results[f"{method}_1_step"]["seed_spread"] = seed_spread(student, data)
    for row in results.values():
        if isinstance(row, dict):
            row["samples_per_second"] = round(args.num / max(row["sample_seconds"], 1e-9), 1)
    if "cd_1_step" in results:  # judged on the training process's CPU time (loaded machine)
        one = results["cd_1_step"]
        results["target_met"] = (one["modes_covered"] == 8 and one["high_quality_pct"] >= 95
                                 and report["cd"]["train_cpu_seconds"] <= 900)
    if args.ema:
        report["posthoc_ema"] = ema_sweep(args, workdir)
    report["reduced"] = _reduced(args, report)
    out = write_result(report, args.out)
    add_steps_chart([out], out.parent / "img" / "distill_steps.png", args.num,
                    groups=("cd", "add", "teacher"),
                    title="ADD and CD students from one ring-8 teacher")


def seed_spread(student: L.LightningModule, data: ToyDataModule, seeds: int = 10,
                num: int = 10_000) -> dict:
    """The 1-step high-quality share over ``seeds`` draws of ``num`` samples (seeds 1, 2, ...):
    how far the protocol's single 2,500-sample figure can sit from the student's true share."""
    shares = [score(f"1 step, seed {seed}", lambda n: student.sample(n, steps=1), data, num,
                    seed=seed)["high_quality_pct"] for seed in range(1, seeds + 1)]
    spread = torch.tensor(shares)
    print(f"1 step over {seeds} x {num:,} samples: HQ {spread.mean():.2f}% "
          f"(std {spread.std():.2f} between seeds)", flush=True)
    return {"samples": seeds * num, "high_quality_pct_mean": round(float(spread.mean()), 2),
            "std_between_seeds": round(float(spread.std()), 2),
            "high_quality_pct_per_seed": shares}


def merged(previous: dict, report: dict) -> dict:
    """The previous file's sections with this run's command appended (same teacher checked by
    ``resolve_teacher``)."""
    commands = previous.pop("commands", [previous["command"]] if "command" in previous else [])
    previous.pop("command", None)
    return {**previous, **{k: v for k, v in report.items() if k not in ("results", "commands")},
            "commands": commands + report["commands"],
            "results": previous.get("results", {})}


def resolve_teacher(args: argparse.Namespace, workdir: Path, report: dict) -> Path:
    """The teacher's checkpoint: ``--teacher``, or one trained here; recorded in ``report``."""
    if args.teacher is None:
        path, info = train_teacher(args.teacher_steps, workdir)
    else:
        path = Path(args.teacher)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        info = {"checkpoint": args.teacher, "train_steps": ckpt["global_step"]}
    previous = report.get("teacher")
    if previous and previous.get("train_steps") != info["train_steps"]:
        raise SystemExit(f"--merge: {args.out} was measured with another teacher "
                         f"({previous['train_steps']} steps, this one {info['train_steps']})")
    report["teacher"] = {**(previous or {}), **info}
    return path


def teacher_on_cd_grid(teacher: Path) -> tuple[str, object]:
    """The teacher's own ODE solver chained over the CD config's distillation grid: the map a
    perfect consistency student would learn (its quality is CD's ceiling)."""
    h = read_config(CONFIGS["cd"])["model"]["init_args"]
    cd = get_model_class("cd")(**{**h, "teacher_ckpt": str(teacher)})

    def draw(n: int) -> torch.Tensor:
        x = torch.randn(n, *cd.data_shape)
        for t, s in zip(cd.grid, cd.grid[1:]):
            x = cd.neighbour(x, x, torch.full((n,), t), torch.full((n,), s), None, None)
        return cd.consistency(cd.teacher, x, torch.full((n,), cd.grid[-1]), None) * cd.data_scale

    return f"teacher_{h['solver']}_{h['num_intervals']}", draw

if __name__ == "__main__":
    main()
