"""W&B tracking, read back from offline runs: metadata, resume into the same run, artifacts,
comparable sample grids, preemption by signal."""

import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from genlab.cli import main
from tests.test_cli import TINY
from tests.wandb_records import offline_runs

ROOT = Path(__file__).resolve().parents[1]

WANDB = {"class_path": "lightning.pytorch.loggers.WandbLogger",
         "init_args": {"project": "genlab-test", "log_model": True}}


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))

    def write(**trainer):
        cfg = yaml.safe_load(yaml.safe_dump(TINY))
        cfg["trainer"].update({"logger": WANDB, **trainer})
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path
    return write


def fit(path, root, *extra):
    main(["fit", "--config", str(path), "--run.root", str(root), *extra])
    return root / "tiny" / "version_0"


def test_run_config_holds_resolved_config_versions_and_hardware(config, tmp_path):
    run = offline_runs(fit(config(), tmp_path / "runs"))[0]
    assert run.config["config"]["model"]["init_args"]["hidden"] == [16, 16]
    meta = run.config["genlab"]
    assert meta["genlab_version"] == "0.1.0" and meta["plugin"]["plugin"] == "gan"
    assert meta["hardware"]["cores"] == os.cpu_count() and "torch" in meta["hardware"]


def test_resumed_fit_continues_the_same_run_with_later_steps(config, tmp_path):
    path = config()
    run_dir = fit(path, tmp_path / "runs")
    fit(path, tmp_path / "runs", "--ckpt_path", "last", "--trainer.max_steps", "24")
    first, second = offline_runs(run_dir)
    assert first.id == second.id
    assert min(second.steps()) > max(first.steps())  # one x-axis, continued
    assert not (tmp_path / "runs/tiny/version_1").exists()  # resumed in place
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 24 and ckpt["genlab"]["wandb"]["id"] == first.id


def test_checkpoints_are_queued_as_artifacts_offline(config, tmp_path):
    run = offline_runs(fit(config(), tmp_path / "runs"))[0]
    assert any("latest" in aliases for _, aliases in run.artifacts)
    # the checkpoints, and the samples table's increments
    assert {name for name, _ in run.artifacts} == {f"model-{run.id}", f"run-{run.id}-incr-samples"}


def test_evaluate_attaches_to_the_run_that_wrote_the_checkpoint(config, tmp_path):
    run_dir = fit(config(), tmp_path / "runs")
    main(["evaluate", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "--num", "100"])
    first, evaluated = offline_runs(run_dir)
    assert evaluated.id == first.id
    assert 0 <= evaluated.summary["eval/modes_covered"] <= 8


def test_sample_grid_is_the_same_for_the_same_weights(tmp_path):
    from genlab_gan import GAN

    from genlab.callbacks import SampleLogger
    from genlab.data.toy import ToyDataModule

    model = GAN(hidden=[8], latent_dim=2)
    loop = type("L", (), {"epoch_loop": type("E", (), {"_batches_that_stepped": 5})})
    trainer = type("T", (), {"is_global_zero": True, "global_step": 5, "loggers": [],
                             "fit_loop": loop, "default_root_dir": str(tmp_path),
                             "datamodule": ToyDataModule()})
    logger = SampleLogger(num=64, seed=3)
    first = logger.log_samples(trainer, model).read_bytes()
    torch.randn(10)  # the training RNG moves on between logs
    trainer.default_root_dir = str(tmp_path / "again")
    assert logger.log_samples(trainer, model).read_bytes() == first


class SendSignal(L.Callback):
    """Send this process ``signum`` once training reaches ``step`` (a preemption, simulated)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_a_checkpoint_and_resume_finishes(tmp_path, signum, capsys):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"].update(logger=False, max_steps=20, callbacks=[
        {"class_path": "tests.test_tracking.SendSignal",
         "init_args": {"step": 8, "signum": int(signum)}}])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        run_dir = fit(path, tmp_path / "runs")
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert "--ckpt_path last" in capsys.readouterr().err
    saved = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert saved["global_step"] in (8, 10)  # the step reached when the signal was seen
    cfg["trainer"]["callbacks"] = None
    path.write_text(yaml.safe_dump(cfg))
    fit(path, tmp_path / "runs", "--ckpt_path", "last")
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 20


POINT_MODEL = """
    import torch
    from genlab import GenerativeModule

    class Shift(GenerativeModule):
        modality = "points"

        def __init__(self) -> None:
            super().__init__()
            self.mean = torch.nn.Parameter(torch.zeros(2))

        def training_step(self, batch, batch_idx):
            loss = (batch["x"] - self.mean).pow(2).mean()
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def sample(self, num: int):
            return self.mean + torch.randn(num, 2)
