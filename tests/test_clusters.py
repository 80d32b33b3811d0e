"""Self-conditioning: k-means clusters of the pixels served as labels, and the label prior a
model samples them from (``data.clusters``, ``GenerativeModule.label_prior``)."""

import lightning as L
import pytest
import torch
from genlab_gan import GAN
from genlab_vaegan import VAEGAN

from genlab.checkpoint import load_model
from genlab.data.clusters import kmeans, nearest
from genlab.data.images import ImageDataModule
from genlab.data.tiny import write_parquet
from genlab.errors import GenlabError
from genlab.recipes import sample_labels


def pixel_labels(x):
    """The class a tiny image was drawn for, read back from its intensity (see ``tiny_image``)."""
    level = (x.flatten(1).mean(1) + 1) * 127.5
    return ((level - 10) / 25).round().long()


def blobs(n=90):
    g = torch.Generator().manual_seed(1)
    truth = torch.arange(n) % 3
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return centers[truth] + 0.3 * torch.randn(n, 2, generator=g), truth


def same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_finds_separated_blobs_and_is_seeded():
    points, truth = blobs()
    centroids = kmeans(points, 3, seed=0)
    assert same_partition(nearest(points, centroids), truth)
    assert torch.equal(kmeans(points, 3, seed=0), centroids)
    assert torch.equal(nearest(points, centroids, chunk=7), nearest(points, centroids))
    with pytest.raises(ValueError, match="1 <= k <= 90"):
        kmeans(points, 91)


@pytest.fixture
def parquet(tmp_path):
    return str(write_parquet(tmp_path / "pq", {"train": 40, "test": 12}, num_classes=4))


def clustered(source, **kwargs):
    kwargs = {"clusters": 4, **kwargs}
    dm = ImageDataModule(source, image_size=8, channels=1, num_workers=0, batch_size=8,
                         in_memory=True, **kwargs)
    dm.setup("fit")
    return dm


def test_clusters_are_served_as_labels_with_their_prior(parquet):
    dm = clustered(parquet, label_column=None)  # no labels needed: the pixels give them
    assert dm.num_classes == 4 and dm.conditions == ("label",)
    assert dm.class_names() == ["0", "1", "2", "3"]
    train = dm.sets["train"][:]
    # The tiny images of one class share one intensity: the clusters are the classes.
    assert same_partition(train["label"], pixel_labels(train["x"]))
    shares = torch.bincount(train["label"], minlength=4).float() / len(train["label"])
    assert torch.allclose(dm.label_prior, shares) and dm.label_prior.sum().item() == 1.0
    test = dm.sets["test"][:]  # nearest centroid: the same class keeps the same cluster id
    assert set(zip(test["label"].tolist(), pixel_labels(test["x"]).tolist())) <= set(
        zip(train["label"].tolist(), pixel_labels(train["x"]).tolist()))


@pytest.mark.parametrize("kwargs, match", [
    ({"in_memory": False}, "data.clusters .* set data.in_memory: true"),
    ({"captions": True}, "captions .* drop data.captions or data.clusters"),
    ({"clusters": 0}, "data.clusters must be positive"),
])
def test_bad_clusters_are_one_line(parquet, kwargs, match):
    with pytest.raises(GenlabError, match=match):
        ImageDataModule(parquet, **{"in_memory": True, "clusters": 4, **kwargs})


def test_more_clusters_than_distinct_images_is_one_line(parquet):
    with pytest.raises(GenlabError, match="data.clusters is 5: .* 5 distinct .*; lower it"):
        clustered(parquet, clusters=5)  # the tiny images of 4 classes: 4 distinct ones


def test_labels_follow_the_prior():
    prior = torch.tensor([0.0, 0.0, 1.0, 0.0])
    for default in ("cycle", "random"):
        assert sample_labels(16, None, 4, "cpu", default, prior).eq(2).all()
    asked = torch.tensor([0, 1])  # labels asked for win over the prior
    assert torch.equal(sample_labels(2, asked, 4, "cpu", prior=prior), asked)
    model = GAN(image_size=28, channels=1, width=4, latent_dim=8, num_classes=4)
    model.label_prior = prior
    assert model._labels(16, None).eq(2).all()


@pytest.mark.parametrize("family, steps", [(GAN, 2), (VAEGAN, 3)])  # steps: one batch
def test_prior_is_taken_from_the_data_and_kept_in_the_checkpoint(parquet, tmp_path, family,
                                                                   steps):
    """A fit on clustered data leaves a checkpoint that samples with the clusters' shares."""
    dm = ImageDataModule(parquet, image_size=28, resize=True, channels=1, num_workers=0,
                         batch_size=8, in_memory=True, clusters=4)
    model = family(image_size=28, channels=1, width=4, latent_dim=8, num_classes=4)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, dm)
    assert torch.equal(model.label_prior, dm.label_prior)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_model(path)
    assert torch.allclose(loaded.label_prior, dm.label_prior)
    assert loaded.sample(4).shape == (4, 1, 28, 28)
