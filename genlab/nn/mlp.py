"""Multi-layer perceptrons: generators, discriminators and denoisers for low-dimensional data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

Activation = Literal["relu", "leaky_relu", "gelu", "silu", "tanh"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def activation(name: Activation) -> nn.Module:
    """A fresh activation module by name (LeakyReLU uses slope 0.2, the GAN convention)."""
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    return _ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """``in_features → hidden[0] → … → hidden[-1] → out_features``, activations in between.

    Args:
        in_features: Size of each input vector.
        out_features: Size of each output vector.
        hidden: Widths of the hidden layers.
        act: Activation after every hidden layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
        act: Activation = "relu",
    ) -> None:
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), activation(act)]
        layers.append(nn.Linear(widths[-1], out_features))
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_features) -> (B, out_features)
        """Map a batch of vectors."""
        return super().forward(x)
