"""`genlab evaluate` on a prompt-continuation text model: BLEU and ROUGE beside perplexity."""

import json

import lightning as L
import torch
from genlab_ar import GPT

from genlab.cli import main
from genlab.data.text import TextDataModule
from genlab.data.tiny import write_text

TINY = {"block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0}


def test_evaluate_scores_continuations_of_heldout_text(tmp_path):
    torch.manual_seed(0)
    data = TextDataModule(str(write_text(tmp_path / "corpus.txt", "abcd efgh ijk\n" * 150)),
                          block_size=32, batch_size=8)
    model = GPT(vocab_size=data.vocab_size, lr=3e-3, min_lr=3e-4, warmup_steps=5, **TINY)
    fit = L.Trainer(max_steps=60, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(tmp_path))
    fit.fit(model, datamodule=data)
    ckpt = tmp_path / "gpt.ckpt"
    fit.save_checkpoint(ckpt)
    out = tmp_path / "eval.json"
    main(["evaluate", "--ckpt", str(ckpt), "--split", "val", "--num", "6", "--max_batches", "2",
          "--prompt_tokens", "6", "--continuation_tokens", "26", "--temperature", "0",
          "--out", str(out)])
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    assert {"bleu", "rouge1", "rouge2", "rougeL", "perplexity"} <= set(metrics)
    assert report["continuations"]["prompts"] == 6
    # The cycle is learned: greedy continuations match the text that follows.
    assert metrics["rouge1"] > 0.8 and metrics["bleu"] > 0.5, report["continuations"]
