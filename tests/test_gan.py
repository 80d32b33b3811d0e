"""GAN plugin: losses and penalties on known inputs, conv nets, EMA arithmetic, which network each
step changes, conditional sampling, hyperparameter errors, bf16-mixed and the conformance kit."""

import math

import lightning as L
import pytest
import torch
from genlab_gan import GAN
from torch.utils.data import DataLoader, Dataset

from genlab.errors import GenlabError
from genlab.losses.adversarial import (
    d_hinge,
    d_nonsaturating,
    d_wasserstein,
    g_hinge,
    g_nonsaturating,
    g_wasserstein,
)
from genlab.losses.penalties import gradient_penalty, r1_penalty
from genlab.nn.conv import ConvDecoder, ConvEncoder


class Labelled(Dataset):
    def __init__(self, x, num_classes=3):
        self.x, self.y = x, torch.arange(len(x)) % num_classes

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "label": self.y[i]}


def fit(model, x, steps=4, **trainer_kwargs):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **trainer_kwargs)
    trainer.fit(model, DataLoader(Labelled(x), batch_size=8))
    return trainer


def tiny_gan(**kwargs):
    return GAN(**{"hidden": [16, 16], "latent_dim": 2, **kwargs})


def tiny_image_gan(**kwargs):
    return GAN(**{"image_size": 28, "channels": 1, "width": 4, "latent_dim": 8, **kwargs})


# ------------------------------------------------------------------ losses and penalties


def test_losses_on_known_logits():
    zero = torch.zeros(4)
    assert d_nonsaturating(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert g_nonsaturating(zero).item() == pytest.approx(math.log(2))
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.0])
    # relu(1 - [2, 0]) = [0, 1] and relu(1 + [-2, 0]) = [0, 1]: means 0.5 + 0.5
    assert d_hinge(real, fake).item() == pytest.approx(1.0)
    assert g_hinge(fake).item() == pytest.approx(1.0)
    assert d_wasserstein(real, fake).item() == pytest.approx(-1.0 - 1.0)
    assert g_wasserstein(fake).item() == pytest.approx(1.0)


def test_r1_of_a_linear_critic_is_its_squared_weight_norm():
    w = torch.tensor([3.0, 4.0])
    real = torch.randn(5, 2, requires_grad=True)
    assert r1_penalty(real @ w, real).item() == pytest.approx(25.0)


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_a_linear_critic(norm, expected):
    w = torch.tensor([0.6, 0.8]) * norm  # ||∇ D|| = norm everywhere
    gp = gradient_penalty(lambda x: x @ w, torch.randn(6, 2), torch.randn(6, 2))
    assert gp.item() == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------ conv networks


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_conv_nets_map_vectors_to_images_and_back(size, channels):
    decoder = ConvDecoder(10, channels, size, width=4)
    images = decoder(torch.randn(2, 10))
    assert images.shape == (2, channels, size, size) and images.abs().max() <= 1
    encoder = ConvEncoder(channels, size, 5, width=4, spectral_norm=True)
    assert encoder(images).shape == (2, 5)
    assert encoder.features(images).shape == (2, encoder.feature_dim)


def test_conv_decoder_without_tanh_gives_logits():
    decoder = ConvDecoder(4, 1, 28, width=4, out_act="none", norm="none")
    assert not isinstance(decoder.net[-1], torch.nn.Tanh)
    assert decoder(torch.randn(3, 4)).shape == (3, 1, 28, 28)


@pytest.mark.parametrize("size, channels, match", [(48, 1, "image_size 28, 32 or 64, got 48"),
                                                   (32, 2, "1 .* or 3 .* channels, got 2")])
def test_conv_nets_reject_other_shapes(size, channels, match):
    with pytest.raises(GenlabError, match=match):
        ConvEncoder(channels, size, 1)
    with pytest.raises(GenlabError, match=match):
        ConvDecoder(4, channels, size)


# ------------------------------------------------------------------ EMA


