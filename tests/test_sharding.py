"""Sharded training (FSDP2, ``--trainer.strategy fsdp2``) on 2 CPU processes with gloo.

The conformance kit's ``check_sharded``: 2 processes sharded agree with 1 process, resume
bitwise from their own checkpoint, and the checkpoint samples in one process.
"""

import pytest

from genlab.data.text import TextDataModule
from genlab.data.tiny import write_text
from genlab.data.toy import ToyDataModule
from genlab.errors import GenlabError
from genlab.testing import check_sharded, resolve


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
