"""VAE-GAN: each loss reaches only its networks, the feature term, three optimizers in the
checkpoint and on resume, bf16-mixed, pictures on the metrics' step axis, bad hyperparameters
(the conformance kit runs in tests/test_plugins.py)."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from genlab_vaegan import VAEGAN, feature_reconstruction, scale_grad
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from genlab.callbacks import samples
from genlab.data.images import ImageDataModule
from genlab.data.tiny import write_parquet
from genlab.errors import GenlabError
from genlab.losses.adversarial import g_nonsaturating
from genlab.losses.likelihoods import kl_std_normal
from genlab.recipes import draw_from_prior

TINY = {"image_size": 28, "channels": 1, "latent_dim": 4, "width": 4}


def images(tmp_path, batch_size=8):
    root = write_parquet(tmp_path / "digits", {"train": 32, "test": 8}, size=(28, 28))
    return ImageDataModule(str(root), image_size=28, channels=1, batch_size=batch_size,
                           num_workers=0)


def trainer(tmp_path, steps, **kwargs):
    options = {"max_steps": steps, "accelerator": "cpu", "logger": False,
               "enable_progress_bar": False, "enable_model_summary": False,
               "num_sanity_val_steps": 0, "limit_val_batches": 1, "default_root_dir": tmp_path}
    return L.Trainer(**{**options, **kwargs})


def grads(loss, net):
    return torch.autograd.grad(loss, list(net.parameters()), retain_graph=True,
                               allow_unused=True)


def inputs(model, batch=6):
    torch.manual_seed(0)
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    eps, z_p = torch.randn(2, batch, model.hparams.latent_dim)
    return x, eps, z_p


def test_scale_grad_keeps_the_value_and_scales_the_gradient():
    x = torch.randn(5, requires_grad=True)
    y = scale_grad(x, 0.25)
    assert torch.equal(y, x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, torch.full_like(x, 0.25))


def test_feature_reconstruction_is_zero_for_identical_inputs():
    model = VAEGAN(**TINY)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert torch.equal(model.feature_loss(x, x.clone()), torch.tensor(0.0))
    f = torch.randn(4, 10)
    assert torch.equal(feature_reconstruction(f, f), torch.zeros(4))
    assert torch.allclose(feature_reconstruction(f, f + 1), torch.full((4,), 5.0))
    assert model.feature_loss(x, -x) > 0


@pytest.mark.parametrize("gamma, num_classes", [(0.01, None), (1.0, None), (0.1, 3)])
def test_each_network_gets_the_gradient_of_its_own_loss(gamma, num_classes):
    """Encoder: β L_prior + L_llike; decoder: γ L_llike + GAN; as computed term by term."""
    torch.manual_seed(0)
    model = VAEGAN(**TINY, gamma=gamma, beta=0.5, decoder_norm="none", num_classes=num_classes)
    x, eps, z_p = inputs(model)
    y = None if num_classes is None else torch.tensor([0, 1, 2, 0, 1, 2])
    routed, _ = model.autoencoder_loss(x, eps, z_p, y)

    # The same terms, written plainly with one decoder pass per use.
    mu, logvar = model.encoder(x)
    x_rec = model.decoder(mu + (0.5 * logvar).exp() * eps, y)
    kl = kl_std_normal(mu, logvar).mean()
    llike = model.feature_loss(x, x_rec, y)
    logits_rec, _ = model.discriminator(x_rec, y)
    logits_p, _ = model.discriminator(model.decoder(z_p, y), y)
    gan = 0.5 * (g_nonsaturating(logits_rec) + g_nonsaturating(logits_p))

    for net, want in [(model.encoder, 0.5 * kl + llike), (model.decoder, gamma * llike + gan)]:
        for got, expected in zip(grads(routed, net), grads(want, net)):
            assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_discriminator_loss_reaches_only_the_discriminator():
    model = VAEGAN(**TINY)
    loss, _ = model.discriminator_loss(*inputs(model))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.discriminator.parameters() if p.ndim > 1)
    assert all(p.grad is None for p in [*model.encoder.parameters(),
                                        *model.decoder.parameters()])


def test_r1_adds_the_scaled_gradient_penalty_on_real_images():
    plain, lazy = VAEGAN(**TINY), VAEGAN(**TINY, r1_gamma=2.0, r1_interval=4)
    lazy.load_state_dict(plain.state_dict())
    x, eps, z_p = inputs(plain)
    loss, _ = plain.discriminator_loss(x, eps, z_p)
    with_r1, logs = lazy.discriminator_loss(x, eps, z_p)  # step 0: an R1 step
    real = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(plain.discriminator(real)[0].sum(), real)
    r1 = grad.pow(2).flatten(1).sum(1).mean()
    assert logs["train/r1"].item() == pytest.approx(r1.item(), rel=1e-4)
    assert (with_r1 - loss).item() == pytest.approx(2.0 / 2 * 4 * r1.item(), rel=1e-4)


def test_a_training_step_moves_every_network(tmp_path):
    model = VAEGAN(**TINY, pictures=False)
    nets = {"encoder": model.encoder, "decoder": model.decoder,
            "discriminator": model.discriminator, "decoder_ema": model.decoder_ema}
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in nets.items()}
    trainer(tmp_path, 3, limit_val_batches=0).fit(model, images(tmp_path))  # 1 batch: 3 steps
    for name, net in nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name


class Digits(Dataset):
    def __init__(self):
        self.x = torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def run(tmp_path, callbacks=(), ckpt_path=None):
    L.seed_everything(0, verbose=False)
    model = VAEGAN(**TINY, grad_clip=1.0, ema_decay=0.9, pictures=False, r1_gamma=1.0,
                   r1_interval=2)
    fit = trainer(tmp_path, -1, max_epochs=2, limit_val_batches=0, enable_checkpointing=False,
                  callbacks=list(callbacks))
    # Not shuffled: the resumed epoch sees the batches the uninterrupted one saw.
    fit.fit(model, DataLoader(Digits(), batch_size=8), ckpt_path=ckpt_path)
    return model, fit


def test_three_optimizers_in_the_checkpoint_and_exact_resume(tmp_path):
    whole, _ = run(tmp_path / "whole")
    stopped, fit = run(tmp_path / "stopped", callbacks=[StopAfterFirstEpoch()])
    assert fit.global_step == 9  # 3 batches, 3 optimizer steps each
    path = tmp_path / "stopped.ckpt"
    fit.save_checkpoint(path)
    states = torch.load(path, weights_only=True)["optimizer_states"]
    nets = (stopped.encoder, stopped.decoder, stopped.discriminator)
    assert len(states) == 3
    # Adam moments of every parameter of each network, 3 steps taken by each optimizer
    assert [len(s["state"]) for s in states] == [len(list(n.parameters())) for n in nets]
    assert all(int(s["state"][0]["step"]) == 3 for s in states)

    resumed, fit = run(tmp_path / "resumed", ckpt_path=path)
    assert fit.global_step == 18
    state, expected = resumed.state_dict(), whole.state_dict()
    assert state.keys() == expected.keys()
    for key in expected:  # encoder, decoder (batch norm statistics too), discriminator, EMAs
        torch.testing.assert_close(state[key], expected[key], msg=key)


def test_bf16_mixed(tmp_path):
    model = VAEGAN(**TINY, pictures=False)
    fit = trainer(tmp_path, 6, precision="bf16-mixed", limit_val_batches=0)
    fit.fit(model, images(tmp_path))
    assert all(torch.isfinite(v) for v in fit.callback_metrics.values())
    assert torch.isfinite(model.sample_eval(4)).all()


def test_fp16_is_refused_with_one_clear_error():
    # A CPU trainer turns 16-mixed into bf16, so the check is called with a stand-in trainer.
    model = VAEGAN(**TINY)
    model._trainer = SimpleNamespace(precision="16-mixed")
    with pytest.raises(GenlabError, match="bf16-mixed"):
        model.on_fit_start()


def test_pictures_are_logged_on_the_step_axis_of_the_metrics(tmp_path, monkeypatch):
    logged = []
    def record(logger, picture, step, key="samples"):
        logged.append((key, step))

    import genlab.modality

    monkeypatch.setattr(genlab.modality, "log_rendered", record)  # the samples
    monkeypatch.setattr(samples, "log_rendered", record)  # the model's pictures
    model = VAEGAN(**TINY)
    trainer(tmp_path, 6, enable_checkpointing=False, logger=CSVLogger(tmp_path),
            callbacks=[samples.SampleLogger(every_n_steps=0, num=8)]).fit(model, images(tmp_path))
    names = {p.name.split("_step")[0] for p in (tmp_path / "samples").iterdir()}
    assert names >= {"reconstructions", "interpolations"}
    # Two batches of three optimizer steps each: logged at batch 2, where the metrics are.
    assert model.trainer.global_step == 6
    assert set(logged) == {("samples", 2), ("pictures/reconstructions", 2),
                           ("pictures/interpolations", 2)}


def test_a_conditional_model_samples_the_labels_asked_or_its_prior():
    model = VAEGAN(**TINY, num_classes=3).eval()
    with torch.no_grad():
        model.decoder_ema.module.embed.weight.normal_()  # classes that differ at init
    twos = torch.full((4,), 2)
    torch.manual_seed(0)
    asked = model.sample(4, labels=twos)
    torch.manual_seed(0)
    assert not torch.equal(model.sample(4, labels=torch.zeros(4, dtype=torch.long)), asked)
    model.label_prior = torch.tensor([0.0, 0.0, 1.0])  # every drawn label is 2
    torch.manual_seed(0)
    draw_from_prior(model.label_prior, 4)  # the draw sample() makes first
    z_state = torch.get_rng_state()
    torch.manual_seed(0)
    drawn = model.sample(4)
    torch.set_rng_state(z_state)
    z = torch.randn(4, TINY["latent_dim"])
    assert torch.equal(drawn, model.decode_latent(z, twos))
    x, y = torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 0])
    assert model.reconstruct(x, y).shape == x.shape
    assert set(model.pictures({"x": x, "label": y})) == {"reconstructions", "interpolations"}


def test_labels_for_an_unconditional_model_or_none_for_a_conditional_one_are_one_line(tmp_path):
    with pytest.raises(GenlabError, match="unconditional .* drop --labels"):
        VAEGAN(**TINY).sample(2, labels=torch.tensor([0, 1]))
    model = VAEGAN(**TINY, num_classes=3, pictures=False)
    with pytest.raises(GenlabError, match="no labels; set data.label_column"):
        trainer(tmp_path, 3, limit_val_batches=0).fit(model, DataLoader(Digits(), batch_size=8))


def test_reconstruct_and_sample_shapes():
    model = VAEGAN(**TINY).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert model.reconstruct(x).shape == x.shape
    s = model.sample(5, temperature=0.5)
    assert s.shape == (5, 1, 28, 28) and s.abs().max() <= 1


@pytest.mark.parametrize("bad", [{"gamma": 0.0}, {"beta": -1.0}, {"image_size": 30},
                                 {"ema_decay": 1.0}, {"latent_dim": 0}, {"grad_clip": 0.0},
                                 {"r1_gamma": -1.0}, {"r1_interval": 0}, {"num_classes": 0}])
def test_bad_hyperparameters_raise_one_clear_error(bad):
    with pytest.raises(GenlabError, match="model.|image_size"):
        VAEGAN(**{**TINY, **bad})
