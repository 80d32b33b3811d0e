"""``genlab ema``: an EMA of any length, reconstructed after training (Karras et al. 2024).

From ``PostHocEMA``'s snapshots, written as a checkpoint that ``genlab sample`` / ``evaluate`` use.

    genlab ema --run runs/ring8/version_0 --length 0.1 --out ema_0.10.ckpt
    genlab ema --run runs/ring8/version_0 --sweep 0.05,0.1,0.15 --out sweep/ -- --num 2500

``--sweep`` writes one checkpoint per length, scores each with ``genlab evaluate`` (options after
``--`` are passed on) and reports the best.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from genlab.callbacks.posthoc_ema import (
    MAX_SIGMA_REL,
    SNAPSHOT_DIR,
    sigma_rel_to_gamma,
    solve_weights,
)
from genlab.errors import GenlabError
from genlab.run_dir import newest_checkpoint

# Metrics the sweep ranks by when --metric is not given: the first one the evaluation reports.
DEFAULT_METRICS = (("fid", "min"), ("high_quality", "max"), ("nll", "min"))


def read_snapshots(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's snapshots, oldest first (``weights_only``); ``GenlabError`` if there are none."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    paths = sorted(folder.glob("*.pt"))
    if not paths:
        raise GenlabError(f"{folder} holds no post-hoc EMA snapshots; train with the callback "
                          f"genlab.callbacks.PostHocEMA (trainer.callbacks in the config)")
    return [torch.load(p, map_location="cpu", weights_only=True) for p in paths]


def supported_lengths(snapshots: list[dict[str, Any]]) -> tuple[float, float]:
    """The lengths reconstructed reliably: half the shortest tracked to twice the longest."""
    tracked = [s for snap in snapshots for s in snap["sigma_rels"]]
    return min(tracked) / 2, min(2 * max(tracked), MAX_SIGMA_REL)


def check_length(snapshots: list[dict[str, Any]], length: float) -> None:
    """``GenlabError`` (one line) unless the snapshots support the EMA length ``length``."""
    low, high = supported_lengths(snapshots)
    if not low <= length <= high:
        raise GenlabError(f"EMA length {length} is outside what the snapshots support "
                          f"({low:.3g} to {high:.3g}: half the shortest to twice the longest "
                          f"tracked sigma_rel); pick a length in that range")


def reconstruct(snapshots: list[dict[str, Any]], length: float,
                step: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The power-function EMA of relative length ``length`` at ``step``, and how it was made.

    A state dict of the tracked network; ``step`` defaults to the last snapshot's.
    """
    check_length(snapshots, length)
    step = snapshots[-1]["step"] if step is None else step
    used = [s for s in snapshots if s["step"] <= step]
    if not used:
        raise GenlabError(f"--step {step} is before the first snapshot "
                          f"(step {snapshots[0]['step']})")
    columns = [(snap, k) for snap in used for k in range(len(snap["gammas"]))]
    weights = solve_weights([float(s["step"]) for s, _ in columns],
                            [s["gammas"][k] for s, k in columns], float(step),
                            sigma_rel_to_gamma(length))
    average = {key: sum(float(w) * s["averages"][k][key].double()
                        for w, (s, k) in zip(weights, columns)).float()
               for key in used[-1]["averages"][0]}
    info = {"length": length, "step": step, "snapshots": len(used),
            "weight_sum": float(weights.sum())}
    return average, info


