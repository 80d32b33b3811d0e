"""Where data comes from: a Hugging Face hub name or local files, loaded with ``datasets``.

A ``source`` is a local path (a file, a directory or a glob: parquet, arrow, an image folder,
plain text, or a ``save_to_disk`` directory), a hub name such as ``ylecun/mnist``, or the
``http(s)://`` URL of one data file (e.g. a .txt corpus). Offline is normal: a hub name or URL
that cannot be fetched gives a ``GenlabError`` saying how to point ``source`` at local files.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
import numpy as np
import pyarrow

from genlab.errors import GenlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
TEXT_SUFFIXES = {".txt", ".text", ".md"}
# Builder of ``datasets`` for each file suffix, most specific first.
BUILDERS: dict[str, set[str]] = {
    "parquet": {".parquet"},
    "arrow": {".arrow"},
    "imagefolder": IMAGE_SUFFIXES,
    "text": TEXT_SUFFIXES,
    "json": {".json", ".jsonl"},
    "csv": {".csv"},
}
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
VAL_SPLIT_NAMES = ("validation", "valid", "val")
LOCAL_HINT = ("point data.source at local files instead: a directory of parquet files (e.g. "
              "source: /data/mnist), an image folder, or .txt files")


def is_url(source: str) -> bool:
    """Whether ``source`` is the ``http(s)://`` URL of a data file.

    Args:
        source: A path, a glob, a hub name or a URL.
    """
    return source.startswith(("http://", "https://"))


def is_local(source: str) -> bool:
    """Whether ``source`` names local files rather than a hub dataset or a URL.

    Args:
        source: A path, a glob, a hub name or a URL.
    """
    if is_url(source):
        return False
    path = Path(source).expanduser()
    if path.exists() or any(ch in source for ch in "*?["):
        return True
    # A hub name is ``name`` or ``owner/name``; anything else path-like is a path.
    explicit = source.startswith(("/", ".", "~")) or source.count("/") > 1
    return explicit or path.suffix.lower() in set().union(*BUILDERS.values())


def check_source(source: str) -> None:
    """Fail early (in ``__init__``) on a local path or glob that matches nothing.

    Args:
        source: The data module's ``source``.
    """
    if not source:
        raise GenlabError("data.source is empty; give a local path or a hub dataset name")
    if is_url(source):
        _url_builder(source)
        return
    if not is_local(source):
        if not HUB_NAME.match(source):
            raise GenlabError(f"data.source {source!r} is neither an existing path nor a hub name")
        return
    path = Path(source).expanduser()
    if not path.exists() and not glob.glob(str(path), recursive=True):
        raise GenlabError(f"data.source {source!r}: no such file or directory; check the path")


def _builder_for(files: list[Path], source: str) -> str:
    # An image folder's metadata.csv / .jsonl / .parquet describes the images: not the data.
    suffixes = {f.suffix.lower() for f in files if f.stem != "metadata"}
    for builder, known in BUILDERS.items():
        if suffixes & known:
            return builder
    shown = ", ".join(sorted(suffixes)) or "no files"
    raise GenlabError(
        f"data.source {source!r}: no data files found (saw {shown}); expected parquet, arrow, "
        f"images or .txt files"
    )


def _local_builder(source: str) -> tuple[str, dict[str, Any]]:
    """The ``datasets`` builder and its arguments for a local path or glob."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")]
        return _builder_for(files, source), {"data_dir": str(path)}
    files = [Path(f) for f in glob.glob(str(path), recursive=True) if Path(f).is_file()]
    return _builder_for(files, source), {"data_files": str(path)}


def _url_builder(url: str) -> str:
    """The ``datasets`` builder for the file a URL names, from its suffix."""
    suffix = Path(urlparse(url).path).suffix.lower()
    for builder, known in BUILDERS.items():
        if suffix in known and builder != "imagefolder":
            return builder
    raise GenlabError(f"data.source {url!r}: a URL must name one data file (.parquet, .arrow, "
                      f".txt, .json, .csv); for image folders download them and give the path")


