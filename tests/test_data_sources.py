"""Loading sources: each local kind, hub names offline, split selection and carve-out, errors."""

import re

import datasets
import pytest

from genlab.data import sources
from genlab.data.sources import carve, get_split, is_local, load_source, val_split_name
from genlab.data.tiny import (
    tiny_image_dataset,
    write_imagefolder,
    write_parquet,
    write_text,
)
from genlab.errors import GenlabError


def sizes(splits):
    return {name: len(split) for name, split in splits.items()}


def test_parquet_directory_file_and_glob(tmp_path):
    root = write_parquet(tmp_path / "pq", {"train": 6, "test": 4})
    assert sizes(load_source(str(root))) == {"train": 6, "test": 4}
    assert sizes(load_source(str(root / "test.parquet"))) == {"train": 4}
    assert sizes(load_source(str(root / "*.parquet"))) == {"train": 10}


def test_imagefolder_with_split_and_class_folders(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", {"train": 6, "test": 3})
    splits = load_source(str(root))
    assert sizes(splits) == {"train": 6, "test": 3}
    assert splits["train"].features["label"].names == ["c0", "c1", "c2"]


def test_imagefolder_with_metadata_file(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", {"train": 2}, num_classes=1)
    (root / "train" / "metadata.csv").write_text("file_name,caption\nc0/0.png,a\nc0/1.png,b\n")
    splits = load_source(str(root))
    assert splits["train"]["caption"] == ["a", "b"]


def test_arrow_files_and_saved_dataset(tmp_path):
    tiny_image_dataset(5).save_to_disk(str(tmp_path / "saved"))
    assert sizes(load_source(str(tmp_path / "saved"))) == {"train": 5}
    datasets.DatasetDict({"train": tiny_image_dataset(4), "validation": tiny_image_dataset(2)}
                         ).save_to_disk(str(tmp_path / "dict"))
    assert sizes(load_source(str(tmp_path / "dict"))) == {"train": 4, "validation": 2}
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    assert sizes(load_source(str(arrow))) == {"train": 5}


def test_text_file_is_one_document(tmp_path):
    path = write_text(tmp_path / "a.txt", "one\ntwo\n")
    splits = load_source(str(path), sample_by="document")
    assert splits["train"]["text"] == ["one\ntwo\n"]


def test_local_or_hub():
    assert not is_local("ylecun/mnist") and not is_local("mnist")
    assert is_local("./mnist") and is_local("/data/x") and is_local("a/b/c")
    assert is_local("data/*.parquet") and is_local("plays.txt")


def test_hub_name_offline_says_how_to_use_local_files(monkeypatch):
    with pytest.raises(GenlabError) as err:
        load_source("ylecun/mnist")
    message = str(err.value)
    assert "'ylecun/mnist'" in message and "hub" in message and "offline mode is on" in message
    assert "point data.source at local files" in message and "\n" not in message


def test_unreachable_hub_switches_to_offline_without_retrying(monkeypatch):
    monkeypatch.setattr(sources, "_offline_requested", lambda: False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    seen = {}

    def fake_load(*args, **kwargs):
        seen["offline"] = datasets.config.HF_HUB_OFFLINE
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    with pytest.raises(GenlabError, match="not reachable"):
        load_source("x/y")
    assert seen["offline"] is True and datasets.config.HF_HUB_OFFLINE is False


@pytest.mark.parametrize("source", ["/no/such/dir", "./nope", "missing/*.parquet", "x.txt"])
def test_missing_path(source):
    with pytest.raises(GenlabError, match=re.escape(f"{source!r}: no such file or directory")):
        load_source(source)


def test_directory_without_data_files(tmp_path):
    (tmp_path / "notes.doc").write_text("x")
    with pytest.raises(GenlabError, match=r"no data files found \(saw \.doc\)"):
        load_source(str(tmp_path))


def test_missing_and_empty_split(tmp_path):
    splits = datasets.DatasetDict({"train": tiny_image_dataset(3),
                                   "test": tiny_image_dataset(3).select([])})
    with pytest.raises(GenlabError, match=r"no split 'trian' \(it has: train, test\); set k"):
        get_split(splits, "trian", "src", "k")
    with pytest.raises(GenlabError, match="split 'test' of 'src' has no examples"):
        get_split(splits, "test", "src", "k")


def test_validation_split_names():
    splits = datasets.DatasetDict({"train": tiny_image_dataset(2), "valid": tiny_image_dataset(2)})
    assert val_split_name(splits, None) == "valid"
    assert val_split_name(splits, "test") == "test"
    assert val_split_name(datasets.DatasetDict({"train": splits["train"]}), None) is None


def test_carve_is_seeded_and_disjoint():
    data = datasets.Dataset.from_dict({"i": list(range(100))})
    rest, val = carve(data, 0.2, seed=3)
    again_rest, again_val = carve(data, 0.2, seed=3)
    _, other_val = carve(data, 0.2, seed=4)
    assert len(val) == 20 and len(rest) == 80
    assert val["i"] == again_val["i"] and rest["i"] == again_rest["i"]
    assert val["i"] != other_val["i"]
    assert not set(val["i"]) & set(rest["i"])
    assert len(carve(data, 0.001, seed=0)[1]) == 1
    with pytest.raises(GenlabError, match="leaves no training data"):
        carve(data.select([0]), 0.5, seed=0)


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over ``tmp_path/www``: a URL source without leaving the machine."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_of_a_text_file_loads_as_one_document(served, monkeypatch):
    root, base = served
    (root / "input.txt").write_text("First Citizen:\nBefore we proceed any further\n")
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    splits = load_source(f"{base}/input.txt", sample_by="document")
    assert splits["train"]["text"] == ["First Citizen:\nBefore we proceed any further\n"]
    assert not is_local(f"{base}/input.txt")


def test_url_offline_or_unknown_kind_is_one_clear_line(served):
    _, base = served
    with pytest.raises(GenlabError, match="could not be downloaded.*pass its path as --data"):
        load_source(f"{base}/input.txt")  # the tests' hub is offline
    with pytest.raises(GenlabError, match="a URL must name one data file"):
        load_source(f"{base}/folder/")
