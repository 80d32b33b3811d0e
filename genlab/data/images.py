"""``ImageDataModule``: images from a hub name, parquet / arrow files or an image folder."""

from __future__ import annotations

from typing import Literal

import datasets
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader

from genlab.data.captions import Captioner
from genlab.data.clusters import kmeans, nearest
from genlab.data.image_transforms import BatchFetch, DecodedRows, ImageTransform, collate
from genlab.data.sources import (
    carve,
    check_batch_size,
    check_source,
    get_split,
    load_source,
    require_column,
    val_split_name,
)
from genlab.data.splits import SplitDataModule
from genlab.errors import GenlabError

AUTO_IMAGE_COLUMNS = ("image", "img")
AUTO_LABEL_COLUMNS = ("label", "labels")
# The column of self-conditioning labels (``data.clusters``), added to the decoded rows.
CLUSTER_COLUMN = "cluster"


def _positive(**values: int | float | None) -> None:
    for key, value in values.items():
        if value is not None and value <= 0:
            raise GenlabError(f"data.{key} must be positive, got {value}")


def _holds_images(feature: object) -> bool:
    """Whether a column can be read as images: Image, file paths, encoded bytes."""
    if isinstance(feature, datasets.Image):
        return True
    if isinstance(feature, datasets.Value):
        return feature.dtype in ("string", "large_string", "binary", "large_binary")
    return isinstance(feature, dict) and "bytes" in feature


