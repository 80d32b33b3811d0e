"""The recipe rules and picture helpers plugins share: labels, horizon, schedules, pictures."""

import copy
import math
import pickle
from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from genlab.errors import GenlabError
from genlab.nn import RebuildOnPickle, spectral_norm
from genlab.pictures import latent_interpolation, lerp, slerp, strip
from genlab.recipes import batch_labels, draw_from_prior, lr_horizon, sample_labels, warmup_cosine


def test_draw_from_prior_counts_follow_shares_and_each_label_is_a_draw():
    prior = torch.tensor([0.5, 0.0, 0.3, 0.2])
    torch.manual_seed(0)
    for num in (7, 100, 1001):
        counts = torch.bincount(draw_from_prior(prior, num), minlength=4).double()
        assert (counts - num * prior / prior.sum()).abs().max() < 1
    # one label at a time is a plain draw from the prior, and order carries no pattern
    first = torch.stack([draw_from_prior(prior * 3, 5)[0] for _ in range(4000)])
    assert torch.allclose(torch.bincount(first, minlength=4) / 4000., prior, atol=0.03)


def test_sample_labels_default_check_and_refuse():
    assert sample_labels(5, None, None, "cpu") is None
    assert sample_labels(5, None, 3, "cpu").tolist() == [0, 1, 2, 0, 1]
    torch.manual_seed(0)
    assert sample_labels(64, None, 3, "cpu", "random").unique().tolist() == [0, 1, 2]
    assert sample_labels(2, [2, 0], 3, "cpu").tolist() == [2, 0]
    with pytest.raises(GenlabError, match=r"2 class ids in \[0, 3\), got \[0, 3\]"):
        sample_labels(2, [0, 3], 3, "cpu")
    with pytest.raises(GenlabError, match="unconditional"):
        sample_labels(2, [0, 1], None, "cpu")


def test_batch_labels():
    assert batch_labels({"x": torch.zeros(2)}, None) is None
    assert batch_labels({"label": torch.tensor([1, 0])}, 2).dtype == torch.long
    with pytest.raises(GenlabError, match="the teacher is class-conditional but the batches"):
        batch_labels({"x": torch.zeros(2)}, 2, owner="the teacher")


def trainer(estimated, max_steps=-1):
    return SimpleNamespace(estimated_stepping_batches=estimated, max_steps=max_steps)


def test_lr_horizon_in_batches_for_several_optimizers_a_batch():
    assert lr_horizon(trainer(120)) == 120
    # max_steps counts optimizer steps: 3 a batch for n_critic 2 makes 90 steps 60 batches.
    assert lr_horizon(trainer(90, max_steps=90), Fraction(3, 2)) == 60
    assert lr_horizon(trainer(0)) == 1
    with pytest.raises(GenlabError, match="needs a finite run: set model.decay_steps"):
        lr_horizon(trainer(math.inf), fix="model.decay_steps")


def test_warmup_cosine():
    assert [warmup_cosine(s, 4, 0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_cosine(1, 4, 0, ramp=5) == 0.4
    assert warmup_cosine(4, 4, 14) == 1.0 and warmup_cosine(9, 4, 14) == pytest.approx(0.5)
    assert warmup_cosine(99, 4, 14, floor=0.1) == pytest.approx(0.1)


def test_slerp_keeps_the_norm_and_lerp_the_line():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    t = torch.linspace(0, 1, 5)
    assert torch.allclose(slerp(a, b, t).norm(dim=-1), torch.ones(1, 5))
    assert torch.allclose(slerp(a, b, t)[0, [0, -1]], torch.cat([a, b]), atol=1e-6)
    assert torch.allclose(lerp(a, b, t)[0, 2], torch.tensor([0.5, 0.5]))


def test_latent_interpolation_rows_and_strips():
    decode = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Unflatten(1, (1, 4, 4)))
    z = torch.randn(2, 2, 3)
    picture = latent_interpolation(decode, z[0], z[1], steps=5)
    assert picture.size == (5 * 6 + 2, 2 * 6 + 2)  # one row of 5 per pair, 2-pixel padding
    ends = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    assert latent_interpolation(decode, z[0], z[1], 5, ends=ends).size == (7 * 6 + 2, 14)
    assert latent_interpolation(nn.Linear(3, 2), z[0], z[1]).mode == "RGB"  # points: paths
    assert strip([torch.zeros(3, 2), torch.ones(3, 2)], ["a", "b"]).width == 1000


class Critic(RebuildOnPickle, nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self._args = (width,)
        self.net = spectral_norm(nn.Sequential(nn.Linear(2, width), nn.Linear(width, 1)))


def test_spectral_norm_on_every_layer_and_picklable():
    critic = Critic(4)
    critic.net(torch.randn(3, 2))  # a power iteration
    assert all(hasattr(layer, "parametrizations") for layer in critic.net)
    copied = pickle.loads(pickle.dumps(critic))
    for a, b in zip(critic.state_dict().values(), copied.state_dict().values()):
        assert torch.equal(a, b)
    assert isinstance(copy.deepcopy(critic), Critic)
    assert hasattr(spectral_norm(nn.Linear(2, 2)), "parametrizations")
