"""`--channels_last.enabled true` trains conv nets in NHWC order and changes nothing else."""

import lightning as L
import torch
import yaml
from genlab_gan import GAN

from genlab.callbacks import ChannelsLast, SampleMetrics
from genlab.cli import main
from genlab.data.images import ImageDataModule
from genlab.data.tiny import write_parquet
from genlab.lightning_cli import GenlabCLI
from tests.test_cli import TINY

CONV = {"image_size": 28, "channels": 3, "latent_dim": 4, "width": 4}


class SeesBatches(L.Callback):
    """Records whether each training batch reached the step in channels-last order."""

    def __init__(self):
        self.orders = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.orders.append(batch["x"].is_contiguous(memory_format=torch.channels_last))


def fit_gan(tmp_path, enabled):
    L.seed_everything(0, verbose=False)
    data = ImageDataModule(str(write_parquet(tmp_path / "digits", {"train": 32, "test": 8},
                                             size=(28, 28), mode="RGB")),
                           image_size=28, channels=3, batch_size=8, num_workers=0)
    model, seen = GAN(**CONV), SeesBatches()
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[ChannelsLast(enabled), seen])
    trainer.fit(model, datamodule=data)
    return model, seen.orders


def test_weights_and_batches_go_channels_last_and_training_is_unchanged(tmp_path):
    plain, plain_orders = fit_gan(tmp_path / "plain", enabled=False)
    nhwc, nhwc_orders = fit_gan(tmp_path / "nhwc", enabled=True)
    convs = [p for p in nhwc.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert nhwc_orders and all(nhwc_orders) and not any(plain_orders)
    for (name, a), b in zip(plain.state_dict().items(), nhwc.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name  # same values, other order


def test_the_cli_switch_reaches_the_trainer(tmp_path):
    root = write_parquet(tmp_path / "digits", {"train": 32, "test": 8}, size=(28, 28), mode="RGB")
    cfg = {"model": {"class_path": "GAN", "init_args": CONV},
           "data": {"class_path": "ImageDataModule",
                    "init_args": {"source": str(root), "image_size": 28, "channels": 3,
                                  "batch_size": 8, "num_workers": 0}},
           "trainer": {"max_steps": 2, "accelerator": "cpu", "logger": False,
                       "limit_val_batches": 0, "enable_progress_bar": False},
           "samples": {"every_n_steps": 0}}
    (tmp_path / "conv.yaml").write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(tmp_path / "conv.yaml"), "--run.root", str(tmp_path / "runs"),
          "--channels_last.enabled", "true"])
    ckpt = torch.load(next((tmp_path / "runs").rglob("last.ckpt")), weights_only=True)
    conv = next(v for k, v in ckpt["state_dict"].items() if v.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_switched_off_callbacks_are_not_installed(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))

    def callbacks(*extra):
        cli = GenlabCLI(args=["--config", str(config), "--run.root", str(tmp_path / "runs"),
                              *extra], run=False)
        return {type(c) for c in cli.trainer.callbacks}

    off = callbacks("--sample_metrics.num", "0")  # channels_last is off by default
    assert ChannelsLast not in off and SampleMetrics not in off
    on = callbacks("--channels_last.enabled", "true")
    assert ChannelsLast in on and SampleMetrics in on
