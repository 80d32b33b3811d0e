import lightning as L
import torch
import yaml
from torch.utils.data import DataLoader

from genlab import GenerativeModule
from genlab.callbacks import FlushDenormals
from genlab.cli import main

SEEN: list[bool] = []


def subnormal_survives() -> bool:
    return (torch.tensor([1e-39]) * 1.0).item() != 0.0


class Probe(L.Callback):
    """Records, at each training batch, whether subnormals survive arithmetic."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        SEEN.append(subnormal_survives())


class Line(GenerativeModule):
    modality = "points"

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def training_step(self, batch, batch_idx):
        return (batch["x"] - self.w).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


def test_subnormals_are_flushed_during_a_cpu_fit_only(tmp_path):
    SEEN.clear()
    data = DataLoader([{"x": torch.randn(2)} for _ in range(3)], batch_size=None)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[FlushDenormals(), Probe()], default_root_dir=str(tmp_path))
    assert subnormal_survives()
    trainer.fit(Line(), data)
    assert SEEN == [False, False, False]
    assert subnormal_survives()  # PyTorch's default is back after the fit


def test_genlab_fit_flushes_subnormals_on_cpu(tmp_path):
    SEEN.clear()
    config = {
        "model": {"class_path": "GAN", "init_args": {"hidden": [8], "latent_dim": 2}},
        "data": {"class_path": "ToyDataModule", "init_args": {"train_size": 64, "batch_size": 32}},
        "trainer": {"max_steps": 4, "accelerator": "cpu", "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "limit_val_batches": 0,
                    "callbacks": [{"class_path": "tests.test_denormals.Probe"}]},
        "samples": {"every_n_steps": 0},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--run.root", str(tmp_path / "runs")])
    assert SEEN == [False, False]  # a GAN batch makes 2 optimizer steps
    assert subnormal_survives()
