"""Open a genlab checkpoint safely and rebuild its model through the plugin registry."""

from __future__ import annotations

import contextvars
import importlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from genlab.errors import GenlabError
from genlab.module import GenerativeModule
from genlab.registry import MODEL_GROUP, Plugin, plugins

WANDB_PREFIX = "wandb:"
_downloaded: dict[Path, Path] = {}  # one download per artifact and process (sample reads twice)


def _artifact_cache(ref: str) -> Path:
    """Where a W&B artifact is downloaded: ``$XDG_CACHE_HOME/genlab/wandb/<ref>``."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "genlab" / "wandb" / ref.replace(":", "@")


def _download_artifact(ref: str) -> Path:
    """The ``.ckpt`` inside the W&B artifact ``ref`` (``entity/project/name:alias``)."""
    import wandb

    from genlab.tracking import server_problem

    problem = server_problem()
    if problem is not None:  # before wandb.Api, which would retry an unreachable host for minutes
        raise GenlabError(f"cannot download W&B artifact {ref}: {problem}; or download it "
                          f"elsewhere and pass --ckpt <file>.ckpt")
    root = _artifact_cache(ref)
    if root in _downloaded:
        return _downloaded[root]
    try:
        wandb.Api().artifact(ref).download(root=str(root))
    except (wandb.errors.Error, ValueError, OSError) as err:
        raise GenlabError(f"cannot download W&B artifact {ref}: {str(err).splitlines()[0]} "
                          f"(is it entity/project/name:alias, e.g. model-<run id>:best?)"
                          ) from None
    found = sorted(root.rglob("*.ckpt"))
    if not found:
        raise GenlabError(f"W&B artifact {ref} holds no .ckpt file; pass a model artifact "
                          f"(WandbLogger log_model writes model-<run id>)")
    _downloaded[root] = found[0]
    return found[0]


def local_checkpoint(path: str | Path) -> Path:
    """``path`` as a local file or folder; ``wandb:entity/project/name:alias`` is downloaded.

    Every command that takes a checkpoint (``--ckpt``, ``--ckpt_path``) goes through here.
    """
    if isinstance(path, str) and path.startswith(WANDB_PREFIX):
        return _download_artifact(path.removeprefix(WANDB_PREFIX))
    return Path(path)


def read_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only=True`` unless ``trust`` is given.

    ``path`` is a file, a folder written by ``genlab export`` (read from safetensors and YAML,
    no pickle) or a W&B artifact ``wandb:entity/project/name:alias``.
    """
    path = local_checkpoint(path)
    if path.is_dir():
        from genlab.export import is_export, read_export

        if not is_export(path):
            raise GenlabError(f"{path} is a folder but not a `genlab export` (no config.yaml "
                              f"and model.safetensors); pass a .ckpt file or an exported folder")
        return read_export(path)
    if not path.is_file():
        raise GenlabError(f"checkpoint {path} does not exist; runs keep theirs in "
                          f"runs/<name>/version_<n>/checkpoints/")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        if trust:
            raise GenlabError(f"{path} is not a readable checkpoint: {err}") from None
        raise GenlabError(
            f"{path} holds objects that need full unpickling, which can run arbitrary code; "
            f"pass --trust_checkpoint true only if you trust where the file came from"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise GenlabError(f"{path} is not a valid checkpoint (corrupt or truncated?): "
                          f"{str(err).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise GenlabError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def _provides(plugin: Plugin, class_path: str) -> bool:
    if plugin.target.replace(":", ".") == class_path:
        return True
    cls = plugin.cls
    if cls is None or f"{cls.__module__}.{cls.__name__}" == class_path:
        return cls is not None
    # A class re-exported by its package (`pkg.Model` for `pkg.model:Model`) is the same class.
    module, _, name = class_path.rpartition(".")
    if module.split(".")[0] != cls.__module__.split(".")[0]:
        return False
    try:
        return getattr(importlib.import_module(module), name, None) is cls
    except ImportError:
        return False


def model_class(ckpt: dict[str, Any]) -> type[GenerativeModule]:
    """The installed plugin class that wrote ``ckpt``; a ``GenlabError`` names what is missing."""
    hparams = ckpt.get("hyper_parameters", {})
    origin = ckpt.get("genlab", {})
    class_path = hparams.get("_class_path") or origin.get("class_path")
    if class_path is None:
        raise GenlabError("the checkpoint does not record its model class; was it written by "
                          "`genlab fit` (or a GenerativeModule that called save_hyperparameters)?")
    module, _, name = class_path.rpartition(".")
    for plugin in plugins(MODEL_GROUP):
        if _provides(plugin, class_path):
            if plugin.cls is None:
                raise GenlabError(f"the checkpoint needs plugin {plugin.name!r} from package "
                                  f"{plugin.package}, which failed to load: {plugin.error}")
            return plugin.cls
    package = origin.get("package") or module.split(".")[0]
    raise GenlabError(
        f"the checkpoint was written by {name} ({class_path}), which no installed plugin "
        f"provides; install the package {package!r} (see `genlab list`)"
    )


def load_model(path: str | Path, trust: bool = False,
               device: str | torch.device = "cpu") -> GenerativeModule:
    """Rebuild the model of a checkpoint (any ``read_checkpoint`` takes), in eval mode."""
    path = local_checkpoint(path)
    ckpt = read_checkpoint(path, trust)
    cls = model_class(ckpt)
    if Path(path).is_dir():  # an exported folder: rebuilt from its dict as Lightning would
        from lightning.pytorch.core.saving import _load_state

        model = contextvars.Context().run(_load_state, cls, ckpt, strict=True)
        return model.to(device).eval()
    # A fresh context: inside LightningCLI's model instantiation (a plugin loading another
    # model, e.g. a distillation teacher) its context variable would hand the outer model's
    # arguments to this one's save_hyperparameters.
    model = contextvars.Context().run(cls.load_from_checkpoint, path, map_location=device,
                                      weights_only=not trust)
    return model.eval()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but a file is either complete or absent.

    The checkpoint goes to ``<path>.tmp`` in the same directory, is flushed to disk, then renamed
    over ``path`` (atomic on POSIX), so a process killed mid-save never leaves a truncated
    checkpoint for ``--ckpt_path last`` to pick up.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically."""
        path = Path(path)
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
