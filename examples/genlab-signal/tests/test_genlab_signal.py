"""genlab-signal through the ordinary commands: a modality, model and data the core never names."""

import json
import wave

import numpy as np
import pytest
import torch
import yaml
from genlab_signal import SignalVAE, SinesDataModule, SpectralDistance
from genlab_signal.data import sum_of_sines

from genlab.cli import main
from genlab.modality import get_modality, modality_names
from genlab.testing import check_plugin

TINY = {"length": 32, "latent_dim": 4, "hidden": [32]}
DATA = {"length": 32, "max_freq": 4, "train_size": 256, "val_size": 64, "batch_size": 32}


def test_signal_modality_is_registered_like_the_cores():
    assert {"image", "points", "tokens", "signal"} <= set(modality_names())
    assert type(get_modality("signal")).__name__ == "SignalModality"
    assert SignalVAE.modality == "signal"


def test_conformance(tmp_path):
    check_plugin("signal_vae", SinesDataModule(**DATA), tmp_path, init_args=TINY)


def test_pictures_hook_draws_reconstructions():
    model = SignalVAE(**TINY)
    x = sum_of_sines(8, 32, 1, 4, torch.Generator().manual_seed(0))
    pictures = model.pictures({"x": x})
    assert set(pictures) == {"reconstructions"} and pictures["reconstructions"].size[0] > 100


def test_spectral_distance_tells_frequencies_apart():
    gen = torch.Generator().manual_seed(0)
    real = sum_of_sines(200, 32, 1, 4, gen)
    same, other = SpectralDistance(32), SpectralDistance(32)
    t = torch.arange(32) / 32
    for metric, fake in ((same, real), (other, torch.sin(2 * torch.pi * 9 * t).expand(50, 32))):
        metric.update(real, real=True)
        metric.update(fake)
    assert same.compute()["distance"] < 1e-6 and same.compute()["dominant_freq_tv"] < 1e-6
    assert other.compute()["dominant_freq_tv"] > 0.99  # every dominant frequency is 9, not 1..4


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb"))


def test_fit_sample_evaluate_and_log_through_the_cli(tmp_path, offline_wandb):
    config = {
        "seed_everything": 0,
        "model": {"class_path": "SignalVAE", "init_args": TINY},
        "data": {"class_path": "SinesDataModule", "init_args": DATA},
        "trainer": {"max_steps": 8, "val_check_interval": 4, "check_val_every_n_epoch": None,
                    "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "log_every_n_steps": 1,
                    "logger": {"class_path": "lightning.pytorch.loggers.WandbLogger",
                               "init_args": {"project": "genlab-signal-test"}}},
        "samples": {"every_n_steps": 4},
        "sample_metrics": {"num": 64},
    }
    path = tmp_path / "sines.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--run.root", str(tmp_path / "runs")])
    run = tmp_path / "runs/sines/version_0"
    ckpt = run / "checkpoints/last.ckpt"
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "reconstructions_step_0000004.png", "reconstructions_step_0000008.png",
        "step_0000004.png", "step_0000008.png"]

    out = tmp_path / "drawn"
    main(["sample", "--ckpt", str(ckpt), "--num", "6", "--lowpass", "1", "--out", str(out)])
    signals = np.load(out.with_suffix(".npy"))
    assert signals.shape == (6, 32) and out.with_suffix(".png").stat().st_size > 1000
    spectrum = np.abs(np.fft.rfft(signals, axis=1))
    assert spectrum[:, 2:].max() < 1e-4 * spectrum[:, :2].max()  # --lowpass reached sample()
    with wave.open(str(out.with_suffix(".wav"))) as f:
        assert (f.getnframes(), f.getsampwidth(), f.getframerate()) == (6 * 32, 2, 8000)

    report = tmp_path / "eval.json"
    main(["evaluate", "--ckpt", str(ckpt), "--num", "64", "--temperature", "0.5",
          "--out", str(report)])
    metrics = json.loads(report.read_text())["metrics"]
    assert 0 <= metrics["spectral_distance"] <= 1
    assert 0 <= metrics["spectral_dominant_freq_tv"] <= 1

    # fit's run, and evaluate's addition to it (offline, W&B writes a second folder, same id)
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len({p.name.rsplit("-", 1)[1] for p in offline}) == 1
    assert any(p.glob("files/media/table/samples_*.table.json") for p in offline)
    assert any(p.glob("files/media/audio/samples_audio_*.wav") for p in offline)
    assert any(p.glob("files/media/images/pictures/reconstructions_*.png") for p in offline)
