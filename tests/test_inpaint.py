"""RePaint inpainting: the jump schedule, the sampler, Diffusion.sample and `genlab sample`."""

import lightning as L
import numpy as np
import pytest
import torch
from genlab_diffusion import Diffusion
from PIL import Image
from torch.utils.data import DataLoader

from genlab.callbacks.samples import fixed_seed
from genlab.cli import main
from genlab.diffusion import NoiseSchedule, jump_schedule, repaint_sample
from genlab.errors import GenlabError
from genlab.sampling import read_tensor

TINY_IMAGES = dict(data_shape=[1, 8, 8], channels=8, channel_mults=[1, 2], num_res_blocks=1,
                   attention_levels=[1], num_timesteps=50, sample_steps=6, trajectory_frames=0)


def test_jump_schedule_walks_down_with_jumps_back_up():
    walk = jump_schedule(10, jump=2, resample=3)
    assert walk[0] == 10 and walk[-1] == 0
    assert all(abs(a - b) == 1 for a, b in zip(walk, walk[1:]))
    downs = sum(b < a for a, b in zip(walk, walk[1:]))
    # jumps at 0, 2, 4, 6 (below 10 - 2), each 2 steps up and down again, twice
    assert downs == 10 + 4 * 2 * 2
    assert jump_schedule(7) == list(range(7, -1, -1))  # resample 1: the plain schedule
    with pytest.raises(GenlabError, match="jump and resample"):
        jump_schedule(10, jump=0)


def _half_mask(shape):
    known = torch.zeros(shape, dtype=torch.bool)
    known[..., : shape[-2] // 2, :] = True  # top half known
    return known


def test_repaint_keeps_known_pixels_exactly_and_fills_the_rest():
    torch.manual_seed(0)
    schedule = NoiseSchedule("cosine", 40)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)  # any denoiser will do: the mask is the sampler's

    def denoiser(x, t, labels):
        return net(x)

    source = torch.rand(3, 1, 8, 8) * 2 - 1
    known = _half_mask(source.shape)
    path: list[torch.Tensor] = []
    out = repaint_sample(denoiser, schedule, torch.randn_like(source), source, known,
                         steps=10, jump=2, resample=3, clip=1.0, trajectory=path)
    assert out.shape == source.shape and torch.isfinite(out).all()
    assert torch.equal(out[known], source[known])
    assert not torch.allclose(out[~known], source[~known])
    assert len(path) == len(jump_schedule(10, 2, 3))
    everything = repaint_sample(denoiser, schedule, torch.randn_like(source), source,
                                torch.ones_like(known), steps=5, jump=2, resample=2)
    assert torch.equal(everything, source)


def test_reconstruction_guidance_subtracts_the_known_pixels_gradient():
    """A linear x0-denoiser ``x0 = W x``: the guided step is the plain posterior draw minus
    ``w * W^T r / |r|``, ``r`` the known pixels' miss, and known pixels still end exact."""
    from genlab.diffusion.inpaint import _guided_step
    from genlab.diffusion.samplers import posterior_step

    torch.manual_seed(0)
    schedule, dim = NoiseSchedule("cosine", 40), 6
    weight = torch.randn(dim, dim) / dim**0.5

    def denoiser(x, t, labels):
        return x @ weight.T

    x, source = torch.randn(2, dim), torch.randn(2, dim)
    known = torch.tensor([True, True, True, False, False, False])
    guided = _guided_step(denoiser, schedule, x, 20, 10, "x0", None, None,
                          torch.Generator().manual_seed(1), source, known, 0.5)
    plain = posterior_step(schedule, x, x @ weight.T, 20, 10, torch.Generator().manual_seed(1))
    miss = torch.where(known, x @ weight.T - source, 0)
    expected = plain - 0.5 * (miss / miss.norm(dim=1, keepdim=True)) @ weight
    torch.testing.assert_close(guided, expected)
    out = repaint_sample(denoiser, schedule, torch.randn(2, dim), source, known, prediction="x0",
                         steps=8, jump=2, resample=2, reconstruction=1.0)
    assert torch.equal(out[:, known], source[:, known]) and torch.isfinite(out).all()
    with pytest.raises(GenlabError, match="reconstruction guidance must be >= 0"):
        repaint_sample(denoiser, schedule, x, source, known, reconstruction=-1.0)


def test_diffusion_sample_inpaints_with_source_and_mask():
    torch.manual_seed(0)
    model = Diffusion(**TINY_IMAGES).eval()
    source = torch.rand(1, 1, 8, 8) * 2 - 1  # one source for all, as --source x.png gives
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1  # left half known
    with fixed_seed(1, model.device):
        a = model.sample_eval(3, source=source, mask=mask, resample=2, jump=2)
    with fixed_seed(1, model.device):
        b = model.sample_eval(3, source=source, mask=mask, resample=2, jump=2)
    assert a.shape == (3, 1, 8, 8) and torch.equal(a, b)
    assert torch.equal(a[..., :4], source[..., :4].expand(3, -1, -1, -1))
    # The option reaches the sampler: same noise, another fill. (Untrained, the U-Net's zeroed
    # output layer gives no gradient to follow: wake its zero weights first.)
    for param in model.parameters():
        if not param.any():
            torch.nn.init.normal_(param, std=0.3)
    fills = []
    for weight in (0.0, 1.0):
        with fixed_seed(1, model.device):
            fills.append(model.sample_eval(3, source=source, mask=mask, resample=2, jump=2,
                                           reconstruction=weight))
    assert torch.equal(fills[0][..., :4], fills[1][..., :4])
    assert not torch.equal(fills[0], fills[1])
    rgb = source.expand(1, 3, 8, 8)  # a picture saved as RGB reads back as the same digit
    assert torch.equal(model.sample_eval(2, source=rgb, mask=torch.ones(1, 8, 8)),
                       source.expand(2, -1, -1, -1))
    for options, message in (({"source": source}, "add --mask"), ({"mask": mask}, "both --source"),
                             ({"source": source, "mask": mask, "sampler": "ddim"}, "ancestral"),
                             ({"source": torch.zeros(1, 1, 6, 6), "mask": mask}, "8x8"),
                             ({"source": source.expand(2, -1, -1, -1), "mask": mask}, "--num")):
        with pytest.raises(GenlabError, match=message):
            model.sample_eval(3, **options)


def _png(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def test_genlab_sample_reads_source_and_mask_images(tmp_path):
    torch.manual_seed(0)
    model = Diffusion(**TINY_IMAGES)
    batches = [{"x": torch.rand(4, 1, 8, 8) * 2 - 1} for _ in range(2)]
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=str(tmp_path), limit_val_batches=0)
    trainer.fit(model, DataLoader(batches, batch_size=None))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    digit = np.arange(64).reshape(8, 8) * 4
    mask = np.zeros((8, 8))
    mask[:4] = 255  # white: kept
    source_png, mask_png = _png(tmp_path / "digit.png", digit), _png(tmp_path / "mask.png", mask)
    assert read_tensor(source_png).shape == (1, 1, 8, 8)
    main(["sample", "--ckpt", str(tmp_path / "m.ckpt"), "--num", "2", "--source", source_png,
          "--mask", mask_png, "--resample", "2", "--out", str(tmp_path / "out")])
    for path in sorted((tmp_path / "out").glob("*.png")):
        written = np.asarray(Image.open(path).convert("L")).astype(int)
        assert np.abs(written[:4] - digit[:4]).max() <= 1  # kept, up to 8-bit rounding
    with pytest.raises(GenlabError, match="no such file"):
        read_tensor(tmp_path / "missing.png")
