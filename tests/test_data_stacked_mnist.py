"""Stacked MNIST: shapes, the 1,000-class label arithmetic, seeded triples, bad sources."""

import pytest
import torch

from genlab.data.stacked_mnist import StackedMNISTDataModule
from genlab.data.tiny import tiny_image_dataset, write_parquet
from genlab.errors import GenlabError


@pytest.fixture
def digits(tmp_path):
    return str(write_parquet(tmp_path / "mnist", {"train": 30, "test": 10}, num_classes=10))


def pixel_labels(x):
    level = (x.flatten(1).mean(1) + 1) * 127.5
    return ((level - 10) / 25).round().long()


def test_shapes_and_label_arithmetic(digits):
    dm = StackedMNISTDataModule(digits, image_size=8, train_size=50, batch_size=16, num_workers=0)
    assert dm.data_shape == (3, 8, 8) and dm.num_classes == 1000
    dm.setup("fit")
    assert len(dm.sets["train"]) == 50 and len(dm.sets["val"]) == 2  # val: 5% of 30 digits
    batch = next(iter(dm.train_dataloader()))
    x, label = batch["x"], batch["label"]
    assert x.shape == (16, 3, 8, 8) and label.dtype == torch.long
    assert label.min() >= 0 and label.max() < 1000
    assert torch.equal(label // 100, pixel_labels(x[:, 0]))
    assert torch.equal(label // 10 % 10, pixel_labels(x[:, 1]))
    assert torch.equal(label % 10, pixel_labels(x[:, 2]))
    assert len(next(iter(dm.test_dataloader()))["x"]) == 10


def test_second_epoch_keys_serve_the_same_triples(digits):
    # A keyed sampler's keys are epoch * len + index: past the length from the second epoch on.
    dm = StackedMNISTDataModule(digits, image_size=8, train_size=20, batch_size=4, num_workers=0,
                                binarize=True)
    dm.setup("fit")
    first, second = (dm.sets["train"].__getitems__([epoch * 20 + i for i in range(20)])
                     for epoch in (0, 1))
    assert torch.equal(first["label"], second["label"])
    assert not torch.equal(first["x"], second["x"])  # each epoch binarizes its digits afresh


def test_triples_are_seeded(digits):
    def labels(seed):
        dm = StackedMNISTDataModule(digits, image_size=8, train_size=20, num_workers=0, seed=seed,
                                    batch_size=4)
        dm.setup("fit")
        return dm.sets["train"].__getitems__(list(range(20)))["label"].tolist()

    assert labels(0) == labels(0) != labels(1)


def test_binarized_stacked_digits(digits):
    dm = StackedMNISTDataModule(digits, image_size=8, binarize=True, num_workers=0, batch_size=4)
    dm.setup("fit")
    assert set(dm.sets["train"][0]["x"].unique().tolist()) <= {-1.0, 1.0}


def test_needs_digit_labels(tmp_path):
    many = write_parquet(tmp_path / "many", {"train": 20}, num_classes=12)
    with pytest.raises(GenlabError, match="needs digits labelled 0-9 .* have 12 classes"):
        StackedMNISTDataModule(str(many), num_workers=0).setup("fit")
    tiny_image_dataset(8).remove_columns("label").to_parquet(str(tmp_path / "unlabelled.parquet"))
    unlabelled = StackedMNISTDataModule(str(tmp_path / "unlabelled.parquet"), num_workers=0)
    with pytest.raises(GenlabError, match="needs digit labels but .* has no label column"):
        unlabelled.setup("fit")


def test_fit_from_yaml_and_evaluate_source_recorded(tmp_path):
    """Under LightningCLI the subclass records its own arguments; the base still finds its own."""
    import yaml

    from genlab.cli import main

    root = write_parquet(tmp_path / "digits", {"train": 40, "test": 10}, num_classes=10,
                         size=(28, 28))
    config = {"model": {"class_path": "GAN", "init_args": {"image_size": 28, "channels": 3,
                                                          "width": 8, "latent_dim": 8}},
              "data": {"class_path": "StackedMNISTDataModule",
                       "init_args": {"source": str(root), "train_size": 32, "val_size": 8,
                                     "batch_size": 8, "num_workers": 0}},
              "trainer": {"max_steps": 2, "logger": False, "enable_progress_bar": False,
                          "limit_val_batches": 1, "accelerator": "cpu"},
              "samples": {"every_n_steps": 0, "num": 4}, "sample_metrics": {"num": 0}}
    path = tmp_path / "stacked.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--run.root", str(tmp_path / "runs")])
    ckpt = torch.load(next((tmp_path / "runs").rglob("last.ckpt")), weights_only=True)
    assert ckpt["genlab"]["data"]["init_args"]["train_size"] == 32
    assert "channels" not in ckpt["genlab"]["data"]["init_args"]  # not an argument of its class
