"""Images ``(B, C, H, W)`` in [-1, 1]: grids, PNG files, FID / KID / precision-recall.

Features come from InceptionV3 when its weights can be had, or from the reference digit
classifier of ``genlab classifier``; the report names the extractor (and its file's hash).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from genlab.data.image_transforms import decode
from genlab.data.sources import IMAGE_SUFFIXES
from genlab.data.stacked_mnist import StackedMNISTDataModule
from genlab.errors import GenlabError
from genlab.metrics.classifier import ChannelFeatures
from genlab.metrics.extractors import build_extractor
from genlab.metrics.labels import ClassShares
from genlab.metrics.precision_recall import PrecisionRecall
from genlab.metrics.stacked import StackedModes
from genlab.modality import EvalContext, Modality, flat_values
from genlab.visualize import image_grid

_GRAY_BANDS = {("L",), ("1",), ("I",), ("F",), ("L", "A"), ("I", "A")}


def _read_image(path: Path) -> Tensor:
    """One image file as ``(C, H, W)`` in [-1, 1]: grayscale files give 1 channel, others 3."""
    with Image.open(path) as pil:
        channels = 1 if pil.getbands() in _GRAY_BANDS else 3
    return decode(str(path), channels).float() / 127.5 - 1


def load_images(path: str | Path) -> Tensor:
    """An image file, or a folder of them (by name), as a batch ``(N, C, H, W)`` in [-1, 1].

    How ``--source img.png`` / ``--mask mask.png`` reach a model's ``sample()``.

    Args:
        path: A PNG / JPEG / ... file (``N = 1``) or a folder of equally sized images.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
        if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise GenlabError(f"{path}: no image file there; give a {'/'.join(sorted(IMAGE_SUFFIXES))} "
                          f"file or a folder of them")
    images = [_read_image(f) for f in files]
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise GenlabError(f"{path}: the images differ in size ({sorted(shapes)}); give images "
                          f"of one size")
    return torch.stack(images)


def as_images(x: Tensor, shape: Sequence[int], name: str) -> Tensor:
    """A batch of images ``(B, C', H, W)`` (or one, ``(C', H, W)``) as ``shape`` ``(C, H, W)``.

    Grayscale becomes RGB by repeating its channel and RGB grayscale by the channel mean (a
    sample saved as an RGB grid and read back stays the same image); the sides must match.

    Args:
        x: The images.
        shape: The ``(C, H, W)`` the model works with.
        name: The option's name, for the error (``source``, ``mask``).
    """
    x = x[None] if x.ndim == 3 else x
    channels, height, width = shape
    if x.ndim != 4 or tuple(x.shape[-2:]) != (height, width):
        raise GenlabError(f"--{name} must be {height}x{width} images, got a tensor of shape "
                          f"{tuple(x.shape)}")
    if x.shape[1] == channels:
        return x.float()
    if x.shape[1] == 1:
        return x.float().expand(-1, channels, -1, -1)
    if channels == 1:  # gray saved as RGB: its first channel, exactly; else the mean
        x = x.float()
        return x[:, :1] if bool((x == x[:, :1]).all()) else x.mean(1, keepdim=True)
    raise GenlabError(f"--{name} has {x.shape[1]} channels; the model takes {channels}")


