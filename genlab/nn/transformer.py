"""A decoder-only transformer (GPT-2 layout) with a KV cache, and the sampling loop around it.

Pre-norm blocks, causal self-attention through ``scaled_dot_product_attention`` (flash kernels
on GPU), learned absolute positions or rotary embeddings (RoPE, Su et al. 2021), output head tied
to the token embedding (Press & Wolf 2017). Plain PyTorch: nothing here imports Lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class LayerCache:
    """Keys and values of one attention layer, preallocated for ``max_len`` positions.

    Args:
        k: ``(B, nh, max_len, hs)`` keys.
        v: ``(B, nh, max_len, hs)`` values.
    """

    k: Tensor
    v: Tensor


class KVCache:
    """Keys and values of the positions seen so far, so each new token costs one position's work.

    Args:
        layers: One ``LayerCache`` per block.
    """

    def __init__(self, layers: list[LayerCache]) -> None:
        self.layers = layers
        self.length = 0  # positions filled so far, the same in every layer

    @property
    def max_len(self) -> int:
        """Positions the buffers hold."""
        return self.layers[0].k.shape[2]

    def reset(self) -> None:
        """Forget every position (the buffers are reused)."""
        self.length = 0


Position = Literal["learned", "rope"]


def rope_tables(head_dim: int, max_len: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` ``(max_len, head_dim / 2)`` of the rotary angles ``t * base^(-2i/d)``.

    Args:
        head_dim: Size of one attention head (even).
        max_len: Number of positions.
        base: Wavelength base.
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x`` ``(B, nh, T, hs)`` with each pair ``(x_i, x_{i + hs/2})`` rotated by its angle.

    Rotating queries and keys by their positions' angles makes ``q . k`` depend on positions
    only through their difference.

    Args:
        x: Queries or keys.
        cos: ``(T, hs / 2)`` cosines of the positions' angles.
        sin: ``(T, hs / 2)`` sines.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``t`` sees only positions ``<= t``.

    Args:
        n_embd: Width of the residual stream.
        n_head: Number of heads; must divide ``n_embd``.
        dropout: Dropout on attention weights and on the output.
        bias: Whether the projections have biases.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: LayerCache | None = None, start: int = 0,
                rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``(B, T, C) -> (B, T, C)``; with ``cache``, ``x`` holds positions ``start..start+T-1``.

        Args:
            x: The residual stream of the new positions.
            cache: Keys and values of positions ``< start``; this call's are written into it.
            start: Position of ``x[:, 0]``.
            rope: ``cos``, ``sin`` ``(T, hs / 2)`` of these positions, to rotate queries and keys.
        """
        B, T, C = x.shape
        # (B, T, 3C) -> three (B, nh, T, hs)
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        mask, causal = None, True
        if cache is not None:
            cache.k[:, :, start : start + T] = k
            cache.v[:, :, start : start + T] = v
            k, v = cache.k[:, :, : start + T], cache.v[:, :, : start + T]  # (B, nh, start+T, hs)
            if start > 0:
                # Query i sits at position start + i: it sees keys 0..start + i.
                causal = False
                if T > 1:
                    mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device)
                    mask = mask.tril(diagonal=start)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


