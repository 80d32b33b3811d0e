"""A reference digit classifier: the offline feature extractor for FID / KID and mode counting.

InceptionV3 features need weights from the internet; a small conv net trained on MNIST with a
fixed seed needs nothing but the data. Its file's SHA-256 names it in every report, so scores are
only compared under the same extractor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import GenlabError

FORMAT = "genlab-reference-classifier-1"
IMAGE_SIZE = 28


class DigitClassifier(nn.Module):
    """Two conv layers and two linear layers on ``(B, 1, 28, 28)`` digits in [-1, 1].

    ``features`` is the 128-d penultimate layer (what FID / KID compare); ``forward`` gives the
    10 class logits. Inputs of another size are resized to 28×28 first.

    Args:
        num_classes: Number of classes.
        width: Channels of the first conv layer (the second has twice as many).
    """

    num_features = 128

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.config = {"num_classes": num_classes, "width": width}
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(2 * width * 7 * 7, self.num_features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(self.num_features, num_classes))

    def features(self, x: Tensor) -> Tensor:
        """``(B, 128)`` features of ``(B, 1, H, W)`` images in [-1, 1]."""
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x.float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                              antialias=True, align_corners=False)
        return self.embed(self.conv(x.float()))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, num_classes)`` logits."""
        return self.head(self.features(x))


class ChannelFeatures(nn.Module):
    """A digit classifier's features of each channel, concatenated: a torchmetrics extractor.

    Grayscale images give 128 features, Stacked MNIST's three digits 3 × 128.

    Args:
        classifier: The reference classifier.
        channels: Channels of the images it will see.
    """

    def __init__(self, classifier: DigitClassifier, channels: int) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = channels * classifier.num_features

    def forward(self, x: Tensor) -> Tensor:
        """``(B, channels * 128)`` features of ``(B, C, H, W)`` images in [-1, 1]."""
        return torch.cat([self.classifier.features(x[:, c : c + 1]) for c in range(x.shape[1])], 1)


def train_classifier(loader: Any, epochs: int = 2, lr: float = 1e-3, seed: int = 0,
                     device: str | torch.device = "cpu") -> DigitClassifier:
    """Train a ``DigitClassifier`` on batches ``{"x": (B, 1, H, W), "label": (B,)}``.

    Args:
        loader: An iterable of training batches (re-iterated once per epoch).
        epochs: Passes over the loader.
        lr: Adam learning rate, decayed to zero by a cosine over the run.
        seed: Seed of the weights and dropout.
        device: Where to train.
    """
    torch.manual_seed(seed)
    model = DigitClassifier().to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(loader))
    for _ in range(epochs):
        for batch in loader:
            loss = F.cross_entropy(model(batch["x"].to(device)), batch["label"].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: DigitClassifier, loader: Any, device: str | torch.device = "cpu") -> float:
    """Fraction of correctly classified examples over ``loader``'s batches."""
    model.eval()
    right = total = 0
    for batch in loader:
        pred = model(batch["x"].to(device)).argmax(1).cpu()
        right += int((pred == batch["label"]).sum())
        total += len(pred)
    return right / max(total, 1)


def file_hash(path: str | Path) -> str:
    """The first 12 hex digits of the file's SHA-256: the extractor's name in reports."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def save_classifier(model: DigitClassifier, path: str | Path, **meta: Any) -> str:
    """Write the classifier (plain tensors and numbers, loadable with ``weights_only=True``).

    Returns the file's hash (``file_hash``).

    Args:
        model: The trained classifier.
        path: Where to write it.
        **meta: Plain values to keep beside the weights (e.g. its test accuracy).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    meta = json.loads(json.dumps(meta))  # plain types only (e.g. no int subclasses)
    torch.save({"format": FORMAT, "config": model.config, "state_dict": state, "meta": meta}, path)
    return file_hash(path)


def load_classifier(path: str | Path) -> tuple[DigitClassifier, dict[str, Any]]:
    """The classifier saved at ``path`` and its description (``hash``, ``path``, ``meta``)."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"reference classifier {path} does not exist; train one with "
                          f"`genlab classifier --source <MNIST-like data> --out {path}`")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise GenlabError(f"{path} is not a readable classifier file: "
                          f"{str(err).splitlines()[0]}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise GenlabError(f"{path} is not a genlab reference classifier (written by "
                          f"`genlab classifier`)")
    model = DigitClassifier(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    info = {"name": "digit-classifier", "hash": file_hash(path), "path": str(path),
            "meta": saved.get("meta", {})}
    return model.eval(), info
