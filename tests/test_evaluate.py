"""`genlab evaluate` and `genlab classifier` end to end on tiny checkpoints, and bad input."""

import json
import math
from pathlib import Path

import pytest
import yaml

from genlab.cli import main
from genlab.data.tiny import write_parquet, write_text
from tests.test_cli import TINY

MODELS = """
    import math
    import torch
    from genlab import GenerativeModule

    class GaussImages(GenerativeModule):
        modality = "image"

        def __init__(self, channels: int = 1, image_size: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.data_shape = (channels, image_size, image_size)
            self.mean = torch.nn.Parameter(torch.zeros(self.data_shape))

        def training_step(self, batch, batch_idx):
            return (self.mean - batch["x"]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

        def sample(self, num: int, labels=None):
            return (self.mean + 0.3 * torch.randn(num, *self.data_shape)).clamp(-1, 1)

        def log_likelihood(self, batch):
            dist = torch.distributions.Normal(self.mean, 1.0)
            return dist.log_prob(batch["x"]).flatten(1).sum(1)

    class Unigram(GenerativeModule):
        modality = "tokens"

        def __init__(self, vocab_size: int | None = None) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.logits = torch.nn.Parameter(torch.zeros(vocab_size))

        def training_step(self, batch, batch_idx):
            return -self.log_likelihood(batch).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

        def sample(self, num: int, temperature: float = 1.0):
            return torch.randint(len(self.logits), (num, 8))

        def log_likelihood(self, batch):
            logp = self.logits.log_softmax(0)[batch["x"][:, 1:]]
            return logp.sum(1)
"""

