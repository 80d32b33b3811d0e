import pytest
import torch

from genlab import GenerativeModule
from genlab.callbacks.samples import fixed_seed
from genlab.registry import create_model


def test_modality_must_be_known():
    with pytest.raises(TypeError, match="modality is 'audio'"):
        type("Bad", (GenerativeModule,), {"modality": "audio"})


def test_log_likelihood_is_optional():
    class NoLik(GenerativeModule):
        modality = "points"

    class Lik(NoLik):
        def log_likelihood(self, batch):
            return -batch["x"].pow(2).sum(1)

    assert not NoLik().has_log_likelihood and Lik().has_log_likelihood


def test_fixed_seed_repeats_noise_and_restores_rng():
    model = create_model("gan", hidden=[8], latent_dim=2)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with fixed_seed(7, model.device):
        a = model.sample_eval(16)
    with fixed_seed(7, model.device):
        b = model.sample_eval(16)
    assert torch.equal(a, b) and a.shape == (16, 2) and torch.isfinite(a).all()
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training  # sample_eval restores train mode


def test_data_shape_mismatch_is_caught_with_both_shapes():
    from types import SimpleNamespace

    from genlab.errors import GenlabError
    from genlab.module import check_data_shape

    model = SimpleNamespace(data_shape=(1, 28, 28))
    check_data_shape(model, SimpleNamespace(data_shape=[1, 28, 28]))
    check_data_shape(model, SimpleNamespace())  # a data module that does not say: no check
    with pytest.raises(GenlabError, match=r"\(3, 32, 32\).*\(1, 28, 28\)"):
        check_data_shape(model, SimpleNamespace(data_shape=(3, 32, 32)))


def test_log_train_logs_the_first_batch_and_the_logged_ones(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader

    class Points(GenerativeModule):
        modality = "points"

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))
            self.logged = []

        def training_step(self, batch, batch_idx):
            loss = (batch["x"] - self.w).pow(2).mean()
            before = dict(self.trainer.callback_metrics)
            self.log_train({"train/loss": loss, "train/batch": float(batch_idx)})
            if "train/batch" in self.trainer.callback_metrics and (
                    before.get("train/batch") != self.trainer.callback_metrics["train/batch"]):
                self.logged.append(batch_idx)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader([{"x": torch.randn(2)} for _ in range(7)], batch_size=None)
    model = Points()
    trainer = L.Trainer(max_steps=7, log_every_n_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    trainer.fit(model, data)
    # Lightning's loggers write batches 3 and 6 (counted from 1); the first is logged too.
    assert model.logged == [0, 2, 5]
    assert trainer.callback_metrics["train/batch"].item() == 5.0
