"""``genlab new-plugin NAME``: write a small installable model-plugin package that already works.

The package holds a Gaussian-mixture model on 2-D points (trained by maximum likelihood, a few
seconds on CPU) with its own pictures (the ``pictures`` hook) and conformance case, registered
under ``genlab.models``, a config and a test running the conformance kit on that case. Replace the
model with yours; the rest stays.
"""

from __future__ import annotations

import keyword
import textwrap
from pathlib import Path

from jsonargparse import ArgumentError, ArgumentParser

from genlab.errors import GenlabError

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "genlab-{name}"
version = "0.1.0"
description = "{cls}: a genlab model plugin."
requires-python = ">=3.10"
dependencies = ["genlab"]

[project.optional-dependencies]
test = ["pytest>=8"]

# genlab finds the model through this entry point; configs name it by class name: {cls}.
[project.entry-points."genlab.models"]
{name} = "{name}.model:{cls}"

[tool.setuptools]
packages = ["{name}"]
'''

MODEL = '''\
"""{cls}: a mixture of Gaussians on points, fitted by maximum likelihood."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from genlab import ConformanceCase, GenerativeModule
from genlab.visualize import scatter_plot


class {cls}(GenerativeModule):
    """A ``components``-Gaussian mixture with diagonal covariances.

    Args:
        data_dim: Dimension of a data point.
        components: Number of mixture components.
        lr: Adam learning rate.
    """

    modality = "points"

    def __init__(self, data_dim: int = 2, components: int = 16, lr: float = 5e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_shape = (data_dim,)
        self.logits = torch.nn.Parameter(torch.zeros(components))
        self.means = torch.nn.Parameter(3 * torch.randn(components, data_dim))
        self.log_stds = torch.nn.Parameter(torch.zeros(components, data_dim))

    def log_likelihood(self, batch: dict[str, Tensor]) -> Tensor:
        x = batch["x"][:, None, :]  # (B, 1, D) against (K, D) components
        z = (x - self.means) / self.log_stds.exp()
        log_normal = (-0.5 * z**2 - self.log_stds - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(self.logits.log_softmax(0) + log_normal, dim=1)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = -self.log_likelihood(batch).mean()
        self.log_train({{"train/nll": loss}})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def sample(self, num: int) -> Tensor:
        component = torch.multinomial(self.logits.softmax(0), num, replacement=True)
        noise = torch.randn(num, self.means.shape[1], device=self.device)
        return self.means[component] + self.log_stds[component].exp() * noise

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """Saved and logged with the samples: the components' means over training points."""
        return {{"means": scatter_plot(self.means, real=batch["x"], title="component means")}}

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """The tiny case genlab's conformance kit runs on (tests/test_{name}.py)."""
        from genlab.data.toy import ToyDataModule

        data = ToyDataModule(train_size=256, val_size=64, batch_size=32)
        return ConformanceCase(data, {{"components": 4}})
'''

CONFIG = '''\
# genlab fit --config configs/{name}.yaml
seed_everything: 0
model:
  class_path: {cls}
  init_args:
    components: 16
data:
  class_path: ToyDataModule
  init_args:
    dataset: ring8
    batch_size: 256
trainer:
  max_steps: 1500
  val_check_interval: 500
  check_val_every_n_epoch: null
  logger: false
samples:
  every_n_steps: 500
'''

TEST = '''\
"""{cls} keeps genlab's plugin contract (the conformance kit)."""

from genlab.testing import check_case


def test_conformance(tmp_path):
    check_case("{name}", tmp_path)  # on {cls}.conformance_case
'''

README = '''\
# genlab-{name}

A [genlab](https://pypi.org/project/genlab/) model plugin: `{cls}`.

```bash
pip install -e .            # registers the entry point; `genlab list` shows {name}
genlab fit --config configs/{name}.yaml
pip install -e ".[test]" && pytest -q
```
'''


def class_name(name: str) -> str:
    """``my_flow`` -> ``MyFlow``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def new_plugin(name: str, directory: str | Path | None = None) -> Path:
    """Write the plugin package ``name`` into ``directory`` (default ``./<name>``); returns it.

    Args:
        name: Lower-case Python identifier: the package, entry-point and config name.
        directory: Where to write; must not exist yet (nothing of the user's is overwritten).
    """
    if not name.isidentifier() or keyword.iskeyword(name) or name != name.lower():
        raise GenlabError(f"plugin name {name!r} must be a lower-case Python identifier "
                          f"(e.g. myflow or my_flow)")
    root = Path(directory or name)
    if root.exists():
        raise GenlabError(f"{root} already exists; choose another --dir or remove it")
    values = {"name": name, "cls": class_name(name)}
    files = {
        "pyproject.toml": PYPROJECT, "README.md": README, f"{name}/model.py": MODEL,
        f"{name}/__init__.py": f'from {name}.model import {{cls}}\n\n__all__ = ["{{cls}}"]\n',
        f"configs/{name}.yaml": CONFIG, f"tests/test_{name}.py": TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(template).format(**values))
    return root


def new_plugin_main(argv: list[str]) -> None:
    """Run ``genlab new-plugin`` with command-line arguments ``argv``."""
    parser = ArgumentParser(prog="genlab new-plugin", exit_on_error=False,
                            description="Write a working model-plugin package to start from.")
    parser.add_argument("name", type=str, help="Plugin name (lower-case identifier).")
    parser.add_argument("--dir", type=str | None, default=None, help="Target directory.")
    try:
        args = parser.parse_args(argv)
    except ArgumentError as err:
        raise GenlabError(f"{err} (see `genlab new-plugin --help`)") from None
    root = new_plugin(args.name, args.dir)
    print(f"wrote {root}/: pip install -e {root} && genlab list && "
          f"genlab fit --config {root}/configs/{args.name}.yaml")
