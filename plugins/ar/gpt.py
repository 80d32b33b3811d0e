"""GPT: an autoregressive transformer over token sequences, trained with next-token cross-entropy.

The network is ``genlab.nn.transformer.Transformer``; this module holds the recipe: AdamW with
decoupled weight decay on matrices only, linear warm-up then cosine decay, optional
``torch.compile``, validation loss / perplexity / bits per token, and KV-cache sampling with
temperature, top-k and top-p. The data module's tokenizer is kept in the checkpoint so that a
loaded model decodes its own samples and encodes prompts without the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MeanMetric

from genlab import GenerativeModule
from genlab.data.tokenizers import Tokenizer, tokenizer_from_checkpoint, tokenizer_from_state
from genlab.errors import GenlabError, raise_first
from genlab.module import ConformanceCase
from genlab.nn.transformer import Position, Transformer, generate
from genlab.recipes import LRSchedule, lr_horizon, warmup_cosine
from genlab.sharding import shard

CHECKPOINT_KEY = "genlab_ar"  # {"tokenizer": state}: found by tokenizer_from_checkpoint too


class GPT(GenerativeModule):
    """Decoder-only transformer language model (Radford et al. 2019) over any token sequence.

    Batches hold ``x`` of ``block_size + 1`` token ids per row: the model reads ``x[:, :-1]``
    and predicts ``x[:, 1:]``. With ``data_shape``, batches hold images in [-1, 1] instead:
    each is read in raster order as ``C * H * W`` pixel tokens of ``pixel_levels`` values after
    a start token (binarized MNIST: 784 tokens of 2 values), and ``sample`` returns images.

    Args:
        vocab_size: Number of distinct tokens; null takes the data module's.
        block_size: Longest context the model sees (learned positions).
        n_layer: Transformer blocks.
        n_head: Attention heads per block.
        n_embd: Width of the residual stream.
        dropout: Dropout on embeddings, attention weights and block outputs.
        bias: Biases in linear layers and layer norms.
        position: ``learned`` absolute position embeddings (GPT-2) or ``rope`` (rotary).
        lr: Peak AdamW learning rate, reached after ``warmup_steps``.
        min_lr: Learning rate at the end of the cosine decay.
        warmup_steps: Steps of linear learning-rate warm-up from 0.
        lr_schedule: ``cosine``: decay from ``lr`` to ``min_lr`` over ``decay_steps``;
            ``constant``: stay at ``lr`` after warm-up.
        decay_steps: Steps at which the cosine reaches ``min_lr``; null: the whole run.
        weight_decay: Decoupled weight decay (Loshchilov & Hutter 2019) on the matrices of
            linear layers; norms, biases and embeddings are not decayed.
        betas: AdamW betas.
        compile: Train through ``torch.compile`` of the network (sampling stays eager).
        max_new_tokens: Tokens ``sample`` adds when not told; null: ``block_size``.
        temperature: Default sampling temperature.
        top_k: Default top-k filter of sampling (null: off).
        top_p: Default nucleus (top-p) filter of sampling (null: off).
        data_shape: ``[C, H, W]`` to model images as pixel sequences; null: token data.
        pixel_levels: Values a pixel token takes (2 for binarized images, 256 for 8 bits);
            token ``pixel_levels`` is the start token, so vocab_size is ``pixel_levels + 1``.
    """

    modalities = ("tokens", "image")

    @property
    def modality(self) -> str:
        """``image`` when modelling images as pixel sequences (``data_shape`` set), else tokens."""
        return "tokens" if self.hparams.data_shape is None else "image"

    def __init__(
        self,
        vocab_size: int | None = None,
        block_size: int = 256,
        n_layer: int = 6,
        n_head: int = 6,
        n_embd: int = 384,
        dropout: float = 0.2,
        bias: bool = False,
        position: Position = "learned",
        lr: float = 1e-3,
        min_lr: float = 1e-4,
        warmup_steps: int = 100,
        lr_schedule: LRSchedule = "cosine",
        decay_steps: int | None = None,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.99),
        compile: bool = False,
        max_new_tokens: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        data_shape: Sequence[int] | None = None,
        pixel_levels: int = 2,
    ) -> None:
        super().__init__()
        if data_shape is not None:
            vocab_size = self._pixel_vocab(data_shape, pixel_levels, vocab_size, block_size)
            self.data_shape = tuple(data_shape)
        _check_hparams(vocab_size, block_size, n_layer, n_head, n_embd, position, dropout, lr,
                       min_lr, warmup_steps)
        self._check_sampling(temperature, top_k, top_p)
        self.save_hyperparameters()
        self.net = Transformer(vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias,
                               position)
        self._compiled: Callable[[Tensor], Tensor] | None = None
        self.val_loss = MeanMetric()
        self.tokenizer: Tokenizer | None = None

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """Characters of a short text, a one-layer GPT; 2-process DDP, bf16 and fp16."""
        from genlab.data.text import TextDataModule
        from genlab.data.tiny import write_text

        data = TextDataModule(str(write_text(root / "t.txt")), block_size=16, batch_size=4)
        return ConformanceCase(data, {"vocab_size": data.vocab_size, "block_size": 16,
                                      "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0,
                                      "max_new_tokens": 8},
                               ddp=True, precisions=("bf16-mixed", "16-mixed"))

    @staticmethod
    def _pixel_vocab(data_shape: Sequence[int], pixel_levels: int, vocab_size: int | None,
                     block_size: int) -> int:
        vocab = pixel_levels + 1 if vocab_size is None else vocab_size
        pixels = math.prod(data_shape)
        raise_first([
            (len(data_shape) != 3, f"model.data_shape must be [C, H, W], got {data_shape}"),
            (pixel_levels < 2, f"model.pixel_levels must be >= 2, got {pixel_levels}"),
            (vocab != pixel_levels + 1, f"model.vocab_size is {vocab} but images need "
             f"pixel_levels + 1 = {pixel_levels + 1}; set that or leave it null"),
            (block_size < pixels, f"model.block_size ({block_size}) must hold the {pixels} "
             f"pixels of an image; set model.block_size: {pixels}"),
        ])
        return vocab

    @staticmethod
    def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
        raise_first([
            (temperature < 0, f"temperature must be >= 0, got {temperature}"),
            (top_k is not None and top_k <= 0, f"top_k must be positive, got {top_k}"),
            (top_p is not None and not 0 < top_p <= 1, f"top_p must be in (0, 1], got {top_p}"),
        ])

    # Token sequences (images: pixel tokens after a start token)

    @property
    def is_image(self) -> bool:
        """Whether the model reads and draws images as pixel sequences."""
        return self.hparams.data_shape is not None

    def tokens(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B, T + 1)`` token ids of a batch: its ids, or its images' pixel tokens."""
        x = batch["x"]
        if not self.is_image:
            return x
        levels = self.hparams.pixel_levels
        pixels = ((x.flatten(1) + 1) / 2 * (levels - 1)).round().long().clamp(0, levels - 1)
        start = pixels.new_full((len(x), 1), levels)  # the start token, never a pixel
        return torch.cat([start, pixels], dim=1)

    def images(self, ids: Tensor) -> Tensor:
        """Images in [-1, 1] ``(B, C, H, W)`` from sampled ids (start token first)."""
        levels = self.hparams.pixel_levels
        pixels = ids[:, 1:].clamp(max=levels - 1).float() / (levels - 1)
        return (pixels * 2 - 1).view(len(ids), *self.data_shape)

    # Training

    def _logits(self, idx: Tensor) -> Tensor:
        if not self.hparams.compile:
            return self.net(idx)
        if self._compiled is None:
            # A compiled function, not a compiled module: the state_dict keeps the net's keys.
            self._compiled = torch.compile(self.net.forward)
        return self._compiled(idx)

    def loss(self, x: Tensor) -> Tensor:
        """Mean next-token cross-entropy (nats per token) of a batch of ``(B, T + 1)`` ids."""
        logits = self._logits(x[:, :-1])  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(self.tokens(batch))
        self.log_train({"train/loss": loss})
        return loss

    def log_likelihood(self, batch: dict[str, Tensor]) -> Tensor:
        """Per row, the sum over its ``T - 1`` predicted tokens of ``log p`` in nats, ``(B,)``."""
        x = self.tokens(batch)
        logits = self._logits(x[:, :-1]).float()  # (B, T-1, V)
        logp = logits.log_softmax(dim=-1).gather(-1, x[:, 1:, None]).squeeze(-1)
        return logp.sum(dim=1)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        tokens = self.tokens(batch).shape[1] - 1
        # Every row predicts the same number of tokens, so a mean over rows is per token.
        self.val_loss.update(-self.log_likelihood(batch) / tokens)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()  # synchronised across processes
        self.val_loss.reset()
        self.log_dict({"val/loss": loss, "val/ppl": loss.exp(), "val/bpc": loss / math.log(2)},
                      prog_bar=True)

    def configure_model(self) -> None:
        """Under ``--trainer.strategy fsdp2``: shard each block, then the rest of the net."""
        shard(self, ["net.blocks.*", "net"])

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        # Fused AdamW: one kernel for all parameters on GPU, as the reference small-GPT code does.
        opt = torch.optim.AdamW(self.net.param_groups(h.weight_decay), lr=h.lr, betas=h.betas,
                                fused=self.device.type == "cuda")
        total = (h.decay_steps or self.num_iterations()) if h.lr_schedule == "cosine" else 0
        scheduler = LambdaLR(opt, lambda step: self.lr_factor(step, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_factor(self, step: int, total: int) -> float:
        """Learning rate at ``step`` as a fraction of ``lr``: warm-up, then cosine to ``min_lr``.

        Args:
            step: Optimizer steps taken.
            total: Step at which the cosine ends (0: constant after warm-up).
        """
        h = self.hparams
        floor = h.min_lr / h.lr if h.lr else 0.0
        return warmup_cosine(step, h.warmup_steps, total, floor, ramp=h.warmup_steps + 1)

    def num_iterations(self) -> int:
        """Optimizer steps the trainer will take: the horizon of the cosine schedule."""
        return lr_horizon(self.trainer, fix="trainer.max_steps or model.decay_steps")

    # Tokenizer: taken from the data, kept in the checkpoint

    def setup(self, stage: str) -> None:
        """Take the data module's tokenizer (e.g. a char vocabulary), to decode and encode."""
        super().setup(stage)
        get_tokenizer = getattr(getattr(self.trainer, "datamodule", None), "get_tokenizer", None)
        if callable(get_tokenizer):
            self.tokenizer = get_tokenizer()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.tokenizer is not None:  # plain types only: loads with weights_only=True
            checkpoint[CHECKPOINT_KEY] = {"tokenizer": self.tokenizer.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        own = checkpoint.get(CHECKPOINT_KEY)
        if isinstance(own, Mapping) and "tokenizer" in own:
            self.tokenizer = tokenizer_from_state(own["tokenizer"])
        else:  # an older checkpoint: the text data module's saved state
            self.tokenizer = tokenizer_from_checkpoint(checkpoint)

    def decode(self, tokens: Tensor) -> list[str]:
        """Text of each row of token ids (the ids themselves when there is no tokenizer)."""
        rows = tokens.reshape(-1, tokens.shape[-1])
        if self.tokenizer is None:
            return [" ".join(str(t) for t in row.tolist()) for row in rows]
        return [self.tokenizer.decode(row) for row in rows]

    # Sampling

    def prompt_ids(self, num: int, prompt: str | None) -> Tensor:
        """``(num, T0)`` ids to start from: the encoded prompt, else a newline (token 0 when
        there is no tokenizer or its vocabulary has no newline)."""
        if self.is_image:
            if prompt is not None:
                raise GenlabError("an image model takes no --prompt; leave it out")
            return torch.full((num, 1), self.hparams.pixel_levels, device=self.device)
        if prompt is None:
            ids = self._try_encode("\n")
            ids = torch.zeros(1, dtype=torch.long) if ids is None else ids
        elif self.tokenizer is None:
            raise GenlabError("this model has no tokenizer to encode --prompt (its data had "
                              "none); sample without --prompt")
        elif not prompt:
            raise GenlabError("--prompt is empty; give some text, or leave it out")
        else:
            ids = self.tokenizer.encode(prompt)
        return ids.to(self.device).expand(num, -1)

    def _try_encode(self, text: str) -> Tensor | None:
        if self.tokenizer is None:
            return None
        try:
            return self.tokenizer.encode(text)
        except GenlabError:
            return None

    @torch.no_grad()
    def sample(
        self,
        num: int,
        prompt: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> Tensor:
        """``num`` sequences ``(num, T0 + max_new_tokens)`` of token ids, prompt included
        (image models: ``num`` images ``(num, C, H, W)`` in [-1, 1]).

        Args:
            num: Number of sequences.
            prompt: Text to continue (encoded with the model's tokenizer); null: a newline.
            max_new_tokens: Tokens to generate; null: ``model.max_new_tokens``.
            temperature: Softmax temperature, 0 for greedy; null: the model's.
            top_k: Keep the k most likely tokens; null: the model's.
            top_p: Keep the nucleus of this probability mass; null: the model's.
        """
        h = self.hparams
        temperature = h.temperature if temperature is None else temperature
        top_k = h.top_k if top_k is None else top_k
        top_p = h.top_p if top_p is None else top_p
        self._check_sampling(temperature, top_k, top_p)
        if self.is_image:
            new = math.prod(self.data_shape)  # a whole image, whatever max_new_tokens says
        else:
            new = max_new_tokens or h.max_new_tokens or h.block_size
        ids = generate(self.net, self.prompt_ids(num, prompt), new, temperature, top_k, top_p)
        return self.images(ids) if self.is_image else ids


def _check_hparams(vocab_size: int | None, block_size: int, n_layer: int, n_head: int,
                   n_embd: int, position: str, dropout: float, lr: float, min_lr: float,
                   warmup_steps: int) -> None:
    """Raise ``GenlabError`` naming the first bad hyperparameter."""
    sizes = {"block_size": block_size, "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd}
    head = n_embd // n_head if n_head > 0 else 1  # the checks below run only on valid sizes
    raise_first([
        (vocab_size is None or vocab_size <= 0,
         f"model.vocab_size must be a positive number of tokens, got {vocab_size}; set it, "
         f"or leave it null in a config whose data module knows its vocabulary"),
        *((value <= 0, f"model.{key} must be positive, got {value}")
          for key, value in sizes.items()),
        (n_embd % max(n_head, 1) != 0,
         f"model.n_embd ({n_embd}) must be a multiple of model.n_head ({n_head})"),
        (position == "rope" and head % 2 != 0,
         f"model.position 'rope' needs an even head size; n_embd / n_head is {head}"),
        (not 0 <= dropout < 1, f"model.dropout must be in [0, 1), got {dropout}"),
        (not 0 <= min_lr <= lr, f"model.min_lr must be in [0, lr={lr}], got {min_lr}"),
        (warmup_steps < 0, f"model.warmup_steps must be >= 0, got {warmup_steps}"),
    ])
