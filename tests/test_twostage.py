import lightning as L
import pytest
import torch
from jsonargparse import ArgumentError

from genlab.checkpoint import load_model
from genlab.errors import GenlabError
from genlab.registry import create_model
from genlab.sampling import build_parser

GPT = {"prior": "GPT", "prior_args": {"n_layer": 1, "n_head": 2, "n_embd": 16,
                                      "dropout": 0.0, "warmup_steps": 0}}
DIFFUSION = {"prior": "diffusion",
             "prior_args": {"channels": 8, "channel_mults": [1], "num_res_blocks": 1,
                            "attention_levels": [], "num_timesteps": 20, "sample_steps": 2,
                            "trajectory_frames": 0}}


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    from genlab_twostage.twostage import tiny_autoencoder

    return tiny_autoencoder(tmp_path_factory.mktemp("ae"))


def _saved(model, path):
    """``model``'s checkpoint at ``path``, as Lightning writes it (no training)."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


def _tiny_vae(tmp_path):
    return _saved(create_model("vae", data_shape=[1, 28, 28], hidden=[16], latent_dim=2),
                  tmp_path / "vae.ckpt")


def _batch(data):
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def test_codes_round_trip_shapes(stage_one):
    data, ae = stage_one
    model = create_model("twostage", autoencoder=str(ae), **GPT)
    assert model.prior.hparams.vocab_size == 9 and model.prior.hparams.block_size == 49
    tokens = model.prior_batch(_batch(data))["x"]
    assert tokens.shape == (8, 50) and (tokens[:, 0] == 0).all()
    assert 1 <= int(tokens[:, 1:].min()) and int(tokens.max()) <= 8
    images = model.sample_eval(3, temperature=1.0, top_k=4)
    assert images.shape == (3, 1, 28, 28) and images.abs().max() <= 1
    with pytest.raises(GenlabError, match="does not take prompt"):
        model.sample(2, prompt="x")


def test_latent_prior_round_trip_shapes(stage_one):
    data, ae = stage_one
    model = create_model("twostage", autoencoder=str(ae), **DIFFUSION)
    assert list(model.prior.hparams.data_shape) == [4, 7, 7]
    model.train()
    z = model.prior_batch(_batch(data))["x"]
    assert z.shape == (8, 4, 7, 7) and bool(model.scale_measured)
    assert torch.isclose(z.std(unbiased=False), torch.tensor(1.0), atol=1e-3)
    assert model.sample_eval(2, steps=2, sampler="ddim").shape == (2, 1, 28, 28)


def test_sampling_options_are_the_priors(stage_one):
    _, ae = stage_one
    model = create_model("twostage", autoencoder=str(ae), **GPT)
    args = build_parser(model).parse_args(["--ckpt", "x", "--temperature", "0.5",
                                           "--top_k", "3"])
    assert args.temperature == 0.5 and args.top_k == 3
    with pytest.raises(ArgumentError):  # the code grid fixes the prompt
        build_parser(model).parse_args(["--ckpt", "x", "--prompt", "a"])


def test_wrong_pairings_are_refused_in_one_line(stage_one, tmp_path):
    _, ae = stage_one
    wrong_vocab = {"prior": "GPT", "prior_args": {**GPT["prior_args"], "vocab_size": 8}}
    with pytest.raises(GenlabError, match=r"vocab_size is 8 .* must be 9") as err:
        create_model("twostage", autoencoder=str(ae), **wrong_vocab)
    assert "\n" not in str(err.value)
    # a checkpoint that is not an autoencoder with codes: a GPT's
    gpt = _saved(create_model("ar", vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4),
                 tmp_path / "gpt.ckpt")
    with pytest.raises(GenlabError, match="must be an autoencoder with integer codes") as err:
        create_model("twostage", autoencoder=gpt, **GPT)
    assert "\n" not in str(err.value)


def test_checkpoint_samples_after_the_autoencoder_file_is_deleted(stage_one, tmp_path):
    data, ae = stage_one
    copy = tmp_path / "ae.ckpt"
    copy.write_bytes(ae.read_bytes())
    model = create_model("twostage", autoencoder=str(copy), **GPT)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, data)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    copy.unlink()
    torch.manual_seed(0)
    want = model.sample_eval(2)
    loaded = load_model(tmp_path / "two.ckpt")
    torch.manual_seed(0)
    assert torch.equal(loaded.sample_eval(2), want)


def test_diffusion_prior_over_a_vae_s_latents(tmp_path):
    vae = _tiny_vae(tmp_path)
    model = create_model("twostage", autoencoder=vae, prior="diffusion",
                         prior_args={"hidden": [16], "num_timesteps": 20, "sample_steps": 2})
    assert list(model.prior.hparams.data_shape) == [2]
    batch = {"x": torch.rand(4, 1, 28, 28) * 2 - 1, "label": torch.arange(4)}
    assert model.prior_batch(batch)["x"].shape == (4, 2)
    assert model.sample_eval(3, steps=2).shape == (3, 1, 28, 28)
    with pytest.raises(GenlabError, match="integer codes"):  # a VAE has no codes for a GPT
        create_model("twostage", autoencoder=vae, **GPT)


def test_class_conditional_prior_gets_the_labels_in_training_and_sampling(tmp_path):
    vae = _tiny_vae(tmp_path)
    model = create_model("twostage", autoencoder=vae, prior="Diffusion",
                         prior_args={"hidden": [16], "num_classes": 3, "num_timesteps": 20,
                                     "sample_steps": 2, "label_dropout": 0.0})
    batch = {"x": torch.rand(4, 1, 28, 28) * 2 - 1, "label": torch.tensor([0, 1, 2, 0])}
    assert torch.equal(model.prior_batch(batch)["label"], batch["label"])
    assert torch.equal(model.prior.training_conditions(model.prior_batch(batch)), batch["label"])
    draws = {}
    for labels, guidance in [((0, 0), 1.0), ((2, 2), 1.0), ((2, 2), 3.0)]:
        torch.manual_seed(0)
        draws[labels, guidance] = model.sample_eval(2, labels=torch.tensor(labels),
                                                    guidance=guidance, steps=2)
    assert draws[(0, 0), 1.0].shape == (2, 1, 28, 28)
    assert not torch.equal(draws[(0, 0), 1.0], draws[(2, 2), 1.0])  # the label reaches the net
    assert not torch.equal(draws[(2, 2), 1.0], draws[(2, 2), 3.0])  # and so does the guidance
