"""VAE plugin: bound terms, IWAE tightening, β warm-up, conditional shapes, a run end to end."""

import math

import pytest
import torch
import yaml
from genlab_vae import VAE, kl_weight

from genlab.checkpoint import load_model
from genlab.cli import main
from genlab.data.tiny import write_parquet
from genlab.errors import GenlabError
from genlab.losses.likelihoods import diag_gaussian_log_density, kl_std_normal, log_mean_exp

SHAPE = (1, 8, 8)


def tiny_vae(**kwargs):
    kwargs = {"data_shape": SHAPE, "latent_dim": 3, "hidden": (16,), **kwargs}
    return VAE(**kwargs)


def binary_batch(n=6, labels=False):
    x = torch.bernoulli(torch.full((n, *SHAPE), 0.3)) * 2 - 1  # binarized: {-1, +1}
    return {"x": x, "label": torch.arange(n) % 3} if labels else {"x": x}


def test_bound_terms_on_known_inputs():
    """E_q[log w] = E_q[log p(x|z)] - KL: Monte Carlo log-ratio against the closed-form KL."""
    torch.manual_seed(0)
    model = tiny_vae().double()
    x = binary_batch(4)["x"].double()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(40_000, *mu.shape, dtype=mu.dtype)
        log_ratio = diag_gaussian_log_density(z) - diag_gaussian_log_density(z, mu, logvar)
        torch.testing.assert_close(-log_ratio.mean(0), kl_std_normal(mu, logvar),
                                   atol=0.02, rtol=0.01)
        # The log-weights are log p(x|z) plus that log-ratio, draw by draw.
        log_w = model.log_weights_at(x, None, z[:5], mu, logvar)
        out = model.decoder(z[:5].flatten(0, 1))
        log_px = model.log_px(x.repeat(5, 1, 1, 1), out).view(5, 4)
        torch.testing.assert_close(log_w, log_px + log_ratio[:5])


def test_bernoulli_reads_binarized_pixels_as_zero_one():
    model = tiny_vae()
    x = binary_batch(2)["x"]
    logits = torch.randn(2, 1, *SHAPE)
    want = torch.distributions.Bernoulli(logits=logits[:, 0]).log_prob((x + 1) / 2)
    torch.testing.assert_close(model.log_px(x, logits), want.flatten(1).sum(1))


