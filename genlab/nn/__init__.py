"""Plain PyTorch networks shared by plugins; nothing here imports Lightning."""

from genlab.nn.conv import ConvDecoder, ConvEncoder
from genlab.nn.mlp import MLP, activation
from genlab.nn.point_denoiser import PointDenoiser
from genlab.nn.transformer import Transformer, generate
from genlab.nn.unet import UNet

__all__ = ["MLP", "ConvDecoder", "ConvEncoder", "PointDenoiser", "Transformer", "UNet",
           "activation", "generate"]