class ImageDataModule(SplitDataModule):
    """Images as ``{"x": (B, C, S, S) in [-1, 1], "label": (B,) long}`` batches.

    Decoding and transforms run per batch in the DataLoader workers (``BatchFetch``), or
    decoding once at setup with ``in_memory``.
    ``data_shape`` is ``(channels, image_size, image_size)`` from the start; ``num_classes`` is
    read from the label column (a ``ClassLabel``'s names, else the largest label + 1).

    Args:
        source: Hub dataset name (``ylecun/mnist``, ``uoft-cs/cifar10``) or a local path or glob:
            a directory of parquet / arrow files or of images (class sub-folders become labels;
            ``train/`` and ``test/`` folders or file names become splits), or one file.
        subset: Configuration name of a hub dataset that has several.
        image_size: Side of the square images served.
        channels: 1 (grayscale) or 3 (RGB); images are converted to it.
        resize: Resize the shorter side to ``image_size``, then center-crop to a square; when
            false, images must already be ``image_size`` square.
        center_crop: Side of a central square cropped before resizing (e.g. 140 for CelebA).
        hflip: Random horizontal flips of training images.
        binarize: Dynamic binarization: each time an image is served, pixels are a fresh
            Bernoulli draw in {-1, +1} with p = intensity.
        image_column: Column of the images; ``auto``: the only image column, or image / img.
        label_column: Column of integer class labels, served as ``batch["label"]``; ``auto``:
            label / labels if present; ``None``: no labels.
        num_classes: Number of classes; ``None``: read from the labels.
        train_split: Name of the training split.
        val_split: Name of the validation split; ``None``: validation / valid / val if the source
            has one, else ``val_fraction`` of train carved out at random with ``seed``.
        test_split: Name of the split served by ``test_dataloader``, or ``None``.
        val_fraction: Share of train carved out for validation when there is no validation split.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes (they decode and transform).
        in_memory: Decode every image once at setup and serve them from memory (uint8:
            47 MB for MNIST's 60,000 training images, 150 MB for CIFAR-10's 50,000), instead
            of decoding each batch as it is served. For sets that fit in RAM several times
            (each DDP process holds its own copy); random flips and binarization still draw
            afresh each time an image is served.
        seed: Seed of the validation carve-out and of the per-batch random draws (flips,
            binarization, caption phrasings).
        captions: Serve ``batch["text"]``, a caption written from each label in a phrasing
            drawn at random: training phrasings in the train split, held-out ones in
            validation and test (``genlab.data.captions``); needs labels.
        caption_words: The caption word of each class; ``None``: number words for digit
            classes, else the class names.
        source_size: Serve ``batch["source"]``, each image downsampled to this side (the input
            of super-resolution); ``None``: none.
        clusters: Self-conditioning (``genlab.data.clusters``): serve each image's k-means
            cluster of pixels (this many clusters, fit on the training images with ``seed``;
            validation and test images get their nearest) as ``batch["label"]``, in place of
            any label column. ``num_classes`` is then ``clusters`` and ``label_prior`` the
            clusters' shares of the training images, which a conditional model samples its
            labels from. Needs ``in_memory``. ``None``: no clustering.
    """

    def __init__(
        self,
        source: str,
        subset: str | None = None,
        image_size: int = 32,
        channels: Literal[1, 3] = 3,
        resize: bool = True,
        center_crop: int | None = None,
        hflip: bool = False,
        binarize: bool = False,
        image_column: str = "auto",
        label_column: str | None = "auto",
        num_classes: int | None = None,
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str | None = "test",
        val_fraction: float = 0.05,
        batch_size: int = 128,
        num_workers: int = 2,
        in_memory: bool = False,
        seed: int = 0,
        captions: bool = False,
        caption_words: list[str] | None = None,
        source_size: int | None = None,
        clusters: int | None = None,
    ) -> None:
        settings = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        _positive(image_size=image_size, center_crop=center_crop, num_classes=num_classes,
                  batch_size=batch_size, source_size=source_size, clusters=clusters)
        if clusters and not in_memory:
            raise GenlabError("data.clusters clusters the decoded images once at setup; "
                              "set data.in_memory: true")
        if clusters and captions:
            raise GenlabError("data.captions are written from class labels, not clusters; "
                              "drop data.captions or data.clusters")
        if channels not in (1, 3):
            raise GenlabError(f"data.channels must be 1 or 3, got {channels}")
        if not 0 < val_fraction < 1:
            raise GenlabError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
        if num_workers < 0:
            raise GenlabError(f"data.num_workers must be >= 0, got {num_workers}")
        check_source(source)
        self.save_hyperparameters(logger=False)  # the CLI logs the whole resolved config
        for key, value in settings.items():
            # Under LightningCLI a subclass (Stacked MNIST) records only its own arguments;
            # this class reads all of its own from hparams.
            self.hparams.setdefault(key, value)
        self.data_shape: tuple[int, int, int] = (channels, image_size, image_size)
        self._splits: datasets.DatasetDict | None = None
        self._columns: tuple[str, str | None] | None = None
        self._num_classes = num_classes
        self.sets: dict[str, torch.utils.data.Dataset] = {}  # what the DataLoaders serve
        self.centroids: torch.Tensor | None = None  # of data.clusters, fit at setup
        self.label_prior: torch.Tensor | None = None  # the clusters' shares, (clusters,)

    @property
    def source(self) -> str:
        """The configured source."""
        return self.hparams.source

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or ``None`` when there are no labels (reads the data if needed)."""
        self.columns()
        return self._num_classes

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition kinds the batches carry (``genlab.conditions``)."""
        h = self.hparams
        served = [("label", self.columns()[1] is not None), ("text", h.get("captions")),
                  ("source", h.get("source_size") is not None)]
        return tuple(kind for kind, on in served if on)

    def class_names(self) -> list[str]:
        """The name of each class: a ``ClassLabel``'s names, else ``"0"``, ``"1"``, ..."""
        _, label = self.columns()
        feature = self.train_split().features.get(label) if label else None
        if isinstance(feature, datasets.ClassLabel):
            return list(feature.names)
        return [str(i) for i in range(self.num_classes or 0)]

    def prepare_data(self) -> None:
        """Download a hub dataset or convert local files into the ``datasets`` cache."""
        self.splits()

    def splits(self) -> datasets.DatasetDict:
        """Every split of the source, loaded once."""
        if self._splits is None:
            self._splits = load_source(self.source, self.hparams.subset)
        return self._splits

    def train_split(self) -> datasets.Dataset:
        """The training split as stored (before any validation carve-out)."""
        return get_split(self.splits(), self.hparams.train_split, self.source, "data.train_split")

    def columns(self) -> tuple[str, str | None]:
        """The image and label column names, checked against the data."""
        if self._columns is None:
            train = self.train_split()
            image = self._image_column(train)
            if self.hparams.get("clusters"):
                label, self._num_classes = CLUSTER_COLUMN, self.hparams.clusters
            else:
                label = self._label_column(train)
                self._num_classes = self._count_classes(train, label)
            self._columns = image, label
        return self._columns

    def _image_column(self, split: datasets.Dataset) -> str:
        name = self.hparams.image_column
        if name != "auto":
            feature = split.features[require_column(split, name, "data.image_column")]
            if not _holds_images(feature):
                raise GenlabError(f"data.image_column {name!r} holds {feature}, not images; "
                                  f"the columns are: {', '.join(split.column_names)}")
        else:
            found = [c for c, f in split.features.items() if isinstance(f, datasets.Image)]
            found = found or [c for c in AUTO_IMAGE_COLUMNS if c in split.column_names]
            if len(found) != 1:
                raise GenlabError(
                    f"data.image_column: cannot tell which column holds the images; set it to "
                    f"one of the columns: {', '.join(split.column_names)}"
                )
            name = found[0]
        return name

    def _label_column(self, split: datasets.Dataset) -> str | None:
        name = self.hparams.label_column
        if name == "auto":
            return next((c for c in AUTO_LABEL_COLUMNS if c in split.column_names), None)
        if name == self.hparams.image_column:
            raise GenlabError(f"data.label_column and data.image_column are both {name!r}")
        return None if name is None else require_column(split, name, "data.label_column")

    def _count_classes(self, split: datasets.Dataset, label: str | None) -> int | None:
        """Classes in the labels, checked against a configured ``num_classes``."""
        if label is None:
            return self.hparams.num_classes
        feature = split.features[label]
        if isinstance(feature, datasets.ClassLabel):
            found = feature.num_classes
        elif isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
            column = split.data.column(label)
            low, high = pc.min(column).as_py(), pc.max(column).as_py()
            if low is None or low < 0:
                raise GenlabError(f"data.label_column {label!r} has missing or negative labels")
            found = high + 1
        else:
            raise GenlabError(
                f"data.label_column {label!r} holds {feature}, not integer class labels; "
                f"name another column or set data.label_column: null"
            )
        given = self.hparams.num_classes
        if given is not None and given < found:
            raise GenlabError(f"data.num_classes is {given} but the labels need {found} classes")
        return given or found

    def transform(self, train: bool) -> ImageTransform:
        """The batch transform of the training (with flips) or evaluation images.

        Args:
            train: Whether random flips apply.
        """
        image, label = self.columns()
        h = self.hparams
        captioner = None
        if h.get("captions"):
            if label is None:
                raise GenlabError("data.captions are written from the labels, but the data has "
                                  "none; set data.label_column")
            captioner = Captioner(self.class_names(), train, h.get("caption_words"))
        return ImageTransform(image, label, h.channels, h.image_size, h.resize,
                              h.center_crop, hflip=h.hflip and train, binarize=h.binarize,
                              captioner=captioner, source_size=h.get("source_size"))

    def formatted(self, split: datasets.Dataset) -> datasets.Dataset:
        """``split`` reduced to its image (and label) column, images left undecoded.

        Args:
            split: A split of the source.
        """
        image, label = self.columns()
        split = split.select_columns([c for c in (image, label) if c in split.column_names])
        return split.cast_column(image, datasets.Image(decode=False))

    def raw_splits(self) -> dict[str, datasets.Dataset]:
        """Train, validation (carved from train when missing) and test splits, unformatted."""
        splits, h = self.splits(), self.hparams
        train = self.train_split()
        val_name = val_split_name(splits, h.val_split)
        if val_name is None:
            train, val = carve(train, h.val_fraction, h.seed)
        else:
            val = get_split(splits, val_name, self.source, "data.val_split")
        out = {"train": train, "val": val}
        if h.test_split is not None and h.test_split in splits:
            out["test"] = get_split(splits, h.test_split, self.source, "data.test_split")
        return out

    def build_sets(self) -> dict[str, torch.utils.data.Dataset]:
        """What the DataLoaders serve: each split formatted, fetched a batch at a time."""
        sets = {}
        for name, split in self.raw_splits().items():
            rows, transform = self.formatted(split), self.transform(name == "train")
            if self.hparams.get("in_memory"):
                rows = DecodedRows(rows, transform)
            if self.hparams.get("clusters"):
                self._label_clusters(name, rows)
            sets[name] = BatchFetch(rows, transform, seed=self.hparams.seed)
        return sets

    def _label_clusters(self, name: str, rows: DecodedRows) -> None:
        """Add each image's cluster to ``rows``; the train split (built first) fits them."""
        pixels, k = rows.images.flatten(1).float().div_(255), self.hparams.clusters
        if name == "train":
            try:
                self.centroids = kmeans(pixels, k, seed=self.hparams.seed)
            except ValueError as err:
                raise GenlabError(f"data.clusters is {k}: {err}; lower it") from err
        ids = nearest(pixels, self.centroids)
        if name == "train":
            counts = torch.bincount(ids, minlength=k)
            self.label_prior = counts.double().div(len(ids)).float()
        rows.columns[CLUSTER_COLUMN] = ids.tolist()

    def setup(self, stage: str | None = None) -> None:
        """Build the splits and decode one image to catch bad data before training."""
        if not self.sets:
            self.sets = self.build_sets()
            self.sets["train"][0]  # noqa: B018 - decodes an image: fails early on unreadable data
        if stage in (None, "fit"):
            check_batch_size(len(self.sets["train"]), self.hparams.batch_size, "images")

    def loader(self, name: str, train: bool = False) -> DataLoader:
        """The DataLoader of split ``name`` (see ``SplitDataModule``)."""
        if name not in self.sets:
            raise GenlabError(f"{self.source!r} has no {name} split; set data.{name}_split")
        workers = self.hparams.num_workers
        data = self.sets[name]
        return DataLoader(data, batch_size=self.hparams.batch_size, drop_last=train,
                          sampler=self.train_sampler(len(data), keyed=True) if train else None,
                          num_workers=workers, persistent_workers=workers > 0,
                          collate_fn=collate, pin_memory=torch.cuda.is_available(),
                          generator=self.loader_rng())
