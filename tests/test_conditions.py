"""Conditions in the contract: routing, encoders, guidance on any kind, captions, the CLI."""

import pytest
import torch
from PIL import Image

from genlab import conditions
from genlab.data.captions import HELDOUT_PHRASINGS, TRAIN_PHRASINGS, Captioner
from genlab.data.images import ImageDataModule
from genlab.data.tiny import write_parquet
from genlab.diffusion import classifier_free_guidance
from genlab.errors import GenlabError
from genlab.nn import ImageEncoder, LabelConcat, TextEncoder, UNet
from genlab.testing import check_plugin

TINY_COND = {"data_shape": [1, 8, 8], "channels": 8, "channel_mults": [1, 2],
             "num_res_blocks": 1, "attention_levels": [], "dropout": 0.0, "num_timesteps": 20,
             "sample_steps": 3, "text_condition": True, "text_width": 8, "text_max_len": 24,
             "source_size": 4, "source_width": 4, "num_classes": 3, "guidance": 2.0}


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    return str(write_parquet(tmp_path_factory.mktemp("tiny"), {"train": 48, "test": 16},
                             size=(8, 8)))


def _data(source, **kwargs):
    options = dict(image_size=8, channels=1, resize=False, batch_size=8, num_workers=0)
    return ImageDataModule(source, **{**options, **kwargs})


def _net(channels=8):
    torch.manual_seed(0)
    net = UNet(1, channels, (1, 2), 1, (), 0.0, num_classes=3,
               text_encoder=TextEncoder(4 * channels, 8, 16),
               source_encoder=ImageEncoder(1, 8, 4))
    for param in net.parameters():  # blocks start as the identity: nothing would reach the output
        if not param.any():
            torch.nn.init.normal_(param, std=0.3)
    return net.eval()


def test_route_names_a_missing_or_an_extra_condition_in_one_line():
    batch = {"x": torch.zeros(2, 1), "label": torch.zeros(2), "text": ["a", "b"]}
    assert set(conditions.route(batch, ("label", "text"), "M")) == {"label", "text"}
    assert conditions.route(batch, ("text",), "M") == {"text": ["a", "b"]}  # labels ignorable
    with pytest.raises(GenlabError, match="needs the condition 'source'") as err:
        conditions.route(batch, ("text", "source"), "M")
    assert "\n" not in str(err.value) and "data.source_size" in str(err.value)
    with pytest.raises(GenlabError, match="carry the condition 'text' but M") as err:
        conditions.route(batch, ("label",), "M")
    assert "\n" not in str(err.value) and "data.captions" in str(err.value)


def _moves(new, old):
    """``new`` differs from ``old`` by more than float noise (a relative 1e-3 on average)."""
    return (new - old).abs().mean() > 1e-3 * old.abs().mean()


@pytest.mark.parametrize("channels", [8, 16, 64])  # 16: the MNIST CPU presets' width
def test_each_kind_and_the_timestep_reach_the_network(channels):
    # Narrow U-Nets have one channel per norm group (gcd(32, 16) = 16 groups of 16 channels):
    # an embedding added before that norm is subtracted again, and the network was blind to
    # the timestep and every condition (text-to-image at chance level).
    net, x, t = _net(channels), torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    base = {"label": torch.tensor([0, 1]), "text": ["one", "two"],
            "source": torch.zeros(2, 1, 4, 4)}
    with torch.no_grad():
        out = net(x, t, base)
        assert _moves(net(x, torch.tensor([15, 1]), base), out), "timestep"
        for kind, other in [("label", torch.tensor([2, 2])), ("text", ["seven", "eight"]),
                            ("source", torch.ones(2, 1, 4, 4))]:
            assert _moves(net(x, t, {**base, kind: other}), out), kind
        # A condition left out is the null one.
        assert torch.allclose(net(x, t, {}), net(x, t, conditions.null(base, null_label=3)))


