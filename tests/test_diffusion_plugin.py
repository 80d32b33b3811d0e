"""The Diffusion plugin: EMA, conditional training, sample options, checkpoint round trip."""

import lightning as L
import pytest
import torch
from genlab_diffusion import Diffusion
from PIL import Image
from torch.utils.data import DataLoader

from genlab.callbacks.samples import SampleLogger, fixed_seed
from genlab.errors import GenlabError
from genlab.sampling import check_options

TINY_POINTS = dict(hidden=[16, 16], emb_dim=8, num_timesteps=50, sample_steps=5,
                   trajectory_frames=3)
TINY_IMAGES = dict(data_shape=[1, 8, 8], channels=8, channel_mults=[1, 2], num_res_blocks=1,
                   attention_levels=[1], num_timesteps=50, sample_steps=4, trajectory_frames=3)


def fit(model, batches, tmp_path, steps=3):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), limit_val_batches=0,
                        callbacks=[SampleLogger(every_n_steps=0, num=4)])
    trainer.fit(model, DataLoader(batches, batch_size=None))
    return trainer


def test_ema_follows_the_moving_average():
    model = Diffusion(**TINY_POINTS, ema_decay=0.9)
    before = [p.detach().clone() for p in model.ema.module.parameters()]
    model.ema.update_parameters(model.denoiser)  # first update copies the weights
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(1.0)
    model.ema.update_parameters(model.denoiser)
    for old, avg, new in zip(before, model.ema.module.parameters(), model.denoiser.parameters()):
        # ema = 0.9 * old + 0.1 * (old + 1)
        assert torch.allclose(avg, 0.9 * old + 0.1 * new, atol=1e-6)
    assert not any(p.requires_grad for p in model.ema.parameters())


def test_conditional_images_train_sample_and_reload(tmp_path):
    torch.manual_seed(0)
    model = Diffusion(**TINY_IMAGES, num_classes=3, guidance=2.0)
    assert model.modality == "image"
    batches = [{"x": torch.rand(4, 1, 8, 8) * 2 - 1, "label": torch.tensor([0, 1, 2, 3 % 3])}
               for _ in range(3)]
    trainer = fit(model, batches, tmp_path)
    assert int(model.ema.n_averaged) == 3
    # The trajectory strip through the pictures hook: one row per image, one column per frame.
    strip = Image.open(tmp_path / "samples" / "trajectory_step_0000003.png")
    assert strip.size == (3 * 10 + 2, 8 * 10 + 2)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = Diffusion.load_from_checkpoint(ckpt, weights_only=True)
    for options in ({}, {"sampler": "ddpm", "steps": 3}, {"sampler": "heun", "guidance": 1.0},
                    {"labels": torch.tensor([2, 2]), "eta": 1.0}):
        with fixed_seed(7, model.device):
            a = model.sample_eval(2, **options)
        with fixed_seed(7, loaded.device):
            b = loaded.sample_eval(2, **options)
        assert a.shape == (2, 1, 8, 8) and torch.equal(a, b)
        assert a.abs().max() <= 1  # clean estimates clipped to the image range


def test_points_sample_uses_ema_and_data_scale():
    model = Diffusion(**TINY_POINTS, data_scale=4.0)
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(1.0)  # the raw network drifts; the EMA copy does not follow until updated
    with fixed_seed(0, model.device):
        a = model.sample_eval(6)
    with fixed_seed(0, model.device):
        noise = torch.randn(6, 2)
    assert a.shape == (6, 2) and model.modality == "points"
    from genlab.diffusion import sample
    expected = sample("ddim", model.ema.module, model.schedule, noise, prediction="v", steps=5)
    assert torch.allclose(a, 4.0 * expected, atol=1e-5)


def test_sample_options_are_explicit_and_checked():
    model = Diffusion(**TINY_POINTS)
    check_options(model, {"steps": 3, "sampler": "heun", "eta": 0.5, "guidance": 2.0})
    with pytest.raises(GenlabError, match="does not take --temperature"):
        check_options(model, {"temperature": 1.0})
    with pytest.raises(GenlabError, match="unknown sampler 'euler'"):
        model.sample(2, sampler="euler")
    with pytest.raises(GenlabError, match="unconditional"):
        model.sample(2, labels=torch.tensor([0, 1]))
    conditional = Diffusion(**TINY_POINTS, num_classes=2)
    with pytest.raises(GenlabError, match=r"2 class ids in \[0, 2\)"):
        conditional.sample(2, labels=torch.tensor([0, 5]))


def test_autoguidance_samples_with_a_weaker_checkpoint(tmp_path):
    torch.manual_seed(0)
    batches = [{"x": torch.randn(8, 2)} for _ in range(3)]
    model, weak = Diffusion(**TINY_POINTS), Diffusion(**{**TINY_POINTS, "hidden": [8]})
    for name, m in (("model", model), ("weak", weak)):
        fit(m, batches, tmp_path / name).save_checkpoint(tmp_path / f"{name}.ckpt")
    check_options(model, {"guide": str(tmp_path / "weak.ckpt"), "guidance": 2.0})
    with fixed_seed(3, model.device):
        plain = model.sample_eval(6)
    with fixed_seed(3, model.device):
        guided = model.sample_eval(6, guide=str(tmp_path / "weak.ckpt"), guidance=2.0)
    assert guided.shape == (6, 2) and not torch.allclose(plain, guided)
    with pytest.raises(GenlabError, match="--guide needs a guidance scale"):
        model.sample(2, guide=str(tmp_path / "weak.ckpt"))
    other = Diffusion(**{**TINY_POINTS, "num_timesteps": 40})
    fit(other, batches, tmp_path / "other").save_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(GenlabError, match="num_timesteps differ"):
        model.sample(2, guide=str(tmp_path / "other.ckpt"), guidance=2.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"data_shape": [2, 2]}, "data_shape"),
    ({"label_dropout": 1.0}, "label_dropout"),
    ({"sample_steps": 5000}, "sample_steps"),
    ({"schedule": "quadratic"}, "unknown noise schedule"),
    ({"data_shape": [1, 10, 10], "channel_mults": [1, 2, 2]}, "cannot be halved"),
])
def test_bad_hyperparameters_are_clear_errors(kwargs, message):
    with pytest.raises(GenlabError, match=message):
        Diffusion(**{**TINY_POINTS, **kwargs})


def test_conditional_model_without_labels_in_data_is_a_clear_error(tmp_path):
    model = Diffusion(**TINY_POINTS, num_classes=2)
    with pytest.raises(GenlabError, match="no labels"):
        model.training_step({"x": torch.randn(4, 2)}, 0)