TRAINER = {"max_steps": 3, "logger": False, "accelerator": "cpu", "devices": 1,
           "enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(autouse=True)
def tiny_models(fake_dist):
    fake_dist("genlab-evaltest", {"genlab.models": {"gauss": "eval_models:GaussImages",
                                                   "unigram": "eval_models:Unigram"}},
              {"eval_models": MODELS})


def fit(tmp_path, model, data, name):
    config = {"seed_everything": 0, "model": model, "data": data, "trainer": TRAINER,
              "samples": {"every_n_steps": 0}, "sample_metrics": {"num": 0}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--run.root", str(tmp_path / "runs")])
    return tmp_path / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"


def evaluate(ckpt, *args):
    out = ckpt.parent / "eval.json"
    main(["evaluate", "--ckpt", str(ckpt), "--out", str(out), *args])
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def mnist_like(tmp_path_factory):
    return write_parquet(tmp_path_factory.mktemp("digits"), {"train": 120, "test": 60})


def test_classifier_then_image_evaluation(tmp_path, mnist_like, capsys):
    classifier = tmp_path / "clf.pt"
    main(["classifier", "--source", str(mnist_like), "--out", str(classifier), "--epochs", "1",
          "--batch_size", "16", "--num_workers", "0"])
    assert "sha256:" in capsys.readouterr().out
    data = {"class_path": "ImageDataModule",
            "init_args": {"source": str(mnist_like), "image_size": 8, "channels": 1,
                          "batch_size": 16, "num_workers": 0}}
    ckpt = fit(tmp_path, {"class_path": "GaussImages"}, data, "img")
    report = evaluate(ckpt, "--extractor", str(classifier), "--num", "60")
    metrics = report["metrics"]
    for key in ("fid", "kid", "kid_std", "precision", "recall", "fid_floor", "nll",
                "bits_per_dim"):
        assert math.isfinite(metrics[key]), key
    assert report["extractor"]["name"] == "digit-classifier"
    shares = [metrics[f"class_share_{k}"] for k in range(10)]
    assert sum(shares) == pytest.approx(1.0) and 0 <= metrics["confident_share"] <= 1
    assert 0 <= metrics["confident_share_real"] <= 1
    assert metrics["class_share_min"] == min(shares) and metrics["class_share_max"] == max(shares)
    assert report["sample_seconds"] >= 0
    assert len(report["extractor"]["hash"]) == 12
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll"] / (64 * math.log(2)))
    assert "sha256:" in capsys.readouterr().out


def test_points_evaluation_uses_the_data_from_the_checkpoint(tmp_path):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"].update(logger=False, max_steps=4)
    ckpt = fit(tmp_path, cfg["model"], cfg["data"], "pts")
    report = evaluate(ckpt, "--num", "200")
    assert set(report["metrics"]) == {"modes_covered", "high_quality"}
    assert report["plugin"] == "gan" and report["num_samples"] == 200


def test_token_evaluation_loss_perplexity_bits(tmp_path):
    text = write_text(tmp_path / "t.txt")
    data = {"class_path": "TextDataModule",
            "init_args": {"source": str(text), "block_size": 16, "batch_size": 4}}
    ckpt = fit(tmp_path, {"class_path": "Unigram"}, data, "tok")
    report = evaluate(ckpt, "--split", "val")
    vocab = yaml.safe_load((ckpt.parent.parent / "config.yaml").read_text())
    size = vocab["model"]["init_args"]["vocab_size"]
    m = report["metrics"]
    assert m["loss"] == pytest.approx(math.log(size), rel=1e-5)  # untrained: uniform
    assert m["perplexity"] == pytest.approx(size, rel=1e-4)
    assert m["bits_per_token"] == pytest.approx(math.log2(size), rel=1e-5)


def _fails(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_evaluate_bad_input(tmp_path, mnist_like, capsys):
    assert "does not exist" in _fails(["--ckpt", str(tmp_path / "none.ckpt")], capsys)
    data = {"class_path": "ImageDataModule",
            "init_args": {"source": str(mnist_like), "image_size": 8, "channels": 1,
                          "batch_size": 16, "num_workers": 0}}
    ckpt = fit(tmp_path, {"class_path": "GaussImages"}, data, "bad")
    line = _fails(["--ckpt", str(ckpt), "--extractor", str(tmp_path / "no.pt"), "--num", "20"],
                  capsys)
    assert "genlab classifier" in line
    assert "does not take --top_k" in _fails(["--ckpt", str(ckpt), "--top_k", "3"], capsys)


def test_likelihood_only_needs_no_extractor(tmp_path, mnist_like):
    data = {"class_path": "ImageDataModule",
            "init_args": {"source": str(mnist_like), "image_size": 8, "channels": 1,
                          "batch_size": 16, "num_workers": 0}}
    ckpt = fit(tmp_path, {"class_path": "GaussImages"}, data, "nll")
    report = evaluate(ckpt, "--sample_metrics", "false")
    assert set(report["metrics"]) == {"nll", "bits_per_dim"}


def test_data_options_apply_on_top_of_the_checkpoints_data(tmp_path, capsys):
    from genlab.data.tiny import SHORT_TEXT
    from genlab.evaluation import build_parser, data_defaults

    data = {"class_path": "TextDataModule",
            "init_args": {"source": str(write_text(tmp_path / "t.txt")), "block_size": 16,
                          "batch_size": 4}}
    ckpt = fit(tmp_path, {"class_path": "Unigram"}, data, "tok")
    other = str(write_text(tmp_path / "other.txt", SHORT_TEXT[::-1] * 8))
    override = ["--data", "TextDataModule", "--data.source", other]
    argv = ["--ckpt", str(ckpt), *override]
    parser = build_parser()
    data_defaults(parser, argv)
    args = parser.parse_args(argv)
    assert args.data.init_args.source == other
    assert args.data.init_args.block_size == 16 and args.data.init_args.batch_size == 4
    assert evaluate(ckpt, *override, "--split", "val")["metrics"]["loss"] > 0
    # A parse error names the key and what is wrong with it, never an empty "(see ...)".
    line = _fails(["--ckpt", str(ckpt), "--data.block_size", "many"], capsys)
    assert "data.block_size" in line and "int" in line and "many" in line
    line = _fails(["--ckpt", str(ckpt), "--data.blocksize", "8"], capsys)
    assert "'blocksize' is not accepted" in line


def test_data_source_on_top_of_a_fit_config(tmp_path, mnist_like):
    """`--config configs/gan/mnist.yaml --data.source <local MNIST>` scores as it trained."""
    from genlab.evaluation import build_parser, data_defaults

    data = {"class_path": "ImageDataModule",
            "init_args": {"source": str(mnist_like), "image_size": 8, "channels": 1,
                          "batch_size": 16, "num_workers": 0}}
    ckpt = fit(tmp_path, {"class_path": "GaussImages"}, data, "img")
    config = str(Path(__file__).resolve().parents[1] / "configs/gan/mnist.yaml")
    argv = ["--ckpt", str(ckpt), "--config", config, "--data.source", str(mnist_like)]
    parser = build_parser()
    data_defaults(parser, argv)
    args = parser.parse_args(argv)
    init = args.data.init_args
    assert args.data.class_path.endswith("ImageDataModule") and init.source == str(mnist_like)
    assert (init.image_size, init.resize, init.batch_size) == (28, False, 64)  # the config's
