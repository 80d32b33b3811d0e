"""Which image features FID / KID / precision / recall are computed on, and why.

InceptionV3 (torchmetrics over ``torch-fidelity``) is the extractor papers report; it is the
default whenever its weights are in torch's hub cache or can be downloaded. Otherwise a
``genlab classifier`` file (by default ``classifiers/mnist.pt``) scores offline. The choice and its
reason are one line of the report, since FIDs compare only under the same extractor.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.metrics.classifier import ChannelFeatures, load_classifier

DEFAULT_CLASSIFIER = Path("classifiers/mnist.pt")  # where `genlab classifier` writes by default
INCEPTION = "inception"


class InceptionFeatures(nn.Module):
    """torchmetrics' InceptionV3 features (2048) of images in [-1, 1], gray ones as RGB."""

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.fid = FrechetInceptionDistance(feature=2048, normalize=True)  # loads the weights

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 2048)`` features."""
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return self.fid.inception(((x + 1) * 127.5).clamp(0, 255).to(torch.uint8))


def inception_weights_url() -> str:
    """The URL torch-fidelity downloads the FID InceptionV3 weights from."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def inception_weights_path() -> Path:
    """Where ``torch.hub`` caches those weights (``$TORCH_HOME/hub/checkpoints``)."""
    name = Path(urlparse(inception_weights_url()).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def inception_status(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether InceptionV3 features can be used here, and why (a short phrase)."""
    from genlab.tracking import _reachable

    if importlib.util.find_spec("torch_fidelity") is None:
        return False, "torch-fidelity is not installed (pip install torch-fidelity)"
    path = inception_weights_path()
    if path.is_file():
        return True, f"weights cached in {path}"
    host = urlparse(inception_weights_url())
    if _reachable(f"{host.scheme}://{host.netloc}", timeout):
        return True, f"weights downloaded once from {host.netloc} into {path.parent}"
    return False, f"its weights are not in {path} and {host.netloc} is not reachable"


def _inception() -> tuple[nn.Module, dict[str, Any]]:
    try:
        return InceptionFeatures(), {"name": "inception-v3", "features": 2048}
    except Exception as err:
        raise GenlabError(
            f"InceptionV3 features are unavailable ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:120]}); pass --extractor <classifier.pt> from "
            f"`genlab classifier --source <MNIST-like data>` for an offline extractor"
        ) from None


def _classifier(path: str | Path, channels: int) -> tuple[nn.Module, dict[str, Any]]:
    classifier, info = load_classifier(path)
    info.pop("meta", None)
    return ChannelFeatures(classifier, channels), info


def build_extractor(name: str | None, channels: int) -> tuple[nn.Module, dict[str, Any], str]:
    """The extractor for ``--extractor name``, its description, and the line saying why.

    Args:
        name: ``inception``, a ``genlab classifier`` file, or ``None``: InceptionV3 when its
            weights are cached or reachable, else ``classifiers/mnist.pt`` when it exists.
        channels: Channels of the images scored.
    """
    if name == INCEPTION:
        extractor, info = _inception()
        return extractor, info, "features: inception-v3 (--extractor inception)"
    if name is not None:
        extractor, info = _classifier(name, channels)
        return extractor, info, f"features: {info['name']} {name} sha256:{info['hash']} " \
                                f"(--extractor)"
    usable, why = inception_status()
    if usable:
        extractor, info = _inception()
        return extractor, info, f"features: inception-v3, the default ({why})"
    if not DEFAULT_CLASSIFIER.is_file():
        raise GenlabError(
            f"no image feature extractor: InceptionV3 is unavailable ({why}) and there is no "
            f"{DEFAULT_CLASSIFIER}; train one with `genlab classifier --source <MNIST-like data>` "
            f"or pass --extractor <classifier.pt>"
        )
    extractor, info = _classifier(DEFAULT_CLASSIFIER, channels)
    return extractor, info, (f"features: {info['name']} {DEFAULT_CLASSIFIER} sha256:"
                             f"{info['hash']}, since InceptionV3 is unavailable ({why})")
