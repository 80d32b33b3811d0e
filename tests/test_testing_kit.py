"""The conformance kit passes a plugin that keeps the contract and explains each breach."""

import pytest

from genlab.data.toy import ToyDataModule
from genlab.testing import ConformanceError, check_plugin

MODELS = """
    import torch
    from genlab import GenerativeModule

    class Gaussian(GenerativeModule):
        modality = "points"

        def __init__(self, dim: int = 2, lr: float = 0.1, shape_bug: bool = False,
                     unsaved_state: bool = False, naive_noise: bool = False) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.mean = torch.nn.Parameter(torch.zeros(dim))
            self.log_std = torch.nn.Parameter(torch.zeros(dim))
            self.steps = 0  # a counter kept outside the state dict: lost on resume

        def training_step(self, batch, batch_idx):
            loss = -self.log_likelihood(batch).mean()
            if self.hparams.unsaved_state:
                self.steps += 1
                loss = loss * self.steps
            if self.hparams.naive_noise:  # the same draws on every DDP process
                noise = torch.randn(len(batch["x"]), len(self.mean))
                loss = loss + (self.mean * noise).sum(1).mean()
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

        def log_likelihood(self, batch):
            dist = torch.distributions.Normal(self.mean, self.log_std.exp())
            return dist.log_prob(batch["x"]).sum(1)

        def sample(self, num: int):
            x = self.mean + self.log_std.exp() * torch.randn(num, len(self.mean))
            return x[:, :1] if self.hparams.shape_bug else x
"""


@pytest.fixture(autouse=True)
def plugin(fake_dist):
    fake_dist("genlab-kittest", {"genlab.models": {"gauss": "kit_models:Gaussian"}},
              {"kit_models": MODELS})


def data():
    return ToyDataModule(train_size=128, val_size=32, batch_size=32)


def test_a_conforming_plugin_passes_with_ddp(tmp_path):
    check_plugin("gauss", data(), tmp_path, ddp=True)


def test_wrong_sample_shape_is_named(tmp_path):
    with pytest.raises(ConformanceError, match=r"shape \(1,\); the data's are \(2,\)"):
        check_plugin("Gaussian", data(), tmp_path, init_args={"shape_bug": True})


def test_training_that_changes_nothing_is_named(tmp_path):
    with pytest.raises(ConformanceError, match="changed no parameter"):
        check_plugin("gauss", data(), tmp_path, init_args={"lr": 0.0})


def test_state_lost_on_resume_is_named(tmp_path):
    with pytest.raises(ConformanceError, match="after resuming, 'mean' differs"):
        check_plugin("gauss", data(), tmp_path, init_args={"unsaved_state": True})


def test_noise_that_ignores_the_process_split_is_named(tmp_path):
    with pytest.raises(ConformanceError, match="2-process DDP and a 1-process run"):
        check_plugin("gauss", data(), tmp_path, init_args={"naive_noise": True}, ddp=True)


def test_unregistered_model_is_named(tmp_path):
    with pytest.raises(ConformanceError, match="entry-points"):
        check_plugin("nothing_here", data(), tmp_path)
