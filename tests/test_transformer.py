"""genlab.nn.transformer: causal masking, KV cache, sampling filters, weight-decay groups."""

import pytest
import torch
from torch import nn

from genlab.nn.transformer import Transformer, filter_logits, generate, next_token


def tiny(vocab=11, block=16, dropout=0.0, bias=False, position="learned"):
    torch.manual_seed(0)
    return Transformer(vocab, block_size=block, n_layer=2, n_head=2, n_embd=16, dropout=dropout,
                       bias=bias, position=position).eval()


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_changing_a_future_token_never_changes_earlier_logits(position):
    net = tiny(position=position)
    idx = torch.randint(0, 11, (3, 12))
    base = net(idx)
    for t in range(12):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 11
        logits = net(changed)
        torch.testing.assert_close(logits[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(logits[:, t], base[:, t])


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_kv_cache_gives_the_full_forward_logits(position):
    net = tiny(position=position)
    idx = torch.randint(0, 11, (2, 16))
    full = net(idx)
    cache = net.new_cache(2)
    # A prompt of 5, then a chunk of 3 (a masked multi-token step), then one token at a time.
    pieces = [net(idx[:, :5], cache), net(idx[:, 5:8], cache)]
    pieces += [net(idx[:, t : t + 1], cache) for t in range(8, 16)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == 16
    with pytest.raises(ValueError, match="exceed block_size"):
        net(idx[:, :1], cache)


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_generate_matches_sampling_from_full_forward_passes(position):
    net = tiny(block=8, position=position)
    prompt = torch.randint(0, 11, (2, 3))
    torch.manual_seed(1)
    cached = generate(net, prompt, max_new_tokens=12, temperature=0.8, top_k=5)
    # The same draws from full forward passes over the window the cache holds.
    torch.manual_seed(1)
    out, window = prompt, 3
    for _ in range(12):
        logits = net(out[:, -window:])[:, -1]
        out = torch.cat([out, next_token(logits, 0.8, top_k=5)], dim=1)
        window = window + 1 if window < 8 else 6  # a full cache restarts from 3/4 of a block
    assert cached.shape == (2, 15)
    assert torch.equal(cached, out)


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda f: torch.isfinite(f).squeeze(0).tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.6)) == [True, True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.4)) == [True, False, False, False, False]
    assert kept(filter_logits(logits, top_p=0.01)) == [True, False, False, False, False]
    assert kept(filter_logits(logits, top_p=0.86)) == [True, True, True, True, False]
    assert kept(filter_logits(logits, top_k=3, top_p=0.99)) == [True, True, True, False, False]
    shuffled = logits[:, [3, 0, 4, 2, 1]]  # the filters follow values, not positions
    assert kept(filter_logits(shuffled, top_p=0.6)) == [False, True, False, False, True]
    torch.manual_seed(0)
    draws = next_token(logits.expand(500, 5), top_k=2).flatten()
    assert set(draws.tolist()) == {0, 1}
    assert next_token(logits, temperature=0).item() == 0


def test_weight_decay_groups():
    net = tiny(bias=True)
    decay, no_decay = net.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    linears = [m.weight for m in net.modules() if isinstance(m, nn.Linear)
               and m.weight is not net.wte.weight]
    assert {id(p) for p in decay["params"]} == {id(p) for p in linears}
    others = {id(p) for p in no_decay["params"]}
    assert id(net.wte.weight) in others and id(net.wpe.weight) in others
    assert id(net.ln_f.weight) in others and id(net.blocks[0].attn.qkv.bias) in others
    # Every parameter once (the tied head is the embedding), none in both groups.
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))
    assert net.lm_head.weight is net.wte.weight


def test_rope_scores_depend_only_on_relative_position():
    from genlab.nn.transformer import apply_rope, rope_tables

    cos, sin = rope_tables(8, 32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        return (apply_rope(q, cos[i], sin[i]) * apply_rope(k, cos[j], sin[j])).sum()

    torch.testing.assert_close(score(5, 2), score(20, 17))
    assert not torch.allclose(score(5, 2), score(5, 3))
