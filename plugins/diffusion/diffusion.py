"""Denoising diffusion (DDPM) on points or images, sampled with DDPM, DDIM or Heun.

The recipe only: the networks are ``genlab.nn`` modules (``PointDenoiser``, ``UNet``), the noise
schedule, target conversions, samplers and guidance are ``genlab.diffusion`` parts, so another
plugin can load this model's checkpoint and call ``denoiser_fn()`` with the same samplers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from genlab import GenerativeModule, conditions
from genlab.checkpoint import load_model
from genlab.conditions import Conditions
from genlab.diffusion import SAMPLERS, NoiseSchedule, autoguidance, classifier_free_guidance
from genlab.diffusion import sample as run_sampler
from genlab.diffusion.inpaint import repaint_sample
from genlab.diffusion.samplers import Denoiser
from genlab.diffusion.schedule import LossWeighting, Prediction, ScheduleKind
from genlab.ema import ema_model
from genlab.errors import GenlabError, raise_first
from genlab.modalities.image import as_images
from genlab.module import ConformanceCase
from genlab.nn.conditions import ImageEncoder, TextEncoder
from genlab.nn.point_denoiser import PointDenoiser
from genlab.nn.unet import UNet
from genlab.noise import batch_rand, batch_randint, batch_randn
from genlab.pictures import strip
from genlab.recipes import (
    LRSchedule,
    batch_labels,
    lr_horizon,
    num_classes_problem,
    sample_labels,
    warmup_cosine,
)
from genlab.sharding import shard

SamplerName = Literal["ddpm", "ddim", "heun"]


class Diffusion(GenerativeModule):
    """Denoising diffusion probabilistic model (Ho et al. 2020) with EMA weights and optional
    conditioning for classifier-free guidance (Ho & Salimans 2022) on class labels, text prompts
    (``batch["text"]``, ``sample(prompt=...)``) and, for super-resolution, a low-resolution
    source image (``batch["source"]``, ``sample(source=...)``; SR3, Saharia et al. 2021).

    Points (``data_shape`` of length 1) use an MLP denoiser, images (``(C, H, W)``) a U-Net.
    Sampling always uses the EMA weights; the sampler, steps, eta and guidance given here are
    the defaults of ``sample()``, which can override each.

    Args:
        data_shape: Shape of one example: ``[D]`` for points, ``[C, H, W]`` for images.
        num_classes: Number of classes for a class-conditional model, ``None`` otherwise.
        hidden: Hidden widths of the point denoiser's MLP.
        emb_dim: Width of the point denoiser's time embedding.
        fourier_features: Random Fourier features of the noisy point fed to the point
            denoiser (0: none). Tight modes need them: without, a plain MLP blurs samples
            between modes (see ``genlab.nn.point_denoiser``).
        fourier_scale: Standard deviation of those frequencies, in cycles per unit of the
            diffusion space (data divided by ``data_scale``).
        channels: Base width of the U-Net.
        channel_mults: Width multiplier of each U-Net level (the side must be divisible by
            ``2 ** (len(channel_mults) - 1)``).
        num_res_blocks: Residual blocks per U-Net level.
        attention_levels: U-Net levels (0 = full resolution) with self-attention.
        dropout: Dropout in the U-Net's residual blocks.
        schedule: Noise schedule, ``linear`` or ``cosine``.
        num_timesteps: Number of diffusion steps ``T``.
        prediction: What the network predicts: ``eps`` (noise), ``v`` or ``x0``. ``v`` is the
            default: with the cosine schedule, an ``eps`` network's first clean estimate is
            divided by ``sqrt(alpha_bar_{T-1})`` (about 1e-4), which wrecks few-step sampling.
        loss_weighting: ``none`` (plain MSE on the target) or ``min_snr``.
        min_snr_gamma: ``gamma`` of the Min-SNR weighting.
        text_condition: Condition the U-Net on text prompts (a ``genlab.nn.TextEncoder``).
        text_width: Channels of the text encoder.
        text_max_len: Bytes of each prompt the text encoder reads.
        source_size: Side of a source image to condition the U-Net on (super-resolution from
            ``source_size`` to the image size, through a ``genlab.nn.ImageEncoder``); ``None``:
            no source.
        source_width: Learned channels of the source encoder.
        label_dropout: Probability that a training example's conditions (label, text, source)
            are replaced by the null ones, so one network learns both conditional and
            unconditional predictions (needed for guidance).
        data_scale: Data are divided by it before diffusion (and samples multiplied back), so
            that they have roughly unit spread; e.g. 4 for the grid-25 points at ±4.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Steps of linear learning-rate warm-up.
        lr_schedule: ``constant`` after warm-up, or ``cosine`` decay to zero over the run.
        ema_decay: Decay of the exponential moving average of the denoiser's weights.
        sampler: Default sampler: ``ddpm`` (ancestral), ``ddim`` or ``heun``.
        sample_steps: Default number of sampling steps.
        eta: Default DDIM noise scale (0: deterministic).
        guidance: Default classifier-free guidance scale (1: plain conditional).
        clip_x0: Clamp clean estimates to the data range while sampling; ``None``: for images.
        trajectory_frames: Frames of the denoising-trajectory strip drawn with the samples
            (``samples/trajectory_step_<step>.png``, the ``pictures`` hook); 0 draws none.
    """

    modalities = ("points", "image")
    conditions = ("label", "text", "source")

    @property
    def modality(self) -> str:
        """``points`` for a data shape ``[D]``, ``image`` for ``[C, H, W]``."""
        return "points" if len(self.hparams.data_shape) == 1 else "image"

    def __init__(
        self,
        data_shape: Sequence[int] = (2,),
        num_classes: int | None = None,
        hidden: Sequence[int] = (256, 256, 256),
        emb_dim: int = 128,
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2,),
        dropout: float = 0.1,
        text_condition: bool = False,
        text_width: int = 64,
        text_max_len: int = 48,
        source_size: int | None = None,
        source_width: int = 32,
        schedule: ScheduleKind = "cosine",
        num_timesteps: int = 1000,
        prediction: Prediction = "v",
        loss_weighting: LossWeighting = "none",
        min_snr_gamma: float = 5.0,
        label_dropout: float = 0.1,
        data_scale: float = 1.0,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_schedule: LRSchedule = "constant",
        ema_decay: float = 0.999,
        sampler: SamplerName = "ddim",
        sample_steps: int = 100,
        eta: float = 0.0,
        guidance: float = 1.0,
        clip_x0: bool | None = None,
        trajectory_frames: int = 8,
    ) -> None:
        super().__init__()
        raise_first([
            (len(data_shape) not in (1, 3), f"model.data_shape must be [D] (points) or "
                                            f"[C, H, W] (images), got {list(data_shape)}"),
            num_classes_problem(num_classes),
            ((text_condition or source_size is not None) and len(data_shape) != 3,
             "model.text_condition and model.source_size need images (data_shape [C, H, W])"),
            (source_size is not None and source_size <= 0,
             f"model.source_size must be positive or null, got {source_size}"),
            (not 0 <= label_dropout < 1,
             f"model.label_dropout must be in [0, 1), got {label_dropout}"),
            (not 0 <= ema_decay < 1, f"model.ema_decay must be in [0, 1), got {ema_decay}"),
            (data_scale <= 0, f"model.data_scale must be positive, got {data_scale}"),
            (sampler not in SAMPLERS,
             f"model.sampler must be one of {list(SAMPLERS)}, got {sampler!r}"),
            (not 1 <= sample_steps <= num_timesteps,
             f"model.sample_steps must be between 1 and num_timesteps ({num_timesteps})"),
        ])
        self.save_hyperparameters()
        self.data_shape = tuple(data_shape)
        self.denoiser = self.build_denoiser()
        # EMA copy of the denoiser: a submodule, so checkpoints save it; sample() uses it.
        self.ema = ema_model(self.denoiser, ema_decay)
        self.schedule = NoiseSchedule(schedule, num_timesteps)

    @classmethod
    def conformance_case(cls, root: Path) -> ConformanceCase:
        """Ring-8 points, a tiny point denoiser; 2-process DDP, bf16 and fp16."""
        from genlab.data.toy import ToyDataModule

        return ConformanceCase(ToyDataModule(train_size=128, val_size=32, batch_size=32),
                               {"data_shape": [2], "hidden": [16], "num_timesteps": 50,
                                "sample_steps": 4},
                               ddp=True, precisions=("bf16-mixed", "16-mixed"))

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """``label`` when ``num_classes`` is set, ``text`` and ``source`` when asked for."""
        h = self.hparams
        return tuple(kind for kind, used in [("label", h.num_classes is not None),
                                             ("text", h.text_condition),
                                             ("source", h.source_size is not None)] if used)

    def build_denoiser(self) -> nn.Module:
        """The network: ``PointDenoiser`` for points, ``UNet`` for images."""
        h = self.hparams
        if len(self.data_shape) == 1:
            return PointDenoiser(self.data_shape[0], h.hidden, h.emb_dim,
                                 num_classes=h.num_classes,
                                 fourier_features=h.fourier_features,
                                 fourier_scale=h.fourier_scale)
        c, height, width = self.data_shape
        factor = 2 ** (len(h.channel_mults) - 1)
        if height % factor or width % factor:
            raise GenlabError(f"images of {height}x{width} cannot be halved "
                              f"{len(h.channel_mults) - 1} times for model.channel_mults "
                              f"{list(h.channel_mults)}; use fewer levels or another size")
        text = (TextEncoder(4 * h.channels, h.text_width, h.text_max_len)
                if h.text_condition else None)
        source = None if h.source_size is None else ImageEncoder(c, height, h.source_width)
        return UNet(c, h.channels, h.channel_mults, h.num_res_blocks, h.attention_levels,
                    h.dropout, num_classes=h.num_classes, text_encoder=text,
                    source_encoder=source)

    # Training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x0 = batch["x"].float() / self.hparams.data_scale
        labels = self.training_conditions(batch)
        t = batch_randint(self, 0, self.schedule.num_timesteps, (len(x0),))
        noise = batch_randn(self, x0.shape, dtype=x0.dtype)
        x_t = self.schedule.q_sample(x0, t, noise)
        target = self.schedule.target(x0, noise, t, self.hparams.prediction)
        err = (self.denoiser(x_t, t, labels) - target).pow(2).flatten(1).mean(1)  # (B,)
        weight = self.schedule.loss_weight(t, self.hparams.prediction,
                                           self.hparams.loss_weighting, self.hparams.min_snr_gamma)
        loss = (weight * err).mean()
        self.log_train({"train/loss": loss})
        return loss

    def training_conditions(self, batch: dict[str, Any]) -> Tensor | Conditions | None:
        """The batch's conditions, ``label_dropout`` of the examples given the null ones.

        Class ids alone for a label-only model (the point denoiser's interface), else a dict.
        """
        conds = self.conditions_of(batch)  # one line for a missing or an extra condition
        if set(conds) <= {"label"}:
            return self.training_labels(batch)
        if "label" in conds:
            conds["label"] = batch_labels(batch, self.hparams.num_classes)
        drop = batch_rand(self, (len(batch["x"]),)) < self.hparams.label_dropout
        return conditions.drop(conds, drop, self.hparams.num_classes)

    def training_labels(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The batch's labels with ``label_dropout`` of them replaced by the null class."""
        classes = self.hparams.num_classes
        labels = batch_labels(batch, classes)
        if labels is None:
            return None
        drop = batch_rand(self, (len(labels),)) < self.hparams.label_dropout
        return torch.where(drop, torch.full_like(labels, classes), labels)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the EMA weights after each optimizer step."""
        self.ema.update_parameters(self.denoiser)

    def configure_model(self) -> None:
        """Under ``--trainer.strategy fsdp2``: shard the denoiser and its EMA alike."""
        shard(self, ["denoiser", "ema"])

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        opt = torch.optim.AdamW(self.denoiser.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        total = lr_horizon(self.trainer) if h.lr_schedule == "cosine" else 0
        scheduler = LambdaLR(opt, lambda step: warmup_cosine(step, h.warmup_steps, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # Sampling

    def denoiser_fn(self, ema: bool = True, guidance: float = 1.0,
                    guide: str | None = None) -> Denoiser:
        """The network as a ``denoiser(x_t, t, labels) -> prediction`` callable for the samplers.

        Inputs and outputs are in the diffusion's space (data divided by ``data_scale``);
        ``guidance != 1`` wraps it in autoguidance when a ``guide`` checkpoint is given, else in
        classifier-free guidance (conditional models only).
        """
        net = self.ema.module if ema else self.denoiser
        if guide is not None:
            if guidance == 1:
                raise GenlabError("--guide needs a guidance scale other than 1, e.g. --guidance "
                                  "1.5 (at 1 the guide has no effect)")
            return autoguidance(net, self.guide_model(guide).denoiser_fn(), guidance)
        if not self.condition_keys or guidance == 1:
            return net
        return classifier_free_guidance(net, guidance, null_label=self.hparams.num_classes)

    def guide_model(self, path: str) -> Diffusion:
        """The weaker model of checkpoint ``path`` for autoguidance, loaded once and checked."""
        cached = getattr(self, "_guides", {})
        if path not in cached:
            guide = load_model(path, device=self.device)
            if not isinstance(guide, Diffusion):
                raise GenlabError(f"--guide {path} is a {type(guide).__name__} checkpoint; give "
                                  f"a diffusion model of this config with fewer steps")
            same = ("data_shape", "num_timesteps", "schedule", "prediction", "data_scale",
                    "num_classes", "text_condition", "source_size")
            differ = [k for k in same
                      if _as_list(guide.hparams.get(k)) != _as_list(self.hparams[k])]
            if differ:
                raise GenlabError(f"--guide {path} is not a diffusion model of the same data and "
                                  f"noise ({', '.join(differ)} differ); train the guide with "
                                  f"this model's config and fewer steps or channels")
            cached[path] = guide
            self._guides = cached  # a plain dict, not a submodule: never saved
        return cached[path]

    def sample(
        self,
        num: int,
        steps: int | None = None,
        sampler: str | None = None,
        labels: Tensor | None = None,
        guidance: float | None = None,
        eta: float | None = None,
        prompt: str | list[str] | None = None,
        source: Tensor | None = None,
        mask: Tensor | None = None,
        resample: int = 5,
        jump: int = 5,
        reconstruction: float = 0.0,
        guide: str | None = None,
    ) -> Tensor:
        """``num`` samples drawn with the EMA weights, ``(num, *data_shape)``.

        Args:
            num: Number of samples.
            steps: Denoising steps; ``None``: ``model.sample_steps``.
            sampler: ``ddpm``, ``ddim`` or ``heun``; ``None``: ``model.sampler``.
            labels: Class ids ``(num,)`` of a conditional model; ``None`` cycles through the
                classes (``i % num_classes``) so grids show every class.
            guidance: Classifier-free guidance scale; ``None``: ``model.guidance``.
            eta: DDIM noise scale; ``None``: ``model.eta``.
            prompt: Text prompt(s) of a text-conditioned model: one for all samples or one
                each; ``None``: the empty prompt (unconditional samples).
            source: Source images ``(num, C, h, w)`` (or one for all) of a super-resolution
                model, resized to ``model.source_size`` if need be (``genlab sample --source
                img.png``); ``None``: the null (zero) source. With ``mask``: the images to
                inpaint (RePaint, Lugmayr et al. 2022), ``(num, C, H, W)`` in [-1, 1], or one
                for all; on the command line an image file or a folder of them.
            mask: Inpaint ``source``: 1 (white) where it is kept, 0 (black) where it is
                generated; same forms as ``source``. Inpainting takes ancestral (``ddpm``)
                steps.
            resample: RePaint's passes over each stretch of ``jump`` steps (1: paste only).
            jump: RePaint's steps per jump back up.
            reconstruction: Inpainting's reconstruction-guidance weight (``repaint_sample``;
                0: none): steers the generated part towards what the known part must be.
            guide: Checkpoint of a weaker model of the same data (this config with fewer
                steps or channels) for autoguidance (Karras et al. 2024); ``guidance`` is then
                its scale, also for unconditional models (about 2).
        """
        if mask is not None:
            return self.inpaint(num, source, mask, steps, sampler, labels, guidance, resample,
                                jump, prompt=prompt, reconstruction=reconstruction, guide=guide)
        return self.draw(num, steps, sampler, labels, guidance, eta, prompt=prompt,
                         source=source, guide=guide)

    def inpaint(self, num: int, source: Tensor | None, mask: Tensor | None,
                steps: int | None = None, sampler: str | None = None,
                labels: Tensor | None = None, guidance: float | None = None,
                resample: int = 5, jump: int = 5,
                trajectory: list[Tensor] | None = None,
                prompt: str | list[str] | None = None, reconstruction: float = 0.0,
                guide: str | None = None) -> Tensor:
        """``source`` inpainted where ``mask`` is 0 (``repaint_sample``; see ``sample``)."""
        h = self.hparams
        if source is None or mask is None:
            raise GenlabError("inpainting needs both --source (the images) and --mask (1 where "
                              "the source is kept, 0 where it is generated)")
        if sampler not in (None, "ddpm"):
            raise GenlabError(f"inpainting (RePaint) takes ancestral steps; drop --sampler "
                              f"{sampler} (or give ddpm)")
        source, known = self.as_data(source, "source", num), self.as_data(mask, "mask", num) > 0
        guidance = h.guidance if guidance is None else guidance
        clip = (self.modality == "image") if h.clip_x0 is None else h.clip_x0
        noise = torch.randn(num, *self.data_shape, device=self.device)
        x = repaint_sample(self.denoiser_fn(True, guidance, guide), self.schedule, noise,
                           source / h.data_scale, known, prediction=h.prediction,
                           steps=h.sample_steps if steps is None else steps, jump=jump,
                           resample=resample,
                           labels=self.sample_conditions(num, labels, prompt, None),
                           clip=1.0 / h.data_scale if clip else None, trajectory=trajectory,
                           reconstruction=reconstruction)
        return torch.where(known, source, x * h.data_scale)  # known pixels exactly the source's

    def as_data(self, x: Tensor, name: str, num: int) -> Tensor:
        """A condition in the data's shape, ``(num, *data_shape)``, from one or ``num`` of it."""
        if self.modality == "image":
            x = as_images(x, self.data_shape, name)
        else:
            x = x.float().reshape(-1, *self.data_shape)
        if len(x) not in (1, num):
            raise GenlabError(f"--{name} has {len(x)} examples; give 1 (for all) or --num={num}")
        return x.to(self.device).expand(num, *x.shape[1:])

    def draw(self, num: int, steps: int | None = None, sampler: str | None = None,
             labels: Tensor | None = None, guidance: float | None = None,
             eta: float | None = None, trajectory: list[Tensor] | None = None,
             prompt: str | list[str] | None = None, source: Tensor | None = None,
             guide: str | None = None) -> Tensor:
        """``sample()`` that can also record the denoising trajectory (see ``ddpm_sample``)."""
        h = self.hparams
        sampler = h.sampler if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise GenlabError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
        guidance = h.guidance if guidance is None else guidance
        labels = self.sample_conditions(num, labels, prompt, source)
        clip = (self.modality == "image") if h.clip_x0 is None else h.clip_x0
        noise = torch.randn(num, *self.data_shape, device=self.device)
        steps = h.sample_steps if steps is None else steps
        x = run_sampler(sampler, self.denoiser_fn(True, guidance, guide), self.schedule,
                        noise, prediction=h.prediction, steps=steps,
                        eta=h.eta if eta is None else eta, labels=labels,
                        clip=1.0 / h.data_scale if clip else None, trajectory=trajectory)
        return x * h.data_scale

    def sample_labels(self, num: int, labels: Tensor | None) -> Tensor | None:
        """Labels checked against ``num_classes``; for a conditional model ``None`` cycles."""
        return sample_labels(num, labels, self.hparams.num_classes, self.device,
                             prior=self.label_prior)

    def sample_conditions(self, num: int, labels: Tensor | None,
                          prompt: str | list[str] | None,
                          source: Tensor | None) -> Tensor | Conditions | None:
        """The conditions of ``num`` samples, checked; class ids alone for a label-only model."""
        h = self.hparams
        raise_first([
            (prompt is not None and not h.text_condition,
             "a prompt was given, but this model is not conditioned on text "
             "(model.text_condition: false); drop --prompt"),
            (source is not None and h.source_size is None,
             "a source image was given, but this model takes none (model.source_size: null); "
             "drop --source, or add --mask to inpaint it"),
        ])
        labels = self.sample_labels(num, labels)
        if not (h.text_condition or h.source_size is not None):
            return labels
        cond: Conditions = {} if labels is None else {"label": labels}
        if h.text_condition:
            cond["text"] = per_sample_texts(prompt, num)
        if h.source_size is not None:
            cond["source"] = self.source_images(source, num)
        return cond

    def source_images(self, source: Tensor | None, num: int) -> Tensor:
        """``source`` as ``(num, C, s, s)`` at ``model.source_size`` (zeros when ``None``)."""
        size, c = self.hparams.source_size, self.data_shape[0]
        if source is None:
            return torch.zeros(num, c, size, size, device=self.device)
        source = torch.as_tensor(source, device=self.device).float()
        source = source[None] if source.ndim == 3 else source
        if source.ndim != 4 or source.shape[1] != c or len(source) not in (1, num):
            raise GenlabError(f"source must be {num} (or 1) images of {c} channel(s), "
                              f"got shape {tuple(source.shape)}")
        if source.shape[-2:] != (size, size):  # e.g. a full-size image: its downsampled copy
            source = nn.functional.interpolate(source, size=(size, size), mode="bilinear",
                                               antialias=True, align_corners=False)
        return source.expand(num, -1, -1, -1)

    # Pictures

    def pictures(self, batch: dict[str, Tensor]) -> dict[str, Image.Image]:
        """The denoising trajectory (``trajectory_strip``) unless ``trajectory_frames`` is 0."""
        if self.hparams.trajectory_frames <= 0:
            return {}
        return {"trajectory": self.trajectory_strip()}

    def trajectory_strip(self, num: int | None = None, frames: int | None = None) -> Image.Image:
        """A picture of the denoising trajectory: ``frames`` snapshots of ``x_t`` from noise
        to sample (one row per image, or one scatter plot per frame for points).
        """
        frames = frames or self.hparams.trajectory_frames or 8
        num = num or (8 if self.modality == "image" else 500)
        path: list[Tensor] = []
        self.draw(num, trajectory=path)
        picks = torch.linspace(0, len(path) - 1, frames).round().long().tolist()
        return strip([path[i] * self.hparams.data_scale for i in picks],
                     [f"step {i}/{len(path) - 1}" for i in picks])


def per_sample_texts(prompt: str | list[str] | None, num: int) -> list[str]:
    """``num`` prompts from one (for all), ``num`` of them, or ``None`` (the empty prompt)."""
    texts = [""] if prompt is None else [prompt] if isinstance(prompt, str) else list(prompt)
    if len(texts) not in (1, num):
        raise GenlabError(f"give 1 prompt (for all) or {num}, got {len(texts)}")
    return texts * num if len(texts) == 1 else texts


def _as_list(value: Any) -> list:
    """A hyperparameter comparable across checkpoints (a shape may be a tuple or a list)."""
    return list(value) if isinstance(value, list | tuple) else [value]
