"""ImageDataModule: each source kind, labels, transforms, carve-out, workers, bad input."""

import datasets
import pytest
import torch

from genlab.data.images import ImageDataModule
from genlab.data.tiny import (
    intensity,
    tiny_image_dataset,
    write_imagefolder,
    write_parquet,
)
from genlab.errors import GenlabError
from genlab.module import check_data_shape


@pytest.fixture
def parquet(tmp_path):
    return str(write_parquet(tmp_path / "pq", {"train": 20, "test": 6}, num_classes=4))


def module(source, **kwargs):
    kwargs.setdefault("num_workers", 0)
    kwargs.setdefault("batch_size", 4)
    dm = ImageDataModule(source, **kwargs)
    dm.setup("fit")
    return dm


def pixel_labels(x):
    """Labels read back from tiny images served in [-1, 1]."""
    level = (x.flatten(1).mean(1) + 1) * 127.5
    return ((level - 10) / 25).round().long()


def test_parquet_batches(parquet):
    dm = ImageDataModule(parquet, image_size=8, channels=1, num_workers=0, batch_size=4)
    assert dm.data_shape == (1, 8, 8)  # known before any data is read
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (4, 1, 8, 8) and batch["x"].dtype == torch.float32
    assert batch["x"].min() >= -1 and batch["x"].max() <= 1
    assert batch["label"].dtype == torch.long
    assert torch.equal(batch["label"], pixel_labels(batch["x"]))
    assert dm.num_classes == 4
    assert len(dm.sets["train"]) == 19 and len(dm.sets["val"]) == 1  # 5% carved out of 20
    assert len(next(iter(dm.test_dataloader()))["x"]) == 4


def test_imagefolder_rgb_resized_with_folder_labels(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", {"train": 9, "validation": 3}, num_classes=3,
                             size=(12, 10), mode="RGB")
    dm = module(str(root), image_size=6, channels=3)
    assert len(dm.sets["val"]) == 3  # the source's own validation split
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape == (3, 3, 6, 6)
    assert torch.equal(batch["label"], pixel_labels(batch["x"]))
    assert dm.num_classes == 3


def test_channels_are_converted(tmp_path):
    root = write_parquet(tmp_path / "rgb", {"train": 8}, mode="RGB")
    x = next(iter(module(str(root), image_size=8, channels=1).train_dataloader()))["x"]
    assert x.shape[1] == 1
    gray = write_parquet(tmp_path / "gray", {"train": 8})
    x = next(iter(module(str(gray), image_size=8, channels=3).train_dataloader()))["x"]
    assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 2])


def test_dynamic_binarization_draws_afresh(tmp_path):
    root = write_parquet(tmp_path / "pq", {"train": 10}, num_classes=10, size=(16, 16))
    dm = module(str(root), image_size=16, channels=1, binarize=True, val_fraction=0.5)
    train = dm.sets["train"]
    n = len(train)

    def epoch(e):  # the first 4 examples as a keyed sampler serves them in epoch e
        return train.__getitems__([e * n + i for i in range(4)])["x"]

    first, second = epoch(0), epoch(1)
    assert set(first.unique().tolist()) <= {-1.0, 1.0}
    assert not torch.equal(first, second)  # a fresh draw each epoch...
    assert torch.equal(first, epoch(0))  # ...that a resumed run draws again
    # p = intensity: the mean of many draws approaches the gray level
    means = torch.stack([epoch(e) for e in range(200)]).add(1).div(2)
    expected = torch.tensor([intensity(k) / 255 for k in dm.sets["train"][:4]["label"]])
    assert torch.allclose(means.mean((0, 2, 3, 4)), expected, atol=0.02)


def test_flip_only_in_training(tmp_path):
    half = torch.zeros(8, 8, dtype=torch.uint8)
    half[:, :4] = 255
    from PIL import Image

    images = [Image.fromarray(half.numpy())] * 4
    data = datasets.Dataset.from_dict({"image": images}, features=datasets.Features(
        {"image": datasets.Image()}))
    data.to_parquet(str(tmp_path / "train.parquet"))
    dm = module(str(tmp_path / "train.parquet"), image_size=8, channels=1, hflip=True,
                val_fraction=0.5, batch_size=2)
    train = dm.sets["train"]
    lefts = {train[e * len(train)]["x"][0, 0, 0].item() for e in range(30)}  # 30 epochs
    assert lefts == {-1.0, 1.0}
    assert {dm.sets["val"][0]["x"][0, 0, 0].item() for _ in range(10)} == {1.0}
    assert "label" not in dm.sets["train"][0] and dm.num_classes is None


def test_center_crop_then_resize(tmp_path):
    root = write_parquet(tmp_path / "pq", {"train": 4}, size=(20, 12))
    dm = module(str(root), image_size=4, center_crop=10, channels=1, batch_size=2)
    x = dm.sets["train"][:2]["x"]
    assert x.shape == (2, 1, 4, 4)


def test_validation_carve_out_is_seeded(tmp_path):
    root = str(write_parquet(tmp_path / "pq", {"train": 40}, num_classes=10))

    def val_labels(seed):
        dm = module(root, image_size=8, channels=1, val_fraction=0.25, seed=seed)
        return dm.sets["val"][:]["label"].tolist(), dm.sets["train"][:]["label"].tolist()

    val, train = val_labels(0)
    assert len(val) == 10 and len(train) == 30
    assert val_labels(0) == (val, train)
    assert val_labels(1)[0] != val