class FeedForward(nn.Module):
    """Position-wise MLP, ``C -> 4C -> C`` with GELU.

    Args:
        n_embd: Width of the residual stream.
        dropout: Dropout on the output.
        bias: Whether the linear layers have biases.
    """

    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C) -> (B, T, C)``."""
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``.

    Args:
        n_embd: Width of the residual stream.
        n_head: Number of attention heads.
        dropout: Dropout rate.
        bias: Whether linear layers and norms have biases.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = FeedForward(n_embd, dropout, bias)

    def forward(self, x: Tensor, cache: LayerCache | None = None, start: int = 0,
                rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``(B, T, C) -> (B, T, C)``; the other arguments as in ``CausalSelfAttention``."""
        x = x + self.attn(self.ln_1(x), cache, start, rope)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Decoder-only transformer: token ids ``(B, T)`` to next-token logits ``(B, T, vocab)``.

    GPT-2's initialisation: weights ~ N(0, 0.02), the projections that write into the residual
    stream scaled by ``1 / sqrt(2 * n_layer)`` so its variance does not grow with depth.

    Args:
        vocab_size: Number of distinct tokens.
        block_size: Longest context (number of learned positions).
        n_layer: Number of blocks.
        n_head: Attention heads per block.
        n_embd: Width of the residual stream.
        dropout: Dropout on embeddings, attention and block outputs.
        bias: Whether linear layers and norms have biases.
        position: ``learned`` absolute position embeddings (GPT-2), or ``rope``: rotary
            embeddings of queries and keys.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 256,
        n_layer: int = 6,
        n_head: int = 6,
        n_embd: int = 384,
        dropout: float = 0.0,
        bias: bool = False,
        position: Position = "learned",
    ) -> None:
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.n_head, self.n_embd = n_head, n_embd
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd) if position == "learned" else None
        if position == "rope":
            cos, sin = rope_tables(n_embd // n_head, block_size)
            # Not persistent: rebuilt from the sizes, so checkpoints hold only weights.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one matrix embeds and un-embeds
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # attention and MLP outputs into the residual
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor, cache: KVCache | None = None) -> Tensor:
        """Logits ``(B, T, vocab)`` for token ids ``idx`` ``(B, T)``.

        Args:
            idx: Token ids; with ``cache``, the ids that follow the cached positions.
            cache: From ``new_cache``; its positions are attended to and this call's appended.
        """
        T = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + T > self.block_size:
            raise ValueError(f"{start + T} positions exceed block_size {self.block_size}")
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
        else:
            rope = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache.layers[i] if cache is not None else None, start, rope)
        if cache is not None:
            cache.length += T
        return self.lm_head(self.ln_f(x))

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences of up to ``block_size`` positions.

        Args:
            batch_size: Number of sequences generated together.
        """
        p = self.wte.weight  # not p.new_zeros: sharded (FSDP2) p would make a sharded cache
        shape = (batch_size, self.n_head, self.block_size, self.n_embd // self.n_head)
        return KVCache([LayerCache(*(torch.zeros(shape, device=p.device, dtype=p.dtype)
                                     for _ in "kv")) for _ in self.blocks])

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay on the matrices of linear layers, none on norms, biases, embeddings.

        The tied output head is the token embedding, so it is not decayed either.

        Args:
            weight_decay: Decoupled weight decay of the first group.
        """
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        decay, no_decay, seen = [], [], set()
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                is_matrix = isinstance(module, nn.Linear) and name == "weight"
                (decay if is_matrix and id(p) not in embeddings else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Logits ``(B, V)`` with tokens outside the top-k / nucleus (top-p) set to ``-inf``.

    Top-p keeps the smallest set of most likely tokens whose probability reaches ``top_p``
    (Holtzman et al. 2020); the most likely token is always kept.

    Args:
        logits: Next-token logits.
        top_k: Keep only the ``top_k`` largest logits.
        top_p: Keep the nucleus of probability mass ``top_p`` (0 < top_p <= 1).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens before it already reach top_p.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None) -> Tensor:
    """Sample one token id per row ``(B, 1)`` from logits ``(B, V)``; temperature 0 is greedy.

    Args:
        logits: Next-token logits.
        temperature: Divides the logits; lower is more conservative.
        top_k: See ``filter_logits``.
        top_p: See ``filter_logits``.
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1)


@torch.no_grad()
def generate(net: Transformer, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Continue ``idx`` ``(B, T0)`` by ``max_new_tokens`` sampled tokens: ``(B, T0 + new)``.

    Each step feeds only the newest token and reads the past from a KV cache, so the cost grows
    linearly with length. When the context fills ``block_size``, the cache restarts from the last
    three quarters of a block (learned positions cannot slide), so past ``block_size`` the model
    sees between 3/4 and all of a block of context.

    Args:
        net: The transformer (put it in eval mode first).
        idx: Prompt token ids, at least one per row.
        max_new_tokens: Tokens to add.
        temperature: See ``next_token``.
        top_k: See ``filter_logits``.
        top_p: See ``filter_logits``.
    """
    B, T0 = idx.shape
    out = torch.cat([idx, idx.new_zeros(B, max_new_tokens)], dim=1)
    keep = max(1, net.block_size * 3 // 4)
    cache = net.new_cache(B)
    logits = net(idx[:, -net.block_size :], cache)[:, -1]
    for t in range(T0, T0 + max_new_tokens):
        out[:, t : t + 1] = next_token(logits, temperature, top_k, top_p)
        if t == T0 + max_new_tokens - 1:
            break
        if cache.length == cache.max_len:  # no position left: re-read a shorter window
            cache.reset()
            logits = net(out[:, t + 1 - keep : t + 1], cache)[:, -1]
        else:
            logits = net(out[:, t : t + 1], cache)[:, -1]
    return out
