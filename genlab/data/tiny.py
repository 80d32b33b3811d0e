"""Tiny on-disk data sets in each source format, for tests and plugin checks (no network).

Each image encodes its label: class ``k`` is a square filled with intensity ``25 * k + 10``
(labels 0-9), so a test can read the label back from the pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

SHORT_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
)


def intensity(label: int) -> int:
    """The gray level that tiny images of class ``label`` are filled with.

    Args:
        label: A class label 0-9.
    """
    return (25 * label + 10) % 256


def tiny_image(label: int, size: tuple[int, int] = (8, 8), mode: str = "L") -> Image.Image:
    """A ``size`` (width, height) image filled with ``intensity(label)``.

    Args:
        label: Class label 0-9.
        size: Width and height.
        mode: PIL mode, ``L`` or ``RGB``.
    """
    array = np.full((size[1], size[0]), intensity(label), dtype=np.uint8)
    image = Image.fromarray(array)
    return image if mode == "L" else image.convert(mode)


def tiny_image_dataset(num: int, num_classes: int = 3, size: tuple[int, int] = (8, 8),
                       mode: str = "L", image_column: str = "image",
                       label_column: str = "label") -> datasets.Dataset:
    """``num`` images with labels ``i % num_classes``, as an in-memory ``datasets.Dataset``.

    Args:
        num: Number of examples.
        num_classes: Number of classes (labels cycle through them).
        size: Width and height.
        mode: PIL mode.
        image_column: Name of the image column.
        label_column: Name of the label column.
    """
    labels = [i % num_classes for i in range(num)]
    features = datasets.Features({
        image_column: datasets.Image(),
        label_column: datasets.ClassLabel(num_classes=num_classes),
    })
    images = [tiny_image(k, size, mode) for k in labels]
    return datasets.Dataset.from_dict({image_column: images, label_column: labels},
                                      features=features)


def write_parquet(root: Path, splits: dict[str, int], **kwargs: Any) -> Path:
    """A directory of ``<split>.parquet`` files, ``splits`` giving each split's size.

    Args:
        root: Directory to create.
        splits: Split name -> number of examples.
        **kwargs: Passed to ``tiny_image_dataset``.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, num in splits.items():
        tiny_image_dataset(num, **kwargs).to_parquet(str(root / f"{name}.parquet"))
    return root


def write_imagefolder(root: Path, splits: dict[str, int], num_classes: int = 3,
                      size: tuple[int, int] = (8, 8), mode: str = "L") -> Path:
    """``root/<split>/<class>/<i>.png``: class folders named ``c0``, ``c1``, ...

    Args:
        root: Directory to create.
        splits: Split name -> number of images.
        num_classes: Number of class folders.
        size: Width and height.
        mode: PIL mode.
    """
    for name, num in splits.items():
        for i in range(num):
            label = i % num_classes
            folder = root / name / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            tiny_image(label, size, mode).save(folder / f"{i}.png")
    return root


def write_text(path: Path, text: str = SHORT_TEXT * 8) -> Path:
    """A UTF-8 text file.

    Args:
        path: File to write.
        text: Its content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def isolate_hf(monkeypatch: Any, root: Path) -> None:
    """Make ``datasets`` offline and caching under ``root`` for one test (pytest ``monkeypatch``).

    Args:
        monkeypatch: pytest's ``monkeypatch`` fixture.
        root: Directory for the caches (e.g. ``tmp_path / "hf"``).
    """
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(root))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(root / "datasets"))
    # Both libraries read these at import time: set the live values too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_CACHE_HOME", str(root))
    cache = root / "datasets"
    for name, path in (("HF_DATASETS_CACHE", cache), ("HF_MODULES_CACHE", root / "modules"),
                       ("DOWNLOADED_DATASETS_PATH", cache / "downloads"),
                       ("EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")):
        monkeypatch.setattr(datasets.config, name, path)
