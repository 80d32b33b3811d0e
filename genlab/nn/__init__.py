"""Plain PyTorch networks shared by plugins; nothing here imports Lightning."""

from genlab.nn.conv import ConvDecoder, ConvEncoder
from genlab.nn.image2image import PatchDiscriminator, UNetGenerator
from genlab.nn.mlp import MLP, activation
from genlab.nn.point_denoiser import PointDenoiser
from genlab.nn.spectral import RebuildOnPickle, spectral_norm
from genlab.nn.transformer import KVCache, Transformer, filter_logits, generate, next_token
from genlab.nn.unet import TimeEmbedding, UNet, sinusoidal_embedding

__all__ = [
    "MLP", "ConvDecoder", "ConvEncoder", "KVCache", "PatchDiscriminator", "PointDenoiser",
    "RebuildOnPickle", "TimeEmbedding", "Transformer", "UNet", "UNetGenerator", "activation",
    "filter_logits", "generate", "next_token", "sinusoidal_embedding", "spectral_norm",
]
