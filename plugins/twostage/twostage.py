"""Two-stage generation: any registered prior trained on a frozen autoencoder's codes or latents.

Stage one is an autoencoder checkpoint; stage two is any registered prior, named in YAML as
``prior: GPT`` with its ``prior_args``:

- integer codes (an autoencoder with ``encode``/``decode``/``num_codes``/``code_shape``, e.g.
  ``vqgan``) for a token prior (``GPT``): the code grid read in raster order after a start
  token, VQ-GAN + transformer (Esser et al. 2021, sec. 3.2). Token 0 is the start token and
  code ``k`` is token ``k + 1``, so the prior's vocabulary is ``num_codes + 1``.
- continuous latents (``encode_latent``/``decode_latent``/``latent_shape``: ``vqgan``'s maps
  before quantization, ``vae``'s posterior means) for a prior with a ``data_shape``
  (``Diffusion``): latent diffusion (Rombach et al. 2022), latents divided by their standard
  deviation on the first batch (the paper's scale factor, sec. 4.3.2) unless given.

The autoencoder is frozen and used only through those public methods; the data module stays the
ordinary image one (each batch is encoded on the fly) and its labels pass to the prior, so a
class-conditional prior (``num_classes``) works unchanged. The prior's own recipe runs as it
is: its ``training_step``, ``configure_optimizers`` and batch hooks get the encoded batch. The
checkpoint keeps the autoencoder's weights and hyperparameters, so it samples on its own.
"""

from __future__ import annotations

import contextvars
import inspect
import math
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from genlab import GenerativeModule
from genlab.checkpoint import load_model
from genlab.distributed import all_mean
from genlab.errors import GenlabError, raise_first
from genlab.module import ConformanceCase
from genlab.registry import create_model, get_model_class, origin
from genlab.sampling import option_names

Kind = Literal["codes", "latents"]
CODE_METHODS = ("encode", "decode", "num_codes", "code_shape")
LATENT_METHODS = ("encode_latent", "decode_latent", "latent_shape")
START = 0  # the start token of a code sequence; code k is token k + 1


