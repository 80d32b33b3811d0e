"""`genlab` end to end on toy data: run directories, config, samples, W&B offline, errors."""

import re
import subprocess
import sys

import pytest
import torch
import yaml

from genlab.cli import main

TINY = {
    "seed_everything": 0,
    "model": {"class_path": "GAN", "init_args": {"hidden": [16, 16], "latent_dim": 2}},
    "data": {"class_path": "ToyDataModule",
             "init_args": {"train_size": 256, "val_size": 64, "batch_size": 32}},
    "trainer": {"max_steps": 12, "val_check_interval": 4, "check_val_every_n_epoch": None,
                "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                "enable_model_summary": False, "log_every_n_steps": 1},
    "samples": {"every_n_steps": 6, "num": 50},
    "sample_metrics": {"num": 100},
}


@pytest.fixture
def tiny_config(tmp_path):
    def write(**trainer):
        cfg = yaml.safe_load(yaml.safe_dump(TINY))
        cfg["trainer"].update(trainer)
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path
    return write


@pytest.fixture
def offline_env(tmp_path, monkeypatch):
    """No credentials anywhere W&B looks."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb"))


def fit(config, root, *extra):
    main(["fit", "--config", str(config), "--run.root", str(root), *extra])


def test_fit_writes_run_directory_and_twice_never_collides(tiny_config, tmp_path):
    config = tiny_config(logger=False)
    fit(config, tmp_path / "runs")
    fit(config, tmp_path / "runs")
    run0, run1 = tmp_path / "runs/tiny/version_0", tmp_path / "runs/tiny/version_1"
    assert run1.is_dir()
    saved = yaml.safe_load((run0 / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "genlab_gan.GAN"
    assert saved["model"]["init_args"]["hidden"] == [16, 16]
    assert saved["trainer"]["default_root_dir"] == str(run0)
    assert sorted(p.name for p in (run0 / "samples").iterdir()) == [
        "interpolations_step_0000006.png", "interpolations_step_0000012.png",  # GAN.pictures
        "step_0000006.png", "step_0000012.png"]
    ckpt = torch.load(run0 / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 12


def test_csv_logger_gets_config_and_metrics_in_run_dir(tiny_config, tmp_path):
    config = tiny_config(logger={"class_path": "lightning.pytorch.loggers.CSVLogger",
                                 "init_args": {"save_dir": "elsewhere"}})
    fit(config, tmp_path / "runs", "--run.name", "csvrun")
    run = tmp_path / "runs/csvrun/version_0"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_d", "train/loss_g", "val/modes_covered", "val/high_quality"} <= set(header)
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hparams["config"]["data"]["init_args"]["batch_size"] == 32


def test_wandb_without_credentials_goes_offline(tiny_config, tmp_path, offline_env, capsys):
    config = tiny_config(logger={"class_path": "lightning.pytorch.loggers.WandbLogger",
                                 "init_args": {"project": "genlab-test"}})
    fit(config, tmp_path / "runs")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "W&B offline" in line]
    assert len(lines) == 1 and "no W&B API key" in lines[0] and "wandb sync" in lines[0]
    offline_runs = list((tmp_path / "runs/tiny/version_0/wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("run-*.wandb"))
    tables = list(offline_runs[0].glob("files/media/table/samples_*.table.json"))
    assert tables, "sample plots were not logged to W&B (the samples table)"


def test_offline_reason_when_host_unreachable(monkeypatch):
    from genlab import tracking

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(tracking, "_has_credentials", lambda: True)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    assert "not reachable" in tracking.offline_reason(timeout=1)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking.offline_reason() == "WANDB_MODE=offline"


def test_a_host_that_never_answers_means_offline_after_a_bounded_wait(monkeypatch):
    import socket
    import time

    from genlab import tracking

    silent = socket.socket()  # accepts connections (the kernel's backlog), never replies
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(tracking, "_has_credentials", lambda: True)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    start = time.monotonic()
    try:
        assert "not reachable" in tracking.offline_reason(timeout=1)
    finally:
        silent.close()
    assert time.monotonic() - start < 10  # bounded by the probe's timeout, not wandb's 90 s


def test_list_shows_plugins(capsys):
    main(["list", "--check"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if re.search(r"\bgan\b", line))
    assert "genlab_gan:GAN" in row and "genlab" in row and "ok" in row


def test_help_and_list_do_not_import_lightning():
    # Start-up time: `genlab --help` and `genlab list` must not pay for importing Lightning.
    code = ("import sys; from genlab.cli import main; main(['--help']); main(['list']); "
            "print('HEAVY', sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "fit" in out and "new-plugin" in out and "genlab_gan:GAN" in out and "installed" in out
    assert "HEAVY []" in out


BAD_INPUT = [
    (["--model", "GANN"], r"model: no class named 'GANN'; installed: .*GAN"),
    (["--trainer.max_stepss", "3"], r"unrecognized arguments: --trainer.max_stepss"),
    (["--model.init_args.latent_dim", "abc"], r"model.latent_dim of genlab_gan.GAN: Expected"),
    (["--data.init_args.datset", "x"], r"data .*Option 'datset' is not accepted"),
    (["--data.init_args.batch_size", "0"], r"data.batch_size must be positive"),
    # LightningCLI would swap the GAN's two optimizers for one, or drop a lone scheduler.
    (["--optimizer", "Adam"], r"^error: --optimizer cannot replace GAN's own optimizers"),
    (["--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "2"],
     r"--lr_scheduler cannot replace GAN's own optimizers"),
]


@pytest.mark.parametrize("extra,message", BAD_INPUT, ids=[b[1][:24] for b in BAD_INPUT])
def test_bad_input_is_one_clear_line(extra, message, tiny_config, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit(tiny_config(logger=False), tmp_path / "runs", *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert re.search(message, err[-1]), err[-1]
    assert not list((tmp_path / "runs").rglob("config.yaml"))


def test_missing_and_malformed_config_files(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: GAN\n   init_args: {a: 1\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(bad)])
    assert "not valid YAML at line 3" in capsys.readouterr().err



def test_resume_names_config_values_the_checkpoint_replaced(tiny_config, tmp_path, capsys):
    config = tiny_config(logger=False, max_steps=2)
    fit(config, tmp_path / "r")
    ckpt = str(next((tmp_path / "r").rglob("last.ckpt")))
    capsys.readouterr()
    fit(config, tmp_path / "r", "--ckpt_path", ckpt, "--trainer.max_steps", "4")
    assert "not used from the config" not in capsys.readouterr().err
    fit(config, tmp_path / "r", "--ckpt_path", ckpt, "--trainer.max_steps", "4",
        "--model.init_args.lr_g", "0.01")
    note = [line for line in capsys.readouterr().err.splitlines() if "not used" in line]
    assert len(note) == 1 and "lr_g=0.01 (checkpoint: 0.0001)" in note[0], note


def test_a_refused_resume_leaves_the_run_as_it_was(tiny_config, tmp_path, capsys):
    config = tiny_config(logger=False, max_steps=2)
    fit(config, tmp_path / "r", "--model.init_args.lr_schedule", "cosine")
    ckpt_path = next((tmp_path / "r").rglob("last.ckpt"))
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["lr_schedulers"] = [{"lr_lambdas": [None]} for _ in ckpt["lr_schedulers"]]  # LambdaLR's
    torch.save(ckpt, ckpt_path)
    run = ckpt_path.parent.parent
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        fit(config, tmp_path / "r", "--ckpt_path", str(ckpt_path), "--trainer.max_steps", "4")
    assert "another learning-rate schedule" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
