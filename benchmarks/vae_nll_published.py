"""The CPU presets that aim at the published MNIST figures, run as a user runs them.

    python -m benchmarks.vae_nll_published --rows vae         # the ELBO VAE
    python -m benchmarks.vae_nll_published --rows iwae        # IWAE (k = 50)

Each row is a shipped config (``configs/vae/mnist_mlp_cpu.yaml``: the ELBO VAE;
``configs/vae/mnist_iwae_cpu.yaml``: IWAE, k = 50), trained with ``genlab fit`` and scored with
``genlab evaluate --sample_metrics false``: the test NLL with the configs' ``eval_samples`` =
5,000 importance samples (``VAE.log_likelihood``) on all 10,000 (dynamically binarized) test
images. Each command runs in its own process with one thread (``--threads``); the script
records its wall time and its CPU time (the process and its data workers), since other jobs
share this machine. A grid of 64 samples of each model (``genlab sample``) goes beside its JSON,
benchmarks/results/vae_nll_cpu_published_<row>.json (one file per row: rows can run at once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    DATA,
    RESULTS,
    ROOT,
    command,
    load_span,
    read_config,
    stamp,
    write_result,
)
from benchmarks.pictures import picture_path

# Row -> its config, the published anchors (test NLL, nats, k = 5000) and the target.
ROWS: dict[str, dict] = {
    "vae": {"model": "VAE (ELBO)", "config": "configs/vae/mnist_mlp_cpu.yaml",
            "anchors": {"Burda et al. 2016": 86.76, "pythae": 89.78}, "target": 89.5},
    "iwae": {"model": "IWAE (k=50)", "config": "configs/vae/mnist_iwae_cpu.yaml",
             "anchors": {"Burda et al. 2016": 84.78, "pythae": 86.82}, "target": 86.8},
}
BUDGET_MINUTES = 45  # of training, per preset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=sorted(ROWS)[::-1])
    parser.add_argument("--source", default=str(DATA / "mnist"), help="MNIST parquet folder")
    parser.add_argument("--root", default=str(ROOT / "runs" / "vae_nll_published"),
                        help="run directories")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the JSON files")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every timed command (2: the whole 2-core laptop)")
    return parser.parse_args(argv)


def timed(cmd: list[str], threads: int = 1) -> dict[str, float]:
    """Run ``cmd`` (on ``threads`` threads, W&B offline); its wall and CPU seconds. Fails loudly."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "offline"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(cpu, 1)}


def genlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "genlab.cli", *args]


def run_row(name: str, args: argparse.Namespace, out: Path) -> dict:
    """Fit the row's config, score its last checkpoint, draw its sample grid beside ``out``."""
    row = ROWS[name]
    run_name = Path(row["config"]).stem
    fit = timed(genlab("fit", "--config", row["config"], "--data.source", args.source,
                       "--run.root", args.root), args.threads)
    runs = sorted(Path(args.root, run_name).glob("version_*"), key=os.path.getmtime)
    ckpt = runs[-1] / "checkpoints" / "last.ckpt"
    report = runs[-1] / "evaluate.json"
    # 10 test images a batch: 5,000 draws of 10 images fit the CPU's caches better than of 100.
    evaluate = timed(genlab("evaluate", "--ckpt", str(ckpt), "--sample_metrics", "false",
                            "--data.init_args.batch_size", "10", "--out", str(report)),
                     args.threads)
    metrics = json.loads(report.read_text())["metrics"]
    grid = picture_path(out, "samples")
    timed(genlab("sample", "--ckpt", str(ckpt), "--num", "64", "--out", str(grid)), args.threads)
    nll = float(metrics["nll"])
    return {"model": row["model"], "config": row["config"], "test_nll": round(nll, 3),
            "bits_per_dim": round(float(metrics["bits_per_dim"]), 5),
            "anchors": row["anchors"], "target": row["target"],
            "meets_target": nll <= row["target"],
            "train_wall_s": fit["wall_s"], "train_cpu_s": fit["cpu_s"],
            "train_within_budget": min(fit["wall_s"], fit["cpu_s"]) <= BUDGET_MINUTES * 60,
            "eval_wall_s": evaluate["wall_s"], "eval_cpu_s": evaluate["cpu_s"],
            "checkpoint": str(ckpt), "samples": str(grid),
            "commands": [f"genlab fit --config {row['config']} --data.source ../shared/data/mnist",
                         f"genlab evaluate --ckpt {ckpt} --sample_metrics false "
                         "--data.init_args.batch_size 10"]}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    return [run(name, args) for name in args.rows]


def activation(name: str) -> str:
    """The MLPs' activation in ``name``'s config."""
    config = read_config(ROOT / ROWS[name]["config"])
    return config["model"]["init_args"]["act"]


def run(name: str, args: argparse.Namespace) -> dict:
    """One row, end to end; writes its JSON."""
    load_before = os.getloadavg()
    out = Path(args.results) / f"vae_nll_cpu_published_{name}.json"
    row = run_row(name, args, out)
    print(row, flush=True)
    result = {
        "benchmark": "VAE / IWAE test NLL on binarized MNIST, CPU presets (published figures)",
        "rows": [row],
        "protocol": {"importance_samples": 5000, "test_images": 10_000,
                     "test_binarization": "dynamic, seeded (the data module's seed)",
                     "train_images": 60_000, "validation": "none (the last checkpoint)",
                     "network": f"MLP 784-200-200-50, {activation(name)}, Bernoulli likelihood",
                     "budget": f"{BUDGET_MINUTES} minutes of training per preset (wall, or CPU "
                               "time of a 1-thread process when the shared machine's load "
                               "stretches the wall time)",
                     "scoring": "genlab evaluate --sample_metrics false"},
        "command": command("benchmarks.vae_nll_published",
                           ["--rows", name, *(["--threads", str(args.threads)]
                                              if args.threads != 1 else [])]),
        **stamp("cpu"),
        "load_average_1_5_15_min": load_span(load_before),
    }
    result["hardware"]["threads"] = args.threads
    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
