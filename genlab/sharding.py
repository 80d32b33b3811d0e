"""Sharded training: torch's FSDP2 (``fully_shard``) through Lightning's ``ModelParallelStrategy``.

A plugin supports sharding by calling ``shard`` from its ``configure_model`` with the names of the
networks to shard (EMA copies included); under any other strategy the call does nothing, so
the same model trains on one device, under DDP and sharded.

``--trainer.strategy fsdp2`` is ``FSDP2Strategy``: Lightning's ``ModelParallelStrategy`` with
every process in one data-parallel mesh (no tensor parallelism, which genlab's families do not
use; Lightning's default puts all of a node's processes on the tensor-parallel axis), and
checkpoints saved whole by rank 0, so that ``genlab sample`` / ``evaluate`` read them in one
process and a run resumes from them sharded. It runs on GPUs (NCCL) and on CPUs (gloo): Lightning
builds the device mesh on the root device's type. Lightning's own ``fsdp`` strategy (FSDP1)
refuses a CPU accelerator; ``check_strategy`` says so in one line before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import (
    DeepSpeedStrategy,
    FSDPStrategy,
    ModelParallelStrategy,
    Strategy,
    StrategyRegistry,
)
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.optim.swa_utils import AveragedModel

from genlab.errors import GenlabError

FSDP2 = "fsdp2"  # the registered strategy name (Lightning's `fsdp` is FSDP1, GPUs only)
WORKING = f"ddp or {FSDP2} (sharded)"


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 on every process: ``ModelParallelStrategy`` with one data-parallel mesh of all ranks.

    Checkpoints are whole files that rank 0 writes (gathered to its CPU memory): they resume
    sharded and ``genlab sample`` / ``evaluate`` / ``--ckpt_path`` read them in one process.
    (Lightning's per-rank checkpoint directories are not read by genlab's checkpoint tools.)

    Args:
        process_group_backend: ``None``: NCCL on GPUs, gloo on CPUs.
        timeout: Timeout of the process group's collectives.
    """

    strategy_name = FSDP2

    def __init__(self, process_group_backend: str | None = None,
                 timeout: timedelta | None = default_pg_timeout) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1,
                         save_distributed_checkpoint=False,
                         process_group_backend=process_group_backend, timeout=timeout)

    def setup_environment(self) -> None:
        """Make the data-parallel axis span every process of every node."""
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


if FSDP2 not in StrategyRegistry:
    StrategyRegistry.register(FSDP2, FSDP2Strategy, description="FSDP2 (fully_shard) over all "
                              "processes, whole checkpoints; CPU (gloo) or GPU (NCCL)")


def _targets(module: nn.Module, name: str) -> list[nn.Module]:
    """The modules ``name`` stands for.

    ``a.b``: one; ``a.b.*``: each child of ``a.b``; an EMA copy (``AveragedModel``): the network
    it averages; a path through ``None`` (a part turned off): none.
    """
    parent, _, star = name.rpartition(".")
    path = parent if star == "*" else name
    target: Any = module
    for part in path.split(".") if path else []:
        target = getattr(target, part)
        if target is None:
            return []
    found = list(target.children()) if star == "*" else [target]
    return [m.module if isinstance(m, AveragedModel) else m for m in found]


def shard(module: L.LightningModule, names: Sequence[str]) -> None:
    """Shard ``module``'s named submodules with FSDP2 when a sharding strategy runs the fit.

    Call it at the end of ``configure_model``. Each name becomes one FSDP unit, whose weights
    are gathered for its forward and freed after; list inner units first (``"net.blocks.*"``,
    then ``"net"``) to hold one block at a time. An EMA copy is sharded like the network it
    follows, so its memory per process is about 1/world of the full copy. Under any other
    strategy (one device, DDP), and for modules already sharded, this does nothing.

    Args:
        module: The LightningModule whose networks to shard.
        names: Attribute paths of the networks: ``"generator"``, ``"net.blocks.*"`` (each
            child), ``"generator_ema"`` (an ``AveragedModel``: its network). A path through
            ``None`` (an optional part turned off) is skipped.

    Raises:
        GenlabError: the mesh has a tensor-parallel axis, or a trainable parameter is left
            outside every sharded unit (its gradient would not be synchronized).
    """
    mesh = module.device_mesh
    if mesh is None:
        return
    if "tensor_parallel" in (mesh.mesh_dim_names or ()) and mesh["tensor_parallel"].size() > 1:
        raise GenlabError(f"{type(module).__name__} shards with FSDP2 only (no tensor "
                          f"parallelism): use --trainer.strategy {FSDP2}")
    dp = mesh["data_parallel"] if mesh.ndim > 1 else mesh
    for name in names:
        for target in _targets(module, name):
            if not isinstance(target, FSDPModule):
                fully_shard(target, mesh=dp)
    left = [n for n, p in module.named_parameters()
            if p.requires_grad and not isinstance(p, DTensor)]
    if left:
        raise GenlabError(f"{type(module).__name__}: parameters {left[:3]} are in no sharded "
                          f"module, so their gradients would not be synchronized; add their "
                          f"module to the names passed to genlab.sharding.shard")


