import os
import textwrap
from pathlib import Path

# The tests' models are tiny: a second intra-op thread only adds synchronisation, and on a busy
# 2-core machine OpenMP's spinning threads made a 128-wide MLP step ~40x slower. Subprocesses
# (CLI runs, DDP workers) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch  # noqa: E402, F401
import pytest  # noqa: E402
import torch  # noqa: E402

from genlab import registry  # noqa: E402
from genlab.data.tiny import isolate_hf

torch.set_num_threads(1)
# Lightning gives its logger a StreamHandler on sys.stderr when first imported; imported here, that
# is the session's stream, not the stream of the first test using capsys (closed after it, so
# every later Lightning log line printed "--- Logging error ---" and a traceback).


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """No test reaches the Hugging Face hub or writes to the user's caches."""
    isolate_hf(monkeypatch, tmp_path / "hf")


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Install throwaway distributions on sys.path: real dist-info, found by importlib.metadata."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(dist: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
        info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {target}" for name, target in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for name, code in modules.items():
            (site / f"{name}.py").write_text(textwrap.dedent(code))
        registry.refresh()
        return site

    yield make
    registry.refresh()


TINY_MODEL = """
    import torch
    from genlab import GenerativeModule

    class {cls}(GenerativeModule):
        modality = "points"

        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.net = torch.nn.Linear(width, 2)

        def sample(self, num, **options):
            return self.net(torch.randn(num, self.net.in_features, device=self.device))
"""