"""


def test_ddp_fit_makes_one_wandb_run_and_exits(config, tmp_path, fake_dist):
    fake_dist("genlab-ddptest", {"genlab.models": {"shift": "ddp_models:Shift"}},
              {"ddp_models": POINT_MODEL})
    cfg = yaml.safe_load(config().read_text())
    cfg["model"] = {"class_path": "Shift"}
    cfg["trainer"].update(strategy={"class_path": "lightning.pytorch.strategies.DDPStrategy",
                                    "init_args": {"process_group_backend": "gloo",
                                                  "start_method": "spawn"}},
                          devices=2, max_steps=6)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = fit(path, tmp_path / "runs")
    runs = offline_runs(run_dir)
    assert len(runs) == 1 and max(runs[0].steps()) > 0
    assert (run_dir / "checkpoints/last.ckpt").is_file()


def test_quickstart_offline_holds_learning_rate_iterations_and_best_model(tmp_path, monkeypatch):
    """The shipped quickstart, shortened: what a W&B user looks for is in the offline run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    root = tmp_path / "runs"
    main(["fit", "--config", str(ROOT / "configs/quickstart.yaml"), "--run.root", str(root),
          "--trainer.max_steps", "24", "--trainer.val_check_interval", "6",
          "--trainer.log_every_n_steps", "2", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--samples.every_n_steps", "0",
          "--sample_metrics.num", "200", "--data.init_args.batch_size", "32"])
    run_dir = root / "quickstart/version_0"
    run = offline_runs(run_dir)[0]
    lr_g = [row["lr-Adam"] for row in run.history if "lr-Adam" in row]
    assert len(lr_g) >= 3 and lr_g[0] > lr_g[-1] > 0  # the cosine schedule, step by step
    iterations = [row["train/iteration"] for row in run.history if "train/iteration" in row]
    assert max(iterations) == 12  # 24 optimizer steps of a GAN are 12 batches
    assert any("best" in aliases for _, aliases in run.artifacts)
    assert {name for name, _ in run.artifacts} == {f"model-{run.id}", f"run-{run.id}-incr-samples"}
    assert any(row.get("samples/_type") == "incremental-table-file" for row in run.history)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["logger"]
    assert saved["init_args"]["mode"] is None and saved["init_args"]["offline"] is False
    assert saved["init_args"]["log_model"] is True


def test_validate_of_a_checkpoint_joins_the_fit_group(config, tmp_path):
    path = config()
    run_dir = fit(path, tmp_path / "runs")
    main(["validate", "--config", str(path), "--run.root", str(tmp_path / "runs"),
          "--ckpt_path", str(run_dir / "checkpoints/last.ckpt")])
    (fitted,) = offline_runs(run_dir)
    (validated,) = offline_runs(tmp_path / "runs/tiny/version_1")
    assert fitted.group == validated.group == "tiny/version_0"
    assert (fitted.job_type, validated.job_type) == ("", "validate")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["logger"]
    assert saved["init_args"].get("group") is None  # a rerun from config.yaml: its own group


def test_samples_are_one_incremental_table_with_step_seed_and_label(config, tmp_path):
    run_dir = fit(config(), tmp_path / "runs")
    run = offline_runs(run_dir)[0]
    logged = [row for row in run.history if "samples/_type" in row]
    assert [row["samples/_type"] for row in logged] == ["incremental-table-file"] * 2
    assert [row["samples/increment_num"] for row in logged] == [0, 1]  # one table, grown
    assert [row["samples/nrows"] for row in logged] == [1, 2]
    media = run_dir / "wandb" / next((run_dir / "wandb").glob("offline-run-*")).name / "files"
    for row in logged:
        increment = json.loads((media / row["samples/path"]).read_text())
        assert increment["columns"] == ["step", "seed", "label", "sample"]
        (step, seed, label, _), = increment["data"]
        assert (step, seed, label) == (row["trainer/global_step"], 0, None)  # unconditional


def test_conditional_samples_are_drawn_with_labels_in_turn():
    from genlab_gan import GAN

    from genlab.callbacks.samples import _labels

    assert _labels(GAN(hidden=[8], latent_dim=2, num_classes=3), 5).tolist() == [0, 1, 2, 0, 1]
    assert _labels(GAN(hidden=[8], latent_dim=2), 5) is None


def test_text_samples_are_rows_of_the_same_table():
    from genlab.modality import log_sample_table

    class Logger:
        logged = []

        def log_metrics(self, metrics, step):
            self.logged.append((step, metrics["samples"]))

    logger = Logger()
    log_sample_table(logger, ["ab", "cd"], 3, seed=0, labels=torch.tensor([1, 2]))
    log_sample_table(logger, ["ef", "gh"], 7, seed=0, labels=torch.tensor([1, 2]))
    (_, first), (_, second) = logger.logged
    assert first is second and first.log_mode == "INCREMENTAL"
    assert second.data == [[3, 0, "1", "ab"], [3, 0, "2", "cd"], [7, 0, "1", "ef"],
                           [7, 0, "2", "gh"]]
