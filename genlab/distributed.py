"""What genlab does so that training under DDP works and ends cleanly.

Manual optimization: every backward must reach every parameter DDP wraps. Lightning wraps the
whole module in one ``DistributedDataParallel``, whose reducer waits, at each
``manual_backward``, for a gradient of *every* parameter it wraps. A GAN-style step that trains
one network and leaves the other out (``toggle_optimizer`` turns its ``requires_grad`` off, or its
input is drawn without a graph) leaves a bucket unreduced, and the next step fails with
"Expected to have finished reduction in the prior iteration". Adding ``zero_through(other)`` to
the loss fixes it without ``find_unused_parameters``: an exact zero, so no update changes.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor


def zero_through(*modules: nn.Module) -> Tensor:
    """An exact zero whose backward reaches every parameter of ``modules``, with zero gradient.

    Costs one scalar per parameter tensor. Parameters sharded by FSDP2 (``DTensor``) are left
    out: FSDP2 has no reducer waiting for them (its final backward callback reduces whatever
    each unit received, the same on every process), and touching a shard outside its unit's
    forward would gather it.

    Args:
        modules: The networks the step does not train but DDP wraps.
    """
    reach = [p.reshape(-1)[0] for m in modules for p in m.parameters()
             if not isinstance(p, DTensor)]
    return sum(reach) * 0.0


def manual_step(module: L.LightningModule, optimizers: Sequence[torch.optim.Optimizer],
                loss: Tensor, reach: Sequence[nn.Module] = ()) -> None:
    """One manual-optimization step: zero the gradients, backward ``loss``, step each optimizer.

    Gradient clipping belongs in the module's ``on_before_optimizer_step``, which Lightning
    calls inside ``step`` after mixed precision unscales the gradients.

    Args:
        module: The module being trained (its ``manual_backward`` runs the backward).
        optimizers: The optimizers this loss trains.
        loss: The scalar loss.
        reach: Networks DDP wraps that ``loss`` does not train; the backward reaches them
            through ``zero_through``.
    """
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    module.manual_backward(loss + zero_through(*reach) if reach else loss)
    for opt in optimizers:
        opt.step()


def all_mean(x: Tensor) -> Tensor:
    """``x`` averaged over processes (``x`` itself outside ``torch.distributed``).

    E.g. a gradient taken with ``torch.autograd.grad`` inside a step, which DDP does not
    reduce, turned into the gradient of the global batch's mean loss.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x = x / dist.get_world_size()
    return x


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def destroy_process_group_at_exit() -> None:
    """Destroy this process's process group when the interpreter exits, whatever the backend.

    Lightning does this for NCCL only. A gloo group left to interpreter finalization aborts the
    process now and then ("terminate called without an active exception", SIGABRT): its worker
    threads still hold tensors when Python is torn down. Registering twice is harmless.
    """
    atexit.unregister(_destroy_process_group)
    atexit.register(_destroy_process_group)
