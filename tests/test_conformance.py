"""Every in-tree plugin passes the conformance kit, as a third party's would have to."""

import pytest

from genlab.data.images import ImageDataModule
from genlab.data.text import TextDataModule
from genlab.data.tiny import write_parquet, write_text
from genlab.data.toy import ToyDataModule
from genlab.testing import check_plugin

BOTH = ("bf16-mixed", "16-mixed")  # fp16 with its GradScaler, where the family allows it


def points():
    return ToyDataModule(train_size=128, val_size=32, batch_size=32)


def images(tmp_path, size, **options):
    root = write_parquet(tmp_path / "digits", {"train": 32, "test": 8}, size=(size, size))
    return ImageDataModule(str(root), image_size=size, channels=1, batch_size=8,
                           num_workers=0, **options)


def test_gan_on_points_with_ddp(tmp_path):
    check_plugin("gan", points(), tmp_path, init_args={"hidden": [16], "latent_dim": 2},
                 ddp=True, precisions=BOTH)


def test_conditional_conv_gan_on_images(tmp_path):
    check_plugin("gan", images(tmp_path, 28), tmp_path, init_args={
        "image_size": 28, "channels": 1, "width": 8, "latent_dim": 8, "num_classes": 3})


def test_vae_on_binarized_images_with_ddp(tmp_path):
    check_plugin("vae", images(tmp_path, 8, binarize=True), tmp_path, ddp=True,
                 precisions=BOTH, init_args={
        "data_shape": [1, 8, 8], "hidden": [16], "latent_dim": 2, "val_samples": 2,
        "eval_samples": 4, "eval_chunk": 4})


def test_gpt_on_text_with_ddp(tmp_path):
    data = TextDataModule(str(write_text(tmp_path / "t.txt")), block_size=16, batch_size=4)
    check_plugin("ar", data, tmp_path, ddp=True, precisions=BOTH, init_args={
        "vocab_size": data.vocab_size, "block_size": 16, "n_layer": 1, "n_head": 2,
        "n_embd": 16, "dropout": 0.0, "max_new_tokens": 8})


@pytest.mark.parametrize("kind", ["points", "images"])
def test_diffusion(tmp_path, kind):
    if kind == "points":
        data, args = points(), {"data_shape": [2], "hidden": [16]}
    else:
        data = images(tmp_path, 8)
        args = {"data_shape": [1, 8, 8], "channels": 8, "channel_mults": [1, 2],
                "num_res_blocks": 1, "attention_levels": [1]}
    check_plugin("diffusion", data, tmp_path, ddp=kind == "points", precisions=BOTH,
                 init_args={**args, "num_timesteps": 50, "sample_steps": 4})
