"""Tokenizers and TextDataModule: round trips, splits, blocks, checkpointed vocabulary, errors."""

import datasets
import lightning as L
import pytest
import torch

from genlab import GenerativeModule
from genlab.data.text import TextDataModule, join_rows
from genlab.data.tiny import write_text
from genlab.data.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    build_tokenizer,
    tokenizer_from_checkpoint,
    tokenizer_from_state,
)
from genlab.errors import GenlabError

TEXT = "".join(f"line {i}: the quick brown fox — café\n" for i in range(40))


@pytest.fixture
def corpus(tmp_path):
    return str(write_text(tmp_path / "corpus.txt", TEXT))


def module(source, **kwargs):
    kwargs.setdefault("block_size", 8)
    kwargs.setdefault("batch_size", 4)
    dm = TextDataModule(source, **kwargs)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_tokenizer_round_trip(kind):
    tokenizer = build_tokenizer(kind, TEXT)
    ids = tokenizer.encode(TEXT)
    assert ids.dtype == torch.long and int(ids.max()) < tokenizer.vocab_size
    assert tokenizer.decode(ids) == TEXT
    rebuilt = tokenizer_from_state(tokenizer.state_dict())
    assert rebuilt.decode(ids) == TEXT and rebuilt.vocab_size == tokenizer.vocab_size


def test_char_vocabulary_is_sorted_distinct_characters():
    tokenizer = CharTokenizer.from_text("banana")
    assert tokenizer.chars == "abn" and tokenizer.vocab_size == 3
    assert tokenizer.encode("nab").tolist() == [2, 0, 1]
    assert tokenizer.state_dict() == {"kind": "char", "chars": "abn"}
    assert tokenizer.decode([0, 7]) == "a\ufffd"
    with pytest.raises(GenlabError, match=r"1 character\(s\) outside .* \('z'\); use tokenizer"):
        tokenizer.encode("zab")


def test_byte_tokenizer_needs_no_vocabulary():
    tokenizer = ByteTokenizer()
    assert tokenizer.vocab_size == 256 and tokenizer.encode("é").tolist() == [195, 169]
    assert tokenizer.decode([195]) == "\ufffd"  # half a character


def test_first_90_percent_trains_last_10_validates(corpus):
    dm = module(corpus)
    cut = int(len(TEXT) * 0.9)
    assert dm.texts() == {"train": TEXT[:cut], "val": TEXT[cut:]}
    assert dm.vocab_size == len(set(TEXT[:cut]))


def test_random_training_blocks_and_sequential_validation(corpus):
    dm = module(corpus, tokenizer="byte")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (4, 9) and batch["x"].dtype == torch.long
    train_bytes = TEXT[: int(len(TEXT) * 0.9)].encode()
    assert all(bytes(row.tolist()) in train_bytes for row in batch["x"])
    starts = {int(b["x"][0, 0]) for b in list(dm.train_dataloader())[:5]}
    assert len(starts) > 1  # shuffled offsets
    val = torch.cat([b["x"] for b in dm.val_dataloader()])
    assert torch.equal(val[1:, 0], val[:-1, -1])  # consecutive blocks share one token
    joined = torch.cat([val[0], *(row[1:] for row in val[1:])])
    assert bytes(joined.tolist()) == TEXT[int(len(TEXT) * 0.9):].encode()[: len(joined)]


def test_byte_vocab_known_at_init_char_vocab_read_lazily(corpus):
    assert TextDataModule(corpus, tokenizer="byte").vocab_size == 256
    dm = TextDataModule(corpus)
    assert dm.vocab_size == len(set(TEXT[: int(len(TEXT) * 0.9)]))  # reads the text on demand


def test_validation_split_of_the_source(tmp_path):
    write_text(tmp_path / "d/train.txt", "abc" * 10)
    write_text(tmp_path / "d/validation.txt", "cab" * 5)
    dm = module(str(tmp_path / "d"), block_size=4)
    assert dm.texts() == {"train": "abc" * 10, "val": "cab" * 5}