def test_ema_update_arithmetic():
    model = tiny_gan(ema_decay=0.75)
    ema, gen = model.generator_ema, model.generator
    ema.update_parameters(gen)  # the first update copies
    before = [p.detach().clone() for p in gen.parameters()]
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    ema.update_parameters(gen)  # warm-up: decay min(0.75, 2 / 11), so p + 9 / 11
    for p_ema, p0 in zip(ema.module.parameters(), before):
        torch.testing.assert_close(p_ema, p0 + 9 / 11)
    ema.n_averaged.fill_(100)  # warmed up: decay 0.75
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    ema.update_parameters(gen)  # 0.75 * (p + 9/11) + 0.25 * (p + 2)
    for p_ema, p0 in zip(ema.module.parameters(), before):
        torch.testing.assert_close(p_ema, p0 + 0.75 * 9 / 11 + 0.25 * 2)
    assert not any(p.requires_grad for p in ema.parameters())  # not trained, not DDP-synced
    assert any(k.startswith("generator_ema.") for k in model.state_dict())  # checkpointed


def test_sample_uses_the_ema_generator():
    model = tiny_gan(ema_decay=0.9)
    with torch.no_grad():
        for p in model.generator_ema.parameters():
            p.zero_()
    assert torch.equal(model.sample(4), torch.zeros(4, 2))
    assert not torch.equal(tiny_gan(ema_decay=None).sample(4), torch.zeros(4, 2))


def test_temperature_scales_the_latent():
    model = tiny_gan(ema_decay=None)
    seen = []
    model.generator.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    torch.manual_seed(0)
    model.sample(4)
    torch.manual_seed(0)
    model.sample(4, temperature=0.5)
    assert torch.allclose(seen[1], 0.5 * seen[0])


# ------------------------------------------------------------------ one training step


class Spy(GAN):
    """Records which network each half of a training step changed."""

    def setup(self, stage):
        self.changes = []

    def _snap(self):
        return [[p.detach().clone() for p in net.parameters()]
                for net in (self.generator, self.discriminator)]

    def _changed(self, before, name):
        after = self._snap()
        self.changes.append((name, *[any(not torch.equal(a, b) for a, b in zip(x, y))
                                     for x, y in zip(before, after)]))

    def discriminator_step(self, *args):
        before = self._snap()
        out = super().discriminator_step(*args)
        self._changed(before, "d")
        return out

    def generator_step(self, *args):
        before = self._snap()
        out = super().generator_step(*args)
        self._changed(before, "g")
        return out


@pytest.mark.parametrize("kwargs", [{}, {"loss": "wgan-gp", "n_critic": 2, "r1_gamma": 1.0},
                                    {"pack": 2, "loss": "wgan-gp", "r1_gamma": 1.0},
                                    {"loss": "hinge", "spectral_norm": True, "num_classes": 3}])
