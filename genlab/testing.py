"""Conformance kit: check that a model plugin keeps the ``GenerativeModule`` contract.

A plugin declares its own tiny case (``GenerativeModule.conformance_case``: a data module and
``init_args``); genlab's ``tests/test_plugins.py`` runs the kit on the case of every registered
plugin, and a plugin's own pytest can too::

    from genlab.testing import check_case

    def test_conformance(tmp_path):
        check_case("myflow", tmp_path)

``check_plugin`` runs the same checks on any data module and arguments.

Each check fails with a ``ConformanceError`` that says what to fix.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from genlab.callbacks.rng import RNGState
from genlab.callbacks.samples import fixed_seed
from genlab.checkpoint import load_model
from genlab.modality import modality_of
from genlab.module import ConformanceCase, GenerativeModule, check_model_and_data
from genlab.registry import MODEL_GROUP, plugins


class ConformanceError(AssertionError):
    """A plugin broke the contract; the message says which part and how to fix it."""


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise ConformanceError(message)


def resolve(model: str | type[GenerativeModule]) -> type[GenerativeModule]:
    """The registered class for an entry-point name, class name or class."""
    for plugin in plugins(MODEL_GROUP):
        if model in (plugin.name, plugin.target.rsplit(":", 1)[-1], plugin.cls):
            _expect(plugin.cls is not None, f"plugin {plugin.name!r} failed to import: "
                                            f"{plugin.error}")
            return plugin.cls
    raise ConformanceError(
        f"{model!r} is not registered: add it to your pyproject's "
        f'[project.entry-points."genlab.models"] table and reinstall (pip install -e .)'
    )


def build(cls: type[GenerativeModule], init_args: dict[str, Any]) -> GenerativeModule:
    """Build ``cls`` the way a YAML config does (jsonargparse, from its type hints)."""
    from genlab.evaluation import instantiate

    _expect(issubclass(cls, GenerativeModule), f"{cls.__name__} must subclass GenerativeModule")
    _expect(getattr(cls, "modality", None) is not None,
            f"{cls.__name__} must declare its modality: a class attribute naming a registered "
            f"modality, or a property with the class attribute `modalities` listing its values")
    try:
        model = instantiate(GenerativeModule, {"class_path": f"{cls.__module__}.{cls.__name__}",
                                               "init_args": init_args})
    except Exception as err:
        raise ConformanceError(f"{cls.__name__} cannot be built from a config with init_args "
                               f"{init_args}: {err}; give every __init__ argument a type hint "
                               f"jsonargparse understands") from err
    try:
        model.validate_modality()
    except TypeError as err:
        raise ConformanceError(str(err)) from None
    return model


def check_samples(model: GenerativeModule, samples: Any, num: int,
                  data_shape: tuple[int, ...] | None) -> None:
    """``sample(num)`` output fits the declared modality (and the data's example shape)."""
    name = f"{type(model).__name__}.sample({num})"
    _expect(isinstance(samples, Tensor), f"{name} must return a Tensor, got {type(samples)}")
    _expect(len(samples) == num, f"{name} returned {len(samples)} samples, not {num}")
    problem = modality_of(model).check_samples(samples, name, data_shape)
    _expect(problem is None, str(problem))


def _trainer(root: Path, steps: int, **kwargs: Any) -> L.Trainer:
    options = {"max_steps": steps, "accelerator": "cpu", "devices": 1, "logger": False,
               "enable_checkpointing": False, "enable_progress_bar": False,
               "enable_model_summary": False, "num_sanity_val_steps": 0,
               "limit_val_batches": 2, "default_root_dir": str(root)}
    return L.Trainer(**{**options, **kwargs})


def check_training_changes_parameters(model: GenerativeModule, datamodule: L.LightningDataModule,
                                      root: Path, steps: int) -> L.Trainer:
    """A few CPU training steps run and change the model's parameters."""
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    _expect(bool(before), f"{type(model).__name__} has no parameters to train")
    trainer = _trainer(root, steps)
    trainer.fit(model, datamodule=datamodule)
    changed = [k for k, v in model.named_parameters() if not torch.equal(v.detach(), before[k])]
    _expect(bool(changed), f"{steps} training steps changed no parameter of "
                           f"{type(model).__name__}: does training_step return the loss (or, "
                           f"with manual optimization, call manual_backward and step)?")
    return trainer


def check_checkpoint_round_trip(model: GenerativeModule, trainer: L.Trainer, root: Path,
                                num: int) -> Path:
    """A saved checkpoint reloads (weights_only) through the registry to the same samples."""
    path = root / "conformance.ckpt"
    trainer.save_checkpoint(path, weights_only=False)
    try:
        loaded = load_model(path)
    except Exception as err:
        raise ConformanceError(f"the checkpoint does not reload with weights_only=True: {err}; "
                               f"keep only tensors and plain types in hparams and "
                               f"on_save_checkpoint") from err
    samples = []
    for m in (model, loaded):
        with fixed_seed(0, m.device):
            samples.append(m.sample_eval(num).cpu())
    _expect(torch.equal(samples[0], samples[1]),
            "the reloaded model draws different samples for the same seed: is some state "
            "(a buffer, EMA weights, a vocabulary) missing from the checkpoint?")
    return path


def check_sample_command(path: Path, root: Path) -> None:
    """``genlab sample`` runs on the checkpoint."""
    from genlab.sampling import sample_main

    out = root / "sampled"
    sample_main(["--ckpt", str(path), "--num", "4", "--out", str(out)])
    _expect(any(root.glob("sampled*")), "`genlab sample` wrote nothing")


def _fresh(datamodule: L.LightningDataModule) -> L.LightningDataModule:
    """A copy of the data module with no trainer and unplayed samplers, for a separate fit."""
    datamodule.trainer = None  # a deepcopy (or spawn's pickle) must not drag an earlier fit along
    return copy.deepcopy(datamodule)


def _seeded_fit(cls: type[GenerativeModule], init_args: dict[str, Any],
                datamodule: L.LightningDataModule, root: Path, steps: int,
                ckpt_path: Path | None = None, **trainer_kwargs: Any) -> L.Trainer:
    """Build the model from seed 0 and fit it for ``steps`` on a fresh copy of the data."""
    L.seed_everything(0, verbose=False)
    model = build(cls, init_args)
    trainer = _trainer(root, steps, **trainer_kwargs)
    trainer.fit(model, datamodule=_fresh(datamodule), ckpt_path=ckpt_path)
    return trainer


def _initial_state(cls: type[GenerativeModule], init_args: dict[str, Any]) -> dict[str, Tensor]:
    """The weights ``_seeded_fit`` starts from."""
    L.seed_everything(0, verbose=False)
    return build(cls, init_args).state_dict()


def _optimizer_tensors(trainer: L.Trainer) -> dict[str, Tensor]:
    out = {}
    for i, optimizer in enumerate(trainer.optimizers):
        for param, state in optimizer.state_dict()["state"].items():
            for name, value in state.items():
                if isinstance(value, Tensor):
                    out[f"optimizer {i} param {param} {name}"] = value
    return out


def check_exact_resume(cls: type[GenerativeModule], init_args: dict[str, Any],
                       datamodule: L.LightningDataModule, root: Path, steps: int) -> None:
    """A fit stopped after ``steps`` and resumed to ``2 * steps`` equals an uninterrupted one.

    Bitwise: weights, buffers (EMA, counters), optimizer states and learning-rate schedules, with
    genlab's ``RNGState`` callback and the data module's resumable sampler, as ``genlab fit``
    runs them (validation off: it is not training state).
    """
    def fit(name: str, num: int, ckpt_path: Path | None = None) -> L.Trainer:
        return _seeded_fit(cls, init_args, datamodule, root / name, num, ckpt_path,
                           callbacks=[RNGState()], limit_val_batches=0)

    whole = fit("whole", 2 * steps)
    path = root / "part" / "stopped.ckpt"
    fit("part", steps).save_checkpoint(path, weights_only=False)
    resumed = fit("resumed", 2 * steps, path)
    _expect(resumed.global_step == whole.global_step,
            f"the resumed fit stopped at step {resumed.global_step}, the uninterrupted one at "
            f"{whole.global_step}: is global_step restored from the checkpoint?")
    pairs = [(whole.lightning_module.state_dict(), resumed.lightning_module.state_dict()),
             (_optimizer_tensors(whole), _optimizer_tensors(resumed))]
    for want, got in pairs:
        for key, value in want.items():
            _expect(key in got and torch.equal(value, got[key]),
                    f"after resuming, {key!r} differs from the uninterrupted run: keep every "
                    f"piece of training state (EMA, noise generators, counters) in the "
                    f"state_dict or on_save_checkpoint, and draw training noise from torch's "
                    f"RNG or a generator saved there")
    for a, b in zip(whole.lr_scheduler_configs, resumed.lr_scheduler_configs):
        _expect(a.scheduler.state_dict() == b.scheduler.state_dict(),
                "after resuming, a learning-rate scheduler's state differs: return it from "
                "configure_optimizers so Lightning saves it")


def check_precision(cls: type[GenerativeModule], init_args: dict[str, Any],
                    datamodule: L.LightningDataModule, root: Path, steps: int,
                    precision: str = "bf16-mixed") -> None:
    """A CPU fit under ``precision`` runs and leaves finite, changed parameters."""
    before = _initial_state(cls, init_args)
    trainer = _seeded_fit(cls, init_args, datamodule, root, steps, precision=precision)
    params = dict(trainer.lightning_module.named_parameters())
    bad = [k for k, v in params.items() if not torch.isfinite(v).all()]
    _expect(not bad, f"{precision} training made {bad[:3]} NaN/Inf: compute losses in float32 "
                     f"(autocast off) where they need range")
    _expect(any(not torch.equal(v.detach(), before[k]) for k, v in params.items()),
            f"{steps} {precision} training steps changed no parameter")


def check_ddp(cls: type[GenerativeModule], init_args: dict[str, Any],
              datamodule: L.LightningDataModule, root: Path, steps: int,
              tolerance: float | None = 1e-3) -> None:
    """2-process CPU DDP (gloo) ends with the same weights as 1 process on the same global batch.

    Both processes must end with the same weights, and those must agree with a 1-process fit
    whose batch is twice the per-process batch.

    Agreement holds when the data module shards like genlab's (``SplitDataModule``) and the
    plugin draws training noise through ``genlab.noise``; it is measured as the distance between
    the two runs' weights relative to how far training moved them, and must stay under
    ``tolerance`` (``None``: not compared, e.g. for networks with batch norm, whose statistics
    are per process unless ``sync_batchnorm`` is on).
    """
    from lightning.pytorch.strategies import DDPStrategy

    strategy = DDPStrategy(process_group_backend="gloo", start_method="spawn")
    two = _seeded_fit(cls, init_args, datamodule, root / "two", steps, devices=2,
                      strategy=strategy, callbacks=[SameWeightsOnAllRanks(), RNGState()],
                      limit_val_batches=0)
    if tolerance is None:
        return
    one_data = _fresh(datamodule)
    _expect("batch_size" in getattr(one_data, "hparams", {}),
            "check_ddp needs datamodule.hparams.batch_size (the per-process batch) to build the "
            "1-process run; pass ddp_tolerance=None to skip the comparison")
    one_data.hparams.batch_size *= 2
    one = _seeded_fit(cls, init_args, one_data, root / "one", steps, callbacks=[RNGState()],
                      limit_val_batches=0)
    start = _initial_state(cls, init_args)
    a, b = two.lightning_module.state_dict(), one.lightning_module.state_dict()
    keys = [k for k, v in start.items() if v.is_floating_point()]
    gap = sum((a[k].float() - b[k].float()).pow(2).sum() for k in keys).sqrt().item()
    moved = sum((b[k].float() - start[k].float()).pow(2).sum() for k in keys).sqrt().item()
    _expect(gap <= tolerance * max(moved, 1e-12),
            f"2-process DDP and a 1-process run on the same global batch end {gap:.3g} apart, "
            f"{gap / max(moved, 1e-12):.3g} of how far training moved the weights "
            f"(tolerance {tolerance}): draw training noise with genlab.noise (batch_randn, "
            f"...) so each process gets its share of the global batch's noise, and reduce "
            f"losses by mean")


def _flat_tensors(obj: Any, prefix: str = "") -> dict[str, Tensor]:
    """Every tensor in nested dicts and lists, keyed by its path."""
    if isinstance(obj, Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        items = obj.items()
    else:
        items = enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return {k: v for key, value in items
            for k, v in _flat_tensors(value, f"{prefix}/{key}").items()}


def _sharded_fits(job: dict[str, Any]) -> None:
    """One rank of ``check_sharded``'s 2-process runs (started by torchrun).

    An uninterrupted fit of ``2 * steps``, and a fit of ``steps`` resumed to ``2 * steps``, each
    saving a checkpoint; rank 0 also records each network's bytes on it against its full size.
    """
    from genlab.sharding import FSDP2Strategy

    root, steps = Path(job["root"]), job["steps"]

    def fit(name: str, num: int, ckpt_path: Path | None = None) -> L.Trainer:
        trainer = _seeded_fit(job["cls"], job["init_args"], job["datamodule"], root / name, num,
                              ckpt_path, devices=2, strategy=FSDP2Strategy(),
                              callbacks=[RNGState()], limit_val_batches=0)
        trainer.save_checkpoint(root / f"{name}.ckpt", weights_only=False)
        return trainer

    fit("whole", 2 * steps)
    fit("part", steps)
    module = fit("resumed", 2 * steps, root / "part.ckpt").lightning_module
    if module.global_rank == 0:
        sizes = {name: [sum(_local_bytes(t) for t in _params_and_buffers(child)),
                        sum(t.numel() * t.element_size() for t in _params_and_buffers(child))]
                 for name, child in module.named_children()}
        (root / "bytes_per_rank.json").write_text(json.dumps(sizes))


def _params_and_buffers(module: torch.nn.Module) -> list[Tensor]:
    return [*module.parameters(), *module.buffers()]


def _local_bytes(t: Tensor) -> int:
    """Bytes this process holds of ``t`` (its shard, for a sharded ``DTensor``)."""
    from torch.distributed.tensor import DTensor

    local = t.to_local() if isinstance(t, DTensor) else t
    return local.numel() * local.element_size()


def check_sharded(cls: type[GenerativeModule], init_args: dict[str, Any],
                  datamodule: L.LightningDataModule, root: Path, steps: int,
                  tolerance: float | None = 1e-3,
                  timeout: float = 300) -> dict[str, list[int]]:
    """2-process CPU FSDP2 (``--trainer.strategy fsdp2``, gloo) against 1 process.

    Two processes started by ``torchrun`` (as a launcher would) train the model sharded: once for
    ``2 * steps``, once for ``steps`` then resumed from that sharded run's checkpoint to
    ``2 * steps``. Then, in this one process: the resumed run equals the uninterrupted one
    bitwise (weights, buffers, optimizer states), its checkpoint loads (``weights_only``) and
    ``genlab sample`` runs on it, and its weights agree with a 1-process fit on the same global
    batch to within ``tolerance`` of how far training moved them (as in ``check_ddp``; ``None``:
    not compared).

    The model must call ``genlab.sharding.shard`` from ``configure_model``; the data module and
    ``init_args`` must pickle. Returns each top-level submodule's ``[bytes on rank 0, full
    bytes]`` at the end of the sharded fit (sharded networks and EMA copies: about half).
    """
    from genlab.checkpoint import read_checkpoint

    root.mkdir(parents=True, exist_ok=True)
    job = root / "job.pt"
    torch.save({"cls": cls, "init_args": init_args, "datamodule": _fresh(datamodule),
                "root": str(root), "steps": steps}, job)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "genlab.testing", str(job)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    _expect(done.returncode == 0, f"the 2-process FSDP2 fit failed (exit {done.returncode}):\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    whole, resumed = (read_checkpoint(root / f"{n}.ckpt") for n in ("whole", "resumed"))
    for part in ("state_dict", "optimizer_states"):
        want, got = _flat_tensors(whole[part]), _flat_tensors(resumed[part])
        bad = [k for k, v in want.items() if k not in got or not torch.equal(v, got[k])]
        _expect(not bad, f"the sharded run resumed from its checkpoint differs from the "
                         f"uninterrupted one in {part} {bad[:3]}")
    check_sample_command(root / "resumed.ckpt", root)
    sizes = json.loads((root / "bytes_per_rank.json").read_text())
    if tolerance is None:  # e.g. batch norm: statistics are per process
        return sizes
    one_data = _fresh(datamodule)
    one_data.hparams.batch_size *= 2
    one = _seeded_fit(cls, init_args, one_data, root / "one", 2 * steps,
                      callbacks=[RNGState()], limit_val_batches=0).lightning_module.state_dict()
    start = _initial_state(cls, init_args)
    two = load_model(root / "resumed.ckpt").state_dict()
    # The weights the checkpoint carries (a frozen teacher may come from its own file).
    keys = [k for k, v in start.items() if v.is_floating_point() and k in resumed["state_dict"]]
    gap = sum((two[k].float() - one[k].float()).pow(2).sum() for k in keys).sqrt().item()
    moved = sum((one[k].float() - start[k].float()).pow(2).sum() for k in keys).sqrt().item()
    _expect(gap <= tolerance * max(moved, 1e-12),
            f"2-process FSDP2 and a 1-process run on the same global batch end {gap:.3g} apart, "
            f"{gap / max(moved, 1e-12):.3g} of how far training moved the weights (tolerance "
            f"{tolerance}): shard every trained network in configure_model and draw training "
            f"noise with genlab.noise")
    return sizes


class SameWeightsOnAllRanks(L.Callback):
    """At the end of training, fail unless every process holds the same parameters."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Gather a copy of the parameters from each rank and compare them."""
        flat = torch.cat([p.detach().flatten().float() for p in pl_module.parameters()])
        gathered = trainer.strategy.all_gather(flat)
        spread = (gathered - gathered[0]).abs().max().item()
        _expect(spread <= 1e-6, f"after DDP training the processes' parameters differ by up "
                                f"to {spread:.3g}: every backward must reach every parameter "
                                f"DDP syncs, or gradients must be all-reduced by hand")


def check_plugin(model: str | type[GenerativeModule], datamodule: L.LightningDataModule,
                 tmp_path: str | Path, init_args: dict[str, Any] | None = None,
                 steps: int = 4, num: int = 8, ddp: bool = False, resume: bool = True,
                 precisions: tuple[str, ...] = ("bf16-mixed",),
                 ddp_tolerance: float | None = 1e-3, sharded: bool = False) -> None:
    """Run every contract check on a model plugin; raises ``ConformanceError`` on the first miss.

    Args:
        model: Registered name, class name or class of the plugin.
        datamodule: A tiny data module the model trains on.
        tmp_path: A scratch directory (pytest's ``tmp_path``).
        init_args: The model's constructor arguments, as in a config's ``init_args``.
        steps: Training steps (optimizer steps) of the short fit.
        num: Samples drawn by the sampling checks.
        ddp: Also run a 2-process CPU DDP fit and compare it with a 1-process one.
        ddp_tolerance: How far apart (relative to the weights' change) the 2-process and the
            1-process runs may end; ``None``: only check that the processes agree.
        resume: Check that a stopped and resumed fit is bitwise the uninterrupted one.
        precisions: Lightning precisions a short CPU fit must run under.
        sharded: Also run ``check_sharded`` (2-process FSDP2 against 1 process, resume, one-process
            sampling of the sharded checkpoint); needs ``configure_model`` calling
            ``genlab.sharding.shard``.
    """
    root = Path(tmp_path)
    cls = resolve(model)
    init_args = dict(init_args or {})
    instance = build(cls, init_args)
    check_model_and_data(instance, datamodule)
    trainer = check_training_changes_parameters(instance, datamodule, root, steps)
    data_shape = getattr(datamodule, "data_shape", None)
    check_samples(instance, instance.sample_eval(num), num, data_shape)
    path = check_checkpoint_round_trip(instance, trainer, root, num)
    check_sample_command(path, root)
    if resume:
        check_exact_resume(cls, init_args, datamodule, root / "resume", steps)
    for precision in precisions:
        check_precision(cls, init_args, datamodule, root / precision, steps, precision)
    if ddp:
        check_ddp(cls, init_args, datamodule, root / "ddp", steps, ddp_tolerance)
    if sharded:
        check_sharded(cls, init_args, datamodule, root / "sharded", steps, ddp_tolerance)


def check_case(model: str | type[GenerativeModule], tmp_path: str | Path) -> ConformanceCase:
    """Run ``check_plugin`` on the plugin's own ``conformance_case``; returns the case.

    Args:
        model: Registered name, class name or class of the plugin.
        tmp_path: A scratch directory (pytest's ``tmp_path``).
    """
    root = Path(tmp_path)
    cls = resolve(model)
    case = cls.conformance_case(root / "case")
    _expect(isinstance(case, ConformanceCase),
            f"{cls.__name__}.conformance_case(root) returned {case!r}: return a "
            f"genlab.ConformanceCase (a tiny data module and init_args) so the kit can run")
    check_plugin(cls, case.datamodule, root / "kit", init_args=case.init_args, ddp=case.ddp,
                 precisions=case.precisions, **case.options)
    return case


if __name__ == "__main__":  # a rank of check_sharded's 2-process fits, started by torchrun
    _sharded_fits(torch.load(sys.argv[1], weights_only=False))  # our own job file
