"""Data order and training noise do not depend on how many processes share the batch."""

import math
from types import SimpleNamespace

import pytest
import torch

from genlab import noise
from genlab.data.resumable import ResumableSampler
from genlab.noise import (
    NoiseStream,
    _bits,
    batch_rand,
    batch_randint,
    batch_randn,
    share_rand,
    share_randint,
    share_randn,
)


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


def test_counter_generator_is_splitmix64():
    mask = (1 << 64) - 1

    def splitmix(state):  # Steele, Lea and Flood's reference, in Python integers
        z = state & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    key, counters = 0x1234_5678_9ABC_DEF, torch.arange(0, 10**6, 997)
    got = [int(b) & mask for b in _bits(torch.tensor(key), counters)]
    assert got == [splitmix(key + int(c) * 0x9E3779B97F4A7C15) for c in counters]


@pytest.mark.parametrize("chunk", [7, 50, 1 << 16])  # rows cut in pieces, rows in groups
def test_an_eight_way_split_reassembles_the_one_process_draw(monkeypatch, chunk):
    monkeypatch.setitem(noise._CHUNK, "cpu", chunk)
    for draw in (lambda m, n: batch_randn(m, (n, 3, 4, 5)),
                 lambda m, n: batch_rand(m, (n, 3, 4), dtype=torch.float64),
                 lambda m, n: batch_randint(m, -5, 5, (n, 20)),
                 lambda m, n: batch_randn(m, (3, n, 4), dim=1)):
        torch.manual_seed(1)
        whole = draw(on_process(0, 1), 16)
        dim = 1 if whole.shape[0] == 3 else 0
        parts = []
        for rank in range(8):
            torch.manual_seed(1)
            parts.append(draw(on_process(rank, 8), 2))
        # row i of the global batch is row i // 8 of rank i % 8
        assert torch.equal(torch.stack(parts, dim + 1).flatten(dim, dim + 1), whole)


def test_values_do_not_depend_on_how_the_work_is_cut(monkeypatch):
    draws = []
    for chunk in (13, 1000, 1 << 16):
        monkeypatch.setitem(noise._CHUNK, "cpu", chunk)
        draws.append(share_randn((5, 300), rank=1, world=3, generator=torch.Generator()))
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])


def test_keyed_noise_has_the_right_distributions():
    gen = torch.Generator().manual_seed(0)
    z = share_randn((200_000,), generator=gen)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(z.pow(4).mean() - 3) < 0.05 and z.dtype == torch.float32
    # float64: Box-Muller to ~1e-13 against torch's own log and cos
    bits = _bits(torch.tensor(7), torch.arange(100_000))
    u = (bits >> 32 & 0xFFFFFFFF).double() + 1
    angle = ((bits & 0x7FFFFFFF).double() + 0.5) * (math.pi / 2 / 2**31)
    sign = 1 - 2 * (bits >> 31 & 1).double()
    want = sign * (-2 * torch.log(u / 2**32)).sqrt() * torch.cos(angle)
    assert (noise._normal(bits, torch.float64) - want).abs().max() < 1e-12
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        x = share_rand((50_000,), generator=gen, dtype=dtype)
        assert x.dtype == dtype and x.min() >= 0 and x.max() < 1
        assert abs(x.double().mean() - 0.5) < 0.01
    k = share_randint(3, 10, (50_000,), generator=gen)
    assert k.min() == 3 and k.max() == 9 and torch.bincount(k)[3:].min() > 6000


def test_noise_memory_follows_the_local_batch():
    from benchmarks.noise import measure

    keyed = [measure("keyed", (8, 3, 32, 32), world, repeats=0)["peak_bytes"]
             for world in (1, 64)]
    assert 0 < keyed[1] <= 2 * keyed[0]
    # the measure can tell: the old scheme (the whole global batch on every rank) grows 64x
    old = [measure("global", (8, 3, 32, 32), world, repeats=0)["peak_bytes"]
           for world in (1, 64)]
    assert old[1] > 30 * old[0] > 0
