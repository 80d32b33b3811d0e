"""`genlab export`: an exported folder samples as its checkpoint does, and loads without pickle."""

import json
import pickle

import pytest
import torch
import yaml

from genlab.checkpoint import load_model
from genlab.cli import main
from genlab.data.tiny import write_parquet
from genlab.errors import GenlabError
from tests.test_cli import TINY

IMAGE = {
    "seed_everything": 0,
    "model": {"class_path": "VAE", "init_args": {
        "data_shape": [1, 8, 8], "latent_dim": 2, "hidden": [16], "pictures": False}},
    "data": {"class_path": "ImageDataModule", "init_args": {
        "image_size": 8, "channels": 1, "batch_size": 4, "num_workers": 0,
        "val_fraction": 0.25}},
    "trainer": {"max_steps": 4, "accelerator": "cpu", "devices": 1, "logger": False,
                "enable_progress_bar": False, "enable_model_summary": False},
    "samples": {"every_n_steps": 0},
}


def _fit(root, cfg, name):
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(path), "--run.root", str(root / "runs")])
    return root / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def points_ckpt(tmp_path_factory):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"].update(logger=False, max_steps=4)
    cfg["samples"]["every_n_steps"] = 0
    return _fit(tmp_path_factory.mktemp("pts"), cfg, "pts")


@pytest.fixture(scope="module")
def image_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    cfg = yaml.safe_load(yaml.safe_dump(IMAGE))
    cfg["data"]["init_args"]["source"] = str(write_parquet(root / "pq", {"train": 24, "test": 8}))
    return _fit(root, cfg, "img")


def _no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loading an export must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.mark.parametrize("which", ["points_ckpt", "image_ckpt"])
def test_export_samples_as_the_checkpoint_without_pickle(which, request, tmp_path, monkeypatch):
    ckpt = request.getfixturevalue(which)
    out = tmp_path / "model"
    main(["export", "--ckpt", str(ckpt), "--out", str(out)])
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.yaml", "README.md",
                                               "samples.png"}
    main(["sample", "--ckpt", str(ckpt), "--num", "16", "--seed", "3",
          "--out", str(tmp_path / "from_ckpt")])
    _no_pickle(monkeypatch)
    model = load_model(out)
    main(["sample", "--ckpt", str(out), "--num", "16", "--seed", "3",
          "--out", str(tmp_path / "from_export")])
    monkeypatch.undo()
    reference = load_model(ckpt)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    if model.modality == "points":  # `genlab sample` keeps the points tensor
        a = torch.load(tmp_path / "from_ckpt.pt", weights_only=True)
        b = torch.load(tmp_path / "from_export.pt", weights_only=True)
        assert a.shape == (16, 2) and torch.equal(a, b)
    else:
        a = sorted((tmp_path / "from_ckpt").glob("*.png"))
        b = sorted((tmp_path / "from_export").glob("*.png"))
        assert len(a) == 16 and [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    from genlab.callbacks.samples import fixed_seed

    with fixed_seed(5, torch.device("cpu")):
        x = reference.sample_eval(8)
    with fixed_seed(5, torch.device("cpu")):
        y = model.sample_eval(8)
    assert torch.equal(x, y)


def test_model_card_config_and_evaluate_from_the_folder(points_ckpt, tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    main(["evaluate", "--ckpt", str(points_ckpt), "--num", "200", "--out", str(report)])
    out = tmp_path / "model"
    main(["export", "--ckpt", str(points_ckpt), "--out", str(out), "--eval", str(report)])
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "genlab" and front["license"] == "mit"
    assert {"genlab", "gan", "points"} <= set(front["tags"])
    assert "![samples, seed 0](samples.png)" in card and "modes_covered" in card
    assert "| genlab | 0.1.0 |" in card and "ToyDataModule" in card
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["init_args"]["hidden"] == [16, 16]
    assert config["data"]["class_path"] == "genlab.data.toy.ToyDataModule"
    assert "wandb" not in config["genlab"]
    assert json.loads((out / "eval.json").read_text())["metrics"]
    _no_pickle(monkeypatch)
    main(["evaluate", "--ckpt", str(out), "--num", "200", "--out", str(tmp_path / "again.json")])
    monkeypatch.undo()
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["metrics"] == json.loads(report.read_text())["metrics"]


def test_a_folder_that_is_not_an_export_is_one_clear_error(tmp_path):
    with pytest.raises(GenlabError, match="not a `genlab export`"):
        load_model(tmp_path)
