"""GAN training across processes and interruptions: 2-process DDP (gloo, CPU) with no unused-
parameter flag, and a stopped run resumed from its checkpoint ending like an uninterrupted one."""

import lightning as L
import torch
from genlab_gan import GAN
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, Dataset

from genlab.data.toy import ToyDataModule
from genlab.testing import SameWeightsOnAllRanks

# Everything the GAN can switch on at once: both backward passes must still reach all of DDP's
# parameters, and every piece of state (EMA, d_steps, schedulers, noise) must resume.
FULL = {"hidden": [16, 16], "latent_dim": 2, "loss": "wgan-gp", "n_critic": 2, "r1_gamma": 1.0,
        "r1_interval": 2, "spectral_norm": True, "grad_clip": 1.0, "lr_schedule": "cosine",
        "lr_g": 1e-3, "lr_d": 1e-3, "ema_decay": 0.9}


def test_two_process_ddp_finishes_with_equal_weights(tmp_path):
    """Plain ``DDPStrategy``: no find_unused_parameters, and the ranks agree at the end."""
    model = GAN(**FULL)
    trainer = L.Trainer(
        max_steps=6, accelerator="cpu", devices=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        default_root_dir=tmp_path, callbacks=[SameWeightsOnAllRanks()],
        strategy=DDPStrategy(process_group_backend="gloo", start_method="spawn"))
    assert not trainer.strategy._ddp_kwargs.get("find_unused_parameters", False)
    trainer.fit(model, ToyDataModule(train_size=256, val_size=32, batch_size=16))


class Points(Dataset):
    def __init__(self):
        self.x = torch.randn(48, 2, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def run(tmp_path, callbacks=(), ckpt_path=None):
    L.seed_everything(0, verbose=False)
    model = GAN(**FULL)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, callbacks=list(callbacks))
    # Not shuffled: the resumed epoch sees the batches the uninterrupted one saw.
    trainer.fit(model, DataLoader(Points(), batch_size=8), ckpt_path=ckpt_path)
    return model, trainer


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    whole, _ = run(tmp_path / "whole")
    stopped, trainer = run(tmp_path / "stopped", callbacks=[StopAfterFirstEpoch()])
    assert trainer.current_epoch == 1 and int(stopped.d_steps) == 6
    ckpt = tmp_path / "stopped.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed, trainer = run(tmp_path / "resumed", ckpt_path=ckpt)
    assert int(resumed.d_steps) == int(whole.d_steps) == 12
    state, expected = resumed.state_dict(), whole.state_dict()
    assert state.keys() == expected.keys()
    for key in expected:  # generator, discriminator (spectral norm u/v too), EMA, d_steps
        torch.testing.assert_close(state[key], expected[key], msg=key)
    # The schedulers resumed too: both optimizers end at the same (cosine-decayed) rates.
    for opt, want in zip(trainer.optimizers, whole.trainer.optimizers):
        assert opt.param_groups[0]["lr"] == want.param_groups[0]["lr"]