def test_each_step_changes_only_its_network(kwargs):
    model = Spy(hidden=[16, 16], latent_dim=2, **kwargs)
    fit(model, torch.randn(64, 2), steps=6)
    # (step, generator changed, discriminator changed)
    n_critic = kwargs.get("n_critic", 1)
    expected = ([("d", False, True)] * n_critic + [("g", True, False)]) * (6 // (n_critic + 1))
    assert model.changes == expected
    assert int(model.d_steps) == 6 // (n_critic + 1) * n_critic


def test_packed_discriminator_judges_consecutive_samples_together():
    from genlab_gan.networks import packed

    x = torch.arange(5 * 2 * 3).reshape(5, 2, 3)
    assert torch.equal(packed(x, 2), torch.stack([x[0:2].reshape(4, 3), x[2:4].reshape(4, 3)]))
    model = tiny_image_gan(channels=3, pack=2)
    assert model.discriminator(torch.randn(6, 3, 28, 28)).shape == (3,)
    assert model.discriminator.phi[0].in_channels == 6
    with pytest.raises(GenlabError, match="multiple of model.pack=2"):
        model.discriminator(torch.randn(1, 3, 28, 28))
    # A packed logit depends on every sample of its pack and on no other.
    points = tiny_gan(pack=3)
    x = torch.randn(6, 2, requires_grad=True)
    points.discriminator(x)[0].backward()
    assert (x.grad[:3].abs().sum(1) > 0).all() and (x.grad[3:] == 0).all()


def test_image_gan_trains_in_bf16_mixed():
    model = tiny_image_gan(num_classes=3, r1_gamma=1.0, grad_clip=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, torch.rand(16, 1, 28, 28) * 2 - 1, steps=4, precision="bf16-mixed")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert model.sample(2).dtype == torch.float32


def test_gradient_clipping_happens_through_lightning(monkeypatch):
    model = tiny_gan(grad_clip=0.5)
    calls = []
    monkeypatch.setattr(model, "clip_gradients",
                        lambda opt, gradient_clip_val, gradient_clip_algorithm: calls.append(
                            (gradient_clip_val, gradient_clip_algorithm)))
    fit(model, torch.randn(32, 2), steps=4)
    assert calls == [(0.5, "norm")] * 4


def test_16_mixed_clips_unscaled_gradients():
    """fp16 AMP with a GradScaler (on CPU here; Lightning maps CPU 16-mixed to bf16, so the
    plugin is built by hand): clipping runs after unscaling, on gradients of their true size."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    model = tiny_gan(r1_gamma=1.0, grad_clip=1e6)
    norms = []
    clip = model.clip_gradients

    def spy(opt, gradient_clip_val, gradient_clip_algorithm):
        grads = [p.grad for group in opt.param_groups for p in group["params"]]
        norms.append(torch.stack([g.norm() for g in grads if g is not None]).norm().item())
        clip(opt, gradient_clip_val=gradient_clip_val,
             gradient_clip_algorithm=gradient_clip_algorithm)

    model.clip_gradients = spy
    scale = 2.0**10
    precision = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", scale))
    fit(model, torch.randn(64, 2), steps=6, plugins=[precision])
    finite = [n for n in norms if math.isfinite(n)]
    assert len(norms) == 6 and finite and max(finite) < scale / 10  # not multiplied by scale
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ------------------------------------------------------------------ sampling


def test_conditional_sampling_shapes_and_label_checks():
    model = tiny_image_gan(num_classes=10, channels=3, image_size=32)
    assert model.modality == "image" and model.data_shape == (3, 32, 32)
    x = model.sample(5, labels=torch.tensor([0, 1, 2, 3, 9]))
    assert x.shape == (5, 3, 32, 32) and x.abs().max() <= 1
    assert model.sample(3).shape == (3, 3, 32, 32)  # labels drawn uniformly
    with pytest.raises(GenlabError, match=r"5 class ids in \[0, 10\)"):
        model.sample(5, labels=torch.tensor([0, 1, 2, 3, 10]))
    with pytest.raises(GenlabError, match="unconditional"):
        tiny_gan().sample(2, labels=torch.tensor([0, 1]))


def test_same_label_same_noise_same_sample():
    model = tiny_gan(num_classes=3).eval()
    torch.manual_seed(0)
    a = model.sample(4, labels=torch.tensor([1, 1, 2, 2]))
    torch.manual_seed(0)
    b = model.sample(4, labels=torch.tensor([1, 1, 0, 0]))
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2:], b[2:])


def test_projection_term_starts_on_the_scale_of_the_unconditional_head():
    # N(0, 1) class embeddings made the projection ~50x the head on MNIST-sized features, and a
    # class-conditional MNIST GAN drew one image a class whatever its z.
    torch.manual_seed(0)
    d = GAN(image_size=28, width=32, num_classes=10).discriminator
    h = d.phi(torch.rand(256, 1, 28, 28) * 2 - 1)
    head = d.psi(h).squeeze(1)
    projection = d.embed(h, torch.randint(0, 10, (256,)))
    assert projection.std() < 5 * head.std(), (projection.std(), head.std())


@pytest.mark.parametrize("kwargs, match", [
    ({"n_critic": 0}, "n_critic must be >= 1"),
    ({"r1_interval": 0}, "r1_interval must be >= 1"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \(0, 1\)"),
    ({"loss": "lsgan"}, "loss must be one of"),
    ({"grad_clip": 0.0}, "grad_clip must be > 0"),
    ({"image_size": 40}, "image_size 28, 32 or 64"),
    ({"pack": 0}, "pack must be >= 1"),
    ({"pack": 2, "num_classes": 3}, "use it with num_classes: null"),
])
def test_bad_hyperparameters_are_named(kwargs, match):
    with pytest.raises(GenlabError, match=match):
        tiny_gan(**kwargs)
