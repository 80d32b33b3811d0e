"""Framework overhead: genlab's Trainer run against a plain PyTorch loop on the same model code.

    python -m benchmarks.overhead --preset cpu          # GAN (DCGAN, MNIST) and GPT (Shakespeare)
    python -m benchmarks.overhead --preset gpu          # the same on one GPU, longer
    python -m benchmarks.overhead --preset gpu --device cpu --tiny   # the GPU preset, toy size

For each model, in one process, with one thread, ``torch.use_deterministic_algorithms(True)``
and fp32:

- the model is built once (the config's hyperparameters, ``configs/gan/mnist.yaml`` and
  ``configs/ar/shakespeare_char_cpu.yaml``) and deep-copied, so every run starts from the same
  weights (and, for the GAN, the same training-noise generator state);
- ``warmup + steps`` batches are read once from the real data (MNIST parquet, plays.txt) and
  reused by every run in the same order, so data loading is not part of either figure;
- **plain**: a hand-written loop over the plugin's networks and loss functions
  (``GAN.generator`` / ``GAN.discriminator`` with ``genlab.losses.ADVERSARIAL_LOSSES``;
  ``GPT.loss``, ``GPT.lr_factor``), the same optimizers, schedules, gradient clipping and EMA;
- **genlab**: ``lightning.Trainer.fit`` configured as ``genlab fit`` configures a user's run:
  the progress bar, ``ModelCheckpoint`` (save_last), ``SampleLogger`` (the config's
  ``samples.every_n_steps``), ``SampleMetrics``, ``DivergenceGuard``, ``RNGState``,
  ``Preemption``, then what ``GenlabCLI.after_instantiate_classes`` adds (``IterationBar``,
  ``IterationLog``, ``LearningRateMonitor``, ``TrainThroughput``; not ``ChannelsLast``, off by
  default), the config's ``log_every_n_steps``; the logger is Lightning's ``DummyLogger`` (W&B
  would add network I/O unrelated to the loop; the monitors need a logger);
- **genlab bare**: the same Trainer (and ``DummyLogger``) with no callbacks, no progress bar,
  no checkpointing: the difference to **genlab** is what the callbacks cost.

Throughput is steps (batches) per second after ``warmup`` batches. Each of ``repeats`` (5)
rounds runs plain, genlab and bare back to back, and a ratio is taken within a round (the
machine's load drifts less within one than across); the figure is the median of the rounds'
ratios, with its spread (min, max, quartiles): genlab / plain and genlab / genlab bare.
The loss difference is the largest |genlab - plain| over every step's loss(es) of the first
repeat. Targets: genlab / plain >= 0.95 (CPU) / 0.97 (GPU), genlab / bare >= 0.99 (genlab's
callbacks within 1%), loss difference <= 1e-4. The CLI start-up
time (``genlab --help``, ``genlab list``; a fresh process each, best of 3) is reported too.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import DummyLogger
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from benchmarks.common import DATA, RESULTS, ROOT, command, read_config, stamp, write_result
from genlab.callbacks import (
    DivergenceGuard,
    Preemption,
    RNGState,
    SampleLogger,
    SampleMetrics,
)
from genlab.callbacks.monitors import monitors
from genlab.callbacks.steps import count_iterations
from genlab.module import is_logging_step
from genlab.noise import share_randn

Batches = list[dict[str, Tensor]]
Rates = tuple[float, float]  # steps per wall second, steps per CPU second
PlainLoop = Callable[[Any, Batches, int, torch.device], tuple[list[Tensor], Rates]]
TARGETS = {"cpu": {"ratio": 0.95, "ratio_vs_bare": 0.99, "loss_diff": 1e-4},
           "gpu": {"ratio": 0.97, "ratio_vs_bare": 0.99, "loss_diff": 1e-4}}
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"device": "cpu", "steps": 60, "warmup": 10, "repeats": 5},
    "gpu": {"device": "cuda", "steps": 300, "warmup": 30, "repeats": 5},
}


# ------------------------------------------------------------------------ timing in Lightning


class StepClock(L.Callback):
    """Start the clock at batch ``warmup``, stop it after each batch; keep each step's losses.

    Reading ``trainer.callback_metrics`` is a dict lookup (no device sync): the plain loop
    keeps its losses the same way, as tensors, so both pay the same for it.
    """

    def __init__(self, warmup: int, keys: tuple[str, ...]) -> None:
        self.warmup, self.keys = warmup, keys
        self.start = self.end = (0.0, 0.0)
        self.losses: list[Tensor | None] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = _now(pl_module.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # genlab's families log on logging steps only (GenerativeModule.log_train).
        metrics = trainer.callback_metrics
        logged = is_logging_step(trainer)
        self.losses.append(torch.stack([metrics[k].detach() for k in self.keys]) if logged
                           else None)
        if batch_idx == trainer.num_training_batches - 1:
            self.end = _now(pl_module.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _now(device: torch.device) -> tuple[float, float]:
    """Wall and process CPU seconds, after the device has finished its queued work.

    On a CPU shared with other jobs the wall clock counts time the process waited for a core;
    its CPU time does not, so steps per CPU-second compare two runs fairly on a busy machine.
    """
    _sync(device)
    return time.perf_counter(), time.process_time()


def _rates(steps: int, start: tuple[float, float], end: tuple[float, float]) -> Rates:
    return steps / (end[0] - start[0]), steps / (end[1] - start[1])


def user_callbacks(root: Path, sample_every: int) -> list[L.Callback]:
    """The callbacks ``genlab fit`` adds to a user's run (the CLI's defaults; ``ChannelsLast``
    is off by default, and then not installed)."""
    return [SampleLogger(every_n_steps=sample_every), SampleMetrics(), DivergenceGuard(),
            RNGState(), Preemption(root / "checkpoints" / "last.ckpt"),
            ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)]


def genlab_run(model: L.LightningModule, batches: Batches | DataLoader, warmup: int,
               device: torch.device, keys: tuple[str, ...], optimizer_steps_per_batch: int,
               user: bool, trainer_args: dict[str, Any] | None = None,
               precision: str = "32-true",
               inspect: Callable[[L.Trainer], None] | None = None) -> tuple[list[Tensor], Rates]:
    """Fit ``model`` on ``batches`` (a list, or a DataLoader) with a Trainer; returns every
    step's losses and the steps/s after ``warmup``. ``user``: the callbacks and progress bar of
    a ``genlab fit`` run. ``trainer_args`` may hold ``limit_train_batches`` for a DataLoader,
    and ``callbacks`` to add; ``inspect`` sees the built trainer before it fits."""
    clock = StepClock(warmup, keys)
    args = dict(trainer_args or {})
    sample_every = args.pop("sample_every", 500)
    added = args.pop("callbacks", [])
    loader = batches if isinstance(batches, DataLoader) else DataLoader(
        batches, batch_size=None, shuffle=False)
    num = args.get("limit_train_batches") or len(loader)
    with tempfile.TemporaryDirectory(prefix="genlab_overhead_") as tmp:
        extra = user_callbacks(Path(tmp), sample_every) if user else []
        trainer = L.Trainer(
            max_steps=num * optimizer_steps_per_batch, accelerator=device.type,
            devices=1, precision=precision, logger=DummyLogger(), default_root_dir=tmp,
            callbacks=[clock, *extra, *added], enable_progress_bar=user, enable_checkpointing=user,
            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, **args)
        if user:  # as GenlabCLI.after_instantiate_classes completes a user's trainer
            trainer.callbacks += monitors(trainer)
            count_iterations(trainer)
        if inspect is not None:
            inspect(trainer)
        trainer.fit(model, train_dataloaders=loader)
    return clock.losses, _rates(num - warmup, clock.start, clock.end)


# ------------------------------------------------------------------------ the GAN


NOISE_SEED = 0  # the GAN's training-noise generator starts here in every run


def gan_model(tiny: bool, device: torch.device) -> tuple[L.LightningModule, dict[str, Any]]:
    """The GAN of configs/gan/mnist.yaml (DCGAN, hinge, spectral norm, EMA); tiny: width 8."""
    from genlab_gan import GAN

    cfg = read_config(ROOT / "configs" / "gan" / "mnist.yaml")
    init = dict(cfg["model"]["init_args"])
    if tiny:
        init.update(width=8, latent_dim=16)
    model = GAN(**init)
    # The training noise starts from a known state in every run (the plugin's resume hook).
    noise = torch.Generator(device=device).manual_seed(NOISE_SEED)
    model.on_load_checkpoint({"gan_noise_state": noise.get_state()})
    trainer = {"log_every_n_steps": cfg["trainer"]["log_every_n_steps"],
               "sample_every": cfg["samples"]["every_n_steps"]}
    return model, trainer


def plain_gan(model: Any, batches: Batches, warmup: int,
              device: torch.device) -> tuple[list[Tensor], Rates]:
    """A hand-written GAN loop on the plugin's networks and losses: D step, then G step, EMA."""
    from genlab.losses.adversarial import ADVERSARIAL_LOSSES

    h = model.hparams
    G, D = model.generator.to(device), model.discriminator.to(device)
    d_loss_fn, g_loss_fn = ADVERSARIAL_LOSSES[h.loss]
    opt_g = torch.optim.Adam(G.parameters(), lr=h.lr_g, betas=tuple(h.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=h.lr_d, betas=tuple(h.betas_d or h.betas))
    ema = AveragedModel(G, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(h.ema_decay))
    noise = torch.Generator(device=device).manual_seed(NOISE_SEED)  # as gan_model's plugin

    def z(num: int) -> Tensor:  # the plugin's draw (genlab.noise) of a 1-process run
        return share_randn((num, h.latent_dim), generator=noise, device=device)

    losses, start = [], (0.0, 0.0)
    for i, batch in enumerate(batches):
        if i == warmup:
            start = _now(device)
        real = batch["x"].to(device)
        with torch.no_grad():
            fake = G(z(len(real)))
        loss_d = d_loss_fn(D(real), D(fake))  # real first: spectral norm's power iteration order
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = g_loss_fn(D(G(z(len(real)))))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema.update_parameters(G)
        losses.append(torch.stack([loss_d.detach(), loss_g.detach()]))
    return losses, _rates(len(batches) - warmup, start, _now(device))


def first_batches(data: Any, num: int) -> list[dict[str, torch.Tensor]]:
    """The first ``num`` training batches of a set-up data module, read once."""
    out = []
    for batch in data.train_dataloader():
        out.append({"x": batch["x"].clone()})
        if len(out) == num:
            return out
    raise SystemExit(f"{type(data).__name__} has fewer than {num} training batches")


def mnist_batches(num: int, batch_size: int) -> Batches:
    """The first ``num`` training batches of MNIST (the config's data settings), seeded."""
    from genlab.data.images import ImageDataModule

    torch.manual_seed(0)
    data = ImageDataModule(str(DATA / "mnist"), image_size=28, channels=1, resize=False,
                           batch_size=batch_size, num_workers=0)
    data.prepare_data()
    data.setup("fit")
    return first_batches(data, num)


# ------------------------------------------------------------------------ the GPT


def gpt_model(tiny: bool, total_steps: int) -> tuple[L.LightningModule, dict[str, Any]]:
    """The GPT of configs/ar/shakespeare_char_cpu.yaml; tiny: 1 layer, 32 wide, block 16."""
    from genlab_ar import GPT

    cfg = read_config(ROOT / "configs" / "ar" / "shakespeare_char_cpu.yaml")
    init = dict(cfg["model"]["init_args"])
    if tiny:
        init.update(n_layer=1, n_head=2, n_embd=32, block_size=16)
    model = GPT(**init)
    trainer = {"log_every_n_steps": cfg["trainer"]["log_every_n_steps"],
               "gradient_clip_val": cfg["trainer"]["gradient_clip_val"],
               "sample_every": cfg["samples"]["every_n_steps"]}
    return model, trainer


def plain_gpt(model: Any, batches: Batches, warmup: int, device: torch.device,
              grad_clip: float = 1.0) -> tuple[list[Tensor], Rates]:
    """A hand-written loop on the plugin's network and loss: AdamW, warm-up + cosine, clipping."""
    h = model.hparams
    model = model.to(device)
    opt = torch.optim.AdamW(model.net.param_groups(h.weight_decay), lr=h.lr, betas=h.betas,
                            fused=device.type == "cuda")
    total = len(batches)  # the Trainer's horizon: max_steps = number of batches
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: model.lr_factor(step, total))
    params = [p for group in opt.param_groups for p in group["params"]]  # Lightning's order
    losses, start = [], (0.0, 0.0)
    for i, batch in enumerate(batches):
        if i == warmup:
            start = _now(device)
        loss = model.loss(batch["x"].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.detach()[None])
    return losses, _rates(len(batches) - warmup, start, _now(device))


