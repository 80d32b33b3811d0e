"""FID / KID on the reference extractor, precision / recall, Stacked MNIST modes, the classifier."""

import math

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from genlab.errors import GenlabError
from genlab.metrics.classifier import (
    ChannelFeatures,
    DigitClassifier,
    load_classifier,
    save_classifier,
)
from genlab.metrics.labels import ClassShares
from genlab.metrics.precision_recall import PrecisionRecall
from genlab.metrics.stacked import StackedModes


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    return ChannelFeatures(DigitClassifier(), channels=1)


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(400, 1, 28, 28, generator=gen) * 2 - 1


def scores(extractor, real, fake):
    fid = FrechetInceptionDistance(feature=extractor)
    kid = KernelInceptionDistance(feature=extractor, subset_size=100, subsets=20)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    return float(fid.compute()), float(kid.compute()[0])


def test_fid_and_kid_vanish_on_the_same_set_and_grow_with_noise(extractor, images):
    fid0, kid0 = scores(extractor, images, images)
    assert abs(fid0) < 1e-2 and abs(kid0) < 1e-3
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(images.shape, generator=gen)
    results = [scores(extractor, images, (images + s * noise).clamp(-1, 1)) for s in (0.2, 0.6)]
    assert fid0 < results[0][0] < results[1][0]
    assert kid0 < results[0][1] < results[1][1]


def test_precision_recall_of_a_subset():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=gen)
    pr = PrecisionRecall(k=3)
    pr.update(real, real=True)
    pr.update(real[:40], real=False)  # every fake sample is a real one: all on the manifold
    out = pr.compute()
    assert out["precision"] == 1.0 and out["recall"] < 0.9


def test_precision_recall_of_disjoint_sets_is_zero():
    real = torch.randn(100, 4)
    pr = PrecisionRecall(k=3)
    pr.update(real, real=True)
    pr.update(real + 100.0, real=False)
    assert pr.compute() == {"precision": 0.0, "recall": 0.0}


def test_stacked_modes_on_constructed_labels():
    uniform = StackedModes()
    uniform.update(torch.arange(1000).repeat(3))
    out = uniform.compute()
    assert out["modes_covered"] == 1000 and abs(float(out["kl_to_uniform"])) < 1e-6
    collapsed = StackedModes()
    collapsed.update(torch.arange(10).repeat(50))  # 10 modes, equally often
    out = collapsed.compute()
    assert out["modes_covered"] == 10
    assert math.isclose(float(out["kl_to_uniform"]), math.log(100), rel_tol=1e-5)


def test_stacked_modes_read_each_channel_with_the_classifier():
    class Oracle(DigitClassifier):  # "classifies" a digit by its mean intensity
        def forward(self, x):
            digit = ((x.mean((1, 2, 3)) + 1) * 4.5).round().long()
            return torch.nn.functional.one_hot(digit, 10).float()

    digits = torch.tensor([[3, 1, 4], [1, 5, 9]])
    images = (digits.float() / 4.5 - 1)[:, :, None, None].expand(-1, -1, 28, 28)
    modes = StackedModes(Oracle())
    modes.update(images)
    assert torch.equal(modes.counts.nonzero().flatten(), torch.tensor([159, 314]))


def test_classifier_file_round_trip_with_hash(tmp_path):
    model = DigitClassifier()
    digest = save_classifier(model, tmp_path / "c.pt", accuracy=0.5)
    loaded, info = load_classifier(tmp_path / "c.pt")
    assert info["hash"] == digest and len(digest) == 12 and info["meta"]["accuracy"] == 0.5
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert loaded.features(torch.rand(3, 1, 32, 32)).shape == (3, 128)  # resized to 28x28


def test_classifier_bad_files(tmp_path):
    with pytest.raises(GenlabError, match="genlab classifier"):
        load_classifier(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GenlabError, match="not a readable classifier"):
        load_classifier(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(GenlabError, match="not a genlab reference classifier"):
        load_classifier(tmp_path / "other.pt")


def test_class_shares_count_confident_labels_and_classes():
    class Fixed(torch.nn.Module):  # logits given by the "image" itself
        def forward(self, x):
            return x.flatten(1)

    confident = torch.tensor([[9.0, 0, 0], [0, 9.0, 0], [0, 9.0, 0]])  # p(top) ~ 0.9998
    unsure = torch.tensor([[1.0, 1.0, 0]])  # p(top) ~ 0.42, class 0
    shares = ClassShares(Fixed(), num_classes=3)
    shares.update(torch.cat([confident, unsure])[:, None, :, None])
    out = shares.compute()
    assert float(out["confident_share"]) == 0.75
    assert [float(out[f"class_share_{k}"]) for k in range(3)] == [0.5, 0.5, 0.0]
    assert float(out["class_share_min"]) == 0.0 and float(out["class_share_max"]) == 0.5
