"""Every shipped YAML parses and builds (LightningCLI with run=False), so renames cannot rot it."""

from pathlib import Path

import pytest

from genlab.cli import GenlabCLI

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_builds(config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cli = GenlabCLI(args=["--config", str(config), "--run.root", str(tmp_path)], run=False)
    assert cli.model.modality in ("image", "points", "tokens")
    assert cli.trainer.default_root_dir.startswith(str(tmp_path))
