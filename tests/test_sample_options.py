"""`genlab sample` / `genlab evaluate` take their family options from the model's own sample()."""

import json
import textwrap

import lightning as L
import pytest
import torch

from genlab import registry
from genlab.cli import main
from genlab.data.toy import ToyDataModule

SPREAD = """
    import torch
    from torch import Tensor
    from genlab import GenerativeModule

    class Spread(GenerativeModule):
        modality = "points"

        def __init__(self, dim: int = 2) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.loc = torch.nn.Parameter(torch.zeros(dim))

        def training_step(self, batch, batch_idx):
            return self.loc.pow(2).sum()  # stays at the origin

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def sample(self, num: int, spread: float = 1.0, shift: Tensor | None = None) -> Tensor:
            \"\"\"Points around the learnt centre.

            Args:
                num: Number of points.
                spread: Standard deviation of the points around the centre.
                shift: Added to each point's coordinates, one per point.
            \"\"\"
            x = self.loc + spread * torch.randn(num, self.loc.numel(), device=self.device)
            return x if shift is None else x + shift[:, None]
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint of a third-party plugin whose sample() has its own options."""
    site = tmp_path_factory.mktemp("site")
    info = site / "genlab_spread-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genlab-spread\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[genlab.models]\nspread = spread_pkg:Spread\n")
    (site / "spread_pkg.py").write_text(textwrap.dedent(SPREAD))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        registry.refresh()
        model = registry.create_model("spread")
        trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu", default_root_dir=str(site))
        trainer.fit(model, datamodule=ToyDataModule(train_size=64, val_size=64, batch_size=32))
        trainer.save_checkpoint(site / "spread.ckpt")
        yield site / "spread.ckpt"
    registry.refresh()


def _points(ckpt, tmp_path, *options):
    out = tmp_path / "pts"
    main(["sample", "--ckpt", str(ckpt), "--num", "6", "--out", str(out), *options])
    return torch.load(out.with_suffix(".pt"), weights_only=True)


def test_sample_takes_the_plugins_own_option(ckpt, tmp_path):
    still = _points(ckpt, tmp_path, "--spread", "0")
    assert torch.allclose(still, still[:1].expand(6, 2))  # every point at the centre
    wide, default = _points(ckpt, tmp_path, "--spread", "5"), _points(ckpt, tmp_path)
    assert torch.allclose(wide - still, 5 * (default - still), atol=1e-5)  # same noise, x5


def test_tensor_option_is_per_sample(ckpt, tmp_path, capsys):
    still = _points(ckpt, tmp_path, "--spread", "0")
    one = _points(ckpt, tmp_path, "--spread", "0", "--shift", "2")
    assert torch.allclose(one, still + 2)
    each = _points(ckpt, tmp_path, "--spread", "0", "--shift", "[0,1,2,3,4,5]")
    assert torch.allclose(each, still + torch.arange(6.0)[:, None])
    with pytest.raises(SystemExit):
        main(["sample", "--ckpt", str(ckpt), "--num", "6", "--shift", "[1,2]"])
    assert "--shift has 2 entries; give 1 (for all) or --num=6" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_help_lists_the_plugins_options(ckpt, command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--ckpt", str(ckpt), "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--spread SPREAD Standard deviation of the points around the centre." in out
    assert "default: 1.0" in out and "--shift" in out


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_unknown_option_is_one_line_naming_the_valid_ones(ckpt, command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--ckpt", str(ckpt), "--temperature", "0.5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "Spread.sample" in err and "does not take --temperature" in err
    assert "--spread, --shift" in err


def test_evaluate_passes_the_option(ckpt, tmp_path):
    out = tmp_path / "eval.json"
    # Every point on the ring's 45-degree mode (0.707, 0.707): one mode, all of high quality.
    main(["evaluate", "--ckpt", str(ckpt), "--num", "200", "--spread", "0",
          "--shift", "0.70710678", "--out", str(out)])
    assert json.loads(out.read_text())["metrics"] == {"modes_covered": 1.0, "high_quality": 1.0}


def test_core_keeps_no_table_of_family_options():
    from pathlib import Path

    core = Path(registry.__file__).parent
    for name in ("sampling.py", "evaluation.py"):
        text = (core / name).read_text()
        for option in ("temperature", "top_k", "top_p", "guidance", "--steps", "max_new_tokens"):
            assert option not in text, f"{name} names the family option {option!r}"