def _load_url(url: str, text_kwargs: dict[str, Any]) -> datasets.DatasetDict:
    builder = _url_builder(url)
    kwargs = text_kwargs if builder == "text" else {}
    offline = _offline_requested()
    try:
        with _offline_mode(offline):
            return datasets.load_dataset(builder, data_files=url, **kwargs)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if offline:
            reason = "offline mode is on (HF_HUB_OFFLINE) and it is not in the local cache"
        raise GenlabError(f"data.source {url!r} could not be downloaded: {reason}; download "
                          f"the file and pass its path as --data.source") from None


def _is_saved_dataset(source: str) -> bool:
    path = Path(source).expanduser()
    return path.is_dir() and any((path / n).exists() for n in ("dataset_dict.json", "state.json"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds.

    Args:
        timeout: Seconds to wait.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct connection says nothing; let the hub client try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_requested() -> bool:
    flags = (os.environ.get(v, "").upper() for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f in ("1", "ON", "YES", "TRUE") for f in flags) or datasets.config.HF_HUB_OFFLINE


@contextlib.contextmanager
def _offline_mode(offline: bool) -> Iterator[None]:
    """Run ``datasets`` in offline mode (cache only, no retries) when ``offline`` is true.

    The libraries read ``HF_HUB_OFFLINE`` once at import, so the switch is made on their
    module-level flags for the duration of the call.
    """
    if not offline:
        yield
        return
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _load_hub(source: str, subset: str | None) -> datasets.DatasetDict:
    offline = _offline_requested()
    unreachable = not offline and not hub_reachable()  # cached copies still load, no retries
    try:
        with _offline_mode(offline or unreachable):
            return datasets.load_dataset(source, subset)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if offline:
            reason = "offline mode is on (HF_HUB_OFFLINE) and it is not in the local cache"
        elif unreachable:
            reason = "the hub is not reachable (offline?) and it is not in the local cache"
        raise GenlabError(
            f"data.source {source!r} is not a local path and could not be fetched from the "
            f"Hugging Face hub: {reason}; {LOCAL_HINT}"
        ) from None


def load_source(source: str, subset: str | None = None, **text_kwargs: Any) -> datasets.DatasetDict:
    """Load every split of ``source`` as a ``DatasetDict``.

    Args:
        source: A local path / glob, a hub dataset name, or a data file's URL.
        subset: The hub dataset's configuration name (e.g. ``wikitext-2-raw-v1``).
        **text_kwargs: Options of the ``text`` builder (``sample_by``, ``encoding``), used when
            the source is plain text.
    """
    check_source(source)
    if is_url(source):
        loaded = _load_url(source, text_kwargs)
    elif not is_local(source):
        loaded = _load_hub(source, subset)
    elif _is_saved_dataset(source):
        loaded = datasets.load_from_disk(str(Path(source).expanduser()))
    else:
        builder, kwargs = _local_builder(source)
        if builder == "text":
            kwargs.update(text_kwargs)
        loaded = _load_local(source, builder, kwargs)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _load_local(source: str, builder: str, kwargs: dict[str, Any]) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(builder, **kwargs)
    except pyarrow.ArrowException as err:  # before ValueError: ArrowInvalid is one
        raise GenlabError(_unreadable_message(source, kwargs, builder, err)) from err
    except ValueError as err:
        empty = re.match(r'Instruction "(.+)" corresponds to no data', str(err))
        if empty is None:
            raise
        raise GenlabError(f"split {empty[1]!r} of {source!r} has no examples; check the files"
                          ) from None
    except datasets.exceptions.DatasetGenerationError as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, UnicodeDecodeError):
            raise GenlabError(_decode_message(source, kwargs, cause)) from None
        raise GenlabError(_unreadable_message(source, kwargs, builder, cause or err)) from err


def _unreadable_message(source: str, kwargs: dict[str, Any], builder: str,
                        err: BaseException) -> str:
    """Name the file ``builder`` cannot read (for parquet, the first whose footer is bad)."""
    bad = source
    if builder == "parquet":
        import pyarrow.parquet as pq

        pattern = kwargs.get("data_files") or os.path.join(kwargs.get("data_dir", source), "**",
                                                           "*.parquet")
        for name in sorted(glob.glob(pattern, recursive=True)):
            try:
                pq.read_metadata(name)
            except (pyarrow.ArrowException, OSError):
                bad = name
                break
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"data.source: {bad!r} is not readable {builder} data ({type(err).__name__}: "
            f"{detail}); the file is damaged or truncated (download or write it again) or is "
            f"not {builder}")


