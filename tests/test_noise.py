"""Data order and training noise do not depend on how many processes share the batch."""

from types import SimpleNamespace

import torch

from genlab.data.resumable import ResumableSampler
from genlab.noise import NoiseStream, batch_rand, batch_randint, batch_randn


def on_process(rank, world):
    """A stand-in for a LightningModule trained by process ``rank`` of ``world``."""
    trainer = SimpleNamespace(global_rank=rank, world_size=world)
    return SimpleNamespace(_trainer=trainer, device=torch.device("cpu"))


def test_ranks_deal_the_one_process_order_between_them():
    one = list(ResumableSampler(12, seed=3))
    shares = [list(ResumableSampler(12, seed=3, num_replicas=3, rank=r)) for r in range(3)]
    assert [x for row in zip(*shares) for x in row] == one  # position i goes to rank i % 3
    assert all(len(s) == 4 for s in shares)


def test_uneven_sizes_are_padded_like_distributed_sampler():
    shares = [list(ResumableSampler(5, num_replicas=2, rank=r)) for r in range(2)]
    assert [len(s) for s in shares] == [3, 3] and set(shares[0] + shares[1]) == set(range(5))


def test_a_resumed_rank_skips_only_what_it_served():
    full = list(ResumableSampler(12, seed=1, num_replicas=2, rank=1))
    resumed = ResumableSampler(12, seed=1, num_replicas=2, rank=1, position=lambda: (0, 4))
    assert list(resumed) == full[4:]


def test_keyed_sampler_yields_epoch_keys():
    sampler = ResumableSampler(4, keyed=True, position=None)
    first, second = sorted(sampler), sorted(sampler)
    assert first == [0, 1, 2, 3] and second == [4, 5, 6, 7]


def test_each_process_draws_its_share_of_the_global_noise():
    for draw in (lambda m, n: batch_randn(m, (n, 3)),
                 lambda m, n: batch_rand(m, (n,)),
                 lambda m, n: batch_randint(m, 0, 100, (n, 2))):
        torch.manual_seed(0)
        whole = draw(on_process(0, 1), 6)  # one process, the global batch of 6
        for rank in range(2):
            torch.manual_seed(0)  # every process holds the same RNG state
            assert torch.equal(draw(on_process(rank, 2), 3), whole[rank::2])


def test_batch_dimension_other_than_the_first():
    torch.manual_seed(0)
    whole = batch_randn(on_process(0, 1), (5, 4, 2), dim=1)  # e.g. k importance samples
    torch.manual_seed(0)
    share = batch_randn(on_process(1, 2), (5, 2, 2), dim=1)
    assert torch.equal(share, whole[:, 1::2])


def test_outside_a_fit_it_is_plain_torch_randn():
    module = SimpleNamespace(_trainer=None, device=torch.device("cpu"))
    torch.manual_seed(0)
    want = torch.randn(4, 2)
    torch.manual_seed(0)
    assert torch.equal(batch_randn(module, (4, 2)), want)


def test_a_noise_stream_is_seeded_globally_and_continues_from_its_checkpoint():
    cpu = torch.device("cpu")
    torch.manual_seed(5)
    stream = NoiseStream("my_noise")
    first = torch.randn(3, generator=stream.generator(cpu))
    checkpoint = {}
    stream.save(checkpoint)
    uninterrupted = torch.randn(3, generator=stream.generator(cpu))

    resumed = NoiseStream("my_noise")
    resumed.load(checkpoint)
    assert torch.equal(torch.randn(3, generator=resumed.generator(cpu)), uninterrupted)
    torch.manual_seed(5)
    again = torch.randn(3, generator=NoiseStream("my_noise").generator(cpu))
    assert torch.equal(again, first)  # seed_everything fixes the stream


def test_a_noise_stream_never_drawn_from_saves_nothing():
    checkpoint = {}
    NoiseStream("my_noise").save(checkpoint)
    assert checkpoint == {}
