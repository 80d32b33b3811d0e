"""Plain PyTorch networks shared by plugins; nothing here imports Lightning."""

from genlab.nn.mlp import MLP, activation

__all__ = ["MLP", "activation"]
