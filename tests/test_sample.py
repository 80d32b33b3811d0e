"""`genlab sample` on a tiny trained checkpoint, and the checkpoint errors it must explain."""

import pytest
import torch
import yaml

from genlab.cli import main
from tests.test_cli import TINY


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["trainer"]["logger"] = False
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(config), "--run.root", str(root)])
    return root / "tiny/version_0/checkpoints/last.ckpt"


def test_sample_points_file_and_plot(checkpoint, tmp_path):
    out = tmp_path / "pts"
    main(["sample", "--ckpt", str(checkpoint), "--num", "300", "--batch_size", "128",
          "--out", str(out)])
    points = torch.load(out.with_suffix(".pt"), weights_only=True)
    assert points.shape == (300, 2) and torch.isfinite(points).all()
    assert out.with_suffix(".png").stat().st_size > 1000
    main(["sample", "--ckpt", str(checkpoint), "--num", "300", "--out", str(tmp_path / "again")])
    assert torch.equal(points, torch.load(tmp_path / "again.pt", weights_only=True))


def test_checkpoint_records_its_plugin(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=True)
    origin = ckpt["genlab"]
    assert {k: origin[k] for k in ("plugin", "package", "version")} == {
        "plugin": "gan", "package": "genlab", "version": "0.1.0"}
    assert origin["data"]["class_path"] == "genlab.data.toy.ToyDataModule"
    assert origin["data"]["init_args"]["train_size"] == 256  # evaluate rebuilds the data


def _fails(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_missing_corrupt_and_untrusted_checkpoints(checkpoint, tmp_path, capsys):
    assert "does not exist" in _fails(["--ckpt", str(tmp_path / "no.ckpt")], capsys)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(checkpoint.read_bytes()[:2000])
    assert "not a valid checkpoint" in _fails(["--ckpt", str(corrupt)], capsys)
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["extra"] = torch.optim.SGD  # a pickled class: needs full unpickling
    pickled = tmp_path / "pickled.ckpt"
    torch.save(ckpt, pickled)
    assert "--trust_checkpoint true" in _fails(["--ckpt", str(pickled)], capsys)
    main(["sample", "--ckpt", str(pickled), "--trust_checkpoint", "true",
          "--num", "4", "--out", str(tmp_path / "trusted")])


def test_checkpoint_from_uninstalled_plugin_names_the_package(checkpoint, tmp_path, capsys):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["_class_path"] = "genlab_flow.Flow"
    ckpt["genlab"] = {"plugin": "flow", "package": "genlab-flow", "version": "1.0"}
    foreign = tmp_path / "foreign.ckpt"
    torch.save(ckpt, foreign)
    err = _fails(["--ckpt", str(foreign)], capsys)
    assert "Flow" in err and "install the package 'genlab-flow'" in err