def text_batches(num: int, block_size: int, batch_size: int) -> Batches:
    """The first ``num`` training batches of plays.txt, char tokenizer (the config's), seeded."""
    from genlab.data.text import TextDataModule

    torch.manual_seed(0)
    data = TextDataModule(str(DATA / "shakespeare" / "plays.txt"), tokenizer="char",
                          block_size=block_size, batch_size=batch_size, num_workers=0)
    data.setup("fit")
    return first_batches(data, num)


# ------------------------------------------------------------------------ comparison


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and quartiles of ``values`` (quartiles need two values or more)."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "q1": round(q[0], 4), "q3": round(q[2], 4),
            "n": len(values)}


def compare(model: L.LightningModule, batches: Batches, warmup: int, device: torch.device,
            plain: PlainLoop, keys: tuple[str, ...], optimizer_steps_per_batch: int,
            trainer_args: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Alternate plain / genlab / genlab-bare runs from the same initial model; the figures.

    Throughput is per CPU-second on a CPU (robust to other jobs on a shared machine), per
    wall-second on a GPU; both are kept. Each repeat runs the three back to back, so a ratio is
    taken within a repeat (paired: the machine's state drifts less within one than across);
    ``ratio`` is the median of the paired genlab / plain ratios, ``ratio_vs_bare`` of
    genlab / genlab-bare, each with its spread (min, max, quartiles) over the repeats.
    """
    names = ("plain", "genlab", "genlab_bare")
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, list[Tensor]] = {}
    for _ in range(repeats):
        for name in names:
            fresh = copy.deepcopy(model)
            if name == "plain":
                losses, (w, c) = plain(fresh, batches, warmup, device)
            else:
                losses, (w, c) = genlab_run(fresh, batches, warmup, device, keys,
                                            optimizer_steps_per_batch, name == "genlab",
                                            trainer_args)
            wall[name].append(round(w, 3))
            cpu[name].append(round(c, 3))
            first.setdefault(name, losses)
            print(f"  {name:12s} {w:8.3f} steps/s wall {c:8.3f} steps/CPU-s", flush=True)
    rates = cpu if device.type == "cpu" else wall

    def paired(a: str, b: str, table: dict[str, list[float]] = rates) -> list[float]:
        return [x / y for x, y in zip(table[a], table[b], strict=True)]

    ratio, vs_bare = spread(paired("genlab", "plain")), spread(paired("genlab", "genlab_bare"))
    last = max(i for i, loss in enumerate(first["genlab"]) if loss is not None)
    return {"steps": len(batches), "warmup": warmup, "repeats": repeats,
            "ratio_basis": "steps per CPU-second" if device.type == "cpu" else
            "steps per wall-second",
            "ratio": ratio["median"], "ratio_spread": ratio,
            "ratio_vs_bare": vs_bare["median"], "ratio_vs_bare_spread": vs_bare,
            "ratio_bare": spread(paired("genlab_bare", "plain"))["median"],
            "ratio_wall": spread(paired("genlab", "plain", wall))["median"],
            "steps_per_s": {n: spread(r) for n, r in wall.items()},
            "steps_per_cpu_s": {n: spread(r) for n, r in cpu.items()},
            "steps_per_s_each_repeat": wall, "steps_per_cpu_s_each_repeat": cpu,
            "max_loss_diff": max_loss_diff(first["plain"], first["genlab"]),
            "max_loss_diff_bare": max_loss_diff(first["plain"], first["genlab_bare"]),
            "final_losses": {"plain": first["plain"][last].tolist(),
                             "genlab": first["genlab"][last].tolist()},
            "final_losses_step": last}


PER_BATCH_HOOKS = ("on_train_batch_start", "on_before_backward", "on_after_backward",
                   "on_before_optimizer_step", "on_before_zero_grad", "on_train_batch_end")


def profile_hooks(model: L.LightningModule, batches: Batches, device: torch.device,
                  keys: tuple[str, ...], optimizer_steps_per_batch: int,
                  trainer_args: dict[str, Any]) -> list[tuple[str, float]]:
    """CPU milliseconds per batch of each callback's per-batch hooks in one genlab run.

    Each hook a callback overrides is wrapped in a process-CPU-time clock (no profiler, so
    Python-heavy hooks are not inflated); the clock counts the hook with its callees, not
    Lightning's dispatch around it, and also the process's other threads while it runs (the
    progress bar's refresh thread). ``(Class.hook, ms per batch)``, largest first.
    """
    spent: dict[str, float] = {}

    def timed(name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return hook(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - start
        return run

    def wrap(trainer: L.Trainer) -> None:
        for callback in trainer.callbacks:
            for hook in PER_BATCH_HOOKS:
                if getattr(type(callback), hook) is not getattr(L.Callback, hook):
                    name = f"{type(callback).__name__}.{hook}"
                    setattr(callback, hook, timed(name, getattr(callback, hook)))

    genlab_run(copy.deepcopy(model), batches, 0, device, keys, optimizer_steps_per_batch, True,
               trainer_args, inspect=wrap)
    per_batch = {k: v * 1e3 / len(batches) for k, v in spent.items()}
    return [(k, round(v, 3)) for k, v in sorted(per_batch.items(), key=lambda kv: -kv[1])]


def max_loss_diff(a: list[Tensor], b: list[Tensor | None]) -> float:
    """Largest |a - b| over the steps whose losses ``b`` logged (inf when the runs differ in
    length)."""
    if len(a) != len(b):
        return float("inf")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if y is not None]
    return float(max((x.double() - y.double()).abs().max() for x, y in pairs))


def cli_startup(repeats: int = 3) -> dict[str, dict[str, Any]]:
    """Seconds of ``genlab --help`` and ``genlab list`` in a fresh process, best of ``repeats``."""
    exe = shutil.which("genlab") or str(Path(sys.executable).with_name("genlab"))
    out = {}
    for args in (["--help"], ["list"]):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            proc = subprocess.run([exe, *args], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
        out["genlab " + " ".join(args)] = {"seconds": round(min(times), 3), "repeats": repeats,
                                           "each": [round(t, 3) for t in times],
                                           "exit_code": proc.returncode}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--device", help="default: the preset's")
    parser.add_argument("--steps", type=int, help="batches per run, warm-up included")
    parser.add_argument("--warmup", type=int, help="batches before the clock starts")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--models", nargs="+", default=["gan", "gpt"], choices=["gan", "gpt"])
    parser.add_argument("--tiny", action="store_true", help="toy-size models (a quick check)")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI start-up timing")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one genlab run: CPU ms per batch of each hook")
    parser.add_argument("--out", help="JSON (default benchmarks/results/overhead_<preset>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = {**PRESETS[args.preset], **{k: v for k, v in {
        "device": args.device, "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats}.items() if v is not None}}
    if args.tiny:
        cfg.update(steps=args.steps or 6, warmup=args.warmup or 2, repeats=args.repeats or 1)
    device = torch.device(cfg["device"])
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    L.seed_everything(0, verbose=False)
    models: dict[str, Any] = {}
    if "gan" in args.models:
        model, targs = gan_model(args.tiny, device)
        batches = mnist_batches(cfg["steps"], 8 if args.tiny else 64)
        print(f"GAN (configs/gan/mnist.yaml), {cfg['steps']} batches of "
              f"{len(batches[0]['x'])}, {device}", flush=True)
        keys = ("train/loss_d", "train/loss_g")
        models["GAN DCGAN MNIST"] = compare(model, batches, cfg["warmup"], device, plain_gan,
                                            keys, 2, targs, cfg["repeats"])
        if args.profile:
            models["GAN DCGAN MNIST"]["hook_cpu_ms_per_batch"] = profile_hooks(
                model, batches, device, keys, 2, targs)
    if "gpt" in args.models:
        model, targs = gpt_model(args.tiny, cfg["steps"])
        h = model.hparams
        batches = text_batches(cfg["steps"], h.block_size, 4 if args.tiny else 12)
        print(f"GPT (configs/ar/shakespeare_char_cpu.yaml), {cfg['steps']} batches, {device}",
              flush=True)
        clip = targs["gradient_clip_val"]
        models["GPT char Shakespeare"] = compare(
            model, batches, cfg["warmup"], device,
            lambda m, b, w, d: plain_gpt(m, b, w, d, clip), ("train/loss",), 1, targs,
            cfg["repeats"])
        if args.profile:
            models["GPT char Shakespeare"]["hook_cpu_ms_per_batch"] = profile_hooks(
                model, batches, device, ("train/loss",), 1, targs)
    result = {
        "benchmark": "framework overhead: genlab Trainer vs plain PyTorch loop, same model code",
        "preset": args.preset, "reduced": bool(args.tiny or args.steps), "settings": cfg,
        "targets": TARGETS[args.preset], "models": models,
        "cli": {} if args.no_cli else cli_startup(),
        "protocol": {
            "genlab": "lightning.Trainer as genlab fit builds it: IterationBar, ModelCheckpoint "
                      "(save_last), SampleLogger, SampleMetrics, DivergenceGuard, RNGState, "
                      "Preemption, IterationLog, LearningRateMonitor, "
                      "TrainThroughput; DummyLogger; fp32; data from a list of pre-read batches",
            "genlab_bare": "the same Trainer (DummyLogger) without callbacks, progress bar, "
                           "checkpointing",
            "plain": "hand-written loop on the plugin's networks and loss functions",
            "determinism": "torch.use_deterministic_algorithms(True), 1 thread, no TF32",
            "throughput": "batches/s after warm-up; ratios paired within each repeat (plain, "
                          "genlab, bare back to back), median and spread over the repeats"},
        "command": command("benchmarks.overhead", argv), **stamp(device),
    }
    report(result)
    out = args.out or RESULTS / f"overhead_{args.preset}{'_tiny' if args.tiny else ''}.json"
    write_result(result, out)
    return result


def report(result: dict[str, Any]) -> None:
    t = result["targets"]
    print(f"\ntargets: genlab / plain >= {t['ratio']}, genlab / bare Lightning >= "
          f"{t['ratio_vs_bare']}, |dloss| <= {t['loss_diff']}")
    for name, r in result["models"].items():
        print(f"{name} ({r['ratio_basis']}, median of {r['repeats']} paired repeats):")
        for label, key in (("genlab / plain", "ratio_spread"),
                           ("genlab / bare ", "ratio_vs_bare_spread")):
            s = r[key]
            print(f"  {label} {s['median']:.4f}  (min {s['min']:.4f}, max {s['max']:.4f}, "
                  f"IQR {s['q1']:.4f}-{s['q3']:.4f})")
        rates = r["steps_per_cpu_s" if "CPU" in r["ratio_basis"] else "steps_per_s"]
        print("  median steps/s: " + ", ".join(f"{n} {v['median']:.3f}"
                                              for n, v in rates.items())
              + f"; max |dloss| {r['max_loss_diff']:.2e}")
        for hook, ms in r.get("hook_cpu_ms_per_batch", []):
            print(f"  {hook:48s} {ms:8.3f} CPU ms per batch")
    for name, c in result["cli"].items():
        print(f"{name:24s}{c['seconds']:9.3f} s (best of {c['repeats']}; target < 3 s)")


if __name__ == "__main__":
    main()
