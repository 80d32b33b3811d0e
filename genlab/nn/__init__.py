"""Plain PyTorch networks shared by plugins; nothing here imports Lightning."""

from genlab.nn.conditions import (
    ClassProjection,
    ImageEncoder,
    LabelConcat,
    LabelEmbedding,
    TextEncoder,
)
from genlab.nn.conv import (
    ConvDecoder,
    ConvEncoder,
    GridDecoder,
    GridEncoder,
    PatchDiscriminator,
)
from genlab.nn.image2image import PairDiscriminator, UNetGenerator
from genlab.nn.mlp import MLP, activation
from genlab.nn.point_denoiser import PointDenoiser
from genlab.nn.quantize import Quantized, VectorQuantizer, code_statistics
from genlab.nn.spectral import RebuildOnPickle, spectral_norm
from genlab.nn.transformer import KVCache, Transformer, filter_logits, generate, next_token
from genlab.nn.unet import TimeEmbedding, UNet, sinusoidal_embedding

__all__ = [
    "MLP", "ClassProjection", "ConvDecoder", "ConvEncoder", "GridDecoder", "GridEncoder",
    "ImageEncoder", "KVCache", "LabelConcat", "LabelEmbedding", "PairDiscriminator",
    "PatchDiscriminator", "PointDenoiser", "Quantized", "RebuildOnPickle", "TextEncoder",
    "TimeEmbedding", "Transformer", "UNet", "UNetGenerator", "VectorQuantizer", "activation",
    "code_statistics", "filter_logits", "generate", "next_token", "sinusoidal_embedding",
    "spectral_norm",
]
