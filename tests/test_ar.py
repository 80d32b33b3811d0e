"""The AR plugin (GPT): contract, tokenizer from a checkpoint, a short fit, schedule, errors."""

import math

import lightning as L
import pytest
import torch
from genlab_ar import GPT

from genlab.callbacks.samples import SampleLogger
from genlab.checkpoint import load_model
from genlab.data.text import TextDataModule
from genlab.data.tiny import write_text
from genlab.errors import GenlabError
from genlab.sampling import sample_main

TEXT = "".join(f"ROMEO: line {i % 7}, the quick brown fox.\n" for i in range(60))
TINY = {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0}


def text_data(tmp_path, text=TEXT, **kwargs):
    kwargs = {"block_size": 16, "batch_size": 8, **kwargs}
    return TextDataModule(str(write_text(tmp_path / "corpus.txt", text)), **kwargs)


def trainer(tmp_path, steps, **kwargs):
    options = {"max_steps": steps, "accelerator": "cpu", "logger": False,
               "enable_checkpointing": False, "enable_progress_bar": False,
               "enable_model_summary": False, "num_sanity_val_steps": 0,
               "default_root_dir": str(tmp_path), "limit_val_batches": 2}
    return L.Trainer(**{**options, **kwargs})


def test_tokenizer_round_trip_from_a_checkpoint(tmp_path, capsys):
    data = text_data(tmp_path)
    model = GPT(vocab_size=data.vocab_size, **TINY)
    fit = trainer(tmp_path, 2, callbacks=[SampleLogger(every_n_steps=0, num=2)])
    fit.fit(model, datamodule=data)
    logged = (tmp_path / "samples" / "step_0000002.txt").read_text(encoding="utf-8")
    assert set(logged) <= set(TEXT) | {"-"}  # decoded text (from a newline), not token ids
    path = tmp_path / "gpt.ckpt"
    fit.save_checkpoint(path)
    (tmp_path / "corpus.txt").unlink()  # the model must decode without the data

    loaded = load_model(path)
    assert loaded.tokenizer is not None
    assert loaded.decode(loaded.tokenizer.encode(TEXT)[None]) == [TEXT]
    torch.manual_seed(0)
    samples = loaded.sample_eval(3, prompt="ROMEO:", max_new_tokens=5)
    assert samples.shape == (3, 11)
    assert all(text.startswith("ROMEO:") for text in loaded.decode(samples))

    sample_main(["--ckpt", str(path), "--num", "2", "--prompt", "ROMEO:", "--max_new_tokens",
                 "20", "--top_k", "5", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert printed.startswith("ROMEO:") and (tmp_path / "out.txt").is_file()
    with pytest.raises(GenlabError, match=r"outside the .*vocabulary"):
        loaded.sample(1, prompt="ROMEO: ~")
    with pytest.raises(GenlabError, match="sample does not take --steps"):
        sample_main(["--ckpt", str(path), "--steps", "3"])


def test_short_fit_lowers_the_loss_on_repetitive_text(tmp_path):
    torch.manual_seed(0)
    data = text_data(tmp_path, text="abcd efgh\n" * 200)
    model = GPT(vocab_size=data.vocab_size, lr=3e-3, min_lr=3e-4, warmup_steps=5, **TINY)
    fit = trainer(tmp_path, 60)
    before = fit.validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    fit.fit(model, datamodule=data)
    after = fit.validate(model, datamodule=data, verbose=False)[0]
    assert before > 0.9 * math.log(data.vocab_size)  # about uniform at the start
    assert after["val/loss"] < 0.3 * before
    assert after["val/ppl"] == pytest.approx(math.exp(after["val/loss"]), rel=1e-5)
    assert after["val/bpc"] == pytest.approx(after["val/loss"] / math.log(2), rel=1e-5)
    # Greedy continuation has learned the cycle.
    text = model.decode(model.sample_eval(1, prompt="abcd e", max_new_tokens=8, temperature=0))
    assert text == ["abcd efgh\nabcd"]


def test_log_likelihood_is_the_per_row_sum_of_token_log_probs(tmp_path):
    model = GPT(vocab_size=7, **TINY).eval()
    x = torch.randint(0, 7, (3, 10))
    ll = model.log_likelihood({"x": x})
    assert ll.shape == (3,)
    torch.testing.assert_close(-ll.sum() / (3 * 9), model.loss(x))


def test_warmup_then_cosine_to_min_lr():
    model = GPT(vocab_size=5, lr=1e-3, min_lr=1e-4, warmup_steps=10, **TINY)
    lr = [1e-3 * model.lr_factor(step, total=110) for step in range(200)]
    assert lr[0] < lr[5] < lr[9] < 1e-3 + 1e-12
    assert lr[10] == pytest.approx(1e-3)
    assert lr[60] == pytest.approx(0.55e-3)
    assert lr[110] == pytest.approx(1e-4) and lr[199] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))


@pytest.mark.parametrize("bad, match", [
    ({"vocab_size": None}, "vocab_size must be a positive"),
    ({"n_embd": 30, "n_head": 4}, "multiple of model.n_head"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"min_lr": 1.0}, "min_lr must be in"),
])
def test_bad_hyperparameters_raise_one_clear_error(bad, match):
    with pytest.raises(GenlabError, match=match):
        GPT(**{"vocab_size": 5, **TINY, **bad})


def test_images_as_pixel_sequences(tmp_path):
    from genlab.data.images import ImageDataModule
    from genlab.data.tiny import write_parquet
    from genlab.testing import check_plugin

    source = write_parquet(tmp_path / "pq", {"train": 16, "test": 4})
    data = ImageDataModule(str(source), image_size=4, channels=1, binarize=True, batch_size=4,
                           num_workers=0, val_fraction=0.25, label_column=None)
    init = {**TINY, "data_shape": [1, 4, 4], "block_size": 16}
    check_plugin("ar", data, tmp_path, init_args=init, steps=2, num=2)

    model = GPT(**init).eval()
    assert model.modality == "image" and model.hparams.vocab_size == 3
    x = torch.randint(0, 2, (2, 1, 4, 4)).float() * 2 - 1  # binarized, in {-1, +1}
    tokens = model.tokens({"x": x})
    assert tokens.shape == (2, 17) and (tokens[:, 0] == 2).all()
    assert torch.equal(model.images(tokens), x)
    assert model.log_likelihood({"x": x}).shape == (2,)
    with pytest.raises(GenlabError, match="must hold the 784 pixels"):
        GPT(**{**TINY, "data_shape": [1, 28, 28]})
