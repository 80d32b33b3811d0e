"""Image decoding and transforms, run per batch inside DataLoader workers.

``BatchFetch`` serves a ``datasets.Dataset`` of undecoded rows: a DataLoader worker fetches a
batch of rows (``__getitems__``), ``ImageTransform`` decodes and transforms them, and nothing is
done for the whole set at start-up.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from genlab.data.captions import Captioner
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
    try:
        with Image.open(io.BytesIO(data)) as pil:
            array = np.array(pil.convert(PIL_MODES[channels]))
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        where = item.get("path") if isinstance(item, dict) else item
        where = where if isinstance(where, str) and where else "an image stored as bytes"
        raise GenlabError(f"cannot decode {where} ({type(err).__name__}: not an image "
                          f"PIL reads); remove or replace it in the data source") from err
    return torch.from_numpy(array).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)


class BatchFetch(Dataset):
    """Serve rows of a ``datasets.Dataset`` a whole batch per call, through ``transform``.

    Returning the transformed batch as it is saves the DataLoader from stacking examples again
    (see ``collate``). The transform's random draws (flips, dynamic binarization) come from one
    generator per example seeded by the example's key (``epoch * len + index`` from a keyed
    ``ResumableSampler``, or its plain index), never from the global RNG: a resumed run, any
    number of DDP processes and any number of workers serve an example exactly as an
    uninterrupted 1-process run does, and training noise is left undisturbed.

    Args:
        data: Undecoded rows (``datasets.Image(decode=False)`` images).
        transform: Turns a batch of rows and their keys into tensors.
        seed: Mixed into every example's seed.
    """

    def __init__(self, data: Any, transform: ImageTransform, seed: int = 0) -> None:
        self.data, self.transform, self.seed = data, transform, seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: int | slice) -> dict[str, Tensor]:
        keys = list(range(len(self.data)))[key] if isinstance(key, slice) else [key]
        batch = self.__getitems__(keys)
        return batch if isinstance(key, slice) else {k: v[0] for k, v in batch.items()}

    def __getitems__(self, keys: list[int]) -> dict[str, Tensor]:
        """One batch: the rows ``keys`` point to, transformed together.

        Args:
            keys: Row indices, or ``epoch * len + index`` keys, chosen by the sampler.
        """
        rows = self.data[[key % len(self.data) for key in keys]]
        return self.transform(rows, [self.seed * 1_000_003 + key for key in keys])


class DecodedRows:
    """Rows of a ``datasets.Dataset`` with every image loaded once into one uint8 tensor.

    Indexed with a list of row indices like the ``datasets.Dataset`` it replaces in
    ``BatchFetch``, it serves the loaded images (``ImageTransform.load``: decoded, cropped,
    resized) as they are, so a batch costs no decoding; flips and binarization still draw
    afresh per example. Memory: channels * size * size bytes an image.

    Args:
        data: Undecoded rows (``datasets.Image(decode=False)`` images).
        transform: Loads the images; its ``image_column`` names their column.
    """

    def __init__(self, data: Any, transform: ImageTransform) -> None:
        self.image_column = transform.image_column
        self.images = torch.stack([_loaded(transform, item, row)
                                   for row, item in enumerate(data[self.image_column])])
        # Plain lists: a ``datasets`` column indexed one row at a time reads through Arrow.
        # No other column: no table to convert (a carved split of none has no rows to read).
        rest = [c for c in data.column_names if c != self.image_column]
        self.columns: dict[str, list[Any]] = data.select_columns(rest).to_dict() if rest else {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, rows: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {c: [v[i] for i in rows] for c, v in self.columns.items()}
        out[self.image_column] = self.images[rows]
        return out


def _loaded(transform: ImageTransform, item: Any, row: int) -> Tensor:
    try:
        return transform.load(item)
    except GenlabError as err:
        raise GenlabError(f"row {row}: {err}") from err


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
        captioner: Writes ``batch["text"]``, a caption of each label (``genlab.data.captions``).
        source_size: Also serve ``batch["source"]``, the image downsampled (antialiased) to
            this side: the input of super-resolution.
    """

    def __init__(self, image_column: str, label_column: str | None, channels: int,
                 image_size: int, resize: bool = True, center_crop: int | None = None,
                 hflip: bool = False, binarize: bool = False,
                 captioner: Captioner | None = None, source_size: int | None = None) -> None:
        self.captioner, self.source_size = captioner, source_size
        self.image_column, self.label_column = image_column, label_column
        self.channels, self.image_size = channels, image_size
        self.binarize = binarize
        geometry: list[Any] = [v2.CenterCrop(center_crop)] if center_crop else []
        if resize:
            geometry += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
        self.geometry = v2.Compose(geometry) if geometry else None
        self.hflip = hflip

    def load(self, item: dict[str, Any] | bytes | str) -> Tensor:
        """One decoded, cropped and resized uint8 image ``(C, S, S)``: the deterministic part.

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
        return x

    def image(self, item: dict[str, Any] | Tensor, rng: torch.Generator) -> Tensor:
        """One loaded (see ``load``) and maybe flipped uint8 image ``(C, S, S)``.

        Args:
            item: One stored image, or one already loaded (``DecodedRows``).
            rng: The example's own generator (flips).
        """
        x = item if isinstance(item, Tensor) else self.load(item)
        if self.hflip and torch.rand((), generator=rng) < 0.5:
            x = x.flip(-1)
        return x

    def __call__(self, batch: dict[str, list[Any]], seeds: list[int]) -> dict[str, Any]:
        """Turn a batch of rows into ``{"x": (B, C, S, S) float, "label": (B,) long}``.

        With their options, also ``"text"`` (B captions) and ``"source"`` (B, C, s, s).

        Args:
            batch: Columns of the rows fetched, as lists.
            seeds: One seed per row for its random draws.
        """
        rngs = [torch.Generator().manual_seed(s) for s in seeds]
        items = batch[self.image_column]
        x = torch.stack([self.image(item, rng) for item, rng in zip(items, rngs)])
        x = x.float().div_(255)  # (B, C, S, S) in [0, 1]
        if self.binarize:
            x = torch.stack([torch.bernoulli(xi, generator=rng) for xi, rng in zip(x, rngs)])
        out: dict[str, Any] = {"x": x.mul_(2).sub_(1)}
        if self.label_column is not None:
            out["label"] = torch.as_tensor(batch[self.label_column], dtype=torch.long)
        if self.captioner is not None:
            out["text"] = [self.captioner(int(y), rng) for y, rng in zip(out["label"], rngs)]
        if self.source_size is not None:
            out["source"] = downsample(out["x"], self.source_size)
        return out


def downsample(x: Tensor, size: int) -> Tensor:
    """Images ``(B, C, H, W)`` resized (bilinear, antialiased) to ``size`` square."""
    return v2.functional.resize(x, [size, size], antialias=True)
