"""Sharded training (FSDP2, ``--trainer.strategy fsdp2``) on 2 CPU processes with gloo.

The conformance kit's ``check_sharded``: 2 processes sharded agree with 1 process, resume
bitwise from their own checkpoint, and the checkpoint samples in one process.
"""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml

from genlab.cli import main
from genlab.data.images import ImageDataModule
from genlab.data.text import TextDataModule
from genlab.data.tiny import write_parquet, write_text
from genlab.data.toy import ToyDataModule
from genlab.errors import GenlabError
from genlab.testing import check_sharded, resolve

ROOT = Path(__file__).resolve().parents[1]
TINY = {  # a points GAN, as in test_cli.py
    "model": {"class_path": "GAN", "init_args": {"hidden": [16, 16], "latent_dim": 2}},
    "data": {"class_path": "ToyDataModule",
             "init_args": {"train_size": 256, "val_size": 64, "batch_size": 32}},
    "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
}


def points():
    return ToyDataModule(train_size=128, val_size=32, batch_size=16)


def test_gan_sharded_with_ema(tmp_path):
    sizes = check_sharded(resolve("gan"), {"hidden": [16, 16], "latent_dim": 2,
                                           "ema_decay": 0.9}, points(), tmp_path, steps=2)
    for net in ("generator", "discriminator", "generator_ema"):
        local, full = sizes[net]
        assert local <= 0.6 * full, (net, local, full)  # about 1/2 on each of 2 ranks


def test_gpt_sharded(tmp_path):
    data = TextDataModule(str(write_text(tmp_path / "t.txt")), block_size=16, batch_size=4)
    sizes = check_sharded(resolve("ar"), {
        "vocab_size": data.vocab_size, "block_size": 16, "n_layer": 2, "n_head": 2,
        "n_embd": 16, "dropout": 0.0, "max_new_tokens": 8}, data, tmp_path, steps=2)
    local, full = sizes["net"]
    assert local <= 0.6 * full, (local, full)


def test_diffusion_sharded_with_ema(tmp_path):
    sizes = check_sharded(resolve("diffusion"), {
        "data_shape": [2], "hidden": [16], "num_timesteps": 50, "sample_steps": 4,
        "trajectory_frames": 2},
        points(), tmp_path, steps=2)
    for net in ("denoiser", "ema"):
        local, full = sizes[net]
        assert local <= 0.6 * full, (net, local, full)


def tiny_fit(tmp_path, *extra, model=None):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"].update(logger=False, max_steps=2)
    cfg["model"] = model or cfg["model"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["fit", "--config", str(path), "--run.root", str(tmp_path / "r"), *extra]


VAE = {"class_path": "VAE", "init_args": {"data_shape": [1, 4, 4], "hidden": [8], "latent_dim": 2,
                                          "likelihood": "gaussian"}}


@pytest.mark.parametrize("extra, model, expected", [
    (["--trainer.strategy", "fsdp", "--trainer.devices", "2"], None,
     "--trainer.strategy fsdp needs GPUs (Lightning's FSDP refuses a CPU accelerator); on CPUs "
     "shard with --trainer.strategy fsdp2"),
    (["--trainer.strategy", "deepspeed"], None, "use --trainer.strategy ddp or fsdp2"),
    (["--trainer.strategy", "fsdp2", "--trainer.devices", "2"], VAE,
     "VAE does not support sharded training"),
], ids=["fsdp-on-cpu", "deepspeed-manual-optimization", "fsdp2-without-configure_model"])
def test_unusable_strategy_is_one_line(tmp_path, capsys, extra, model, expected):
    args = tiny_fit(tmp_path, *extra, model=model)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.yaml"))


def test_shipped_fsdp_config_trains_sharded_and_samples_in_one_process(tmp_path):
    """configs/ar/shakespeare_char_fsdp.yaml as it stands (2 CPU processes, fsdp2), shrunk."""
    text = write_text(tmp_path / "t.txt")
    tiny = ["--data.init_args.source", str(text), "--model.init_args.vocab_size", "null",
            "--model.init_args.n_layer", "1", "--model.init_args.n_embd", "16",
            "--model.init_args.n_head", "2", "--model.init_args.block_size", "16",
            "--model.init_args.max_new_tokens", "8", "--data.init_args.block_size", "16",
            "--trainer.max_steps", "4", "--trainer.val_check_interval", "2",
            "--trainer.limit_val_batches", "2", "--samples.every_n_steps", "2",
            "--trainer.logger", "false", "--run.root", str(tmp_path / "runs")]
    cmd = [sys.executable, "-m", "genlab.cli", "fit", "--config",
           str(ROOT / "configs/ar/shakespeare_char_fsdp.yaml"), *tiny]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = tmp_path / "runs/shakespeare_char_fsdp/version_0/checkpoints/last.ckpt"
    assert ckpt.is_file()
    runs = sorted(p.name for p in (tmp_path / "runs/shakespeare_char_fsdp").iterdir())
    assert runs == ["version_0"], runs  # both ranks share one run directory
    main(["sample", "--ckpt", str(ckpt), "--num", "2", "--out", str(tmp_path / "s")])
    assert len((tmp_path / "s.txt").read_text()) > 8


@pytest.mark.parametrize("args, option", [({"r1_gamma": 1.0}, "model.r1_gamma"),
                                          ({"loss": "wgan-gp"}, "wgan-gp")])
def test_gradient_penalties_are_refused_when_sharded(args, option):
    """R1 / WGAN-GP differentiate twice through D, which FSDP2 cannot: one line, not a crash."""
    gan = resolve("gan")(hidden=[8], latent_dim=2, **args)
    gan.configure_model()  # no sharding strategy: nothing happens
    gan._device_mesh = object()  # what ModelParallelStrategy sets before configure_model
    with pytest.raises(GenlabError, match=option):
        gan.configure_model()


def test_vaegan_sharded_with_ema(tmp_path):
    root = write_parquet(tmp_path / "digits", {"train": 32, "test": 8}, size=(28, 28))
    data = ImageDataModule(str(root), image_size=28, channels=1, batch_size=4, num_workers=0)
    sizes = check_sharded(resolve("vaegan"), {"image_size": 28, "channels": 1, "latent_dim": 4,
                                              "width": 4, "decoder_norm": "none",
                                              "grad_clip": 1.0},
                          data, tmp_path / "kit", steps=2)
    for net in ("encoder", "decoder", "encoder_ema", "decoder_ema"):
        local, full = sizes[net]
        assert local <= 0.6 * full, (net, local, full)


def test_add_sharded_student_and_heads(tmp_path):
    """ADD: student, its EMA and the heads sharded; the frozen teacher whole on each process."""
    data = points()
    L.seed_everything(0, verbose=False)
    teacher = resolve("diffusion")(data_shape=[2], hidden=[16], emb_dim=8, num_timesteps=50,
                                   sample_steps=4, trajectory_frames=0)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(teacher, data)
    trainer.save_checkpoint(tmp_path / "teacher.ckpt")
    sizes = check_sharded(resolve("add"), {
        "teacher_ckpt": str(tmp_path / "teacher.ckpt"), "head_width": 8, "lr": 1e-3,
        "lr_disc": 1e-3, "r1_gamma": 0.0}, data, tmp_path / "kit", steps=2)
    for net in ("student", "student_ema", "heads"):
        local, full = sizes[net]
        assert local <= 0.6 * full, (net, local, full)