def write_checkpoint(base: str | Path, snapshots: list[dict[str, Any]],
                     average: dict[str, torch.Tensor], info: dict[str, Any],
                     out: str | Path) -> Path:
    """Write ``base`` (a checkpoint of the same run) to ``out``, its averaged weights replaced.

    ``average`` replaces the weights under the snapshots' ``average`` path.
    """
    ckpt = torch.load(base, map_location="cpu", weights_only=True)
    prefix = snapshots[-1]["average"] + "."
    state = ckpt["state_dict"]
    missing = [k for k in average if prefix + k not in state]
    if missing:
        raise GenlabError(f"{base} has no weights {prefix}{missing[0]}; pass --ckpt, a "
                          f"checkpoint of the run the snapshots come from")
    for key, value in average.items():
        state[prefix + key] = value.to(state[prefix + key].dtype)
    ckpt["posthoc_ema"] = info
    ckpt.get("genlab", {}).pop("wandb", None)  # `evaluate` must not file it under the run
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def sweep(args: argparse.Namespace, snapshots: list[dict[str, Any]], base: Path,
          evaluate_args: list[str]) -> dict[str, Any]:
    """Write and score one checkpoint per length; the report, with the best length."""
    from genlab.evaluation import evaluate_main

    lengths = [float(x) for x in args.sweep.split(",")]
    for length in lengths:  # refuse a bad length before any evaluation runs
        check_length(snapshots, length)
    out = Path(args.out)
    rows = []
    for length in lengths:
        average, info = reconstruct(snapshots, length, args.step)
        path = write_checkpoint(base, snapshots, average, info, out / f"ema_{length:g}.ckpt")
        evaluate_main(["--ckpt", str(path), "--out", str(path.with_suffix(".eval.json")),
                       *evaluate_args])
        metrics = json.loads(path.with_suffix(".eval.json").read_text())["metrics"]
        rows.append({"length": length, "checkpoint": str(path), "metrics": metrics})
    metric, mode = _ranking(args, rows[0]["metrics"])
    pick = min if mode == "min" else max
    best = pick(rows, key=lambda r: r["metrics"][metric])
    return {"metric": metric, "mode": mode, "results": rows, "best": best}


def _ranking(args: argparse.Namespace, metrics: dict[str, Any]) -> tuple[str, str]:
    if args.metric is not None:
        if args.metric not in metrics:
            raise GenlabError(f"--metric {args.metric} is not among the evaluation's metrics "
                              f"{sorted(metrics)}")
        return args.metric, args.mode
    for name, mode in DEFAULT_METRICS:
        if name in metrics:
            return name, mode
    raise GenlabError(f"pass --metric (one of {sorted(metrics)}) and --mode min or max")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """``genlab ema``'s options; what follows ``--`` goes to ``genlab evaluate``."""
    parser = argparse.ArgumentParser(prog="genlab ema", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run directory holding posthoc_ema/")
    parser.add_argument("--length", type=float, default=None, help="sigma_rel, e.g. 0.1")
    parser.add_argument("--sweep", default=None, help="comma-separated lengths to score")
    parser.add_argument("--out", required=True,
                        help="checkpoint to write (--length) or folder (--sweep)")
    parser.add_argument("--ckpt", default=None, help="base checkpoint whose averaged weights "
                        "are replaced (default: the run's newest)")
    parser.add_argument("--step", type=int, default=None,
                        help="training step of the average (default: the last snapshot's)")
    parser.add_argument("--metric", default=None, help="sweep: metric to rank by")
    parser.add_argument("--mode", choices=("min", "max"), default="min",
                        help="sweep: whether smaller or larger --metric is better")
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    else:
        rest = []
    args = parser.parse_args(argv)
    if (args.length is None) == (args.sweep is None):
        raise GenlabError("give either --length (one checkpoint) or --sweep (several, scored)")
    return args, rest


def ema_main(argv: list[str]) -> None:
    """``genlab ema``: reconstruct one EMA length, or sweep several with ``genlab evaluate``."""
    args, evaluate_args = parse_args(argv)
    snapshots = read_snapshots(args.run)
    base = Path(args.ckpt) if args.ckpt else newest_checkpoint(args.run)
    if base is None or not base.is_file():
        raise GenlabError(f"no checkpoint to start from in {args.run}/checkpoints; pass --ckpt")
    console = Console(highlight=False)
    if args.length is not None:
        average, info = reconstruct(snapshots, args.length, args.step)
        path = write_checkpoint(base, snapshots, average, info, args.out)
        console.print(f"wrote {path} (sigma_rel {args.length} at step {info['step']}, from "
                      f"{info['snapshots']} snapshots)")
        return
    report = sweep(args, snapshots, base, evaluate_args)
    table = Table(title=f"post-hoc EMA sweep ({report['metric']}, {report['mode']} is best)")
    table.add_column("sigma_rel")
    table.add_column(report["metric"])
    for row in report["results"]:
        table.add_row(f"{row['length']:g}", f"{row['metrics'][report['metric']]:.4g}")
    console.print(table)
    (Path(args.out) / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"best: sigma_rel {report['best']['length']:g} "
                  f"-> {report['best']['checkpoint']}")