def refuse_double_backward(module: L.LightningModule, option: str) -> None:
    """Under a sharding strategy, refuse a loss that differentiates twice through a sharded net.

    Gradient penalties (R1, WGAN-GP) backpropagate through ``autograd.grad(create_graph=True)``;
    FSDP2 frees the gathered weights after the first backward, which the second one still needs
    ("storage of size 0"). Call it from ``configure_model`` when such a penalty is on.

    Args:
        module: The model being configured.
        option: The option that turns the penalty on, named in the error (``model.r1_gamma``).
    """
    if module.device_mesh is not None:
        raise GenlabError(f"{option} differentiates twice through a sharded network, which FSDP2 "
                          f"does not support; turn it off for --trainer.strategy {FSDP2}, or "
                          f"train with --trainer.strategy ddp")


def is_sharded(module: nn.Module) -> bool:
    """Whether any parameter of ``module`` is a sharded ``DTensor``.

    Then its forward gathers weights from every process, so every process must run it.
    """
    return any(isinstance(p, DTensor) for p in module.parameters())


def draws_here(trainer: L.Trainer, module: nn.Module) -> bool:
    """Whether this process runs the networks for a picture or samples that rank 0 keeps.

    Rank 0 always; every rank when ``module`` is sharded, since each sharded forward gathers
    weights from all processes (rank 0 alone would wait forever). Only rank 0 writes the result.
    """
    return trainer.is_global_zero or is_sharded(module)


def check_strategy(strategy: Any, accelerator: Any, model: L.LightningModule) -> None:
    """Refuse, in one line before the trainer is built, a strategy that cannot run this fit.

    Lightning's ``fsdp`` on a CPU accelerator (it needs GPUs; ``fsdp2`` runs on CPUs); a
    sharding strategy for a model without ``configure_model``; DeepSpeed for a model with
    manual optimization (several optimizers), which Lightning's DeepSpeed does not support.

    Args:
        strategy: The trainer's ``strategy`` as configured (a registered name or a ``Strategy``).
        accelerator: The trainer's ``accelerator`` as configured.
        model: The model to train.
    """
    cls = _strategy_class(strategy)
    if cls is None:
        return
    name = strategy if isinstance(strategy, str) else cls.__name__
    cpu = str(accelerator) == "cpu" or (str(accelerator) == "auto" and
                                        not torch.cuda.is_available())
    if issubclass(cls, FSDPStrategy) and cpu:
        raise GenlabError(f"--trainer.strategy {name} needs GPUs (Lightning's FSDP refuses a CPU "
                          f"accelerator); on CPUs shard with --trainer.strategy {FSDP2}")
    family = type(model).__name__
    if issubclass(cls, ModelParallelStrategy) and not is_overridden("configure_model", model):
        raise GenlabError(f"{family} does not support sharded training (it has no "
                          f"configure_model calling genlab.sharding.shard); use "
                          f"--trainer.strategy ddp")
    if issubclass(cls, DeepSpeedStrategy) and not model.automatic_optimization:
        raise GenlabError(f"{family} steps several optimizers by hand (manual optimization), "
                          f"which Lightning's DeepSpeed does not support; use --trainer.strategy "
                          f"{WORKING}")


def _strategy_class(strategy: Any) -> type[Strategy] | None:
    if isinstance(strategy, Strategy):
        return type(strategy)
    if isinstance(strategy, str) and strategy in StrategyRegistry:
        return StrategyRegistry[strategy]["strategy"]
    return None