def test_iwae_estimate_tightens_as_k_grows():
    torch.manual_seed(0)
    model, batch = tiny_vae(), binary_batch(8)
    with torch.no_grad():
        log_w = model.log_weights(batch["x"], None, 2000)  # (2000, B), fixed draws
    # L_k averaged over 2000 / k independent groups of k draws each.
    bounds = [log_mean_exp(log_w.view(2000 // k, k, -1), dim=1).mean().item()
              for k in (1, 10, 100, 1000)]
    assert bounds == sorted(bounds) and bounds[-1] - bounds[0] > 0.5
    assert model.log_likelihood(batch, k=50).shape == (8,)


def bound_gradients(model, x, k, dreg, seed):
    """The bound's value and the encoder's and decoder's gradients of its negation."""
    model.zero_grad()
    torch.manual_seed(seed)
    loss = -log_mean_exp(model.log_weights(x, None, k, dreg=dreg)).mean()
    loss.backward()
    flat = [torch.cat([p.grad.flatten() for p in net.parameters()])
            for net in (model.encoder, model.decoder)]
    return loss.detach(), *flat


def test_dreg_keeps_the_bound_and_decoder_gradient_and_cuts_encoder_noise():
    """DReG (Tucker et al. 2019): the same draws give the same bound and decoder gradient; its
    encoder gradient has the plain estimator's mean at a fraction of its spread."""
    torch.manual_seed(0)
    model = VAE(data_shape=(1, 4, 4), latent_dim=2, hidden=(8,)).double()
    x = (torch.bernoulli(torch.full((1, 1, 4, 4), 0.3)) * 2 - 1).double().expand(5000, -1, -1, -1)
    plain = [bound_gradients(model, x, 5, False, seed) for seed in range(16)]
    dreg = [bound_gradients(model, x, 5, True, seed) for seed in range(2)]
    torch.testing.assert_close(dreg[0][0], plain[0][0])
    torch.testing.assert_close(dreg[0][2], plain[0][2])
    plain_mean = torch.stack([g[1] for g in plain]).mean(0)
    scale = plain_mean.norm()
    assert (dreg[0][1] - plain_mean).norm() < 0.1 * scale  # unbiased: the means agree
    spread_plain = (plain[0][1] - plain[1][1]).norm()
    assert (dreg[0][1] - dreg[1][1]).norm() < spread_plain / 5


def test_nll_estimate_made_in_chunks_covers_every_draw():
    model = tiny_vae(eval_chunk=7)
    assert model.log_weights_chunked(binary_batch(3)["x"], None, 20).shape == (20, 3)
    assert model.num_eval_samples() == model.hparams.eval_samples  # no trainer: evaluation


def test_kl_weight_schedule_values():
    assert kl_weight(0, 2.0, 100) == 0.0
    assert kl_weight(25, 2.0, 100) == 0.5
    assert kl_weight(100, 2.0, 100) == 2.0
    assert kl_weight(10_000, 2.0, 100) == 2.0
    assert kl_weight(0, 0.5, 0) == 0.5  # no warm-up: β from the first step


@pytest.mark.parametrize("likelihood,fixed_std", [
    ("gaussian", None), ("gaussian", 0.1), ("discretized_logistic", None),
    ("discretized_gaussian", 0.05),
])
def test_continuous_likelihoods_train_and_score(likelihood, fixed_std):
    model = tiny_vae(likelihood=likelihood, fixed_std=fixed_std, train_samples=2)
    x = torch.randint(0, 256, (4, *SHAPE)).float() / 255 * 2 - 1  # 8-bit grid in [-1, 1]
    loss = -log_mean_exp(model.log_weights(x, None, 2)).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(model.log_likelihood({"x": x}, k=4)).all()
    assert model.sample(3).shape == (3, *SHAPE)
    assert model.sample(3).abs().max() <= 1


def test_conditional_shapes_and_labels():
    model = tiny_vae(num_classes=3)
    batch = binary_batch(6, labels=True)
    assert model.sample(7).shape == (7, *SHAPE)
    assert model.sample(2, labels=torch.tensor([2, 0])).shape == (2, *SHAPE)
    assert model.log_likelihood(batch, k=3).shape == (6,)
    assert model.log_weights(batch["x"], batch["label"], 4).shape == (4, 6)
    # Changing the label changes the decoded image: the decoder reads it.
    z = torch.zeros(1, 3)
    zero, one = torch.tensor([0]), torch.tensor([1])
    assert not torch.allclose(model.decode_mean(z, zero), model.decode_mean(z, one))
    with pytest.raises(GenlabError, match="class ids"):
        model.sample(2, labels=torch.tensor([0, 3]))
    with pytest.raises(GenlabError, match="no labels"):
        model.log_likelihood({"x": batch["x"]}, k=2)
    with pytest.raises(GenlabError, match="unconditional"):
        tiny_vae().sample(2, labels=torch.tensor([0, 1]))


@pytest.mark.parametrize("bad,match", [
    ({"latent_dim": 0}, "latent_dim"), ({"train_samples": 0}, "train_samples"),
    ({"beta": -1.0}, "beta"), ({"fixed_std": 0.0}, "fixed_std"),
    ({"data_shape": (28, 28)}, "data_shape"), ({"num_classes": 0}, "num_classes"),
    ({"elbo_steps": -1}, "elbo_steps"),
])
def test_bad_hyperparameters_are_clear_errors(bad, match):
    with pytest.raises(GenlabError, match=match):
        tiny_vae(**bad)


CONFIG = {
    "seed_everything": 0,
    "model": {"class_path": "VAE", "init_args": {
        "data_shape": list(SHAPE), "latent_dim": 2, "hidden": [16], "num_classes": 3,
        "kl_warmup_steps": 8, "beta": 2.0, "val_samples": 4, "eval_samples": 6}},
    "data": {"class_path": "ImageDataModule", "init_args": {
        "image_size": 8, "channels": 1, "binarize": True, "batch_size": 4, "num_workers": 0,
        "val_fraction": 0.25}},
    "trainer": {"max_steps": 4, "val_check_interval": 4, "check_val_every_n_epoch": None,
                "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                "enable_model_summary": False, "log_every_n_steps": 1, "logger": True},
    "samples": {"every_n_steps": 0, "num": 8},
}


def test_fit_pictures_and_checkpoint_round_trip(tmp_path):
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    cfg["data"]["init_args"]["source"] = str(write_parquet(tmp_path / "pq",
                                                           {"train": 24, "test": 8}))
    path = tmp_path / "vae.yaml"
    path.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(path), "--run.root", str(tmp_path / "runs")])
    run = tmp_path / "runs" / "vae" / "version_0"
    names = {p.name.split("_step")[0] for p in (run / "samples").glob("*.png")}
    assert {"reconstructions", "interpolations", "latent_scatter"} <= names  # the hook's
    assert "val/nll" in (run / "metrics.csv").read_text()  # a logger, and no hparams clash

    model = load_model(run / "checkpoints" / "last.ckpt")  # weights_only=True
    assert isinstance(model, VAE) and model.hparams.num_classes == 3
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    torch.manual_seed(1)
    a = model.sample(4)
    torch.manual_seed(1)
    torch.testing.assert_close(a, model.sample(4))


def test_warm_up_weight_seen_in_training(tmp_path):
    import lightning as L

    from genlab.data.images import ImageDataModule

    source = write_parquet(tmp_path / "pq", {"train": 24, "test": 8})
    data = ImageDataModule(str(source), image_size=8, channels=1, binarize=True, batch_size=4,
                           num_workers=0)
    model = tiny_vae(kl_warmup_steps=8, beta=2.0, pictures=False)
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, log_every_n_steps=1, default_root_dir=str(tmp_path))
    trainer.fit(model, data)
    # The last step logged was step 3: β_3 = 2.0 * 3 / 8.
    assert trainer.callback_metrics["train/kl_weight"].item() == pytest.approx(0.75)
    metrics = trainer.test(model, data, verbose=False)[0]
    assert metrics["test/nll"] > 0
    assert metrics["test/bits_per_dim"] == pytest.approx(metrics["test/nll"] / (64 * math.log(2)))


