"""Spectral normalization (Miyato et al. 2018) of every layer of a network, picklable.

One API for every plugin: ``torch.nn.utils.parametrizations.spectral_norm`` (the parametrization;
the older ``torch.nn.utils.spectral_norm`` hook is deprecated upstream).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)


def spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalization on ``module`` if it is a layer, else on each of its layers.

    Linear, conv, transposed conv and embedding layers get a power-iteration parametrization of
    their weight; the module is changed in place and returned. A network holding such layers
    pickles and deep-copies only through its ``state_dict``: derive it from ``RebuildOnPickle``.
    """
    if isinstance(module, LAYERS):
        return _spectral_norm(module)
    for name, child in module.named_children():
        setattr(module, name, spectral_norm(child))
    return module


class RebuildOnPickle:
    """Mixin for an ``nn.Module`` with parametrized layers: pickles as arguments + state dict.

    Torch parametrizations pickle and deep-copy only through ``state_dict``, while DDP's spawn
    launcher pickles the model. The subclass stores its constructor's positional arguments in
    ``self._args``; unpickling builds it again from them and loads the state.
    """

    _args: tuple[Any, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self._args, self.state_dict(), self.training)


def _rebuild(cls: type[nn.Module], args: tuple[Any, ...], state: dict[str, Tensor],
             training: bool) -> nn.Module:
    net = cls(*args)
    net.load_state_dict(state)
    return net.train(training)