def test_guidance_with_the_null_condition_is_the_unconditional_model():
    net, x, t = _net(), torch.randn(3, 1, 8, 8), torch.tensor([1, 5, 9])
    cond = {"label": torch.tensor([0, 1, 2]), "text": ["a one", "two", "the digit 2"],
            "source": torch.rand(3, 1, 4, 4)}
    empty = conditions.null(cond, null_label=3)
    with torch.no_grad():
        uncond = net(x, t, empty)
        for scale in (0.0, 3.0):
            assert torch.allclose(classifier_free_guidance(net, scale, 3)(x, t, empty), uncond,
                                  atol=1e-5)
        assert torch.allclose(classifier_free_guidance(net, 0.0, 3)(x, t, cond), uncond,
                              atol=1e-5)
        assert torch.allclose(classifier_free_guidance(net, 1.0, 3)(x, t, cond),
                              net(x, t, cond))


def test_heldout_phrasings_never_appear_in_training_batches(tiny_source):
    data = _data(tiny_source, captions=True)
    data.setup("fit")
    names = data.class_names()
    held = Captioner(names, train=False).all_captions()
    train = Captioner(names, train=True).all_captions()
    assert not held & train and len(TRAIN_PHRASINGS) > len(HELDOUT_PHRASINGS) > 1
    seen = {c for _ in range(3) for b in data.train_dataloader() for c in b["text"]}
    assert seen <= train and not seen & held and len(seen) > 10
    val = {c for b in data.val_dataloader() for c in b["text"]}
    assert val and val <= held


def test_captions_take_the_article_the_word_is_spoken_with():
    names = [str(i) for i in range(10)]
    captions = Captioner(names, train=True).all_captions()
    assert {"a one", "an eight", "an image of a one", "an image of an eight"} <= captions
    assert not {"an one", "a eight", "an image of an one"} & captions
    assert Captioner(["8", "11", "uniform"], train=False, words=["8", "11", "uniform"]).render(
        "a drawing of a {name}", 1) == "a drawing of an 11"


def test_the_data_serves_sources_and_unwanted_conditions_are_refused(tiny_source):
    from genlab_diffusion import Diffusion

    data = _data(tiny_source, captions=True, source_size=4)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["source"].shape == (8, 1, 4, 4) and data.conditions == ("label", "text", "source")
    plain = Diffusion(data_shape=[1, 8, 8], channels=8, channel_mults=[1, 2], num_res_blocks=1,
                      attention_levels=[], num_timesteps=20, sample_steps=3)
    with pytest.raises(GenlabError, match="carry the condition 'text'"):
        plain.training_step(batch, 0)
    texts = Diffusion(**{**TINY_COND, "source_size": None, "num_classes": None})
    with pytest.raises(GenlabError, match="drop --source"):
        texts.sample(2, source=torch.zeros(1, 1, 4, 4))


def test_conditional_diffusion_conforms_and_samples_from_the_command_line(tiny_source, tmp_path):
    from genlab.sampling import sample_main

    data = _data(tiny_source, captions=True, source_size=4)
    # 2e-3, not the kit's 1e-3: in this tiny UNet every GroupNorm group is one channel, so the
    # biases just before one get mathematically zero gradients, computed as float noise (~1e-9)
    # that Adam (eps 1e-8) turns into steps of a good share of lr. The noise depends on the
    # order of summation, which DDP changes: those biases alone end ~1e-3 of the weights'
    # movement apart (0.0008 to 0.0013 with the captions' wording). A real mismatch of noise
    # or data between processes ends tenths of it apart.
    check_plugin("diffusion", data, tmp_path, init_args=TINY_COND, steps=3, num=4, ddp=True,
                 precisions=("bf16-mixed",), ddp_tolerance=2e-3)
    ckpt = next(tmp_path.rglob("*.ckpt"))
    Image.new("L", (8, 8), 200).save(tmp_path / "digit.png")
    sample_main(["--ckpt", str(ckpt), "--num", "3", "--prompt", "a seven", "--source",
                 str(tmp_path / "digit.png"), "--labels", "1", "--out", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").is_file()


def test_label_concat_puts_the_label_embedding_after_the_latent():
    concat = LabelConcat(3, 2)
    z, labels = torch.randn(4, 5), torch.tensor([0, 2, 2, 1])
    out = concat(z, labels)
    assert out.shape == (4, 7) and torch.equal(out[:, :5], z)
    assert torch.equal(out[:, 5:], concat.weight[labels]) and torch.equal(out[1, 5:], out[2, 5:])