def _decode_message(source: str, kwargs: dict[str, Any], err: UnicodeDecodeError) -> str:
    """Name the first file that does not decode, the byte and where it is."""
    encoding = kwargs.get("encoding", "utf-8")
    pattern = kwargs.get("data_files") or os.path.join(kwargs.get("data_dir", source), "**", "*")
    for name in sorted(glob.glob(pattern, recursive=True)):
        if Path(name).suffix.lower() not in TEXT_SUFFIXES:
            continue
        try:
            Path(name).read_bytes().decode(encoding)
        except UnicodeDecodeError as bad:
            err, source = bad, name
            break
    byte = err.object[err.start : err.start + 1].hex()
    return (f"{source!r} is not {encoding} text (byte 0x{byte} at offset {err.start}); "
            f"convert it (e.g. iconv -f latin1 -t utf-8) or set data.encoding")


def get_split(splits: datasets.DatasetDict, name: str, source: str, key: str) -> datasets.Dataset:
    """The split ``name``, which must exist and hold at least one example.

    Args:
        splits: Every split of the source.
        name: The split wanted.
        source: The source, for the message.
        key: The option that named the split (e.g. ``data.train_split``).
    """
    if name not in splits:
        have = ", ".join(splits) or "none"
        raise GenlabError(f"{source!r} has no split {name!r} (it has: {have}); set {key}")
    return require_examples(splits[name], name, source)


def require_examples(split: datasets.Dataset, name: str, source: str) -> datasets.Dataset:
    """``split`` itself, after checking it is not empty.

    Args:
        split: A split of the source.
        name: Its name, for the message.
        source: The source, for the message.
    """
    if len(split) == 0:
        raise GenlabError(f"split {name!r} of {source!r} has no examples; check the files")
    return split


def val_split_name(splits: datasets.DatasetDict, val_split: str | None) -> str | None:
    """The validation split to use: ``val_split`` if given, else a conventional name, else None.

    Args:
        splits: Every split of the source.
        val_split: The configured name; ``None`` looks for validation / valid / val.
    """
    if val_split is not None:
        return val_split
    return next((n for n in VAL_SPLIT_NAMES if n in splits), None)


def carve(split: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, ...]:
    """Split ``split`` at random into (rest, carved) with ``fraction`` carved, seeded.

    Indices are sorted inside each part so that reads stay close to sequential.

    Args:
        split: The dataset to divide (usually train).
        fraction: Share of examples that go to the carved part.
        seed: Seed of the permutation; the same seed gives the same parts everywhere.
    """
    n_val = max(1, round(len(split) * fraction))
    if n_val >= len(split):
        raise GenlabError(
            f"data.val_fraction={fraction} of {len(split)} training example(s) leaves no "
            f"training data; lower data.val_fraction or name a data.val_split"
        )
    perm = np.random.default_rng(seed).permutation(len(split))
    rest, carved = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    return (split.select(rest, keep_in_memory=True), split.select(carved, keep_in_memory=True))


def require_column(split: datasets.Dataset, name: str, key: str) -> str:
    """``name`` itself, after checking ``split`` has that column.

    Args:
        split: A split of the source.
        name: The column wanted.
        key: The option that named it (e.g. ``data.image_column``).
    """
    if name not in split.column_names:
        have = ", ".join(split.column_names)
        raise GenlabError(f"{key}: no column {name!r}; the columns are: {have}")
    return name


def check_batch_size(num_train: int, batch_size: int, what: str) -> None:
    """Fail when the training set cannot fill one batch (the last partial batch is dropped).

    Args:
        num_train: Number of training examples.
        batch_size: The configured batch size.
        what: What the examples are, for the message (``images``, ``blocks``).
    """
    if num_train < batch_size:
        raise GenlabError(
            f"the training split has {num_train} {what}, fewer than data.batch_size="
            f"{batch_size}, so training would see no batch; lower data.batch_size"
        )
