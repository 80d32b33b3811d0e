"""pix2pix: paired data, the image-to-image networks, and the plugin's sample / pictures / errors.

The conformance kit (exact resume, 2-process DDP, bf16) runs on it from tests/test_plugins.py.
"""

import lightning as L
import pytest
import torch
from genlab_pix2pix import Pix2Pix
from torch.utils.data import DataLoader

from genlab.data.image_transforms import DecodedRows
from genlab.data.paired import PairedImageDataModule, source_of
from genlab.data.tiny import write_parquet
from genlab.errors import GenlabError
from genlab.nn import PairDiscriminator, UNetGenerator


def _square(size=8, lo=2, hi=6):
    x = -torch.ones(1, 1, size, size)
    x[..., lo:hi, lo:hi] = 1
    return x


def test_edges_are_the_outline_and_erosion_thins():
    x = _square()
    edges = source_of(x, "edges")
    ring = torch.zeros(8, 8, dtype=torch.bool)
    ring[1:7, 1:7] = True
    ring[3:5, 3:5] = False  # dilation grows the square by 1, erosion shrinks it by 1
    assert torch.equal(edges[0, 0] > 0, ring)
    assert edges.min() == -1 and edges.max() == 1
    assert torch.equal(source_of(x, "erode")[0, 0] > 0, _square(lo=3, hi=5)[0, 0] > 0)
    with pytest.raises(GenlabError, match="pairing"):
        source_of(x, "blur")


@pytest.mark.parametrize("in_memory", [False, True])
def test_paired_data_module_serves_source_beside_x(tmp_path, in_memory):
    root = write_parquet(tmp_path / "digits", {"train": 16, "test": 4}, size=(8, 8))
    data = PairedImageDataModule(str(root), pairing="erode", image_size=8, batch_size=4,
                                 num_workers=0, in_memory=in_memory)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"x", "source", "label"}
    assert batch["source"].shape == batch["x"].shape == (4, 1, 8, 8)
    assert torch.equal(batch["source"], source_of(batch["x"], "erode"))
    assert isinstance(data.sets["train"].images.data, DecodedRows) == in_memory


def test_networks_keep_the_image_size():
    g, d = UNetGenerator(1, 1, width=8, depth=2), PairDiscriminator(2, width=8, n_down=2)
    source = torch.rand(3, 1, 28, 28) * 2 - 1
    out = g(source)
    assert out.shape == (3, 1, 28, 28) and out.abs().max() <= 1
    assert d(source, out).shape == (3, 1, 7, 7)
    with pytest.raises(GenlabError, match="divisible by 4"):
        g(torch.zeros(1, 1, 10, 10))


def test_pix2pix_trains_translates_and_draws_its_strip(tmp_path):
    torch.manual_seed(0)
    model = Pix2Pix(image_size=8, width=4, d_width=4, d_down=1, keep_sources=6)
    with pytest.raises(GenlabError, match="--source"):
        model.sample(2)  # nothing kept yet, no source given
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    batches = [{"x": x, "source": source_of(x, "edges")} for _ in range(2)]
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=str(tmp_path), limit_val_batches=0)
    trainer.fit(model, DataLoader(batches, batch_size=None))
    assert torch.equal(model.kept, torch.cat([batches[0]["source"], batches[1]["source"]])[:6])
    out = model.sample_eval(5, source=batches[0]["source"][:1])
    assert out.shape == (5, 1, 8, 8) and torch.equal(out[0], out[4])  # one source for all
    kept = model.sample_eval(7)  # the kept sources in turn
    assert torch.equal(kept[6], kept[0])
    strip = model.pictures(batches[0])["translations"]
    assert strip.size == (3 * 10 + 2, 4 * 10 + 2)  # source | translation | target, 4 rows
    with pytest.raises(GenlabError, match="'source' image"):
        model.training_step({"x": x}, 0)