class TwoStage(GenerativeModule):
    """A prior over the codes or latents of a frozen autoencoder; samples are images.

    Args:
        autoencoder: Path of the trained autoencoder checkpoint (``vqgan`` for a GPT prior;
            ``vqgan`` or ``vae`` for a diffusion prior). Needed to train; the checkpoint keeps
            the autoencoder's weights and hyperparameters instead of the path.
        prior: The prior's registered model: a class name (``GPT``, ``Diffusion``) or
            entry-point name (``ar``, ``diffusion``).
        prior_args: The prior's init_args. Its shape arguments are filled in from the
            autoencoder (a GPT's ``vocab_size``, ``block_size``; a diffusion's ``data_shape``;
            ``clip_x0: false``) when left out; given and wrong, they are refused before
            training. (Two keys rather than a nested ``{class_path, init_args}``, which
            jsonargparse would try to build before the shapes are known.)
        autoencoder_plugin: Registered name of the autoencoder's plugin; filled in.
        autoencoder_args: The autoencoder's hyperparameters; filled in, so a two-stage
            checkpoint rebuilds it without the file.
        latent_scale: Continuous latents are divided by it before the prior sees them;
            ``None``: their standard deviation on the first training batch.
    """

    modality = "image"

    def __init__(
        self,
        autoencoder: str | None = None,
        prior: str | None = None,
        prior_args: dict[str, Any] | None = None,
        autoencoder_plugin: str | None = None,
        autoencoder_args: dict[str, Any] | None = None,
        latent_scale: float | None = None,
    ) -> None:
        super().__init__()
        raise_first([
            (autoencoder is None and (autoencoder_plugin is None or autoencoder_args is None),
             "model.autoencoder is required: the path of a trained autoencoder checkpoint, e.g. "
             "runs/<vqgan run>/version_0/checkpoints/last.ckpt"),
            (prior is None, "model.prior is required: the prior's model, GPT (over codes) or "
                            "Diffusion (over latents), with its model.prior_args"),
            (latent_scale is not None and latent_scale <= 0,
             f"model.latent_scale must be > 0 (or null: measured), got {latent_scale}"),
        ])
        self.save_hyperparameters(ignore=["autoencoder"])
        self.autoencoder_source = autoencoder  # None: rebuilt from a two-stage checkpoint
        scale = 1.0 if latent_scale is None else latent_scale
        self.register_buffer("latent_scale", torch.tensor(scale))
        self.register_buffer("scale_measured", torch.tensor(latent_scale is not None))
        self.built = False
        # A config may name an autoencoder that is not trained yet: parsing it must not need
        # the file, so then both stages are built by configure_model() when fit starts.
        if autoencoder is None or Path(autoencoder).is_file():
            self.configure_model()

    def configure_model(self) -> None:
        """Load the autoencoder and build the prior (once): from ``__init__`` when the file is
        there, else by Lightning when fit starts (a missing file is refused then)."""
        if self.built:
            return
        h = self.hparams
        ae = contextvars.Context().run(_autoencoder, self.autoencoder_source,
                                       h.autoencoder_plugin, h.autoencoder_args)
        h.autoencoder_plugin = origin(type(ae))["plugin"]
        h.autoencoder_args = {k: v for k, v in ae.hparams.items() if not k.startswith("_")}
        prior_cls = _prior_class(h.prior)
        self.kind: Kind = _kind(prior_cls)
        init_args = _prior_args(self.kind, prior_cls, ae, dict(h.prior_args or {}))
        h.prior_args = init_args
        # In fresh contexts: inside LightningCLI's instantiation of this model, a context
        # variable holds *its* init args, which the parts' save_hyperparameters() would take.
        self.autoencoder = ae.requires_grad_(False).eval()
        self.prior = contextvars.Context().run(prior_cls, **init_args)
        if self._trainer is not None:  # built at fit start: Lightning attached it already
            self.prior.trainer = self._trainer
        self.data_shape = tuple(ae.data_shape)
        self.built = True

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """A GPT over the codes of a tiny VQ-VAE trained here for 2 steps; 2-process DDP."""
        data, ae = tiny_autoencoder(root)
        # A constant learning rate: a cosine's horizon is the run's length, which the kit's
        # stopped-and-resumed fit does not share with the uninterrupted one.
        prior_args = {"n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0,
                      "warmup_steps": 0, "lr_schedule": "constant"}
        return ConformanceCase(data, {"autoencoder": str(ae), "prior": "GPT",
                                      "prior_args": prior_args}, ddp=True)

    # ----------------------------------------------------------------------------- stages

    def train(self, mode: bool = True) -> TwoStage:
        """Switch the prior; the frozen autoencoder stays in eval mode."""
        super().train(mode)
        self.autoencoder.eval()
        return self

    @torch.no_grad()
    def prior_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The image batch encoded for the prior: code tokens ``(B, 1 + h*w)`` after the start
        token, or scaled latents; the labels pass through."""
        x = batch["x"]
        if self.kind == "codes":
            codes = self.autoencoder.encode(x).flatten(1)  # (B, h*w)
            start = torch.full_like(codes[:, :1], START)
            out = {"x": torch.cat([start, codes + 1], dim=1)}
        else:
            z = self.autoencoder.encode_latent(x).float()
            if self.training and not bool(self.scale_measured):
                self.measure_scale(z)
            out = {"x": z / self.latent_scale}
        if "label" in batch:
            out["label"] = batch["label"]
        return out

    def measure_scale(self, z: Tensor) -> None:
        """``latent_scale`` = the standard deviation of the (global) batch's latents."""
        mean, square = all_mean(z.mean()), all_mean(z.square().mean())
        self.latent_scale.copy_((square - mean.square()).clamp(min=1e-8).sqrt())
        self.scale_measured.fill_(True)

    def images(self, out: Tensor) -> Tensor:
        """Images in [-1, 1] from the prior's samples (token rows or scaled latents)."""
        ae = self.autoencoder
        if self.kind == "codes":
            codes = (out[:, 1:] - 1).clamp(0, ae.num_codes - 1)
            return ae.decode(codes.reshape(len(out), *ae.code_shape))
        return ae.decode_latent(out.float() * self.latent_scale).clamp(-1, 1)

    # ----------------------------------------------------------------------------- sampling

    def sample_options(self) -> tuple[type, str, set[str]]:
        """The prior's sampling options (temperature, top-k / steps, sampler, labels, guidance),
        less those the code grid fixes (a GPT's prompt and length)."""
        skip = {"num", "prompt", "max_new_tokens"} if self.kind == "codes" else {"num"}
        return type(self.prior), "sample", skip

    def sample(self, num: int, **options: Any) -> Tensor:
        """``num`` images ``(num, C, H, W)`` in [-1, 1]: prior samples, decoded.

        Args:
            num: Number of images.
            options: The prior's sampling options (``genlab sample --ckpt X --help`` lists them).
        """
        takes = option_names(*self.sample_options())
        unknown = sorted(set(options) - set(takes))
        if unknown:
            raise GenlabError(f"this two-stage model's prior ({type(self.prior).__name__}) does "
                              f"not take {', '.join(unknown)}; it takes: {', '.join(takes)}")
        if self.kind == "codes":
            options["max_new_tokens"] = math.prod(self.autoencoder.code_shape)
        return self.images(self.prior.sample(num, **options))

    # ----------------------------------------------------------------------------- training

    def _delegate(self, hook: str, *args: Any) -> Any:
        # The prior logs as if it were the trained module: it shares the trainer (Lightning
        # hands it to child modules) and, here, the name of the hook being run.
        self.prior._current_fx_name = self._current_fx_name
        return getattr(self.prior, hook)(*args)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Any:
        return self._delegate("training_step", self.prior_batch(batch), batch_idx)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._delegate("on_train_batch_end", outputs, batch, batch_idx)  # e.g. a prior's EMA

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._delegate("validation_step", self.prior_batch(batch), batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._delegate("on_validation_epoch_end")

    def configure_optimizers(self) -> Any:
        """The prior's own optimizers and schedules (the autoencoder is frozen)."""
        return self.prior.configure_optimizers()


# --------------------------------------------------------------------------------- building


def _autoencoder(path: str | None, plugin: str | None,
                 args: dict[str, Any] | None) -> GenerativeModule:
    """The autoencoder from its checkpoint, or (rebuilding a two-stage checkpoint, whose state
    holds its weights) an untrained one of the same plugin and hyperparameters."""
    if path is None:
        return create_model(plugin, **args)
    if not Path(path).is_file():
        raise GenlabError(f"model.autoencoder {path} does not exist; train the autoencoder first "
                          f"(genlab fit --config configs/vqgan/mnist.yaml) and point it there")
    return load_model(path)


def _prior_class(class_path: str) -> type[GenerativeModule]:
    """The registered prior class for ``GPT``, ``ar`` or ``genlab_ar.GPT``."""
    return get_model_class(class_path.rpartition(".")[2])


def _kind(prior_cls: type) -> Kind:
    """``codes`` for a token prior (``vocab_size``), ``latents`` for one with ``data_shape``."""
    takes = inspect.signature(prior_cls.__init__).parameters
    if "vocab_size" in takes:
        return "codes"
    if "data_shape" in takes:
        return "latents"
    raise GenlabError(f"model.prior {prior_cls.__name__} can model neither codes (a token model "
                      f"with vocab_size, e.g. GPT) nor latents (a model with data_shape, e.g. "
                      f"Diffusion)")


def _prior_args(kind: Kind, prior_cls: type, ae: GenerativeModule,
                args: dict[str, Any]) -> dict[str, Any]:
    """The prior's init_args with its shapes filled in from the autoencoder, or a
    ``GenlabError`` for a wrong pairing."""
    name, ae_name = prior_cls.__name__, type(ae).__name__
    needs = CODE_METHODS if kind == "codes" else LATENT_METHODS
    missing = [m for m in needs if not hasattr(ae, m)]
    if missing:
        what = ("integer codes (e.g. vqgan)" if kind == "codes"
                else "continuous latents (vqgan, vae)")
        raise GenlabError(f"model.autoencoder must be an autoencoder with {what} for a {name} "
                          f"prior; {ae_name} has no {', '.join(missing)}")
    if kind == "codes":
        tokens, vocab = math.prod(ae.code_shape), ae.num_codes + 1
        args.setdefault("vocab_size", vocab)
        args.setdefault("block_size", tokens)
        raise_first([
            (args["vocab_size"] != vocab,
             f"model.prior vocab_size is {args['vocab_size']} but {ae_name} has {ae.num_codes} "
             f"codes: it must be {vocab} (the codes and a start token); set it or leave it out"),
            (args.get("data_shape") is not None, "model.prior data_shape must be left out: the "
                                                 "prior models code sequences, not pixels"),
            (args["block_size"] < tokens, f"model.prior block_size ({args['block_size']}) must "
                                          f"hold the {tokens} codes of an image"),
        ])
        return args
    shape = list(ae.latent_shape)
    args.setdefault("data_shape", shape)
    args.setdefault("clip_x0", False)  # latents are not bounded like pixels
    if list(args["data_shape"]) != shape:
        raise GenlabError(f"model.prior data_shape is {list(args['data_shape'])} but {ae_name}'s "
                          f"latents have shape {shape}; set it or leave it out")
    return args


def tiny_autoencoder(root: Path, steps: int = 2) -> tuple[Any, Path]:
    """Tiny 28x28 digits and a tiny VQ-VAE trained on them for ``steps`` steps, saved under
    ``root``: ``(data module, checkpoint path)``, for conformance cases and tests."""
    import lightning as L

    from genlab.data.images import ImageDataModule
    from genlab.data.tiny import write_parquet

    source = write_parquet(root / "digits", {"train": 32, "test": 8}, size=(28, 28))
    data = ImageDataModule(str(source), image_size=28, channels=1, batch_size=8, num_workers=0)
    L.seed_everything(0, verbose=False)
    ae = create_model("vqgan", num_codes=8, code_dim=4, width=4, dead_after=0)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=root)
    trainer.fit(ae, data)
    trainer.save_checkpoint(root / "autoencoder.ckpt")
    return data, root / "autoencoder.ckpt"
