"""``genlab export``: a checkpoint as a folder to share on the Hugging Face Hub.

    genlab export --ckpt runs/x/version_0/checkpoints/last.ckpt --out my-model
    huggingface-cli upload <user>/<repo> my-model

The folder holds ``model.safetensors`` (the weights), ``config.yaml`` (the model's class path and
init arguments, the data section it was trained on, the plugin that wrote it) and a model card
``README.md`` (Hub front matter, a sample picture, the evaluation, versions). ``genlab sample``
and ``genlab evaluate`` take the folder as ``--ckpt``; reading it never unpickles anything.
"""

from __future__ import annotations

import json
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentError, ArgumentParser
from safetensors.torch import load_file, save_file
from torch import Tensor

from genlab.errors import GenlabError

WEIGHTS, CONFIG, CARD, EVAL = "model.safetensors", "config.yaml", "README.md", "eval.json"
# Lightning's training state (and what config.yaml holds already): not part of a shared model.
SKIPPED = {"epoch", "global_step", "pytorch-lightning_version", "loops", "callbacks",
           "optimizer_states", "lr_schedulers", "state_dict", "hyper_parameters", "hparams_name",
           "hparams_type", "datamodule_hyper_parameters", "datamodule_hparams_name", "genlab"}


class _Dumper(yaml.SafeDumper):
    """YAML of plain hyperparameters; tuples (e.g. ``data_shape``) are written as lists."""


_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``genlab export``."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def _plain(value: Any) -> bool:
    """Whether ``value`` is made of YAML-safe plain types only (no tensors, no objects)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _weights(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses tensors that share memory (tied weights): each gets its own copy,
    # and load_state_dict writes both back into the tied parameter.
    seen: set[int] = set()
    out = {}
    for key, tensor in state_dict.items():
        ptr = tensor.untyped_storage().data_ptr()
        out[key] = tensor.detach().clone().contiguous() if ptr in seen else tensor.contiguous()
        seen.add(ptr)
    return out


def export_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The ``config.yaml`` of a checkpoint: model class path and init args, data, provenance.

    Non-tensor extras that plugins add to their checkpoints (e.g. a tokenizer's vocabulary, the
    data module's state) are kept under ``genlab.extras``; tensors outside the ``state_dict``
    (training-noise generator states) are training state and are left out.
    """
    hparams = dict(ckpt.get("hyper_parameters") or {})
    record = {k: v for k, v in (ckpt.get("genlab") or {}).items() if k not in ("wandb", "data")}
    class_path = hparams.pop("_class_path", None) or record.get("class_path")
    instantiator = hparams.pop("_instantiator", None)
    extras = {k: v for k, v in ckpt.items() if k not in SKIPPED and _plain(v)}
    return {"model": {"class_path": class_path, "init_args": hparams},
            "data": (ckpt.get("genlab") or {}).get("data"),
            "genlab": {**record, "instantiator": instantiator,
                       "global_step": ckpt.get("global_step"), "extras": extras}}


def read_export(path: str | Path) -> dict[str, Any]:
    """An exported folder as the checkpoint dictionary it came from (weights, hparams, record).

    Reads ``config.yaml`` with ``yaml.safe_load`` and the weights with safetensors: nothing is
    unpickled.
    """
    path = Path(path)
    try:
        config = yaml.safe_load((path / CONFIG).read_text()) or {}
        state_dict = load_file(path / WEIGHTS)
    except (yaml.YAMLError, OSError, ValueError, RuntimeError) as err:
        raise GenlabError(f"{path} is not a readable genlab export: "
                          f"{str(err).splitlines()[0]}") from None
    model, record = config.get("model") or {}, dict(config.get("genlab") or {})
    if not model.get("class_path"):
        raise GenlabError(f"{path / CONFIG} names no model.class_path; re-export the checkpoint "
                          f"with `genlab export`")
    extras, instantiator = record.pop("extras", None) or {}, record.pop("instantiator", None)
    hparams = dict(model.get("init_args") or {})
    if instantiator:  # built by LightningCLI: rebuilt the same way (nested class paths)
        hparams.update(_instantiator=instantiator, _class_path=model["class_path"])
    record.setdefault("class_path", model["class_path"])
    return {**extras, "state_dict": state_dict, "hyper_parameters": hparams,
            "global_step": record.get("global_step") or 0,
            "genlab": {**record, "data": config.get("data")}}


def _versions(record: dict[str, Any]) -> dict[str, str]:
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    found = {"genlab": installed("genlab"), "torch": torch.__version__,
             "lightning": installed("lightning")}
    if record.get("package") and record["package"] not in found:
        found[record["package"]] = record.get("version") or installed(record["package"])
    return found


def _samples(model: Any, out: Path, seed: int = 0) -> Path:
    """The model's samples for ``seed`` (its modality's ``picture_num``), drawn into ``out``."""
    from genlab.callbacks.samples import fixed_seed
    from genlab.modality import modality_of
    from genlab.visualize import save_rendered

    modality = modality_of(model)
    with fixed_seed(seed, model.device):
        samples = model.sample_eval(modality.picture_num)
    rendered = modality.render(samples, decode=getattr(model, "decode", None),
                               title=f"{type(model).__name__}, seed {seed}")
    return save_rendered(rendered, out / "samples")


