"""Mode coverage of the diffusion plugin on ring-8 and grid-25 (CPU).

    python -m benchmarks.diffusion_points                   # both data sets, configs' settings
    python -m benchmarks.diffusion_points --data ring8 --max-steps 1000

Trains ``Diffusion`` with the model and data settings of ``configs/diffusion/<data>.yaml`` on a
plain CPU Trainer (no logger), then draws 2,500 samples (the VEEGAN / PacGAN protocol) with each
sampler and scores them with ``genlab.metrics.ModeCoverage``: modes covered and the share of
high-quality samples (within 3 sigma of a mode). Results go to
benchmarks/results/diffusion_points.json.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import lightning as L
import torch
from genlab_diffusion import Diffusion

from benchmarks.common import RESULTS, ROOT, cpu_model, point_options, read_config, write_result
from benchmarks.pictures import Curves, save_points
from genlab.callbacks.samples import fixed_seed
from genlab.data.toy import ToyDataModule
from genlab.metrics import ModeCoverage

DEFAULT_OUT = RESULTS / "diffusion_points.json"
SAMPLERS = (("ddpm", 1000), ("ddim", 100), ("heun", 50))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    return point_options(parser, DEFAULT_OUT).parse_args(argv)


def train(name: str, max_steps: int | None, out: str) -> tuple[Diffusion, ToyDataModule, dict]:
    config = read_config(ROOT / "configs" / "diffusion" / f"{name}.yaml")
    L.seed_everything(config.get("seed_everything", 0), verbose=False)
    model = Diffusion(**config["model"]["init_args"])
    data = ToyDataModule(**config["data"]["init_args"])
    steps = max_steps or config["trainer"]["max_steps"]
    curves = Curves(every=max(steps // 200, 1))
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[curves],
                        default_root_dir=f"/tmp/diffusion_points_{name}")
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    curves.save(out, f"diffusion {name}, {steps} steps", f"{name}_curves")
    info = {"train_steps": steps, "train_seconds": round(time.perf_counter() - start, 1),
            "model": config["model"]["init_args"], "data": config["data"]["init_args"]}
    return model, data, info


def score(model: Diffusion, data: ToyDataModule, num: int, out: str, name: str) -> dict:
    results = {}
    model.eval()
    for sampler, steps in SAMPLERS:
        metric = ModeCoverage(data.modes, data.sigma)
        start = time.perf_counter()
        with fixed_seed(1, model.device), torch.no_grad():
            samples = model.sample(num, sampler=sampler, steps=steps)
        metric.update(samples)
        if sampler == SAMPLERS[0][0]:
            save_points(samples, out, f"{name}_samples", f"diffusion {name}, {sampler} {steps}")
        values = metric.compute()
        results[f"{sampler}_{steps}"] = {
            "modes_covered": int(values["modes_covered"]), "modes": len(data.modes),
            "high_quality_pct": round(100 * float(values["high_quality"]), 2),
            "sample_seconds": round(time.perf_counter() - start, 2)}
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"benchmark": "diffusion mode coverage on toy points (2,500 samples)",
              "command": "python -m benchmarks.diffusion_points " + " ".join(sys.argv[1:]),
              "date": datetime.date.today().isoformat(),
              "hardware": {"cpu": cpu_model(), "threads": args.threads,
                           "note": "CPU shared with other processes during the run"},
              "torch": torch.__version__, "results": {}}
    for name in args.data:
        model, data, info = train(name, args.max_steps, args.out)
        info["samplers"] = score(model, data, args.num, args.out, name)
        report["results"][name] = info
        for key, r in info["samplers"].items():
            print(f"{name:7s} {key:9s} modes {r['modes_covered']}/{r['modes']}  "
                  f"HQ {r['high_quality_pct']:.1f}%  ({r['sample_seconds']} s sampling, "
                  f"{info['train_seconds']} s training)", flush=True)
        # Written after each data set, so a long run leaves what it has measured.
        write_result(report, args.out)


if __name__ == "__main__":
    main()
