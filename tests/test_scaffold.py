"""`genlab new-plugin`: the package it writes installs, lists, trains and passes its own test."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from genlab.cli import main
from genlab.errors import GenlabError
from genlab.scaffold import new_plugin


def test_bad_names_and_existing_directories(tmp_path):
    for name in ("MyFlow", "my-flow", "class", "1flow"):
        with pytest.raises(GenlabError, match="lower-case Python identifier"):
            new_plugin(name, tmp_path / name)
    (tmp_path / "taken").mkdir()
    with pytest.raises(GenlabError, match="already exists"):
        new_plugin("taken", tmp_path / "taken")


def run(python, *args, cwd):
    done = subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_new_plugin_installs_lists_fits_and_passes_its_test(tmp_path, capsys):
    main(["new-plugin", "myflow", "--dir", str(tmp_path / "myflow")])
    assert "pip install -e" in capsys.readouterr().out
    # A fresh environment that sees this one's packages (genlab), as a user's venv would.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    inner = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                cwd=tmp_path).strip()
    outer = sysconfig.get_paths()["purelib"]
    Path(inner, "outer.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-build-isolation", "-e", tmp_path / "myflow", cwd=tmp_path)
    assert "myflow" in run(python, "-m", "genlab.cli", "list", cwd=tmp_path)
    plugin = tmp_path / "myflow"
    run(python, "-m", "genlab.cli", "fit", "--config", "configs/myflow.yaml",
        "--trainer.max_steps", "20", "--trainer.val_check_interval", "10",
        "--trainer.enable_progress_bar", "false", cwd=plugin)
    assert list((plugin / "runs/myflow/version_0/checkpoints").glob("last.ckpt"))
    assert "1 passed" in run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                             cwd=plugin)
