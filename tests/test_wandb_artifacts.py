"""`--ckpt wandb:entity/project/name:alias`: a W&B model artifact instead of a path (no network:
wandb.Api is a fake that hands out a checkpoint trained here)."""

import shutil
from pathlib import Path

import pytest
import torch
import wandb

import genlab.tracking
from genlab.cli import main
from tests.test_sample import checkpoint  # noqa: F401  (the module's trained tiny checkpoint)


class FakeApi:
    """``wandb.Api`` whose every artifact holds ``files``; records the refs asked for."""

    def __init__(self, files, asked):
        self.files, self.asked = files, asked

    def artifact(self, ref):
        self.asked.append(ref)
        return self

    def download(self, root):
        Path(root).mkdir(parents=True, exist_ok=True)
        for f in self.files:
            shutil.copy(f, Path(root) / f.name)
        return root


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(genlab.tracking, "server_problem", lambda timeout=3.0: None)
    asked = []

    def serve(*files):
        monkeypatch.setattr(wandb, "Api", lambda *a, **k: FakeApi(files, asked))
        return asked
    return serve


def test_sample_from_a_wandb_artifact_equals_the_path(checkpoint, server, tmp_path):  # noqa: F811
    asked = server(checkpoint)
    main(["sample", "--ckpt", str(checkpoint), "--num", "50", "--out", str(tmp_path / "path")])
    main(["sample", "--ckpt", "wandb:ent/proj/model-abc:best", "--num", "50",
          "--out", str(tmp_path / "artifact")])
    assert asked == ["ent/proj/model-abc:best"]  # downloaded once, though read twice
    assert torch.equal(torch.load(tmp_path / "path.pt", weights_only=True),
                       torch.load(tmp_path / "artifact.pt", weights_only=True))
    (cached,) = (tmp_path / "cache/genlab/wandb").rglob("*.ckpt")
    main(["evaluate", "--ckpt", "wandb:ent/proj/model-abc:best", "--num", "100"])
    assert cached.with_suffix(".eval.json").is_file()  # the report sits beside the download
    main(["export", "--ckpt", "wandb:ent/proj/model-abc:best", "--out", str(tmp_path / "hub")])
    assert (tmp_path / "hub/model.safetensors").is_file() and len(asked) == 1


def _fails(args, capsys):
    with pytest.raises(SystemExit):
        main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_an_artifact_without_a_checkpoint_is_one_line(server, tmp_path, capsys):
    other = tmp_path / "table.json"
    other.write_text("{}")
    server(other)
    err = _fails(["sample", "--ckpt", "wandb:ent/proj/dataset:v0"], capsys)
    assert "holds no .ckpt" in err


def test_no_credentials_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(genlab.tracking, "_has_credentials", lambda: False)
    err = _fails(["evaluate", "--ckpt", "wandb:ent/proj/model-abc:best"], capsys)
    assert "cannot download W&B artifact ent/proj/model-abc:best: no W&B API key" in err
