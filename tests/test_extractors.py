"""The image extractor: InceptionV3 when its weights are at hand, else the digit classifier.

Offline by construction: torch's hub cache is a temporary directory and the weights' host is
unreachable unless a test says otherwise, so no test downloads anything.
"""

import pytest

import genlab.tracking
from genlab.errors import GenlabError
from genlab.metrics import extractors
from genlab.metrics.classifier import DigitClassifier, save_classifier
from genlab.metrics.extractors import build_extractor, inception_status, inception_weights_path


@pytest.fixture(autouse=True)
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(genlab.tracking, "_reachable", lambda url, timeout: False)
    monkeypatch.chdir(tmp_path)


def test_torch_fidelity_is_installed_so_inception_is_possible():
    import torch_fidelity  # noqa: F401  (a dependency: torchmetrics' FID needs it)

    assert "github.com" in extractors.inception_weights_url()


def test_offline_without_weights_falls_back_to_the_classifier_and_says_why(tmp_path):
    usable, why = inception_status()
    assert not usable and str(inception_weights_path()) in why and "not reachable" in why
    with pytest.raises(GenlabError, match="genlab classifier --source"):
        build_extractor(None, channels=1)
    save_classifier(DigitClassifier(width=4), tmp_path / "classifiers/mnist.pt")
    _, info, line = build_extractor(None, channels=1)
    assert info["name"] == "digit-classifier"
    assert line.startswith("features: digit-classifier classifiers/mnist.pt sha256:")
    assert "InceptionV3 is unavailable" in line and "not reachable" in line


def test_inception_is_the_default_when_cached_or_reachable(monkeypatch):
    path = inception_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")  # only looked at, never loaded here
    assert inception_status() == (True, f"weights cached in {path}")
    path.unlink()
    monkeypatch.setattr(genlab.tracking, "_reachable", lambda url, timeout: True)
    usable, why = inception_status()
    assert usable and why.startswith("weights downloaded once from github.com")
    monkeypatch.setattr(extractors, "_inception", lambda: ("net", {"name": "inception-v3"}))
    _, info, line = build_extractor(None, channels=3)
    assert info["name"] == "inception-v3" and line.startswith("features: inception-v3, the default")


def test_explicit_classifier_is_named_with_its_hash(tmp_path):
    save_classifier(DigitClassifier(width=4), tmp_path / "c.pt")
    _, info, line = build_extractor(str(tmp_path / "c.pt"), channels=3)
    assert line == f"features: digit-classifier {tmp_path / 'c.pt'} sha256:{info['hash']} " \
                   f"(--extractor)"
