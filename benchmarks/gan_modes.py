"""Mode coverage of the GAN plugin on ring-8 and grid-25, over several seeds (CPU).

    python -m benchmarks.gan_modes                          # both configs, 5 seeds each
    python -m benchmarks.gan_modes --data ring8 --seeds 2 --max-steps 1000   # a quick look

Trains ``GAN`` with the model and data settings of ``configs/gan/<data>.yaml`` on a plain CPU
Trainer (no logger, no validation), once per seed (the seed sets the weights, the noise and the
training points), then draws 2,500 samples from the EMA generator (the VEEGAN / PacGAN protocol)
and scores them with ``genlab.metrics.ModeCoverage``: modes covered, and the share of
high-quality samples (within 3 sigma of a mode). Prints one row per seed, the mean, and the
published anchors; results go to benchmarks/results/gan_modes.json.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time

import lightning as L
import torch
from genlab_gan import GAN

from benchmarks.common import RESULTS, ROOT, cpu_model, point_options, read_config, write_result
from benchmarks.pictures import Curves, save_points
from genlab.callbacks.samples import fixed_seed
from genlab.data.toy import ToyDataModule
from genlab.metrics import ModeCoverage

DEFAULT_OUT = RESULTS / "gan_modes.json"
# (modes covered, high-quality %): Lin et al. 2018 (PacGAN), tables 2 and 3, same protocol.
ANCHORS = {
    "ring8": {"PacGAN4": (7.8, 95.9), "VEEGAN": (8.0, 52.9)},
    "grid25": {"PacGAN4": (24.8, 93.6), "VEEGAN": (24.6, 40.0)},
}
TARGET = {"ring8": (8, 95.0), "grid25": (25, 95.0)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    parser.add_argument("--seeds", type=int, default=5, help="runs per data set (seeds 0..N-1)")
    return point_options(parser, DEFAULT_OUT).parse_args(argv)


def run_seed(name: str, seed: int, max_steps: int | None, num: int, out: str) -> dict:
    """Train one seed of ``configs/gan/<name>.yaml`` and score 2,500 EMA samples; seed 0
    also saves its samples and training curves beside ``out``."""
    config = read_config(ROOT / "configs" / "gan" / f"{name}.yaml")
    L.seed_everything(seed, verbose=False)
    model = GAN(**config["model"]["init_args"])
    data = ToyDataModule(**{**config["data"]["init_args"], "seed": seed})
    steps = max_steps or config["trainer"]["max_steps"]
    curves = Curves(every=max(steps // 200, 1))
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[curves])
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    metric = ModeCoverage(data.modes, data.sigma)
    with fixed_seed(1000 + seed, model.device):
        samples = model.sample_eval(num)
    metric.update(samples)
    scores = metric.compute()
    if seed == 0:
        save_points(samples, out, f"{name}_samples", f"GAN {name}, seed 0, {steps} steps")
        curves.save(out, f"GAN {name}, seed 0", f"{name}_curves")
    return {"seed": seed, "modes": int(scores["modes_covered"]),
            "high_quality_pct": round(100 * float(scores["high_quality"]), 2),
            "train_seconds": round(seconds, 1), "max_steps": steps}


def summarize(name: str, rows: list[dict]) -> dict:
    modes = statistics.mean(r["modes"] for r in rows)
    hq = statistics.mean(r["high_quality_pct"] for r in rows)
    want_modes, want_hq = TARGET[name]
    return {"mean_modes": round(modes, 2), "mean_high_quality_pct": round(hq, 2),
            "meets_target": modes >= want_modes and hq >= want_hq, "target": TARGET[name],
            "anchors": ANCHORS[name]}


def print_table(name: str, rows: list[dict], summary: dict, num: int) -> None:
    print(f"\n{name}: modes covered / high-quality samples ({num:,} samples, 3 sigma)")
    for r in rows:
        print(f"  seed {r['seed']}: {r['modes']:>2} modes  {r['high_quality_pct']:6.2f}% HQ  "
              f"({r['train_seconds']:.0f} s)")
    print(f"  mean  : {summary['mean_modes']:5.2f} modes  {summary['mean_high_quality_pct']:6.2f}% "
          f"HQ   target >= {TARGET[name][0]} modes, >= {TARGET[name][1]}%: "
          f"{'met' if summary['meets_target'] else 'NOT met'}")
    for anchor, (modes, hq) in ANCHORS[name].items():
        print(f"  {anchor:<7}: {modes:5.2f} modes  {hq:6.2f}% HQ   (published)")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results: dict = {
        "benchmark": "gan_modes",
        "command": " ".join(["python -m benchmarks.gan_modes",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
        "note": "CPU shared with other processes: timings are indicative", "data": {},
    }
    for name in args.data:
        rows = []
        for seed in range(args.seeds):
            rows.append(run_seed(name, seed, args.max_steps, args.num, args.out))
            print(f"{name} seed {seed}: {rows[-1]}", flush=True)
            # Written after every seed, so an interrupted benchmark still leaves its figures.
            results["data"][name] = {"runs": rows, **summarize(name, rows)}
            results["wall_seconds"] = round(time.perf_counter() - start, 1)
            write_result(results, args.out)
        print_table(name, rows, results["data"][name], args.num)
    print(f"\nwall time {results['wall_seconds']:.0f} s; wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