@pytest.mark.parametrize("kind", ["parquet", "imagefolder"])
def test_in_memory_serves_the_same_batches(tmp_path, kind):
    if kind == "parquet":
        root = write_parquet(tmp_path / "pq", {"train": 12, "test": 4}, num_classes=4)
    else:  # resized from 12 x 10 RGB: the cache holds the images after the geometry
        root = write_imagefolder(tmp_path / "imgs", {"train": 12}, num_classes=3,
                                 size=(12, 10), mode="RGB")
    kwargs = dict(image_size=8, channels=1, binarize=True, hflip=True, captions=True)
    streamed, cached = module(str(root), **kwargs), module(str(root), in_memory=True, **kwargs)
    assert cached.sets["train"].data.images.dtype == torch.uint8
    for name in streamed.sets:
        n = len(streamed.sets[name])
        keys = [3 * n + i for i in range(n)]  # epoch 3 of a keyed sampler
        a, b = streamed.sets[name].__getitems__(keys), cached.sets[name].__getitems__(keys)
        assert a.keys() == b.keys()
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["label"], b["label"])
        assert a["text"] == b["text"]
    batches = list(module(str(root), in_memory=True, num_workers=1, **kwargs).train_dataloader())
    assert all(batch["x"].shape == (4, 1, 8, 8) for batch in batches)


@pytest.mark.parametrize("in_memory", [False, True])
def test_corrupt_image_is_one_line(tmp_path, in_memory):
    rows = tiny_image_dataset(4).cast_column("image", datasets.Image(decode=False)).to_list()
    rows[2]["image"] = {"bytes": b"not a png", "path": None}
    data = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    data.to_parquet(str(tmp_path / "train.parquet"))
    dm = ImageDataModule(str(tmp_path / "train.parquet"), image_size=8, channels=1,
                         num_workers=0, batch_size=1, val_fraction=0.25, in_memory=in_memory)
    message = "cannot decode an image stored as bytes .*; remove or replace it"
    with pytest.raises(GenlabError, match=("row .: " if in_memory else "") + message):
        dm.setup("fit")
        for name in ("train", "val"):
            dm.sets[name][:]


def test_workers_decode_in_parallel(parquet):
    dm = module(parquet, image_size=8, channels=1, num_workers=2)
    batches = list(dm.train_dataloader())
    assert len(batches) == 4 and all(b["x"].shape == (4, 1, 8, 8) for b in batches)


def test_other_column_names(tmp_path):
    data = tiny_image_dataset(6, image_column="img", label_column="fine")
    data.to_parquet(str(tmp_path / "train.parquet"))
    dm = module(str(tmp_path), image_size=8, channels=1, label_column="fine", val_fraction=0.5,
                batch_size=2)
    assert set(dm.sets["train"][0]) == {"x", "label"}


@pytest.mark.parametrize("kwargs,message", [
    ({"image_column": "pixels"}, "data.image_column: no column 'pixels'; the columns are: "
                                 "image, label"),
    ({"label_column": "class"}, "data.label_column: no column 'class'; the columns are: "
                                "image, label"),
    ({"image_column": "label"}, "data.image_column 'label' holds ClassLabel"),
    ({"num_classes": 2}, "data.num_classes is 2 but the labels need 4 classes"),
    ({"resize": False}, r"an image is \(1, 8, 8\) but the data module serves \(1, 32, 32\); "
                        "set data.resize: true or data.image_size: 8"),
    ({"train_split": "training"}, r"has no split 'training' \(it has: train, test\)"),
    ({"val_split": "test", "test_split": "validation"}, "has no test split"),
])
def test_bad_input_at_setup(parquet, kwargs, message):
    dm = ImageDataModule(parquet, channels=1, num_workers=0, batch_size=4, **kwargs)
    with pytest.raises(GenlabError, match=message):
        dm.setup("fit")
        dm.test_dataloader()


def test_training_split_smaller_than_a_batch(parquet):
    with pytest.raises(GenlabError, match="the training split has 19 images, fewer than "
                                          "data.batch_size=32"):
        module(parquet, batch_size=32)
    ImageDataModule(parquet, num_workers=0, batch_size=32).setup("test")  # no training: fine


def test_empty_split(tmp_path):
    root = write_parquet(tmp_path / "pq", {"train": 4, "validation": 0})
    with pytest.raises(GenlabError, match="split 'validation' of .* has no examples"):
        module(str(root))


@pytest.mark.parametrize("kwargs,message", [
    ({"source": "/no/such/images"}, "no such file or directory"),
    ({"image_size": 0}, "data.image_size must be positive"),
    ({"channels": 2}, "data.channels must be 1 or 3"),
    ({"val_fraction": 1.0}, "data.val_fraction must be between 0 and 1"),
])
def test_bad_input_at_init(parquet, kwargs, message):
    kwargs.setdefault("source", parquet)
    with pytest.raises(GenlabError, match=message):
        ImageDataModule(**kwargs)


def test_hub_name_offline_is_one_clear_line():
    dm = ImageDataModule("uoft-cs/cifar10", num_workers=0)
    with pytest.raises(GenlabError, match="could not be fetched from the Hugging Face hub"):
        dm.setup("fit")


def test_shape_mismatch_with_model_names_both_shapes(parquet):
    model = torch.nn.Module()
    model.data_shape = (1, 28, 28)
    with pytest.raises(GenlabError, match=r"\(3, 32, 32\).*\(1, 28, 28\)"):
        check_data_shape(model, ImageDataModule(parquet))


def test_serving_batches_leaves_the_global_rng_alone(tmp_path):
    # Training noise must not depend on what the data pipeline drew (exact resume, DDP ranks).
    root = write_parquet(tmp_path / "pq", {"train": 16}, size=(8, 8))
    dm = module(str(root), image_size=8, channels=1, binarize=True, hflip=True, batch_size=4)
    state = torch.get_rng_state()
    batches = [b["x"] for b in dm.train_dataloader()]
    assert torch.equal(torch.get_rng_state(), state) and len(batches) >= 2
