"""`genlab fit` from YAML only with the image module (parquet, imagefolder) and the text module."""

import pytest
import torch
import yaml

from genlab.cli import main
from genlab.data.tiny import write_imagefolder, write_parquet, write_text

MODELS = """
    import torch
    from genlab import GenerativeModule

    class TinyImageModel(GenerativeModule):
        modality = "image"

        def __init__(self, channels: int = 1, image_size: int = 8, num_classes: int = 3) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.data_shape = (channels, image_size, image_size)
            self.embed = torch.nn.Embedding(num_classes, channels * image_size**2)

        def training_step(self, batch, batch_idx):
            x, label = batch["x"], batch["label"]  # a class-conditional model gets the labels
            assert x.shape[1:] == self.data_shape and label.dtype == torch.long
            return (self.embed(label).view_as(x) - x).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def sample(self, num, **options):
            label = torch.arange(num, device=self.device) % self.embed.num_embeddings
            return self.embed(label).view(num, *self.data_shape).tanh()

    class TinyTokenModel(GenerativeModule):
        modality = "tokens"

        def __init__(self, vocab_size: int | None = None) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.logits = torch.nn.Embedding(vocab_size, vocab_size)

        def training_step(self, batch, batch_idx):
            x = batch["x"]  # (B, block_size + 1)
            logits = self.logits(x[:, :-1])
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def sample(self, num, **options):
            return torch.randint(self.logits.num_embeddings, (num, 12), device=self.device)
"""

TRAINER = {"max_steps": 3, "logger": False, "accelerator": "cpu", "devices": 1,
           "enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(autouse=True)
def setup(tmp_path, monkeypatch, fake_dist):
    fake_dist("genlab-testdata", {"genlab.models": {
        "tiny_image": "tiny_data_models:TinyImageModel",
        "tiny_tokens": "tiny_data_models:TinyTokenModel",
    }}, {"tiny_data_models": MODELS})


def fit(tmp_path, model, data, name="run"):
    config = {"seed_everything": 0, "model": model, "data": data, "trainer": TRAINER,
              "samples": {"every_n_steps": 0, "num": 4}, "sample_metrics": {"num": 0}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--run.root", str(tmp_path / "runs")])
    return tmp_path / "runs" / name / "version_0"


def image_config(source, channels=1):
    model = {"class_path": "TinyImageModel",
             "init_args": {"channels": channels, "image_size": 8, "num_classes": 3}}
    data = {"class_path": "ImageDataModule",
            "init_args": {"source": source, "image_size": 8, "channels": 1, "batch_size": 4,
                          "num_workers": 0}}
    return model, data


def test_fit_images_from_parquet_directory(tmp_path):
    root = write_parquet(tmp_path / "mnist", {"train": 24, "test": 8})
    run = fit(tmp_path, *image_config(str(root)))
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    assert (run / "samples/step_0000003.png").is_file()


def test_fit_images_from_imagefolder(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", {"train": 24}, size=(10, 12), mode="RGB")
    run = fit(tmp_path, *image_config(str(root)))
    assert (run / "checkpoints/last.ckpt").is_file()


def test_fit_text_from_txt_with_char_vocabulary_in_checkpoint(tmp_path):
    path = write_text(tmp_path / "plays.txt")
    model = {"class_path": "TinyTokenModel", "init_args": {"vocab_size": 40}}
    data = {"class_path": "TextDataModule",
            "init_args": {"source": str(path), "block_size": 16, "batch_size": 4}}
    run = fit(tmp_path, model, data)
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    chars = ckpt["TextDataModule"]["tokenizer"]["chars"]
    assert chars == "".join(sorted(set(path.read_text()[: int(len(path.read_text()) * 0.9)])))
    assert (run / "samples/step_0000003.txt").is_file()


def error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(lines)
    return lines[-1]


def test_missing_path_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path, *image_config(str(tmp_path / "nowhere")))
    assert exit_info.value.code == 2
    assert "nowhere': no such file or directory" in error_line(capsys)


def test_image_shape_that_does_not_fit_the_model(tmp_path, capsys):
    root = write_parquet(tmp_path / "mnist", {"train": 8})
    with pytest.raises(SystemExit):
        fit(tmp_path, *image_config(str(root), channels=3))
    line = error_line(capsys)
    assert "(1, 8, 8)" in line and "(3, 8, 8)" in line
    assert not list((tmp_path / "runs").rglob("config.yaml"))


def test_model_vocab_size_left_null_takes_the_data_vocabulary(tmp_path):
    path = write_text(tmp_path / "plays.txt")
    model = {"class_path": "TinyTokenModel", "init_args": {"vocab_size": None}}
    data = {"class_path": "TextDataModule",
            "init_args": {"source": str(path), "block_size": 16, "batch_size": 4}}
    run = fit(tmp_path, model, data)
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    chars = ckpt["TextDataModule"]["tokenizer"]["chars"]
    assert ckpt["hyper_parameters"]["vocab_size"] == len(chars)


def test_vocab_smaller_than_the_data_is_one_line(tmp_path, capsys):
    path = write_text(tmp_path / "plays.txt")
    model = {"class_path": "TinyTokenModel", "init_args": {"vocab_size": 5}}
    data = {"class_path": "TextDataModule", "init_args": {"source": str(path), "block_size": 16}}
    with pytest.raises(SystemExit):
        fit(tmp_path, model, data)
    assert "model.vocab_size is 5" in error_line(capsys)


def test_conditional_model_with_fewer_classes_than_the_labels(tmp_path, capsys):
    root = write_parquet(tmp_path / "mnist", {"train": 24})
    model, data = image_config(str(root))
    model["init_args"]["num_classes"] = 2
    with pytest.raises(SystemExit):
        fit(tmp_path, model, data)
    assert "set model.num_classes:" in error_line(capsys)


def test_data_error_during_setup_leaves_no_empty_run(tmp_path, capsys):
    path = tmp_path / "short.txt"
    path.write_text("too short")
    model = {"class_path": "TinyTokenModel", "init_args": {"vocab_size": 256}}
    data = {"class_path": "TextDataModule",
            "init_args": {"source": str(path), "tokenizer": "byte", "block_size": 64}}
    with pytest.raises(SystemExit):
        fit(tmp_path, model, data)
    assert "lower data.block_size" in error_line(capsys)
    assert not (tmp_path / "runs" / "run").exists()