def test_text_column_of_parquet(tmp_path):
    datasets.Dataset.from_dict({"body": ["abc\n", "def"]}).to_parquet(str(tmp_path / "t.parquet"))
    dm = module(str(tmp_path / "t.parquet"), text_column="body", tokenizer="byte", block_size=2,
                val_fraction=0.4, batch_size=2)
    assert dm.texts()["train"] + dm.texts()["val"] == "abc\ndef"
    with pytest.raises(GenlabError, match="data.text_column: no column 'text'; the columns are: "
                                          "body"):
        module(str(tmp_path / "t.parquet"))


def test_join_rows():
    assert join_rows(["a", "b\n", "c"]) == "a\nb\nc"


class TinyLM(GenerativeModule):
    modality = "tokens"

    def __init__(self, vocab_size: int = 256) -> None:
        super().__init__()
        self.logits = torch.nn.Embedding(vocab_size, vocab_size)

    def training_step(self, batch, batch_idx):
        x = batch["x"]
        logits = self.logits(x[:, :-1])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def sample(self, num, **options):
        return torch.zeros(num, 4, dtype=torch.long, device=self.device)


def test_char_vocabulary_restored_from_checkpoint(corpus, tmp_path):
    dm = TextDataModule(corpus, block_size=8, batch_size=4)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, accelerator="cpu")
    trainer.fit(TinyLM(dm.vocab_size), datamodule=dm)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    tokenizer = tokenizer_from_checkpoint(ckpt)  # no data needed
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.chars == dm.tokenizer.chars
    # a module over other text takes the checkpoint's vocabulary and encodes with it
    other = write_text(tmp_path / "other.txt", "brown fox " * 20)
    resumed = TextDataModule(str(other), block_size=8)
    resumed.load_state_dict(ckpt["TextDataModule"])
    assert resumed.vocab_size == dm.vocab_size
    ids = resumed.ids("train")
    assert resumed.decode(ids[:9]) == ["brown fox"]
    assert tokenizer.encode("brown fox").tolist() == ids[:9].tolist()
    with pytest.raises(GenlabError, match="checkpoint's tokenizer is 'char' but data.tokenizer"):
        TextDataModule(corpus, tokenizer="byte").load_state_dict(ckpt["TextDataModule"])


def test_not_utf8_is_one_clear_line(tmp_path):
    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 20)
    with pytest.raises(GenlabError, match=r"latin.txt' is not utf-8 text \(byte 0xe9 at offset 3\)"
                                          r"; convert it .* or set data.encoding"):
        module(str(bad))
    assert module(str(bad), encoding="latin-1").texts()["train"].startswith("café")


@pytest.mark.parametrize("kwargs,message", [
    ({"block_size": 400}, r"the (train|val) text of .* has \d+ tokens, fewer than block_size \+ 1"),
    ({"val_split": "validation"}, r"has no split 'validation' \(it has: train\)"),
])
def test_bad_input_at_setup(corpus, kwargs, message):
    with pytest.raises(GenlabError, match=message):
        module(corpus, **kwargs)


def test_validation_characters_missing_from_training_text(tmp_path):
    path = write_text(tmp_path / "t.txt", "ab" * 50 + "xyz" * 3)
    with pytest.raises(GenlabError, match="outside the 2-character vocabulary"):
        module(str(path), block_size=4)
    assert module(str(path), block_size=4, tokenizer="byte").vocab_size == 256


def test_empty_text(tmp_path):
    path = write_text(tmp_path / "empty.txt", "")
    with pytest.raises(GenlabError, match="(holds no text|has no examples)"):
        module(str(path))


@pytest.mark.parametrize("kwargs,message", [
    ({"source": "./no/such.txt"}, "no such file or directory"),
    ({"block_size": 0}, "data.block_size must be positive"),
    ({"val_fraction": 0}, "data.val_fraction must be between 0 and 1"),
])
def test_bad_input_at_init(corpus, kwargs, message):
    kwargs.setdefault("source", corpus)
    with pytest.raises(GenlabError, match=message):
        TextDataModule(**kwargs)


def test_hub_corpus_offline():
    with pytest.raises(GenlabError, match="could not be fetched from the Hugging Face hub"):
        TextDataModule("karpathy/tiny_shakespeare").setup("fit")
