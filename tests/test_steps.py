"""One step for the user is one batch: progress bar, train/iteration and checkpoint names agree."""

import csv

import yaml
from lightning.pytorch.callbacks import RichProgressBar

from genlab.callbacks import steps
from genlab.callbacks.steps import ITERATION, IterationBar
from genlab.lightning_cli import GenlabCLI
from tests.test_cli import TINY


def test_a_gan_bar_ends_at_its_batches_and_names_agree(tmp_path, capsys):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))  # max_steps 12: a GAN's D+G pair is 2 steps
    cfg["trainer"].update(enable_progress_bar=True,
                          logger={"class_path": "CSVLogger", "init_args": {"save_dir": "."}})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cli = GenlabCLI(args=["fit", "--config", str(config), "--run.root", str(tmp_path / "runs")])
    bar = cli.trainer.progress_bar_callback
    assert isinstance(bar, IterationBar)
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert cli.trainer.global_step == 12
    assert task.total == task.completed == 6
    assert "-" not in task.description and task.description.strip() == "Epoch 0"
    assert "6/6" in capsys.readouterr().out
    run = tmp_path / "runs/tiny/version_0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [float(r[ITERATION]) for r in rows if r.get(ITERATION)] == [1, 2, 3, 4, 5, 6]
    names = sorted(p.name for p in (run / "checkpoints").glob("epoch=*.ckpt"))
    assert names == ["epoch=0-iteration=4.ckpt"]  # validated after batch 4 (val_check_interval)


def test_the_bar_updates_at_most_every_redraw_interval_and_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(steps, "REDRAW_SECONDS", 3600.0)  # no redraw for the time that passes
    updates = []
    real_update = RichProgressBar.on_train_batch_end
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end",
                        lambda self, *args: updates.append(args[-1]) or real_update(self, *args))
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"].update(enable_progress_bar=True, logger=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cli = GenlabCLI(args=["fit", "--config", str(config), "--run.root", str(tmp_path / "runs")])
    bar = cli.trainer.progress_bar_callback
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert updates == [0, 3, 5]  # batch indices drawn: the first, before validation (after
    # batch 4, val_check_interval) and the run's last of 6
    assert task.total == task.completed == 6
