"""Manual steps reach every network DDP wraps; errors come from the first bad condition."""

import pytest
import torch
from torch import nn

from genlab.distributed import manual_step
from genlab.errors import GenlabError, raise_first


class Backward:
    """Stands in for a LightningModule: ``manual_backward`` is a plain backward."""

    @staticmethod
    def manual_backward(loss):
        loss.backward()


def test_a_manual_step_trains_its_networks_and_gives_the_others_a_zero_gradient():
    torch.manual_seed(0)
    trained, other = nn.Linear(3, 1), nn.Linear(3, 1)
    before = [p.detach().clone() for p in (*trained.parameters(), *other.parameters())]
    opt = torch.optim.SGD(trained.parameters(), lr=0.1)
    manual_step(Backward(), [opt], trained(torch.ones(2, 3)).sum(), reach=[other])
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in other.parameters())
    after = [p.detach() for p in (*trained.parameters(), *other.parameters())]
    assert not torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])


def test_a_manual_step_clears_old_gradients_and_steps_every_optimizer():
    nets = [nn.Linear(2, 1), nn.Linear(2, 1)]
    opts = [torch.optim.SGD(n.parameters(), lr=1.0) for n in nets]
    for n in nets:
        n.weight.grad = torch.full_like(n.weight, 100.0)  # stale: must not be applied
    weights = [n.weight.detach().clone() for n in nets]
    loss = sum(n(torch.ones(1, 2)).sum() for n in nets)
    manual_step(Backward(), opts, loss)
    for n, w in zip(nets, weights):
        assert torch.allclose(n.weight, w - 1.0)  # d loss / d w = 1, lr 1


def test_raise_first_names_the_first_bad_condition_only():
    raise_first([(False, "fine")])
    with pytest.raises(GenlabError, match="^second$"):
        raise_first([(False, "first"), (True, "second"), (True, "third")])
