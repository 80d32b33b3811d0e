import pytest
import torch

from genlab.errors import GenlabError
from genlab.registry import create_model


def _tiny(**kw):
    torch.manual_seed(0)
    return create_model("vqgan", **{"num_codes": 8, "code_dim": 4, "width": 4, **kw})


def test_encode_decode_round_trip_shapes():
    model = _tiny().eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (3, 7, 7) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 8
    images = model.decode(codes)
    assert images.shape == (3, 1, 28, 28) and images.abs().max() <= 1
    assert model.latent_shape == (4, 7, 7)
    assert model.encode_latent(x).shape == (3, 4, 7, 7)
    assert torch.equal(model.decode_latent(model.encode_latent(x)), images)


def test_without_adversarial_terms_it_is_a_vq_vae():
    model = _tiny()
    assert model.discriminator is None
    assert _tiny(disc_weight=0.1).discriminator is not None


def test_adaptive_weight_balances_gradient_norms_at_the_last_layer():
    model = _tiny(disc_weight=1.0)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    x_rec = model.decoder(model.quantizer(model.encoder(x)).z_q)
    rec = model.rec_loss(x, x_rec)
    gan = model.discriminator(x_rec)[0].mean()
    w = model.adaptive_weight(rec, 3 * gan)
    last = model.decoder.last_layer
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0].norm()
    g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0].norm()
    assert torch.isclose(w, g_rec / (3 * g_gan + 1e-4), rtol=1e-4)


def test_bad_hyperparameters_are_one_line():
    with pytest.raises(GenlabError, match="model.disc_weight"):
        _tiny(disc_weight=-1.0)
