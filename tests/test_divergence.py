"""A NaN in training stops the run with the step, the term and the last good checkpoint, or is
skipped and counted."""

import pytest
import torch
import yaml

from genlab.cli import main

MODEL = """
    import torch
    from genlab import GenerativeModule

    class Unstable(GenerativeModule):
        modality = "points"

        def __init__(self, nan_from_step: int = 3) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.mean = torch.nn.Parameter(torch.zeros(2))

        def training_step(self, batch, batch_idx):
            loss = (batch["x"] - self.mean).pow(2).mean()
            if self.global_step >= self.hparams.nan_from_step:
                loss = loss * float("nan")
            self.log_train({"train/recon": loss})  # logs step 0 only: log_every_n_steps is 50
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.1)

        def sample(self, num: int):
            return self.mean + torch.randn(num, 2)
"""


@pytest.fixture(autouse=True)
def unstable(fake_dist):
    fake_dist("genlab-nantest", {"genlab.models": {"unstable": "nan_models:Unstable"}},
              {"nan_models": MODEL})


def fit(tmp_path, *extra, nan_from_step=3):
    config = {"model": {"class_path": "Unstable", "init_args": {"nan_from_step": nan_from_step}},
              "data": {"class_path": "ToyDataModule",
                       "init_args": {"train_size": 256, "val_size": 32, "batch_size": 16}},
              "trainer": {"max_steps": 8, "logger": False, "enable_progress_bar": False,
                          "enable_model_summary": False, "limit_val_batches": 0,
                          "accelerator": "cpu"},
              "samples": {"every_n_steps": 0}, "sample_metrics": {"num": 0}}
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path), "--run.root", str(tmp_path / "runs"), *extra])
    return tmp_path / "runs/nan/version_0"


def test_nan_stops_with_step_term_and_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit(tmp_path)
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "diverged at step 3" in line and "last good checkpoint" in line
    assert "(non-finite: train/recon)" in line  # this step's term, though not logged at step 3
    assert "Traceback" not in line


def test_skip_mode_drops_nan_updates_and_keeps_weights_finite(tmp_path):
    run = fit(tmp_path, "--divergence.on_divergence", "skip", "--divergence.max_skips", "100")
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert torch.isfinite(ckpt["state_dict"]["mean"]).all()
    state = next(v for k, v in ckpt["callbacks"].items() if "DivergenceGuard" in k)
    assert state["skipped"] == 5  # steps 3..7 of 8 had NaN gradients