def test_elbo_steps_train_the_elbo_then_the_iwae_bound(tmp_path):
    """``elbo_steps = 2``: steps 0 and 1 train the ELBO (k = 1), the next ones the k = 3 bound."""
    import lightning as L

    from genlab.data.images import ImageDataModule

    source = write_parquet(tmp_path / "pq", {"train": 24, "test": 8})
    data = ImageDataModule(str(source), image_size=8, channels=1, binarize=True, batch_size=4,
                           num_workers=0)
    model = tiny_vae(train_samples=3, elbo_steps=2, pictures=False, lr_schedule="cosine")
    objective, seen, rates = model.objective, [], []

    def recorded(x, labels, beta_t, k=None):
        seen.append(k)
        rates.append(model.optimizers().param_groups[0]["lr"] / model.hparams.lr)
        return objective(x, labels, beta_t, k)

    model.objective = recorded
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, log_every_n_steps=1, default_root_dir=str(tmp_path))
    trainer.fit(model, data)
    assert seen == [1, 1, 3, 3]
    # A cosine over each objective's 2 steps: the bound starts again from the full rate.
    assert rates == pytest.approx([1.0, 0.5, 1.0, 0.5])
    assert {"train/elbo", "train/iwae"} <= set(trainer.callback_metrics)


def test_elbo_objective_beta_and_free_bits():
    torch.manual_seed(0)
    x = binary_batch(5)["x"]
    model = tiny_vae(free_bits=50.0)  # far above any dimension's KL: the floor binds
    torch.manual_seed(1)
    loss, logs = model.objective(x, None, beta_t=0.5)
    torch.testing.assert_close(loss, -logs["train/rec"] + 0.5 * 3 * 50.0)
    loss.backward()
    # Only the reconstruction term reaches the encoder's log-variance outputs' weights then:
    # the same gradient as with β = 0.
    grad = model.encoder.net[-1].weight.grad.clone()
    model.zero_grad()
    torch.manual_seed(1)
    model.objective(x, None, beta_t=0.0)[0].backward()
    torch.testing.assert_close(model.encoder.net[-1].weight.grad, grad)
    plain = tiny_vae()
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    loss, logs = plain.objective(x, None, beta_t=2.0)
    torch.testing.assert_close(loss, -logs["train/rec"] + 2.0 * logs["train/kl"])
    torch.testing.assert_close(logs["train/elbo"], logs["train/rec"] - logs["train/kl"])


@pytest.mark.parametrize("likelihood,num_classes", [("bernoulli", 3),
                                                    ("discretized_logistic", None)])
def test_conv_networks(likelihood, num_classes):
    torch.manual_seed(0)
    model = VAE(data_shape=(1, 28, 28), latent_dim=4, network="conv", conv_width=4,
                likelihood=likelihood, num_classes=num_classes, train_samples=2)
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3)) * 2 - 1
    labels = None if num_classes is None else torch.tensor([0, 1, 2])
    loss, _ = model.objective(x, labels, beta_t=1.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())  # DDP needs every one reached
    batch = {"x": x} if labels is None else {"x": x, "label": labels}
    assert model.log_likelihood(batch, k=3).shape == (3,)
    assert model.sample(5).shape == (5, 1, 28, 28)


def test_conv_needs_a_supported_image_size():
    with pytest.raises(GenlabError, match="image_size"):
        tiny_vae(network="conv")  # 8 x 8