def _evaluation(ckpt_path: Path, eval_json: str | None, out: Path) -> dict[str, Any] | None:
    """The evaluation report given, else ``genlab evaluate``'s default one beside the ckpt."""
    source = Path(eval_json) if eval_json else ckpt_path.with_suffix(".eval.json")
    if not source.is_file():
        if eval_json:
            raise GenlabError(f"--eval {source} does not exist; write one with `genlab evaluate "
                              f"--ckpt {ckpt_path} --out {source}`")
        return None
    shutil.copyfile(source, out / EVAL)
    return json.loads(source.read_text())


def model_card(config: dict[str, Any], samples: Path, report: dict[str, Any] | None,
               license: str, modality: str, pipeline_tag: str | None = None) -> str:
    """The Hub model card: YAML front matter, samples, usage, evaluation, data, versions."""
    record = config["genlab"]
    name = config["model"]["class_path"].rpartition(".")[2]
    plugin, package = record.get("plugin", name), record.get("package", "genlab")
    front = {"library_name": "genlab", "license": license,
             "tags": ["genlab", str(plugin), modality, "generative-model"]}
    if pipeline_tag:
        front["pipeline_tag"] = pipeline_tag
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {name} ({plugin}, genlab)", "",
             f"A {modality} generative model trained with genlab (plugin `{plugin}` from package "
             f"`{package}`), at step {record.get('global_step')}. `{WEIGHTS}` holds the weights, "
             f"`{CONFIG}` the model's class and arguments and its training data.", ""]
    if samples.suffix == ".png":
        lines += [f"![samples, seed 0]({samples.name})", ""]
    else:
        lines += ["Samples (seed 0):", "", "```", samples.read_text().strip()[:1500], "```", ""]
    install = "genlab" if package == "genlab" else f"genlab {package}"
    lines += ["## Use", "", "```bash", f"pip install {install}",
              "huggingface-cli download <user>/<repo> --local-dir model",
              "genlab sample --ckpt model --num 64 --out samples.png",
              "genlab evaluate --ckpt model", "```", ""]
    if report:
        extractor = report.get("extractor")
        if isinstance(extractor, dict):
            extractor = extractor.get("name")
        scored = f", features: {extractor}" if extractor else ""
        lines += ["## Evaluation", "", f"From `{EVAL}` ({report.get('num_samples')} samples, "
                  f"split {report.get('split')}{scored}).", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in report.get("metrics", {}).items()] + [""]
    data = yaml.dump(config.get("data"), Dumper=_Dumper, sort_keys=False).strip()
    lines += ["## Training data", "", "```yaml", data, "```", "", "## Versions", "",
              "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _versions(record).items()]
    return "\n".join(lines) + "\n"


def export(ckpt_path: str | Path, out: str | Path, eval_json: str | None = None,
           trust: bool = False, license: str = "mit") -> Path:
    """Write the shareable folder of a checkpoint to ``out``; returns ``out``."""
    from genlab.checkpoint import load_model, local_checkpoint, model_class, read_checkpoint

    ckpt_path, out = local_checkpoint(ckpt_path), Path(out)
    ckpt = read_checkpoint(ckpt_path, trust)
    model_class(ckpt)  # the plugin must be installed to rebuild (and check) the model
    config = export_config(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_weights(ckpt["state_dict"]), str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(yaml.dump(config, Dumper=_Dumper, sort_keys=False))
    model = load_model(out)  # the folder rebuilds the model on its own, or export fails here
    samples = _samples(model, out)
    report = _evaluation(ckpt_path, eval_json, out)
    from genlab.modality import modality_of

    card = model_card(config, samples, report, license, model.modality,
                      modality_of(model).pipeline_tag)
    (out / CARD).write_text(card)
    return out


def build_parser() -> ArgumentParser:
    """The ``genlab export`` argument parser."""
    parser = ArgumentParser(prog="genlab export", exit_on_error=False,
                            description="Write a checkpoint as a folder to share: safetensors "
                                        "weights, config.yaml, model card README.md.")
    parser.add_argument("--ckpt", type=str, required=True,
                        help="Checkpoint to export: a .ckpt, or a W&B artifact "
                             "wandb:entity/project/name:alias.")
    parser.add_argument("--out", type=str, required=True, help="Folder to write.")
    parser.add_argument("--eval", type=str | None, default=None,
                        help="Report of `genlab evaluate` for the card (default: <ckpt>.eval.json "
                             "when it exists).")
    parser.add_argument("--license", type=str, default="mit", help="License in the model card.")
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Allow full unpickling of the .ckpt (only for files you trust).")
    return parser


def export_main(argv: list[str]) -> None:
    """Run ``genlab export`` with command-line arguments ``argv``."""
    try:
        args = build_parser().parse_args(argv)
    except ArgumentError as err:
        raise GenlabError(f"{str(err).splitlines()[0]} (see `genlab export --help`)") from None
    out = export(args.ckpt, args.out, args.eval, args.trust_checkpoint, args.license)
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}\n"
          f"publish it with: huggingface-cli upload <user>/<repo> {out}")