def image_metrics(extractor: nn.Module, num: int) -> dict[str, Any]:
    """FID, KID and precision/recall sharing one extractor, keyed by the prefix they report."""
    subset = max(2, min(1000, num // 2))
    return {
        "fid": FrechetInceptionDistance(feature=extractor),
        "kid": KernelInceptionDistance(feature=extractor, subset_size=subset, subsets=50),
        "": PrecisionRecall(extractor),  # reports precision and recall
    }


@torch.no_grad()
def score_images(fake: Tensor, real: Iterable[Tensor], extractor: nn.Module,
                 device: torch.device, batch_size: int) -> dict[str, float]:
    """FID, KID, precision and recall of ``fake`` images against the ``real`` batches."""
    metrics = {k: m.to(device) for k, m in image_metrics(extractor, len(fake)).items()}
    for x in real:
        for m in metrics.values():
            m.update(x.to(device).float(), real=True)
    for x in fake.split(batch_size):
        for m in metrics.values():
            m.update(x.to(device).float(), real=False)
    scores: dict[str, float] = {}
    for prefix, m in metrics.items():
        scores.update(flat_values(prefix, m.compute()))
    return scores


@torch.no_grad()
def fid_between(a: Iterable[Tensor], b: Iterable[Tensor], extractor: nn.Module,
                device: torch.device) -> float:
    """FID of two sets of real images: the floor that generated images are compared with."""
    fid = FrechetInceptionDistance(feature=extractor).to(device)
    for x in a:
        fid.update(x.to(device).float(), real=True)
    for x in b:
        fid.update(x.to(device).float(), real=False)
    return float(fid.compute())


@torch.no_grad()
def stacked_modes(fake: Tensor, extractor: nn.Module, context: EvalContext) -> dict[str, float]:
    """Stacked MNIST's modes out of 1,000 and KL to uniform, by the digit classifier."""
    if not isinstance(extractor, ChannelFeatures):
        raise GenlabError("Stacked MNIST modes need the digit classifier: pass "
                          "--extractor <classifier.pt> from `genlab classifier`")
    modes = StackedModes(extractor.classifier).to(context.device)
    for x in fake.split(context.batch_size):
        modes.update(x.to(context.device))
    return flat_values("", modes.compute())


@torch.no_grad()
def class_shares(images: Iterable[Tensor], extractor: ChannelFeatures,
                 context: EvalContext) -> dict[str, float]:
    """The digit classifier's confident share and class histogram of grayscale image batches."""
    shares = ClassShares(extractor.classifier).to(context.device)
    for x in images:
        shares.update(x.to(context.device).float())
    return flat_values("", shares.compute())


class ImageModality(Modality):
    """Images in [-1, 1]: grids for pictures, PNG files, feature-based scores."""

    picture_num = 64
    eval_num = 10_000
    pipeline_tag = "unconditional-image-generation"

    def render(self, samples: Tensor, real: Tensor | None = None, decode: Any = None,
               title: str = "") -> Image.Image:
        """A grid of the images."""
        return image_grid(samples)

    def save(self, samples: Tensor, out: Path, decode: Any = None) -> list[Path]:
        """A grid ``.png`` at ``out``, or one PNG per image when ``out`` has no suffix."""
        if out.suffix:
            return super().save(samples, out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{i:06d}.png" for i in range(len(samples))]
        for image, path in zip(samples, paths):
            image_grid(image[None], nrow=1).save(path)
        return paths

    def score(self, fake: Tensor, context: EvalContext, extractor: str | None = None,
              floor: bool = True) -> dict[str, float]:
        """FID, KID, precision / recall (and the data module's metrics) of ``fake`` images.

        With the digit classifier as extractor, grayscale images also get the share it labels
        with confidence >= 0.9 (and with ``floor``, the real reference images' share,
        ``confident_share_real``) and the share of each class (``class_share_<k>``, min, max).

        Args:
            fake: Generated images.
            context: The reference data and where to compute.
            extractor: Image features for FID/KID/precision/recall: ``inception``, or the path
                of a ``genlab classifier`` file. Default: InceptionV3 when its weights are cached
                or can be downloaded, else classifiers/mnist.pt.
            floor: Also report FID of real train vs real reference images (and, with the
                digit classifier, the reference images' confident share).
        """
        features, info, why = build_extractor(extractor, fake.shape[1])
        context.results["extractor"] = {**info, "why": why}
        features = features.to(context.device)
        num, device = len(fake), context.device
        scores = score_images(fake, context.real(num), features, device, context.batch_size)
        if floor and context.split != "train":
            scores["fid_floor"] = fid_between(context.real(num, "train"), context.real(num),
                                              features, device)
        if isinstance(context.datamodule, StackedMNISTDataModule):
            scores.update(stacked_modes(fake, features, context))
        elif isinstance(features, ChannelFeatures) and fake.shape[1] == 1:
            scores.update(class_shares(fake.split(context.batch_size), features, context))
            if floor:  # what real digits score: the ceiling of the confident share
                real = class_shares(context.real(num), features, context)
                scores["confident_share_real"] = real["confident_share"]
        return {**scores, **super().score(fake, context)}

    def check_samples(self, samples: Tensor, name: str,
                      data_shape: tuple[int, ...] | None = None) -> str | None:
        """Images are finite ``(num, C, H, W)`` in [-1, 1]."""
        if samples.ndim != 4:
            return f"{name} must return images (num, C, H, W)"
        problem = super().check_samples(samples, name, data_shape)
        if problem is None and (samples.min() < -1 - 1e-4 or samples.max() > 1 + 1e-4):
            return (f"{name} must return images in [-1, 1] (got {samples.min():.3g} .. "
                    f"{samples.max():.3g}); end the generator with tanh or clamp")
        return problem
