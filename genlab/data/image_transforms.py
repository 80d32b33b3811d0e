"""Image decoding and transforms, run per batch by ``datasets`` inside DataLoader workers.

``ImageTransform`` is given to ``Dataset.with_transform``: a DataLoader worker fetches a batch of
rows (``Dataset.__getitems__``), the transform decodes and transforms them, and nothing is done
for the whole set at start-up.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from genlab.errors import GenlabError

try:  # deprecated since torchvision 0.29 (TorchCodec takes over) but twice as fast as PIL
    from torchvision.io import ImageReadMode, decode_image

    READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}
except ImportError:  # pragma: no cover - a torchvision without it: PIL decodes everything
    decode_image = None
PIL_MODES = {1: "L", 3: "RGB"}


def _read_bytes(item: dict[str, Any] | bytes | str) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return Path(item).read_bytes()
    if item.get("bytes") is not None:
        return item["bytes"]
    return Path(item["path"]).read_bytes()


def decode(item: dict[str, Any] | bytes | str, channels: int) -> Tensor:
    """Decode one stored image to a ``(channels, H, W)`` uint8 tensor.

    torchvision's decoders are about twice as fast as PIL for PNG and JPEG; PIL handles the
    other formats.

    Args:
        item: A ``datasets.Image(decode=False)`` value (``{"bytes", "path"}``), bytes or a path.
        channels: 1 (grayscale) or 3 (RGB); images are converted to it.
    """
    data = _read_bytes(item)
    if decode_image is not None:
        try:
            image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                 mode=READ_MODES[channels])
            if image.dtype != torch.uint8:  # 16-bit PNG
                image = v2.functional.to_dtype(image, torch.uint8, scale=True)
            return image
        except RuntimeError:  # a format torchvision does not read (BMP, TIFF, ...)
            pass
    with Image.open(io.BytesIO(data)) as pil:
        array = np.array(pil.convert(PIL_MODES[channels]))
    return torch.from_numpy(array).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)


class BatchFetch(Dataset):
    """Serve a formatted ``datasets.Dataset`` a whole batch per call, as the transform made it.

    ``datasets`` would split the transformed batch into examples for the DataLoader to stack
    again; ``__getitems__`` hands the batch over as it is (see ``collate``).

    The transform's random draws (flips, dynamic binarization) are seeded by the batch's keys
    (``epoch * len + index`` from a keyed ``ResumableSampler``, or plain indices), not taken
    from the global RNG: a resumed run, a DDP rank or a DataLoader worker serves the same batch
    an uninterrupted run would, and training noise is left undisturbed.

    Args:
        data: A ``datasets.Dataset`` with a batch transform (``with_transform``).
        seed: Mixed into the per-batch seed.
    """

    def __init__(self, data: Any, seed: int = 0) -> None:
        self.data, self.seed = data, seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: int | slice) -> dict[str, Tensor]:
        if isinstance(key, slice):
            return self.__getitems__(list(range(len(self.data)))[key])
        with self._seeded(key):
            return self.data[key % len(self.data)]

    def __getitems__(self, keys: list[int]) -> dict[str, Tensor]:
        """One batch: the transform applied once to the rows ``keys`` point to.

        Args:
            keys: Row indices, or ``epoch * len + index`` keys, chosen by the sampler.
        """
        with self._seeded(keys[0]):
            return self.data[[key % len(self.data) for key in keys]]

    @contextmanager
    def _seeded(self, key: int) -> Iterator[None]:
        # A batch is determined by its first key (batches are fixed runs of the sampler's order).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + key)
            yield


def collate(data: dict[str, Tensor] | list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """A batch from ``__getitems__`` as it is; a list of examples stacked as usual.

    Args:
        data: What the dataset returned for one batch.
    """
    return data if isinstance(data, dict) else default_collate(data)


class ImageTransform:
    """Batch transform: decode, crop / resize to a square, flip, scale to [-1, 1] or binarize.

    Args:
        image_column: Column holding the images (as ``datasets.Image(decode=False)``).
        label_column: Column holding integer class labels, or ``None``.
        channels: 1 or 3.
        image_size: Side of the square images served.
        resize: Resize the shorter side to ``image_size`` and center-crop; when false, images
            must already be ``image_size`` square.
        center_crop: Side of a central square cropped before resizing, or ``None``.
        hflip: Flip horizontally with probability 1/2 (training only).
        binarize: Serve a fresh Bernoulli draw in {-1, +1} with p = intensity (dynamic
            binarization) instead of intensities in [-1, 1].
    """

    def __init__(self, image_column: str, label_column: str | None, channels: int,
                 image_size: int, resize: bool = True, center_crop: int | None = None,
                 hflip: bool = False, binarize: bool = False) -> None:
        self.image_column, self.label_column = image_column, label_column
        self.channels, self.image_size = channels, image_size
        self.binarize = binarize
        geometry: list[Any] = [v2.CenterCrop(center_crop)] if center_crop else []
        if resize:
            geometry += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
        self.geometry = v2.Compose(geometry) if geometry else None
        self.flip = v2.RandomHorizontalFlip() if hflip else None

    def image(self, item: dict[str, Any]) -> Tensor:
        """One decoded, cropped, resized and maybe flipped uint8 image ``(C, S, S)``.

        Args:
            item: One stored image.
        """
        x = decode(item, self.channels)
        size = self.image_size
        if self.geometry is not None and (x.shape[1] != size or x.shape[2] != size):
            x = self.geometry(x)
        if x.shape[1:] != (size, size):
            raise GenlabError(
                f"an image is {tuple(x.shape)} but the data module serves "
                f"{(self.channels, size, size)}; set data.resize: true or "
                f"data.image_size: {x.shape[1]}"
            )
        return self.flip(x) if self.flip is not None else x

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Tensor]:
        """Turn a batch of rows into ``{"x": (B, C, S, S) float, "label": (B,) long}``.

        Args:
            batch: Columns of the rows fetched, as lists.
        """
        x = torch.stack([self.image(item) for item in batch[self.image_column]])
        x = x.float().div_(255)  # (B, C, S, S) in [0, 1]
        x = torch.bernoulli(x) if self.binarize else x
        out = {"x": x.mul_(2).sub_(1)}
        if self.label_column is not None:
            out["label"] = torch.as_tensor(batch[self.label_column], dtype=torch.long)
        return out
